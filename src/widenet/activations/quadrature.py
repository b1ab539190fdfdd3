"""Activations whose Gaussian duals come from their Hermite coefficients (Mehler series)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from widenet.activations._gaussian import TensorLike, as_tensors, correlation, gaussian_panels
from widenet.activations._hermite import Series, hermite_series, mehler_sum
from widenet.activations._hermite_bound import warn_unresolved
from widenet.activations.base import Activation
from widenet.errors import WidenetError
from widenet.validation import positive_int

MAX_DEGREE = 2048  # largest Gauss-Hermite rule: its (M, M) basis takes 32 MiB


class Quadrature(Activation):
    """Any elementwise function, with duals from a Mehler series that is PSD by construction.

    For (u, v) ~ N(0, [[q1, c], [c, q2]]) and rho = c / sqrt(q1 q2),

        E[phi(u) phi(v)]   = sum_k a_k(q1) a_k(q2) rho^k,   a_k(q) = E[phi(sqrt(q) z) h_k(z)],
        E[phi'(u) phi'(v)] = sum_k b_k(q1) b_k(q2) rho^k,   b_k(q) = E[phi'(sqrt(q) z) h_k(z)],

    h_k the orthonormal Hermite polynomials. Each point's coefficients come from one Gauss-Hermite
    rule of up to ``degree`` nodes, doubled from 32 until they have converged (see
    :mod:`widenet.activations._hermite`); the series is then the exact dual of the polynomial
    interpolating phi(sqrt(q) z) at the nodes, and every kernel matrix it gives is a sum of
    Schur products of PSD matrices: PSD to round-off for any inputs and depth. Where
    phi(sqrt(q) z) is nearly a step (tanh, erf at large variances) the rule reaches ``degree``
    nodes unconverged; the dual stays PSD, nearly exact at rho = 0 and +-1, with an error that peaks
    near |rho| = 1 and falls like degree^(-1/2) (erf: 1.1e-2 at the default 1024). Measured
    worst-case error of either dual, relative to sqrt(E[f(u)^2] E[f(v)^2]), over q1, q2 <= Q and
    rho in [-1, 1] (benchmarks/bench_activation_duals.py, docs/benchmarks.md):

        Q          0.25     1        4        25
        tanh       1e-15    1e-15    2e-15    7e-6
        gelu       2e-15    1e-15    2e-15    2e-15    (through this class; widenet's gelu is exact)
        softplus   1e-15    1e-15    6e-16    3e-14
        erf        5e-16    1e-15    2e-15    3e-9    (through this class, against its closed form)

    and for erf at q1 = q2 = 100: 1e-4 (derivative dual 1e-2); at 1e4 and beyond: 1.1e-2 near
    rho = 0.999 (at q >= 1e4 phi' is a spike narrower than the nodes' spacing: the derivative
    dual, itself of order q^(-1/2), comes out as about 0). Where a variance leaves the largest
    rule unconverged, a bound on either dual's error at every rho (relative to
    sqrt(E[f(u)^2] E[f(v)^2]), from the true coefficients, see
    :mod:`widenet.activations._hermite_bound`)
    is computed, and a UserWarning states it when it exceeds 1e-4: a silent call has both duals
    within 1e-4 at every correlation (erf at q = 1e4: bound 2.7e-2 for an error of 1.1e-2; the
    derivative of softplus at q = 1e8, 5e-3 off near |rho| = 0.999 with an exact diagonal, was
    silent before). The derivative is the one given,
    or else computed by autograd. Inputs of any floating dtype are computed in float64 (rho
    included) and the duals rounded once to the inputs' dtype.
    """

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], name: str | None = None,
                 derivative: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 degree: int = 1024):
        if not callable(function):
            raise WidenetError(f"activation must be a name or a callable, got {function!r}")
        if isinstance(function, type):
            raise WidenetError(f"activation must be a function or a module instance, got the "
                               f"class {function.__name__}; pass an instance such as "
                               f"{function.__name__}()")
        self._function = function
        self._derivative = derivative
        self.degree = positive_int(degree, "degree")
        if self.degree > MAX_DEGREE:
            raise WidenetError(f"degree must be at most {MAX_DEGREE} (the rule's basis matrix "
                               f"grows as degree^2), got {degree}")
        self.name = name or getattr(function, "__name__", type(function).__name__)

    def function(self, s: torch.Tensor) -> torch.Tensor:
        return self._elementwise(self._function(s), s, "phi")

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        if self._derivative is not None:
            return self._elementwise(self._derivative(s), s, "the derivative")
        with torch.enable_grad():
            leaf = s.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.function(leaf).sum(), leaf)
        return grad

    def _elementwise(self, value: object, s: torch.Tensor, what: str) -> torch.Tensor:
        """``value``, checked to be what an elementwise function of ``s`` returns: a tensor of
        s's shape (a user function returning anything else raised torch's errors far away)."""
        if not isinstance(value, torch.Tensor) or value.shape != s.shape:
            got = (f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                   else type(value).__name__)
            raise WidenetError(f"the {what} of activation {self.name!r} must map a tensor to a "
                               f"tensor of the same shape (elementwise): given shape "
                               f"{tuple(s.shape)}, it returned {got}")
        return value

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, c = as_tensors(q1, q2, c)
        # in float64 like the series: float32 rounding (and the clamp's float32 inflation) of a
        # rho near 1 would move the duals by several float32 ulps
        rho = correlation(*(t.to(torch.float64) for t in (q1, q2, c)))[1]
        product = self._dual(self.function, "phi", q1, q2, rho)
        derivative = self._dual(self.derivative, "phi'", q1, q2, rho)
        return product.to(c.dtype), derivative.to(c.dtype)

    def _dual(self, f: Callable[[torch.Tensor], torch.Tensor], name: str, q1: torch.Tensor,
              q2: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        """sum_k a_k(q1) a_k(q2) rho^k for f, warning (:func:`warn_unresolved`) when its error
        bound exceeds 1e-4 of sqrt(E[f(u)^2] E[f(v)^2]) somewhere."""
        first = self._series(f, q1)
        second = first if q2 is q1 else self._series(f, q2)
        warn_unresolved(first, second, name, self.degree)
        a1, a2 = first.coefficients, second.coefficients
        count = max(a1.shape[0], a2.shape[0])
        a1, a2 = (F.pad(a, (0, 0) * (a.ndim - 1) + (0, count - a.shape[0])) for a in (a1, a2))
        return mehler_sum(a1, a2, rho)

    def _series(self, f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor) -> Series:
        return hermite_series(f, q, self.degree)

    def _moment(self, f: Callable[[torch.Tensor], torch.Tensor], name: str, q: TensorLike
                ) -> torch.Tensor:
        (q,) = as_tensors(q)
        series = self._series(f, q)
        warn_unresolved(series, series, name, self.degree)
        return (series.coefficients * series.coefficients).sum(0).to(q.dtype)

    def _moments(self, q: float) -> tuple[float, float]:
        """(E[phi(u)^2], E[phi'(u)^2]) for u ~ N(0, q) by :func:`gaussian_panels`, for the edge
        of chaos: its root finder needs them at variances where the Hermite series cannot resolve
        phi' (tanh's at q = 300, sigma_b = 16, was 20% off; past q ~ 1e4 it is 0 on every node,
        which put a root at sigma_w = 1.6e16 or divided by zero)."""
        s, weights = gaussian_panels(q)
        return tuple(float((weights * f(s) ** 2).sum()) for f in (self.function, self.derivative))

    def second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi(u)^2] = sum_k a_k(q)^2, u ~ N(0, q): the diagonal of the dual."""
        return self._moment(self.function, "phi", q)

    def derivative_second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi'(u)^2] = sum_k b_k(q)^2, u ~ N(0, q)."""
        return self._moment(self.derivative, "phi'", q)
