"""A blocked infinite-width NTK written to disk with bounded memory (issue 7's target).

    python benchmarks/bench_kernel_to_disk.py                      # n = 40,000, float32
    python benchmarks/bench_kernel_to_disk.py --points 8000 --check

Computes the NTK of a ReLU MLP (3 hidden layers) on n points of the sphere in d = 64 into a
memory-mapped float32 ``.npy`` with ``widenet.sweeps.kernel_to_disk`` on the local engine, and
prints the wall time, the file size and the peak resident memory of the whole process tree
(driver, fork server, workers), anonymous (held by the computation) and file-backed (pages of
the memory-mapped file). ``--check`` compares random entries and a random block with
``infinite_kernels`` in memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from process_memory import PeakMemory

from widenet.data import sphere_points
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP
from widenet.sweeps import LocalEngine
from widenet.sweeps.kernel import kernel_to_disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--folder", help="where the file goes (default: a temporary folder)")
    parser.add_argument("--check", action="store_true", help="spot-check against memory")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = sphere_points(args.points, args.dim, seed=0)
    net = MLP(args.dim, [512] * 3, 1, "relu", seed=0, dtype=torch.float64)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "ntk.npy"
        blocks = []
        with PeakMemory() as memory:
            start = time.perf_counter()
            matrix = kernel_to_disk(net, x, path, block=args.block, dtype=args.dtype,
                                    engine=LocalEngine(args.workers),
                                    on_block=lambda done, total: blocks.append(done))
            wall = time.perf_counter() - start
        print(f"n = {args.points}, d = {args.dim}, block {args.block}, {args.workers} workers, "
              f"{args.dtype}: {len(blocks)} blocks in {wall:.1f} s "
              f"({args.points**2 / wall / 1e6:.1f} M entries/s)")
        print(f"file {path.stat().st_size / 2**30:.2f} GiB; peak resident memory of the "
              f"process tree: {memory.anon_gib:.2f} GiB anonymous, {memory.file_gib:.2f} GiB "
              "file-backed")
        if args.check:
            _spot_check(net, x, matrix, args.block)


def _spot_check(net: MLP, x: torch.Tensor, matrix: np.ndarray, block: int) -> None:
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(x.shape[0], size=min(block, 500), replace=False))
    cols = np.sort(rng.choice(x.shape[0], size=min(block, 500), replace=False))
    exact = infinite_kernels(net, x[rows], x[cols]).ntk.numpy()
    stored = matrix[np.ix_(rows, cols)]
    error = float(np.max(np.abs(stored - exact) / np.abs(exact)))
    print(f"spot check of {rows.size} x {cols.size} entries: max relative error {error:.2e}")


if __name__ == "__main__":
    main()
