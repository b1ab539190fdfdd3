"""Kernel machines past memory: conjugate gradients on a kernel read from disk in blocks.

    python benchmarks/bench_solve.py                       # both parts below
    python benchmarks/bench_solve.py --part dense --points 5000
    python benchmarks/bench_solve.py --part disk --points 40000

The kernel is the infinite-width NTK of a 3-hidden-layer ReLU MLP on n points of the sphere in
R^d; the targets are one-hot labels of 10 classes from a random linear teacher,
argmax(x W). Both parts solve K alpha = Y (ridge 0 unless --ridge) with
``widenet.solvers.conjugate_gradients``, with and without the Nystrom preconditioner.

``dense``: K (float64) in memory, n = 5000, d = 64 and d = 8 (the latter's spectrum decays
faster: a harder system); iterations, time and the relative error of alpha against
``torch.linalg.solve`` at tolerances 1e-6 and 1e-10.

``disk``: K written with ``kernel_to_disk`` as float32 (n = 40,000: 6 GB, in a temporary
folder that is deleted afterwards), then solved to a relative residual of 1e-6 reading it a
block of rows at a time: wall time, iterations, the peak anonymous (non-file) resident memory
of the process during the solve, the time of one pass that only reads the file, and the
ratio wall / (read pass x iterations). The residual is checked afterwards with one more
float64 pass. ``--kernel PATH`` reuses a file of an earlier run instead of writing one.
``--rbf PATH`` writes (or reuses) instead the Gaussian kernel exp(-||x - x'||^2 / d) of the same
points, computed with torch in blocks (seconds, where the NTK file takes hours on a loaded
machine): what a pass costs does not depend on the values, only the iterations do.
``--passes N`` (with ``--kernel`` or ``--rbf``) only times, alternately N times, a pass that
reads the file and a product K Y (with ``--threads`` T > 1, the product runs in T threads,
and a read pass in T threads, each reading 1/T of the rows, is timed too), and with
``--before-src SRC`` also the read pass and the product of the BlockedKernel in that source
tree (an earlier widenet checkout, with its own
block size): least wall and CPU seconds, median CPU seconds, and each pass's ratio to the
read pass of this tree, measured side by side on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from process_memory import PeakMemory

from widenet.data import sphere_points
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP
from widenet.solvers import BlockedKernel, conjugate_gradients
from widenet.sweeps import LocalEngine
from widenet.sweeps.kernel import kernel_to_disk

CLASSES = 10


def _problem(points: int, dim: int) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    x = sphere_points(points, dim, seed=0)
    teacher = torch.randn(dim, CLASSES, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)
    y = torch.nn.functional.one_hot((x @ teacher).argmax(1), CLASSES).double()
    return MLP(dim, [512] * 3, 1, "relu", seed=0, dtype=torch.float64), x, y


def _true_residual(kernel: BlockedKernel, y: torch.Tensor, alpha: torch.Tensor,
                   ridge: float) -> float:
    residual = y - kernel.matmul(alpha) - ridge * alpha
    return float((residual.norm(dim=0) / y.norm(dim=0)).max())


def dense(points: int, ridge: float, rank: int) -> None:
    print(f"## dense agreement, n = {points}, ridge {ridge}, Nystrom rank {rank}, "
          f"{torch.get_num_threads()} torch thread(s)")
    print("| d | preconditioner | tol | iterations | time s | residual | error vs dense |")
    print("|---|---|---|---|---|---|---|")
    for dim in (64, 8):
        net, x, y = _problem(points, dim)
        matrix = infinite_kernels(net, x).ntk
        start = time.perf_counter()
        reference = torch.linalg.solve(matrix + ridge * torch.eye(points, dtype=torch.float64), y)
        dense_time = time.perf_counter() - start
        kernel = BlockedKernel(matrix)
        for preconditioner in (None, "nystrom"):
            for tol in (1e-6, 1e-10):
                start = time.perf_counter()
                result = conjugate_gradients(kernel, y, ridge=ridge, preconditioner=preconditioner,
                                             rank=rank if preconditioner else None, tol=tol,
                                             max_iterations=5000)
                wall = time.perf_counter() - start
                error = float((result.weights - reference).norm() / reference.norm())
                print(f"| {dim} | {preconditioner or 'none'} | {tol:g} | {result.iterations} | "
                      f"{wall:.2f} | {_true_residual(kernel, y, result.weights, ridge):.1e} | "
                      f"{error:.1e} |")
        print(f"(d = {dim}: torch.linalg.solve {dense_time:.2f} s)")


def passes(path: Path, y: torch.Tensor, repeats: int, before_src: str | None) -> None:
    """Least wall and CPU seconds of a read pass and of K Y, interleaved (module docstring)."""
    threads = torch.get_num_threads()
    kernels = {"read pass": BlockedKernel.open(path), "product K Y": BlockedKernel.open(path)}
    if threads > 1:
        kernels[f"read pass, {threads} threads"] = BlockedKernel.open(path)
    if before_src is not None:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "before_blocked", Path(before_src) / "widenet" / "solvers" / "blocked.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        kernels["read pass (before)"] = module.BlockedKernel.open(path)
        kernels["product K Y (before)"] = module.BlockedKernel.open(path)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in kernels}
    for _ in range(repeats):
        for name, kernel in kernels.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            if name.startswith("read pass,"):
                _parallel_read(kernel, threads)
            elif name.startswith("read pass"):
                for _block in kernel.blocks():
                    pass
            else:
                kernel.matmul(y)
            times[name].append((time.perf_counter() - start, time.process_time() - start_cpu))
    read_wall = min(t[0] for t in times["read pass"])
    read_cpu = min(t[1] for t in times["read pass"])
    print(f"{path}: {repeats} alternating runs, {torch.get_num_threads()} torch thread(s)")
    print("| pass | rows per block | least wall s | least CPU s | median CPU s | / read pass "
          "(wall) | / read pass (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in times.items():
        wall, cpu = min(t[0] for t in runs), min(t[1] for t in runs)
        median = sorted(t[1] for t in runs)[len(runs) // 2]
        print(f"| {name} | {kernels[name].block_rows} | {wall:.2f} | {cpu:.2f} | {median:.2f} | "
              f"{wall / read_wall:.2f} | {cpu / read_cpu:.2f} |")
    print(f"load average after: {', '.join(f'{load:.1f}' for load in os.getloadavg())}")


def _parallel_read(kernel: BlockedKernel, threads: int) -> None:
    """A read pass in ``threads`` threads, each reading a contiguous share of the rows."""
    from concurrent.futures import ThreadPoolExecutor

    rows, cols = kernel.shape
    shares = [kernel.part(range(rows * i // threads, rows * (i + 1) // threads), range(cols))
              for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(lambda share=share: [None for _ in share.blocks()])
                     for share in shares]:
            done.result()


def _write_rbf(path: Path, x: torch.Tensor) -> None:
    """exp(-||x_i - x_j||^2 / d) as a float32 .npy file, 2048 rows at a time."""
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                       shape=(x.shape[0], x.shape[0]))
    for start in range(0, x.shape[0], 2048):
        rows = x[start:start + 2048]
        matrix[start:start + len(rows)] = torch.exp(
            -torch.cdist(rows, x).square_() / x.shape[1]).numpy()
    matrix.flush()
    del matrix


def disk(points: int, ridge: float, rank: int, folder: str | None, plain_cap: int,
         kernel_file: str | None, runs: list[str], rbf: str | None = None,
         repeats: int = 0, before_src: str | None = None) -> None:
    net, x, y = _problem(points, 64)
    if rbf is not None:
        if not Path(rbf).exists():
            start = time.perf_counter()
            _write_rbf(Path(rbf), x)
            print(f"## Gaussian kernel, n = {points}: written in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        kernel_file = rbf
    if kernel_file is not None and repeats:
        passes(Path(kernel_file), y, repeats, before_src)
        return
    if kernel_file is not None:  # a kernel this script wrote before (same points and net)
        _solve_on_disk(Path(kernel_file), y, ridge, rank, plain_cap, runs)
        return
    with tempfile.TemporaryDirectory(dir=folder) as where:
        path = Path(where) / "ntk.npy"
        start = time.perf_counter()
        kernel_to_disk(net, x, path, block=4096, dtype="float32", engine=LocalEngine(2))
        print(f"## on disk, n = {points}: written in {time.perf_counter() - start:.0f} s",
              flush=True)
        _solve_on_disk(path, y, ridge, rank, plain_cap, runs)


def _solve_on_disk(path: Path, y: torch.Tensor, ridge: float, rank: int, plain_cap: int,
                   runs: list[str]) -> None:
    kernel = BlockedKernel.open(path)
    print(f"{path}: {kernel.shape}, {path.stat().st_size / 2**30:.2f} GiB; ridge {ridge}, "
          f"{torch.get_num_threads()} torch thread(s)", flush=True)
    reads = []
    for _ in range(2):
        start = time.perf_counter()
        for _block in kernel.blocks():
            pass
        reads.append(time.perf_counter() - start)
    read = min(reads)
    start = time.perf_counter()
    kernel.matmul(y)
    product = time.perf_counter() - start
    print(f"one pass reading the file: {read:.2f} s (runs: "
          f"{', '.join(f'{r:.2f}' for r in reads)}); one float64 product K Y: "
          f"{product:.2f} s; rows per block {kernel.block_rows}", flush=True)
    rows = []
    for preconditioner, cap in (("nystrom", 1000), (None, plain_cap)):
        name = f"Nystrom, rank {rank}" if preconditioner else "none"
        if (preconditioner or "none") not in runs:
            continue
        start = time.perf_counter()

        def show(iteration: int, residual: float, name: str = name, start: float = start
                 ) -> None:
            print(f"  {name}: iteration {iteration}, residual {residual:.2e}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

        with PeakMemory() as memory:
            result = conjugate_gradients(kernel, y, ridge=ridge, preconditioner=preconditioner,
                                         rank=rank if preconditioner else None, tol=1e-6,
                                         max_iterations=cap, progress=show)
            wall = time.perf_counter() - start
        checked = _true_residual(kernel, y, result.weights, ridge)
        rows.append(f"| {name} | {result.iterations}{'' if result.converged else ' (cap)'} | "
                    f"{wall:.1f} | {wall / (read * result.iterations):.2f} | "
                    f"{result.residual:.2e} | {checked:.2e} | {memory.anon_gib:.2f} |")
        print(rows[-1], flush=True)
    print("| preconditioner | iterations | wall s | wall / (read x iterations) | "
          "residual (recurrence) | residual (checked) | peak anon GiB |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["dense", "disk", "both"], default="both")
    parser.add_argument("--points", type=int, help="n (default 5000 dense, 40000 disk)")
    parser.add_argument("--ridge", type=float, default=0.0)
    parser.add_argument("--rank", type=int, default=500, help="Nystrom columns")
    parser.add_argument("--plain-cap", type=int, default=300,
                        help="iteration cap of the unpreconditioned solve on disk")
    parser.add_argument("--folder", help="where the disk part's file goes (default: /tmp)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the solve")
    parser.add_argument("--kernel", help="reuse this kernel file of the disk part (kept)")
    parser.add_argument("--rbf", help="write or reuse a Gaussian kernel file here (doc)")
    parser.add_argument("--passes", type=int, default=0, help="only time passes (doc)")
    parser.add_argument("--before-src", help="with --passes: an earlier source tree")
    parser.add_argument("--runs", nargs="+", choices=["nystrom", "none"],
                        default=["nystrom", "none"], help="the disk part's solves")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("dense", "both"):
        dense(args.points or 5000, args.ridge, args.rank)
    if args.part in ("disk", "both"):
        disk(args.points or 40_000, args.ridge, args.rank, args.folder, args.plain_cap,
             args.kernel, args.runs, args.rbf, args.passes, args.before_src)


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
