"""K V and chosen rows on Ray for a kernel computed on demand: each block's product is a Ray
task that computes the block where it runs and sends back only its rows of K V.

For a kernel of rows ``rows(index) -> K[index, :]`` (see
:data:`~widenet.solvers.blocked.RowFunction`; for ``BlockedKernel.from_net`` it runs the
infinite-width engine or the empirical NTK) split into blocks of rows B_1, B_2, ..., the product

    K V = [K[B_1, :] V; K[B_2, :] V; ...]

is one task per block: the task computes K[B_i, :] (block_rows x cols) and multiplies it by V
(cols x k) in float64 with the routine :meth:`BlockedKernel.matmul` uses in process
(:class:`~widenet.solvers.products.RowProduct`, so the bits are the same), and returns the
(block_rows x k) product. The row function and V are put in Ray's object store once per
product; no block ever leaves the worker that computed it. The row function may be that of a
part K[rows, cols] of a kernel (:meth:`BlockedKernel.part`): the task then computes only the
part's rows (and, for a kernel of ``BlockedKernel.from_net``, only its columns).
:func:`ray_take` computes chosen rows K[index, :] (the Nystrom preconditioner's m rows) the
same way, one task per batch of ``block_rows`` of them; those rows do come back, since
the caller needs them. The tasks use the Ray instance this process is connected to
(``ray.init(...)`` or ``ray.init(address=...)`` first; without one, Ray starts a local
instance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from widenet.errors import WidenetError
from widenet.solvers.products import RowProduct

ComputeRows = Callable[[np.ndarray], np.ndarray]
"""Row indices -> K[index, :] as a float16, float32 or float64 numpy array (the rows of a
BlockedKernel or of its part, checked)."""


def block_product(rows: ComputeRows, start: int, stop: int, right: torch.Tensor
                  ) -> torch.Tensor:
    """K[start:stop, :] V in float64, the block computed here and dropped; raises if the block
    holds a value that is not finite."""
    product = torch.empty(stop - start, right.shape[1], dtype=torch.float64)
    RowProduct(right).into(rows(np.arange(start, stop)), product, start)
    return product


def ray_matmul(rows: ComputeRows, n_rows: int, block_rows: int, right: torch.Tensor
               ) -> torch.Tensor:
    """K V with one Ray task per block of ``block_rows`` rows (module docstring); ``right``:
    (cols, k) float64. A task's error is raised here as the WidenetError or error it was."""
    ray = _ray()
    task = ray.remote(num_cpus=1)(block_product)
    rows_ref, right_ref = ray.put(rows), ray.put(right)
    return torch.cat(_gather(ray, [task.remote(rows_ref, start, min(start + block_rows, n_rows),
                                               right_ref)
                                   for start in range(0, n_rows, block_rows)]))


def ray_take(rows: ComputeRows, batches: list[np.ndarray]) -> list[np.ndarray]:
    """K[batch, :] for each batch of sorted row numbers, each computed by one Ray
    task and brought back."""
    ray = _ray()
    task = ray.remote(num_cpus=1)(rows_of)
    rows_ref = ray.put(rows)
    return _gather(ray, [task.remote(rows_ref, batch) for batch in batches])


def rows_of(rows: ComputeRows, index: np.ndarray) -> np.ndarray:
    """K[index, :], computed here (a Ray task of :func:`ray_take`)."""
    return rows(index)


def _gather(ray: Any, pending: list) -> list:
    """The tasks' results in order; a task's error is raised here as the error it was."""
    try:
        return ray.get(pending)
    except ray.exceptions.RayTaskError as error:
        raise (error.cause or error) from None


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise WidenetError("products on Ray need Ray: pip install 'widenet[ray]'") from None
    return ray
