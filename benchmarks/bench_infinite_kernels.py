"""Time and peak memory of widenet.infinite_kernels: the NTK of a 10-hidden-layer abs MLP.

Each case runs in a fresh process so that its peak resident memory (ru_maxrss) is its own.
Usage: python benchmarks/bench_infinite_kernels.py [--repeats 5] [--large 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large", type=int, default=20000, help="n of the float64 memory case")
    parser.add_argument("--case", nargs=2, metavar=("N", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
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
