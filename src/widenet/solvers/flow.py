"""Gradient-flow predictions at time t from a kernel never held whole, by Lanczos.

Gradient flow on L = (1/(2n)) ||f(X) - y||^2 from f_0 = 0 in the kernel regime (the
conventions of ``widenet.predict``, docs/predict.md) gives

    f_train(t) = (I - exp(-K t/n)) y,      f_test(t) = K_*X phi_t(K) y,
    phi_t(lambda) = (1 - exp(-lambda t/n)) / lambda,

so both need a function of K applied to y; 1 - exp(-x) is computed as -expm1(-x), so that
f_train keeps its relative precision at small t (y - exp(-K t/n) y would cancel to the
round-off of y: about eps ||y|| / ||f_train||, 2e-4 relative at t ||K|| / n = 1e-12).

As in ``widenet.predict.KernelDynamics``, K's numerical null space (here Ritz values
|theta| <= n eps max|theta|, eps that of the stored values, ``kernel.eps``: a float32 file's
round-off is float32's) neither moves nor reaches the test outputs: 1 - exp(-theta t/n) = 0
and phi_t(theta) = 0 there, at every t, so that large t approaches the interpolant
K_*X K^+ y instead of multiplying round-off by t (exact for the cross block K_*X of any
positive semi-definite joint kernel, which vanishes on K's null space).

For each column y, j steps of the Lanczos process (with full reorthogonalization) give an
orthonormal basis Q_j of the Krylov space span{y, K y, ..., K^(j-1) y} and the tridiagonal
T_j = Q_j^T K Q_j, and

    g(K) y ~ ||y|| Q_j g(T_j) e_1          (g = phi_t, or 1 - exp(-. t/n)),

evaluated through the eigendecomposition of T_j for every t at once. In exact arithmetic the
error is at most 2 ||y|| min over polynomials p of degree < j of max |g - p| on
[lambda_min(K), lambda_max(K)] (Saad 1992; Musco, Musco & Sidford 2018 show the bound survives
floating point up to a small factor), so it falls geometrically in j, at a rate set by
sqrt(lambda_max t / n) for small t and, as t grows, by sqrt(cond K) like conjugate gradients
(phi_t -> 1/lambda). The method stops when the coefficients g(T_j) e_1 of every time and
column move by at most ``tol`` (relative) between two checks, the usual a-posteriori estimate
of the error, or when the Krylov space is invariant (then the result is exact). The tests
compare with ``widenet.predict.KernelDynamics`` (a dense eigendecomposition) to 1e-8.
For t = inf use :func:`widenet.solvers.cg.conjugate_gradients` with ridge 0 instead.

Memory: the basis, (steps, n, k) float64 (400 MB for 100 steps at n = 50,000, k = 10).
Each step is one pass over the kernel's blocks, shared by the k columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from widenet.errors import WidenetError
from widenet.solvers.arguments import (
    asymmetry_tolerance,
    column_scales,
    overflow_error,
    relative_tolerance,
    square_size,
    targets_matrix,
)
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.progress import Progress, Reporter
from widenet.validation import positive_int, time_grid

DEFAULT_MAX_ITERATIONS = 300
BREAKDOWN = 1e3
"""A step with beta_j <= BREAKDOWN n eps max|alpha| is round-off: the Krylov space is
invariant, and the column is finished (its beta set to 0; the relative error this adds is of
the order of that bound, 1e-8 at n = 40,000)."""


@dataclass(frozen=True)
class FlowResult:
    """Gradient flow at the requested times, from Lanczos.

    ``weights``: phi_t(K) y, (T, n) or (T, n, k) (no leading T for a single time given as a
    number), so that f_test(t) = K_*X weights[t]. ``train``: f_train(t) = (I - exp(-K t/n)) y,
    same shape. ``changes``: the estimated relative
    error at each check (the largest change of the coefficients since the previous check).
    ``converged``: the last change is at most tol, or the Krylov space became invariant."""

    times: torch.Tensor
    weights: torch.Tensor
    train: torch.Tensor
    iterations: int
    converged: bool
    changes: list[float]


def gradient_flow(kernel: BlockedKernel, y: torch.Tensor | np.ndarray, times: object, *,
                  tol: float = 1e-8, max_iterations: int = DEFAULT_MAX_ITERATIONS,
                  progress: bool | Progress | None = False) -> FlowResult:
    """Lanczos approximations of phi_t(K) y and (I - exp(-K t/n)) y (module docstring) for every
    t of ``times`` (a number or a 1-D sequence of finite times >= 0)."""
    n = square_size(kernel)
    targets = targets_matrix(y, n)
    scales = column_scales(targets)  # run for y / scales, exactly: both results are linear in y
    targets /= scales
    grid, scalar = time_grid(times, "times", infinite=False,
                             advice="; for t = inf use conjugate_gradients with ridge 0")
    tol = relative_tolerance(tol)
    max_iterations = positive_int(max_iterations, "max_iterations")
    report = Reporter(progress, max_iterations, "Lanczos")
    norms = targets.norm(dim=0)
    q = targets / torch.where(norms > 0, norms, 1.0)
    basis, diagonal, off = [q], [], []
    previous: torch.Tensor | None = None
    changes: list[float] = []
    invariant = False
    next_check = 1
    while len(diagonal) < max_iterations:
        w = kernel.matmul(q)
        diagonal.append((q * w).sum(0))
        projections = []
        for sweep in range(2):  # full reorthogonalization, twice (Gram-Schmidt is twice enough)
            for vector in basis:
                projection = (vector * w).sum(0)
                w -= vector * projection
                if sweep == 0:
                    projections.append(projection)
        beta = w.norm(dim=0)
        if not bool(torch.isfinite(beta).all() and torch.isfinite(diagonal[-1]).all()):
            raise overflow_error("the Lanczos products K q", flow=True)
        scale = torch.stack(diagonal).abs().amax(0)
        _check_symmetric(projections, off, scale, kernel.eps)
        beta = torch.where(beta > BREAKDOWN * n * torch.finfo(torch.float64).eps * scale, beta,
                           0.0)
        invariant = bool((beta == 0).all())
        steps = len(diagonal)
        if steps >= next_check or invariant or steps == max_iterations:
            coefficients, theta = _coefficients(torch.stack(diagonal), off, norms, grid, n,
                                                kernel.eps)
            if previous is not None:
                changes.append(_change(coefficients, previous))
                report(steps, changes[-1])
            previous, next_check = coefficients, steps + max(1, steps // 10)
            if invariant or (changes and changes[-1] <= tol):
                break
        off.append(beta)
        q = torch.where(beta > 0, w / torch.where(beta > 0, beta, 1.0), 0.0)
        basis.append(q)
    report.close()
    _check_semidefinite(theta, n, kernel.eps)
    steps = len(diagonal)
    stacked = torch.stack(basis[:steps], dim=-1)  # (n, k, steps)
    weights = torch.einsum("nks,tgks->gtnk", stacked, previous)
    weights, train = weights[0] * scales, weights[1] * scales
    if not bool(torch.isfinite(weights).all() and torch.isfinite(train).all()):
        raise overflow_error("the weights phi_t(K) y or the outputs", flow=True)
    if torch.as_tensor(y).ndim == 1:
        weights, train = weights[..., 0], train[..., 0]
    if scalar:
        weights, train = weights[0], train[0]
    return FlowResult(grid, weights, train, steps,
                      invariant or bool(changes and changes[-1] <= tol), changes)


def _coefficients(diagonal: torch.Tensor, off: list[torch.Tensor], norms: torch.Tensor,
                  times: torch.Tensor, n: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """||y|| g(T_j) e_1 for each time, g = phi_t (index 0) and 1 - exp(-. t/n) (index 1) and
    column, shape (T, 2, k, j), and the Ritz values theta, (k, j); those with
    |theta| <= n eps max|theta| count as 0."""
    tridiagonal = torch.diag_embed(diagonal.T)
    if off:
        beta = torch.stack(off).T  # (k, j - 1)
        tridiagonal += torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    theta, vectors = torch.linalg.eigh(tridiagonal)  # (k, j), (k, j, j)
    null = theta.abs() <= n * eps * theta.abs().amax(-1, True)
    ritz, theta = theta, torch.where(null, 0.0, theta)
    x = theta[None] * times[:, None, None] / n  # (T, k, j)
    moved = -torch.expm1(-x)
    # phi = (1 - e^-x) / theta; (t/n)(1 - x/2) below |x| = 1e-8, where that series is exact
    # to 1e-24 relative (theta may be 0 there, and x = theta t/n may be inf above)
    small = x.abs() <= 1e-8
    phi = torch.where(small, times[:, None, None] / n * (1 - x / 2),
                      moved / torch.where(small, 1.0, theta))
    phi = torch.where(null, 0.0, phi)
    first = vectors[:, 0, :]  # (k, j): e_1 in the eigenbasis
    both = torch.stack([phi, torch.where(null, 0.0, moved)], dim=1) * first  # (T, 2, k, j)
    coefficients = torch.einsum("kij,tgkj->tgki", vectors, both) * norms[:, None]
    return coefficients, ritz


def _check_symmetric(projections: list[torch.Tensor], off: list[torch.Tensor],
                     scale: torch.Tensor, eps: float) -> None:
    """Raise unless q_i^T K q_j (``projections``, i = 0..j, of the newest q_j) is tridiagonal
    with q_(j-1)^T K q_j = beta_(j-1) = q_j^T K q_(j-1), up to
    :func:`~widenet.solvers.arguments.asymmetry_tolerance` (sqrt(eps), at least float32's)
    times max|alpha| (over all columns: a lower bound on ||K||): what a symmetric K gives (to
    round-off, eps ||K||, with the orthonormal basis of full reorthogonalization; a kernel
    computed in float32 and stored in float64, to float32's); a kernel of another kind
    (test-by-train, say) is far off."""
    if len(projections) < 2:
        return
    gaps = [projection.abs() for projection in projections[:-2]]
    gaps.append((projections[-2] - off[-1]).abs())
    gap, norm = float(torch.stack(gaps).max()), float(scale.max())
    allowed = asymmetry_tolerance(eps)
    if gap > allowed * norm:
        raise WidenetError(
            f"the kernel is not symmetric: q_i^T K q_j and q_j^T K q_i of the Lanczos vectors "
            f"differ by {gap / norm:.3g} times max|q^T K q|, beyond round-off ({allowed:.3g}); a "
            "training kernel K(x, x) is symmetric: check that it is not a test-by-train kernel")


def _check_semidefinite(theta: torch.Tensor, n: int, eps: float) -> None:
    """Raise if a final Ritz value is below -n eps max|theta| (over every column): Ritz values
    lie within [lambda_min(K), lambda_max(K)], so K is then not positive semi-definite. Only
    the last ones are judged: the smallest Ritz value falls and the largest grows with the
    steps, so that an early step of a column in K's null space sees round-off alone."""
    tolerance = n * eps * float(theta.abs().max())
    lowest = float(theta.min())
    if lowest < -tolerance:
        raise WidenetError(
            f"the kernel is not positive semi-definite: a Ritz value is {lowest:.3g}, beyond "
            f"round-off (tolerance {tolerance:.3g}), and gradient flow would grow like "
            "exp(|lambda| t/n) along it; a kernel J J^T never is: check how it was computed")


def _change(new: torch.Tensor, old: torch.Tensor) -> float:
    """The largest relative change of the coefficient vectors over times, functions and
    columns (zero columns skipped); old is zero-padded to new's length."""
    padded = torch.zeros_like(new)
    padded[..., :old.shape[-1]] = old
    size = new.norm(dim=-1)
    difference = (new - padded).norm(dim=-1)
    relative = torch.where(size > 0, difference / torch.where(size > 0, size, 1.0), 0.0)
    return float(relative.max())
