"""The float64 product of a block of kernel rows with V: one routine for every product.

For a block B = K[first:first + r, :] (r x cols, float32 or float64, any layout) and V
(cols x k, float64), :meth:`RowProduct.into` writes B V in float64 (a block whose values are
not finite fails, naming its rows). A float64 C-contiguous writable block is multiplied whole
(one ``torch.mm``). Any other block (float32 from a file, a strided part, a read-only map) is
cut into chunks of even sizes, at most ``chunk_rows(cols)`` rows: about :data:`CHUNK_BYTES`
of float64, but at least :data:`MIN_CHUNK_ROWS` rows (fewer make the float64 product slower,
docs/benchmarks.md). Each chunk is converted into one reused float64 buffer and multiplied
while it is still in cache. The arithmetic is float64 whatever the stored dtype: each float32
value is converted exactly.

The in-process products (:meth:`widenet.solvers.blocked.BlockedKernel.matmul`) and the Ray
tasks (:mod:`widenet.solvers.ray_products`) both call it, so a block gives the same bits
wherever it is multiplied.

:func:`multiply_blocks` runs a whole pass K V in process, over blocks of rows, with one thread
or several: each worker thread takes the next block not yet taken, reads it, converts and
multiplies it with one torch thread, so its block stays in its core's cache (one torch
product with two threads per chunk costs twice the CPU time and no less wall time,
docs/benchmarks.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np
import torch

from widenet.errors import WidenetError

CHUNK_BYTES = 2**20
MIN_CHUNK_ROWS = 8


def chunk_rows(cols: int) -> int:
    """Rows converted to float64 at a time: ``CHUNK_BYTES`` of float64, at least
    ``MIN_CHUNK_ROWS``."""
    return max(MIN_CHUNK_ROWS, CHUNK_BYTES // (8 * cols))


class RowProduct:
    """B V for blocks B of rows of one kernel and one V (cols, k) float64, reusing one
    conversion buffer across blocks."""

    def __init__(self, right: torch.Tensor):
        self.right = right
        self._converted: np.ndarray | None = None

    def into(self, block: np.ndarray, target: torch.Tensor, first: int) -> None:
        """target = block V in float64 (target: (len(block), k)); raises if a value of the
        product is not finite (the block holds NaN or inf), naming the block's rows as
        ``first``.. (its first row's number in the kernel)."""
        rows = block.shape[0]
        if block.dtype == np.float64 and block.flags.c_contiguous and block.flags.writeable:
            torch.mm(torch.from_numpy(block), self.right, out=target)
        else:
            if self._converted is None:  # reused: no page faults per chunk
                self._converted = np.empty((chunk_rows(block.shape[1]), block.shape[1]))
            pieces = -(-rows // self._converted.shape[0])  # even sizes: no short last chunk
            bounds = [rows * i // pieces for i in range(pieces + 1)]
            for start, stop in pairwise(bounds):
                chunk = self._converted[:stop - start]
                np.copyto(chunk, block[start:stop])
                torch.mm(torch.from_numpy(chunk), self.right, out=target[start:stop])
        if not bool(torch.isfinite(target).all()):
            raise WidenetError(f"the kernel has values that are not finite in rows "
                               f"{first}..{first + rows - 1}; recompute it or check what it is "
                               "computed from")


def multiply_blocks(fetch: Callable[[int, int], np.ndarray], rows: int, block_rows: int,
                    right: torch.Tensor, workers: int) -> torch.Tensor:
    """K V (rows x k, float64) from the blocks ``fetch(start, stop)`` = K[start:stop, :] of
    ``block_rows`` rows. ``workers`` = 1: in order, in this thread. More: that many threads,
    each with one torch thread, take the blocks in turn (``fetch`` must then be safe to call
    from several threads at once); torch's thread setting is restored afterwards. The first
    error of a block (one that is not finite, say) stops the others and is raised here."""
    out = torch.empty(rows, right.shape[1], dtype=torch.float64)
    starts, lock, failed = iter(range(0, rows, block_rows)), threading.Lock(), threading.Event()

    def work() -> None:
        product = RowProduct(right)
        while not failed.is_set():
            with lock:
                start = next(starts, None)
            if start is None:
                return
            try:
                block = fetch(start, min(start + block_rows, rows))
                product.into(block, out[start:start + block.shape[0]], start)
            except BaseException:
                failed.set()
                raise

    if workers == 1:
        work()
        return out

    def single_threaded_work() -> None:
        torch.set_num_threads(1)  # this thread's OpenMP and torch: one thread per worker
        work()

    previous = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers) as pool:
            try:
                for done in [pool.submit(single_threaded_work) for _ in range(workers)]:
                    done.result()
            except BaseException:  # Ctrl-C here, or a worker's error: the others stop too
                failed.set()
                raise
    finally:
        torch.set_num_threads(previous)  # MKL's setting is process-wide
    return out
