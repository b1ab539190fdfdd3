"""Sharpness: the top eigenvalues of the Hessian of the full-batch loss (docs/theory.md section 5).

    S = lambda_max(H),   H = nabla^2 L(theta),   L(theta) = loss_fn(model(x; theta), y)

(Cohen et al. 2021). S is the algebraically largest eigenvalue, not the largest in magnitude: a
Hessian with eigenvalues {-5, 3} has sharpness 3. On a quadratic loss, gradient descent with
learning rate lr diverges iff S > 2/lr (heavy-ball momentum beta: S > (2 + 2 beta)/lr).

The eigenvalues come from block Lanczos on Hessian-vector products (H v by differentiating the
gradient's graph once more, never forming H), with a block of k vectors, full
reorthogonalization and thick restarts: with Q the orthonormal Krylov basis (rows) and
T = Q H Q^T, the Ritz pairs (theta_i, y_i = Q^T s_i) of T satisfy
||H y_i - theta_i y_i|| = ||R s_i[last block]||, R being the coupling of the last block to the
next one. The top k pairs are accepted when every such residual is at most
tol * max(max_{i <= k} |theta_i|, sqrt(eps) max_j |theta_j|): tol relative to the size of the
eigenvalues sought, floored at sqrt(machine epsilon) times the estimate of ||H||_2 (the
products' rounding, about eps ||H||, stays below it). Since H is symmetric each accepted theta_i
is then within that residual of an eigenvalue of H. (Relative to ||H||_2 alone, a Hessian with
a large negative eigenvalue accepted as its top one a Ritz value that was only within
tol ||H||_2 of some eigenvalue: -0.007 for lambda_max = 1 beside -1e6, after two products.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from widenet.diagnostics._functional_loss import FlatLoss, LossFunction
from widenet.errors import WidenetError
from widenet.kernels._functional import on_values
from widenet.seeds import check_seed
from widenet.validation import finite_real, positive_int

DEFAULT_TOL = 1e-4
DEFAULT_MAX_HVPS = 500
DEFAULT_MAX_BASIS = 40
_PASSES = 4  # Gram-Schmidt passes before a vector is declared to lie in the span


@dataclass(frozen=True)
class Sharpness:
    """The top-k eigenpairs of the loss Hessian found by Lanczos.

    ``eigenvalues``: (k,) float64, algebraically largest first; ``eigenvectors``: (k, P) unit
    rows, P the trainable scalars flattened in ``model.named_parameters()`` order (in the dtype
    and on the device of the computation); ``residuals``: (k,) ||H v_i - lambda_i v_i||;
    ``hvps``: Hessian-vector products used; ``converged``: whether every residual met the
    tolerance before ``max_hvps`` ran out (if not, the values are the best estimates so far).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residuals: torch.Tensor
    hvps: int
    converged: bool

    @property
    def value(self) -> float:
        """S = lambda_max(H), the sharpness."""
        return float(self.eigenvalues[0])

    def threshold(self, lr: float, momentum: float = 0.0) -> float:
        """The stability threshold (2 + 2 beta)/lr of GD with heavy-ball momentum beta (2/lr
        without momentum): on a quadratic, GD diverges iff S exceeds it."""
        lr = finite_real(lr, "lr", minimum=0.0, strict=True)
        momentum = finite_real(momentum, "momentum", minimum=0.0)
        if momentum >= 1.0:
            raise WidenetError(f"momentum must be in [0, 1), got {momentum}: heavy ball with "
                               "beta >= 1 diverges at any learning rate, there is no threshold")
        return (2.0 + 2.0 * momentum) / lr

    def ratio(self, lr: float, momentum: float = 0.0) -> float:
        """S / threshold(lr, momentum): 1 is the edge of stability."""
        return self.value / self.threshold(lr, momentum)


@on_values
def sharpness(model: nn.Module, loss_fn: LossFunction, x: torch.Tensor, y: torch.Tensor,
              k: int = 1, *, tol: float = DEFAULT_TOL, max_hvps: int = DEFAULT_MAX_HVPS,
              max_basis: int | None = None, init: Sharpness | torch.Tensor | None = None,
              seed: int = 0) -> Sharpness:
    """The k algebraically largest eigenvalues of H = nabla^2 L(theta), L the full-batch loss.

    L(theta) = loss_fn(model(x; theta), y) over the model's trainable parameters; the model
    itself is not modified, and one with backward hooks (which would change the products) is
    refused; it may be called under torch.no_grad or torch.inference_mode. The k eigenvalues are
    accepted when each Ritz residual is at most ``tol`` times the largest of the k Ritz values in
    magnitude, floored at sqrt(machine epsilon) times the largest Ritz value in magnitude (see
    the module docstring), or the search stops after ``max_hvps`` Hessian-vector products
    (each one backward pass through the gradient's graph, built once per call) with
    ``converged=False``. The Krylov basis holds at most ``max_basis`` vectors of P scalars
    (default max(40, 4k)); when full it restarts from the best Ritz vectors.

    ``init`` seeds the first block: a previous :class:`Sharpness` (its eigenvectors) or a
    tensor of shape (P,) or (m, P); the first k rows are used, missing rows are drawn at random
    from ``seed``. A start close to the top eigenvectors (the previous call's, a few training
    steps ago) needs far fewer products; :class:`SharpnessTracker` does this for you. Like any
    Krylov method, a start exactly orthogonal to a top eigenvector can miss it.
    """
    k, tol, max_hvps, max_basis = _settings(k, tol, max_hvps, max_basis)
    seed = check_seed(seed)
    loss = FlatLoss(model, loss_fn, x, y)
    if k > loss.numel:
        raise WidenetError(f"k = {k} eigenvalues asked of a model with only {loss.numel} "
                           "trainable parameters; use k <= the number of parameters")
    generator = torch.Generator().manual_seed(seed)

    def fresh() -> torch.Tensor:
        draw = torch.randn(loss.numel, generator=generator, dtype=torch.float64)
        return draw.to(loss.theta)

    start = _start_rows(loss, init, k, fresh)
    product = loss.hessian_product()
    return _lanczos(lambda block: torch.stack([product(v) for v in block]), start, k, tol,
                    max_hvps, max_basis, fresh)


class SharpnessTracker:
    """Sharpness measured along training, each call warm-started from the previous call.

    ``tracker(model, loss_fn, x, y)`` is :func:`sharpness` with ``init`` set to the last
    result's eigenvectors (``tracker.last``); the settings are those of :func:`sharpness`.
    Call :meth:`reset` before using the tracker on a different model.
    """

    def __init__(self, k: int = 1, *, tol: float = DEFAULT_TOL,
                 max_hvps: int = DEFAULT_MAX_HVPS, max_basis: int | None = None, seed: int = 0):
        self.k, self.tol, self.max_hvps, self.max_basis = _settings(k, tol, max_hvps, max_basis)
        self.seed = check_seed(seed)
        self.last: Sharpness | None = None

    def __call__(self, model: nn.Module, loss_fn: LossFunction, x: torch.Tensor,
                 y: torch.Tensor) -> Sharpness:
        self.last = sharpness(model, loss_fn, x, y, self.k, tol=self.tol,
                              max_hvps=self.max_hvps, max_basis=self.max_basis, init=self.last,
                              seed=self.seed)
        return self.last

    def reset(self) -> None:
        """Forget the last eigenvectors: the next call starts cold."""
        self.last = None


def _settings(k: object, tol: object, max_hvps: object, max_basis: object
              ) -> tuple[int, float, int, int]:
    """Validated (k, tol, max_hvps, max_basis), max_basis defaulting to max(40, 4k)."""
    k = positive_int(k, "k")
    tol = finite_real(tol, "tol", minimum=0.0, strict=True)
    max_hvps = positive_int(max_hvps, "max_hvps")
    if max_hvps < k:
        raise WidenetError(f"max_hvps = {max_hvps} is less than one block of k = {k} "
                           "Hessian-vector products; raise max_hvps")
    max_basis = max(DEFAULT_MAX_BASIS, 4 * k) if max_basis is None else \
        positive_int(max_basis, "max_basis")
    if max_basis < 3 * k:
        raise WidenetError(f"max_basis = {max_basis} leaves no room to restart with k = {k} "
                           f"vectors; use max_basis >= 3k = {3 * k}")
    return k, tol, max_hvps, max_basis


def _start_rows(loss: FlatLoss, init: Sharpness | torch.Tensor | None, k: int,
                fresh: Callable[[], torch.Tensor]) -> torch.Tensor:
    """k starting vectors: the first rows of ``init``, then random ones."""
    if isinstance(init, Sharpness):
        init = init.eigenvectors
    rows = []
    if init is not None:
        if not isinstance(init, torch.Tensor) or init.ndim not in (1, 2):
            raise WidenetError("init must be a Sharpness result or a tensor of shape (P,) or "
                               f"(m, P) with P = {loss.numel}, got {_shape_of(init)}")
        rows = [loss.check_vector(row, "init") for row in init.reshape(-1, init.shape[-1])[:k]]
    return torch.stack(rows + [fresh() for _ in range(k - len(rows))])


def _shape_of(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else \
        type(value).__name__


def _lanczos(apply: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, k: int,
             tol: float, max_hvps: int, max_basis: int, fresh: Callable[[], torch.Tensor]
             ) -> Sharpness:
    """Block Lanczos with full reorthogonalization and thick restarts (module docstring).

    ``apply`` maps a block of rows V to the rows H V. ``basis`` holds the orthonormal rows Q,
    ``t`` = Q H Q^T (float64, filled one block of columns per round of products); ``block`` is
    the newest rows, to which H is applied next. The iteration runs on s H, s the power of two
    (exact to multiply by) that brings the first nonzero block of products to entries of
    order 1: far from 1 (a loss at 1e-300, or at 1e-22 in float32), the squares in the norms
    underflow or overflow and the rounding noise of the orthogonalization turns subnormal, and
    the basis stops being orthonormal. Earlier blocks of zero products are the same at any s.
    """
    empty = start.new_zeros(0, start.shape[1])
    _, block, _ = _extend(empty, start, fresh)
    basis, t, hvps = empty, torch.zeros(0, 0, dtype=torch.float64), 0
    scale = None
    floor = math.sqrt(torch.finfo(start.dtype).eps)
    while True:
        old = basis.shape[0]
        basis = torch.cat([basis, block])
        t = torch.nn.functional.pad(t, (0, block.shape[0], 0, block.shape[0]))
        products = apply(block)
        hvps += block.shape[0]
        scale = _unit_scale(products) if scale is None else scale
        products = products if scale is None else products * scale
        projections, block, coupling = _extend(basis, products, fresh)
        t[:, old:] = projections
        t[old:, :] = projections.T
        values, vectors = torch.linalg.eigh(t)
        values, vectors = values.flip(0), vectors.flip(1)
        residuals = torch.linalg.vector_norm(coupling @ vectors[old:, :k], dim=0)
        size = torch.maximum(values[:k].abs().max(), floor * values.abs().max())
        converged = bool((residuals <= tol * size).all())
        if converged or block.shape[0] == 0 or hvps + block.shape[0] > max_hvps:
            break
        if basis.shape[0] + block.shape[0] > max_basis:
            keep = max(k, (max_basis - block.shape[0]) // 2)
            basis = vectors[:, :keep].T.to(basis) @ basis
            t = torch.diag(values[:keep])
    eigenvectors = vectors[:, :k].T.to(basis) @ basis
    scale = 1.0 if scale is None else scale
    return Sharpness(values[:k] / scale, eigenvectors, residuals / scale, hvps, converged)


def _unit_scale(products: torch.Tensor) -> float | None:
    """The power of two s with s max |products| in [1/2, 1) (kept within the dtype's range),
    or None for products that are all zero."""
    largest = float(products.abs().max())
    if largest == 0.0:
        return None
    limit = math.frexp(torch.finfo(products.dtype).max)[1] - 1
    return math.ldexp(1.0, max(-limit, min(limit, -math.frexp(largest)[1])))


def _extend(basis: torch.Tensor, products: torch.Tensor, fresh: Callable[[], torch.Tensor]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormalize the rows of ``products`` against ``basis`` and each other.

    Returns (C, N, R) with products[j] = sum_i C[i, j] basis[i] + sum_l R[l, j] N[l]: C are the
    projections on the basis (a block of columns of Q H Q^T), N the new orthonormal rows and R
    their coupling (float64). A row that lies in the span adds no new row; while the space is
    not exhausted, random directions (with zero coupling) refill the block to its size.
    """
    size, dimension = products.shape[0], products.shape[1]
    projections = torch.zeros(basis.shape[0], size, dtype=torch.float64)
    coupling = torch.zeros(size, size, dtype=torch.float64)
    rows: list[torch.Tensor] = []
    for j, product in enumerate(products):
        coefficients, remainder = _orthogonalize(product, torch.cat([basis, *_as_rows(rows)]))
        projections[:, j] = coefficients[:basis.shape[0]]
        coupling[:len(rows), j] = coefficients[basis.shape[0]:]
        norm = torch.linalg.vector_norm(remainder)
        if norm > 0:
            coupling[len(rows), j] = norm.item()
            rows.append(remainder / norm)
    coupling = coupling[:len(rows)]
    while len(rows) < size and basis.shape[0] + len(rows) < dimension:
        _, remainder = _orthogonalize(fresh(), torch.cat([basis, *_as_rows(rows)]))
        norm = torch.linalg.vector_norm(remainder)
        if norm > 0:
            rows.append(remainder / norm)
            coupling = torch.cat([coupling, coupling.new_zeros(1, size)])
    return projections, torch.cat([basis[:0], *_as_rows(rows)]), coupling


def _as_rows(rows: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.stack(rows)] if rows else []


def _orthogonalize(v: torch.Tensor, against: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, r) with v = c @ against + r, r orthogonal to the orthonormal rows ``against``.

    Classical Gram-Schmidt repeated until a pass keeps more than half the norm ("twice is
    enough", Kahan and Parlett); a vector that keeps shrinking lies in the span, r = 0.
    """
    coefficients = torch.zeros(against.shape[0], dtype=torch.float64)
    norm = torch.linalg.vector_norm(v)
    for _ in range(_PASSES):
        c = against @ v
        v = v - c @ against
        coefficients += c.to(torch.float64).cpu()
        new_norm = torch.linalg.vector_norm(v)
        if new_norm > 0.5 * norm:
            return coefficients, v
        norm = new_norm
    return coefficients, torch.zeros_like(v)
