"""Wall time of the README's 10-line tour with 1 and with 2 torch threads, interleaved.

The tour's Python block is read from README.md (the block under "A 10-line tour") and run in a
fresh interpreter per repeat, prefixed by ``torch.set_num_threads(T)``; the repeats alternate
between the thread counts so that both see the same load. Prints each wall time (import
included) and the median per thread count, with the load average before and after.
Usage: python benchmarks/bench_threads.py [--repeats 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def tour_code() -> str:
    """The Python block that follows the "A 10-line tour" heading of README.md."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## A 10-line tour", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run_once(code: str, threads: int) -> float:
    """Seconds for one fresh interpreter to run ``code`` with ``threads`` torch threads."""
    program = f"import torch\ntorch.set_num_threads({threads})\n{code}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", program], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    code = tour_code()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    times: dict[int, list[float]] = {t: [] for t in args.threads}
    for repeat in range(args.repeats):
        for threads in args.threads:
            seconds = run_once(code, threads)
            times[threads].append(seconds)
            print(f"repeat {repeat}, {threads} thread(s): {seconds:.1f} s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for threads, values in times.items():
        print(f"{threads} thread(s): median {statistics.median(values):.1f} s "
              f"(min {min(values):.1f}, max {max(values):.1f}) over {len(values)} runs")


if __name__ == "__main__":
    main()
