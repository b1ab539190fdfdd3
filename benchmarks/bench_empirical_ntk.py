"""Time and peak memory of widenet.empirical_ntk on an MLP 32 -> 512 -> 512 -> k (ReLU), and
widenet side by side with nngeometry in one process.

Default mode: n = 500 points, float32, CPU, K(x, x) (x2 = None). widenet's methods are compared
with a plain torch.func baseline: per-point Jacobians by vmap(jacrev) contracted with einsum.
Each case runs in a fresh process (so that its peak resident memory is its own) and reports the
median wall time of ``--repeats`` runs after ``--warmup`` runs.

``--side-by-side``: in ONE process, with the same torch, float32, the same torch model
(nn.Linear / nn.Conv2d layers, which nngeometry knows): widenet's empirical_ntk (auto, and every
method on the MLP at k = 1), nngeometry's GramMatrix (if installed: the ``bench`` extra) and,
for the MLP at k = 1, the bare Gram products A_l A_l^T, G_l G_l^T of the layer inputs and output
gradients, precomputed (what any layer-wise method must multiply): as full squares (the issue's
baseline), as the blocks on and above the diagonal of 4 row chunks (the cheapest symmetric
Gram torch's own products give: widenet's assembly of K(x, x) without the rank-k update), and
as lower triangles by the symmetric rank-k update (what widenet multiplies where torch carries
MKL: like with like); and, to show where a layer-wise method's time goes, a hand-written
pipeline for this one MLP (forward, backward, the lower-triangle Grams and the assembly, with
no checks) and widenet's probe passes and checks alone.
Settings: the MLP at k = 1 and k = 10 (full kernel), and a CNN (two 3x3 convolutions of 64
channels on 8x8 images, 300 points) at k = 1 and 10. The repeats of all cases of a setting are
interleaved, so that a load that changes during the run touches them alike (a case whose first
run takes over SLOW_SECONDS of CPU is timed by that run alone); the table gives median wall and
CPU (process) times, their ratios to widenet's auto, and each kernel's largest difference from
widenet auto's.
``--rounds R`` repeats the whole comparison in R fresh processes, and ``--before-src DIR`` runs
each round also with the widenet sources in DIR (e.g. an export of an earlier commit), for a
before/after comparison in the same run.

Usage: python benchmarks/bench_empirical_ntk.py [--repeats 7] [--warmup 2] [--skip-slow]
       python benchmarks/bench_empirical_ntk.py --side-by-side [--settings mlp-k1 ...]
           [--threads 1] [--rounds 3] [--before-src DIR] [--repeats 7] [--warmup 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from timing import wall_times
from torch.func import functional_call, jacrev, vmap

from widenet.kernels._audit import prepare
from widenet.kernels._blocks import _cache_rows, slices
from widenet.kernels._gram import lower_gram, mirror_lower_
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



# ---- side by side with the peers, in one process (--side-by-side) ----------------------------

SETTINGS = ("mlp-k1", "mlp-k10", "cnn-k1", "cnn-k10")
SLOW_SECONDS = 2.0  # CPU seconds: a case whose first run takes longer is timed by that run alone


def peer_mlp(k: int) -> torch.nn.Module:
    """The MLP 32 -> 512 -> 512 -> k (ReLU) as torch layers, which nngeometry knows."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(D, WIDTH), torch.nn.ReLU(),
                               torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(),
                               torch.nn.Linear(WIDTH, k))


def peer_cnn(k: int) -> torch.nn.Module:
    """Two 3x3 convolutions of 64 channels (zero padding 1, ReLU) on 3 x 8 x 8 images, then a
    dense readout to k outputs."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, k))


def setting(name: str) -> tuple[torch.nn.Module, torch.Tensor, int, str]:
    """(model, points, k, widenet's outputs) of a named setting: "trace" at k = 1 (which is
    the full kernel), "full" at k = 10, as nngeometry always computes the full kernel."""
    kind, k = name.split("-k")
    k = int(k)
    g = torch.Generator().manual_seed(0)
    if kind == "mlp":
        model, x = peer_mlp(k), torch.randn(N, D, generator=g)
    else:
        model, x = peer_cnn(k), torch.randn(300, 3, 8, 8, generator=g)
    return model, x, k, "trace" if k == 1 else "full"


def mlp_factors(model: torch.nn.Sequential, x: torch.Tensor
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each Linear layer's inputs A_l (n, p) and output gradients G_l = df/dz_l (n, q), k = 1."""
    inputs, zs, h = [], [], x
    for module in model:
        if isinstance(module, torch.nn.Linear):
            inputs.append(h.detach())
            h = module(h)
            zs.append(h)
        else:
            h = module(h)
    grads = torch.autograd.grad(h.sum(), zs)
    return inputs, list(grads)


def gram_products(inputs: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The Gram matrices A_l A_l^T and G_l G_l^T of every layer: the products any layer-wise
    NTK needs, K = sum_l (A_l A_l^T + 1) * (G_l G_l^T) (weight and bias terms)."""
    return [a @ a.T for a in inputs] + [g @ g.T for g in grads]


def triangle_chunks(n: int) -> list[slice]:
    """The row chunks of widenet's symmetric assembly of an n x n kernel at k = 1."""
    return slices(n, _cache_rows(n, n, 1, "trace", triangle=True))


def gram_triangle(inputs: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same Gram products restricted, as in widenet's assembly of K(x, x), to the blocks of
    row chunks against the columns from their own first point on: 5/8 of the squares at 4
    chunks (per factor, the blocks of ``triangle_chunks`` in turn)."""
    chunks = triangle_chunks(inputs[0].shape[0])
    return [m[rows] @ m[rows.start:].T for m in inputs + grads for rows in chunks]


def gram_lower(inputs: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same Gram products as lower triangles by the symmetric rank-k update where torch
    carries MKL (half the squares' multiply-adds; the full squares elsewhere)."""
    return [lower_gram(m) for m in inputs + grads]


def hand_written(model: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """K = sum_l (A_l A_l^T + 1) * G_l G_l^T of the MLP at k = 1 with nothing but the passes and
    products a layer-wise method needs: the Grams as lower triangles, the sum mirrored once."""
    kernel = None
    for a, g in zip(*mlp_factors(model, x), strict=True):
        term = lower_gram(a, plus=1.0).mul_(lower_gram(g))
        kernel = term if kernel is None else kernel.add_(term)
    return mirror_lower_(kernel)


def from_triangle(blocks: list[torch.Tensor], layers: int, n: int) -> torch.Tensor:
    """K = sum_l (A_l A_l^T + 1) * (G_l G_l^T) from ``gram_triangle``'s blocks, mirrored."""
    chunks = triangle_chunks(n)
    kernel = blocks[0].new_zeros(n, n)
    for layer in range(layers):
        for j, rows in enumerate(chunks):
            a = blocks[layer * len(chunks) + j]
            g = blocks[(layers + layer) * len(chunks) + j]
            kernel[rows, rows.start:] += (a + 1) * g
    return kernel.triu() + kernel.triu(1).T


def peer_cases(name: str, model: torch.nn.Module, x: torch.Tensor, k: int, outputs: str
               ) -> tuple[dict, dict]:
    """{label: (compute, kernel of the result as (n, n, k, k))} of one setting, and notes."""
    def widenet_case(method: str):
        def compute():
            return empirical_ntk(model, x, outputs=outputs, method=method)

        def as_full(result):
            return result.ntk[:, :, None, None] if outputs == "trace" else result.full
        return compute, as_full

    methods = ("auto", "layerwise", "jacobian", "ntk-vp") if name == "mlp-k1" else ("auto",)
    cases = {f"widenet empirical_ntk({method})": widenet_case(method) for method in methods}
    notes = {}
    try:
        from nngeometry import GramMatrix
        from torch.utils.data import DataLoader, TensorDataset
    except ImportError:
        notes["nngeometry"] = ("not installed (pip install nngeometry==0.4, as pinned in the "
                               "bench extra): widenet only")
    else:
        loader = DataLoader(TensorDataset(x), batch_size=x.shape[0])
        cases["nngeometry GramMatrix"] = (
            lambda: GramMatrix(model, loader).data,
            lambda g: g.permute(1, 3, 0, 2))
    if name == "mlp-k1":
        inputs, grads = mlp_factors(model, x)

        def from_grams(grams):
            half = len(inputs)
            return sum((a + 1) * g for a, g in zip(grams[:half], grams[half:],
                                                   strict=True))[:, :, None, None]
        cases["bare Gram products (torch, factors precomputed)"] = (
            lambda: gram_products(inputs, grads), from_grams)
        cases["bare Gram products, widenet's triangle of row chunks"] = (
            lambda: gram_triangle(inputs, grads),
            lambda blocks: from_triangle(blocks, len(inputs), x.shape[0])[:, :, None, None])
        cases["bare Gram products, lower triangles (rank-k update)"] = (
            lambda: gram_lower(inputs, grads),
            lambda grams: mirror_lower_(from_grams(grams)[:, :, 0, 0])[:, :, None, None])
        cases["hand-written pipeline: forward, backward, lower-triangle Grams, assembly"] = (
            lambda: hand_written(model, x), lambda kernel: kernel[:, :, None, None])
        cases["widenet's probe passes and checks alone (prepare)"] = (
            lambda: prepare(model, x), None)
    return cases, notes


def timed(compute) -> tuple[object, tuple[float, float]]:
    """compute() and the (wall, CPU) seconds it took; CPU is this process's time, all threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = compute()
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def side_by_side(names: list[str], repeats: int, warmup: int) -> None:
    """Time every case of each setting in this process, repeats interleaved, and print a table
    with wall and CPU (process) time medians and the ratios to widenet auto."""
    for name in names:
        model, x, k, outputs = setting(name)
        cases, notes = peer_cases(name, model, x, k, outputs)
        for peer, note in notes.items():
            print(f"{name}: {peer} {note}")
        compute, as_full = cases["widenet empirical_ntk(auto)"]
        reference = as_full(compute())
        agree, times = {}, {}
        for label, (compute, as_full) in cases.items():
            result, first = timed(compute)
            if first[1] > SLOW_SECONDS:  # timed once, this first run being the measurement
                times[label] = [first]
            for _ in range(0 if label in times else warmup - 1):
                compute()
            agree[label] = (None if as_full is None else
                            float((as_full(result) - reference).abs().max()
                                  / reference.abs().max()))
        repeated = [label for label in cases if label not in times]
        times.update({label: [] for label in repeated})
        order = random.Random(0)  # each repetition in a new order: no case always follows
        for _ in range(repeats):  # the same one (the case before a case sets its cache)
            for label in order.sample(repeated, len(repeated)):
                times[label].append(timed(cases[label][0])[1])
        base = [statistics.median(t[i] for t in times["widenet empirical_ntk(auto)"])
                for i in (0, 1)]
        print(f"\n{name}: {type(model[0]).__name__} model, n = {x.shape[0]}, k = {k}, float32, "
              f"K(x, x), {outputs}; {torch.get_num_threads()} torch thread(s); "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print("| implementation | runs | median wall ms | median CPU ms | wall / widenet auto | "
              "CPU / widenet auto | max rel. difference to widenet auto |")
        print("|---|---|---|---|---|---|---|")
        for label in cases:
            measured = times[label]
            wall, cpu = (statistics.median(t[i] for t in measured) for i in (0, 1))
            runs = "1, no warm-up" if label not in repeated else len(measured)
            print(f"| {label} | {runs} | {1e3 * wall:.1f} | {1e3 * cpu:.1f} | "
                  f"{wall / base[0]:.2f} | {cpu / base[1]:.2f} | "
                  f"{'-' if agree[label] is None else f'{agree[label]:.1e}'} |", flush=True)


def run_rounds(args: argparse.Namespace) -> None:
    """Each round: the side-by-side comparison in a fresh process with ``--before-src`` (if
    given), then with this tree's sources."""
    sources = ([("before", args.before_src)] if args.before_src else []) + [
        ("this tree", str(Path(__file__).resolve().parent.parent / "src"))]
    for round_ in range(1, args.rounds + 1):
        for label, src in sources:
            print(f"\n## round {round_}, widenet from {label} ({src})", flush=True)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                [src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
            subprocess.run([sys.executable, __file__, "--side-by-side", "--rounds", "0",
                            "--threads", str(args.threads), "--repeats", str(args.repeats),
                            "--warmup", str(args.warmup), "--settings", *args.settings],
                           check=True, env=env)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-slow", action="store_true",
                        help="leave out the cases that take tens of seconds per run")
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "OUTPUTS", "K"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--side-by-side", action="store_true",
                        help="widenet beside nngeometry and the bare Gram products, one process")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in --side-by-side (1: robust on a shared machine)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--side-by-side: fresh processes, one comparison each")
    parser.add_argument("--before-src", help="--side-by-side: also time widenet from this "
                        "source directory in each round")
    args = parser.parse_args()
    if args.side_by_side:
        if args.rounds > 0:
            run_rounds(args)
            return
        torch.set_num_threads(args.threads)
        print(f"{machine()}; widenet from {Path(sys.modules['widenet'].__file__).parent}")
        side_by_side(args.settings, args.repeats, args.warmup)
        return
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
