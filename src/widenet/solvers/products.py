"""The float64 product of a block of kernel rows with V: one routine for every product.

For a block B = K[first:first + r, :] (r x cols, float32 or float64, any layout) and V
(cols x k, float64), :meth:`RowProduct.into` writes B V in float64 (a block whose values are
not finite fails, naming its rows). A float64 C-contiguous writable block is multiplied whole
(one ``torch.mm``). Any other block (float32 from a file, a strided part, a read-only map) is
converted ``chunk_rows(cols)`` rows at a time into one reused float64 buffer, and each chunk
is multiplied while it is still in cache: about :data:`CHUNK_BYTES` of float64. The
arithmetic is float64 whatever the stored dtype: each float32 value is converted exactly.

The in-process products (:meth:`widenet.solvers.blocked.BlockedKernel.matmul`) and the Ray
tasks (:mod:`widenet.solvers.ray_products`) both call it, so a block gives the same bits
wherever it is multiplied.
"""

from __future__ import annotations

import numpy as np
import torch

from widenet.errors import WidenetError

CHUNK_BYTES = 2**20


def chunk_rows(cols: int) -> int:
    """Rows converted to float64 at a time: ``CHUNK_BYTES`` of float64, at least one."""
    return max(1, CHUNK_BYTES // (8 * cols))


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
            step = self._converted.shape[0]
            for start in range(0, rows, step):
                chunk = self._converted[:min(step, rows - start)]
                np.copyto(chunk, block[start:start + chunk.shape[0]])
                torch.mm(torch.from_numpy(chunk), self.right,
                         out=target[start:start + chunk.shape[0]])
        if not bool(torch.isfinite(target).all()):
            raise WidenetError(f"the kernel has values that are not finite in rows "
                               f"{first}..{first + rows - 1}; recompute it or check what it is "
                               "computed from")
