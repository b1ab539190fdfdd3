"""Time and peak memory of widenet.infinite_kernels: the NTK of a 10-hidden-layer abs MLP.

Each case runs in a fresh process so that its peak resident memory (ru_maxrss) is its own.
Usage: python benchmarks/bench_infinite_kernels.py [--repeats 5] [--large 20000]

    python benchmarks/bench_infinite_kernels.py --ratio 4000 --repeats 5 --threads 1

times float32 and float64 inputs alternately in one process (after one warm-up call each) and
prints the least wall and CPU seconds of each and their ratio: on a shared machine the load
changes between separate runs, and the ratio of interleaved runs is what holds.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from timing import wall_times

import widenet

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run_case(n: int, dtype_name: str, repeats: int) -> dict:
    """Median wall time of infinite_kernels(net, x) after one warm-up, and the peak RSS."""
    x = torch.randn(n, 32, generator=torch.Generator().manual_seed(0), dtype=DTYPES[dtype_name])
    net = widenet.MLP(32, [64] * 10, 1, "abs")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    times = wall_times(lambda: widenet.infinite_kernels(net, x), repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"n": n, "dtype": dtype_name, "median_s": statistics.median(times),
            "min_s": min(times), "peak_rss_gib": peak, "rss_before_gib": baseline,
            "output_gib": 2 * n * n * x.element_size() / 2**30, "threads": torch.get_num_threads()}


def ratio(n: int, repeats: int) -> None:
    """float64 / float32 time of interleaved calls (module docstring)."""
    net = widenet.MLP(32, [64] * 10, 1, "abs")
    inputs = {name: torch.randn(n, 32, generator=torch.Generator().manual_seed(0), dtype=dtype)
              for name, dtype in DTYPES.items()}
    for x in inputs.values():
        widenet.infinite_kernels(net, x)
    wall: dict[str, list[float]] = {name: [] for name in inputs}
    cpu: dict[str, list[float]] = {name: [] for name in inputs}
    for _ in range(repeats):
        for name, x in inputs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            widenet.infinite_kernels(net, x)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(f"n = {n}, {torch.get_num_threads()} thread(s), {repeats} interleaved calls each")
    for name in inputs:
        print(f"{name}: least wall {min(wall[name]):.3f} s (median "
              f"{statistics.median(wall[name]):.3f}), least CPU {min(cpu[name]):.3f} s")
    print(f"float64 / float32: wall {min(wall['float64']) / min(wall['float32']):.2f}, "
          f"CPU {min(cpu['float64']) / min(cpu['float32']):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large", type=int, default=20000, help="n of the float64 memory case")
    parser.add_argument("--case", nargs=2, metavar=("N", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--ratio", type=int, metavar="N",
                        help="interleave float32 and float64 at this n (module docstring)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ratio:
        ratio(args.ratio, args.repeats)
        return
    if args.case:
        print(json.dumps(run_case(int(args.case[0]), args.case[1], args.repeats)))
        return
    cases = [(n, d) for d in DTYPES for n in (1000, 2000, 4000)] + [(args.large, "float64")]
    print("| n | dtype | median s | min s | peak RSS GiB | NNGP+NTK output GiB |")
    print("|---|---|---|---|---|---|")
    for n, dtype_name in cases:
        repeats = args.repeats if n <= 4000 else 1
        result = json.loads(subprocess.run(
            [sys.executable, __file__, "--case", str(n), dtype_name, "--repeats", str(repeats)],
            check=True, capture_output=True, text=True).stdout)
        print(f"| {n} | {dtype_name} | {result['median_s']:.3f} | {result['min_s']:.3f} | "
              f"{result['peak_rss_gib']:.2f} | {result['output_gib']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
