"""Time and peak memory of widenet.empirical_ntk on an MLP 32 -> 512 -> 512 -> k (ReLU).

n = 500 points, float32, CPU, K(x, x) (x2 = None). widenet's methods are compared with a plain
torch.func baseline: per-point Jacobians by vmap(jacrev) contracted with einsum. Each case runs
in a fresh process (so that its peak resident memory is its own) and reports the median wall
time of ``--repeats`` runs after ``--warmup`` runs.
Usage: python benchmarks/bench_empirical_ntk.py [--repeats 7] [--warmup 2] [--skip-slow]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys

import torch
from timing import wall_times
from torch.func import functional_call, jacrev, vmap

from widenet.kernels.empirical import empirical_ntk
from widenet.models import MLP

N, D, WIDTH = 500, 32, 512

# (label, method, outputs, k, slow): "baseline" is the plain torch.func contraction
CASES = [
    ("widenet auto (layerwise)", "auto", "trace", 1, False),
    ("widenet auto (layerwise)", "auto", "full", 10, False),
    ("widenet auto (layerwise)", "auto", "trace", 10, False),
    ("widenet auto (layerwise)", "auto", "diagonal", 10, False),
    ("widenet jacobian", "jacobian", "trace", 1, False),
    ("widenet ntk-vp", "ntk-vp", "trace", 1, True),
    ("torch.func vmap(jacrev) + einsum", "baseline", "trace", 1, False),
    ("widenet jacobian", "jacobian", "full", 10, True),
    ("torch.func vmap(jacrev) + einsum", "baseline", "full", 10, True),
]


def baseline_ntk(model: torch.nn.Module, x: torch.Tensor, outputs: str) -> torch.Tensor:
    """J(x) J(x)^T from per-point Jacobians, as one would write it with torch.func."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def point_output(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(point_output), in_dims=(None, 0))(params, x)
    flat = torch.cat([j.reshape(x.shape[0], j.shape[1], -1) for j in jac.values()], dim=2)
    equation = "iap,jbp->ijab" if outputs == "full" else "iap,jap->ij"
    return torch.einsum(equation, flat, flat)


def run_case(method: str, outputs: str, k: int, repeats: int, warmup: int) -> dict:
    """Median wall time of one kernel computation after warm-up, and the peak RSS."""
    x = torch.randn(N, D, generator=torch.Generator().manual_seed(0))
    model = MLP(D, [WIDTH, WIDTH], k, activation="relu", bias_std=0.1, seed=0)
    if method == "baseline":
        def compute():
            return baseline_ntk(model, x, outputs)
    else:
        def compute():
            return empirical_ntk(model, x, outputs=outputs, method=method)
    times = wall_times(compute, repeats, warmup)
    return {"median_s": statistics.median(times), "min_s": min(times),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "threads": torch.get_num_threads()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}, {datetime.date.today().isoformat()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-slow", action="store_true",
                        help="leave out the cases that take tens of seconds per run")
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "OUTPUTS", "K"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        method, outputs, k = args.case
        print(json.dumps(run_case(method, outputs, int(k), args.repeats, args.warmup)))
        return
    print(f"MLP {D} -> {WIDTH} -> {WIDTH} -> k (ReLU, biases), n = {N}, float32, K(x, x); "
          f"{machine()}; median of {args.repeats} after {args.warmup} warm-up\n")
    print("| implementation | outputs | k | kernel shape | median s | min s | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|")
    for label, method, outputs, k, slow in CASES:
        if slow and args.skip_slow:
            continue
        repeats, warmup = (1, 1) if slow else (args.repeats, args.warmup)
        result = json.loads(subprocess.run(
            [sys.executable, __file__, "--case", method, outputs, str(k), "--repeats",
             str(repeats), "--warmup", str(warmup)],
            check=True, capture_output=True, text=True).stdout)
        shape = {"trace": (N, N), "diagonal": (N, N, k), "full": (N, N, k, k)}[outputs]
        print(f"| {label} | {outputs} | {k} | {shape} | {result['median_s']:.4f} | "
              f"{result['min_s']:.4f} | {result['peak_rss_gib']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
