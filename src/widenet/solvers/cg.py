"""Preconditioned conjugate gradients for (K + ridge I) alpha = Y with a kernel never held whole.

Each column y of Y (one output, or one class of one-hot labels) runs its own conjugate
gradient recurrence (Hestenes & Stiefel; Saad, "Iterative methods", Algorithm 9.1, with the
preconditioner M ~ (K + ridge I)^-1):

    r_0 = y,  z_0 = M r_0,  p_0 = z_0,  alpha_0 = 0
    a_j = <r_j, z_j> / <p_j, (K + ridge I) p_j>
    alpha_{j+1} = alpha_j + a_j p_j,      r_{j+1} = r_j - a_j (K + ridge I) p_j
    z_{j+1} = M r_{j+1},  p_{j+1} = z_{j+1} + (<r_{j+1}, z_{j+1}> / <r_j, z_j>) p_j

but the columns share the product K P: one pass over the kernel's blocks per iteration,
whatever the number of columns. A column stops (its alpha and r frozen) once
||r_j|| <= tol ||y||; the solve stops when every column has, or after ``max_iterations``.
r_j is the recurrence's residual, which equals y - (K + ridge I) alpha_j up to round-off
(a drift of order eps * iterations * ||K|| ||alpha||, far below tol = 1e-6 in float64).
All arithmetic is float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from widenet.errors import WidenetError
from widenet.solvers.arguments import (
    column_scales,
    overflow_error,
    relative_tolerance,
    square_size,
    targets_matrix,
)
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.nystrom import NystromPreconditioner
from widenet.solvers.progress import Progress, Reporter
from widenet.validation import finite_real, positive_int

DEFAULT_MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class SolveResult:
    """The solution of (K + ridge I) alpha = Y and how it was reached.

    ``weights``: alpha, shaped like Y. ``residuals``: (iterations + 1, k) relative residuals
    ||r_j|| / ||y|| of each column after j iterations (0 for a zero column), row 0 all ones.
    ``converged``: every column reached the tolerance."""

    weights: torch.Tensor
    iterations: int
    converged: bool
    residuals: torch.Tensor

    @property
    def residual(self) -> float:
        """The largest relative residual over the columns at the end."""
        return float(self.residuals[-1].max())


def conjugate_gradients(kernel: BlockedKernel, y: torch.Tensor | np.ndarray, *,
                        ridge: float = 0.0,
                        preconditioner: str | Callable[[torch.Tensor], torch.Tensor] | None
                        = "nystrom", rank: int | None = None, seed: int | None = None,
                        tol: float = 1e-6,
                        max_iterations: int = DEFAULT_MAX_ITERATIONS,
                        progress: bool | Progress | None = False) -> SolveResult:
    """Solve (K + ridge I) alpha = Y by preconditioned conjugate gradients (module docstring).

    ``y``: (n,) or (n, k) targets, finite. ``preconditioner``: "nystrom" (a
    :class:`~widenet.solvers.nystrom.NystromPreconditioner` of ``rank`` columns drawn with
    ``seed``, default 0), None (plain CG) or a function R -> M R on (n, k) tensors; ``rank``
    and ``seed`` are refused with the other two, which have no use for them. ``progress``: a
    function (see :data:`Progress`), True for a tqdm bar on stderr when it is a terminal, or
    False or None for none.
    Raises if K + ridge I is found not to be positive definite (p^T (K + ridge I) p <= 0).
    """
    n = square_size(kernel)
    targets = targets_matrix(y, n)
    scales = column_scales(targets)  # solved for y / scales, exactly: alpha is linear in y
    targets /= scales
    ridge = finite_real(ridge, "ridge", minimum=0.0)
    tol = relative_tolerance(tol)
    max_iterations = positive_int(max_iterations, "max_iterations")
    apply = _preconditioner(preconditioner, kernel, ridge, rank, seed)
    report = Reporter(progress, max_iterations, "conjugate gradients")
    scale = targets.norm(dim=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    alpha = torch.zeros_like(targets)
    r = targets.clone()
    history = [torch.ones(targets.shape[1], dtype=torch.float64)
               * (targets.norm(dim=0) > 0)]
    active = history[0] > tol
    z = apply(r)
    p = z.clone()
    rz = (r * z).sum(0)
    iterations = 0
    while bool(active.any()) and iterations < max_iterations:
        q = kernel.matmul(p) + ridge * p
        curvature = (p * q).sum(0)
        if not bool(torch.isfinite(curvature[active]).all()):
            raise overflow_error("the products p^T (K + ridge I) p")
        if bool((curvature[active] <= 0).any()):
            raise WidenetError(f"K + ridge I is not positive definite (p^T (K + ridge I) p <= 0 "
                               f"at iteration {iterations + 1}); use a positive ridge, and "
                               "check that the kernel is a training kernel K(x, x), symmetric "
                               "positive semi-definite")
        step = torch.where(active, rz / torch.where(active, curvature, 1.0), 0.0)
        alpha += step * p
        r -= step * q
        iterations += 1
        history.append(r.norm(dim=0) / scale)
        active &= history[-1] > tol
        report(iterations, float(history[-1].max()))
        z = apply(r)
        rz_next = (r * z).sum(0)
        p = z + torch.where(active, rz_next / torch.where(active, rz, 1.0), 0.0) * p
        rz = rz_next
    report.close()
    alpha *= scales
    if not bool(torch.isfinite(alpha).all()):
        raise overflow_error("the weights (K + ridge I)^-1 y")
    weights = alpha if torch.as_tensor(y).ndim == 2 else alpha[:, 0]
    return SolveResult(weights, iterations, not bool(active.any()), torch.stack(history))


def _preconditioner(choice: object, kernel: BlockedKernel, ridge: float, rank: int | None,
                    seed: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    if not (isinstance(choice, str) and choice == "nystrom") and (rank, seed) != (None, None):
        names = [name for name, value in (("rank", rank), ("seed", seed)) if value is not None]
        given = " and ".join(names)
        what = "None (plain CG)" if choice is None else repr(choice)
        raise WidenetError(f"{given} {'choose' if len(names) > 1 else 'chooses'} the Nystrom "
                           "preconditioner's columns, but the "
                           f"preconditioner is {what}: leave out {given}, or use "
                           "preconditioner='nystrom'")
    if choice is None:
        return lambda residual: residual
    if choice == "nystrom":
        return NystromPreconditioner(kernel, ridge, rank=rank, seed=0 if seed is None else seed)
    if callable(choice):
        return _checked(choice)
    raise WidenetError(f"preconditioner must be 'nystrom', None or a function, got {choice!r}")


def _checked(preconditioner: Callable[[torch.Tensor], torch.Tensor]
             ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A user's preconditioner whose every result is checked: a finite tensor shaped like R."""
    def apply(residual: torch.Tensor) -> torch.Tensor:
        applied = preconditioner(residual)
        if not isinstance(applied, torch.Tensor) or applied.shape != residual.shape:
            got = tuple(applied.shape) if isinstance(applied, torch.Tensor) \
                else type(applied).__name__
            raise WidenetError(f"the preconditioner must map a residual of shape "
                               f"{tuple(residual.shape)} to a tensor of that shape, got {got}")
        if not bool(torch.isfinite(applied).all()):
            raise WidenetError("the preconditioner gave NaN or inf values for a finite residual")
        return applied.to(residual)

    return apply
