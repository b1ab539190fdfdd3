"""Activation functions with their Gaussian duals (THEORY.md section 2).

An :class:`Activation` knows its torch function phi, its derivative phi', and the two Gaussian
expectations the infinite-width recursions need, for (u, v) ~ N(0, [[q1, c], [c, q2]]):

    dual(q1, q2, c)            = E[phi(u) phi(v)]
    derivative_dual(q1, q2, c) = E[phi'(u) phi'(v)]

Closed forms exist for the family phi(s) = a s + b |s| (:func:`ab`, with ``relu``, ``abs``,
``identity`` and :func:`leaky_relu` as members) and for ``erf``. Every other activation (``tanh``,
``gelu``, ``softplus``, ``sin`` or any user function) gets its duals by Gauss-Hermite quadrature,
see :class:`Quadrature`. Arguments broadcast against each other: the kernel recursions pass
q1 of shape (n1, 1), q2 of shape (1, n2) and c of shape (n1, n2).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from widenet._checks import finite_real, positive_int
from widenet.errors import WidenetError

TensorLike = torch.Tensor | float

_TWO_OVER_PI = 2.0 / math.pi
MAX_DEGREE = 180  # largest Gauss-Hermite rule numpy computes accurately


def _as_tensors(*values: TensorLike) -> list[torch.Tensor]:
    """All arguments as tensors of the tensor arguments' promoted dtype (float64 if none is a
    tensor) on their device."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors] or [torch.float64])
    device = tensors[0].device if tensors else None
    return [torch.as_tensor(v, dtype=dtype, device=device) for v in values]


def correlation_into(q1: torch.Tensor, q2: torch.Tensor, c: torch.Tensor, out: torch.Tensor
                     ) -> torch.Tensor:
    """rho = c / sqrt(q1 q2) clamped to [-1, 1], written into ``out`` (which must not alias c).

    Where q1 q2 = 0 (a zero-variance coordinate) rho is set to 0, the value every dual below
    takes as its limit there. The square roots are taken separately, so q1 q2 cannot overflow
    or underflow for huge or tiny variances. rho is inflated by 4 units of round-off before the
    clamp, so that identical points, whose computed c / sqrt(q1 q2) can miss 1 by a few ulps,
    get rho = 1 exactly: arcsin is so steep there that a 1e-16 miss would cost 1e-8 (float32:
    1e-7 would cost 5e-4) in E[phi'(u) phi'(v)].
    """
    inverse1, inverse2 = (torch.where(q > 0, torch.rsqrt(q), torch.zeros_like(q)) for q in (q1, q2))
    inflate = 1.0 + 4.0 * torch.finfo(c.dtype).eps
    # (1/sqrt(q1)) (1/sqrt(q2)) first: a product of two numbers, so rho(x, x') == rho(x', x).
    return _product_into(inverse1, inverse2, out).mul_(c).mul_(inflate).clamp_(-1.0, 1.0)


def _product_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """a * b written into ``out``, broadcast to its shape (which may be larger than a * b's)."""
    if torch.broadcast_shapes(a.shape, b.shape) == out.shape:
        return torch.mul(a, b, out=out)
    return out.copy_(a * b)


def correlation(q1: torch.Tensor, q2: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(q1 q2), rho), with rho as in :func:`correlation_into`."""
    rho = torch.empty(torch.broadcast_shapes(q1.shape, q2.shape, c.shape), dtype=c.dtype,
                      device=c.device)
    return torch.sqrt(q1) * torch.sqrt(q2), correlation_into(q1, q2, c, rho)


def arc_cosine_j(rho: torch.Tensor) -> torch.Tensor:
    """J(rho) = (2/pi) (sqrt(1 - rho^2) + rho arcsin rho); E[|u||v|] = sqrt(q1 q2) J(rho).

    sqrt(1 - rho^2) is evaluated as sqrt((1 - rho)(1 + rho)), accurate near |rho| = 1.
    """
    root = ((1.0 - rho) * (1.0 + rho)).sqrt_()
    return root.addcmul_(rho, torch.asin(rho)).mul_(_TWO_OVER_PI)


class Activation:
    """An activation phi with its derivative and Gaussian duals.

    Subclasses implement :meth:`function`, :meth:`derivative` and :meth:`duals`; the
    one-dimensional moments and the edge of chaos follow from those.
    """

    name: str = "activation"

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        return self.function(s)

    def function(self, s: torch.Tensor) -> torch.Tensor:
        """phi(s), elementwise."""
        raise NotImplementedError

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        """phi'(s), elementwise."""
        raise NotImplementedError

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) for (u, v) ~ N(0, [[q1, c], [c, q2]])."""
        raise NotImplementedError

    def duals_into(self, q1: torch.Tensor, q2: torch.Tensor, c: torch.Tensor,
                   product: torch.Tensor, derivative: torch.Tensor, work: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`duals` written into ``product`` and ``derivative`` (tensors of the broadcast
        shape, not aliasing c), with ``work`` as scratch of that shape. The kernel recursion
        calls this with buffers it reuses across layers; activations whose closed form can be
        evaluated in place (the ab family) override it to allocate nothing of that size."""
        computed = self.duals(q1, q2, c)
        return product.copy_(computed[0]), derivative.copy_(computed[1])

    def dual(self, q1: TensorLike, q2: TensorLike, c: TensorLike) -> torch.Tensor:
        """E[phi(u) phi(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]])."""
        return self.duals(q1, q2, c)[0]

    def derivative_dual(self, q1: TensorLike, q2: TensorLike, c: TensorLike) -> torch.Tensor:
        """E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]])."""
        return self.duals(q1, q2, c)[1]

    def second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi(u)^2] for u ~ N(0, q) (the variance map before scaling)."""
        (q,) = _as_tensors(q)
        return self.dual(q, q, q)

    def derivative_second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi'(u)^2] for u ~ N(0, q)."""
        (q,) = _as_tensors(q)
        return self.derivative_dual(q, q, q)

    def edge_of_chaos(self, bias_std: float = 0.0) -> float:
        """The weight std sigma_w on the edge of chaos for the given sigma_b (section 2).

        Solves q* = sigma_w^2 E[phi(sqrt(q*) z)^2] + sigma_b^2 together with
        chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] = 1. Eliminating sigma_w leaves one equation in q*,
        g(q) = q - E[phi^2](q) / E[phi'^2](q) - sigma_b^2 = 0, solved by bracketing its smallest
        positive root on a logarithmic grid and bisecting. With sigma_b = 0 and phi(0) = 0 the
        fixed point is q* = 0 and sigma_w = 1 / |phi'(0)|, provided q* = 0 attracts the variance
        map (gelu's does not: give it a bias or an explicit weight std).
        """
        bias_var = finite_real(bias_std, "bias_std", minimum=0.0) ** 2
        if bias_var == 0.0 and self._vanishes_at_zero():
            slope = float(self.derivative(torch.zeros((), dtype=torch.float64)).abs())
            if slope == 0.0 or not self._attracts_zero(1.0 / slope**2):
                raise self._no_edge_of_chaos(bias_std)
            return 1.0 / slope
        q_star = self._fixed_point_variance(bias_var)
        return 1.0 / math.sqrt(float(self.derivative_second_moment(q_star)))

    def _attracts_zero(self, weight_var: float) -> bool:
        """Whether q* = 0 attracts the variance map q -> sigma_w^2 E[phi(sqrt(q) z)^2]: chi_1 = 1
        there, so the sign of the next order decides; tested at q = 1e-2 (tanh, erf, sin shrink
        q; gelu grows it)."""
        q = 1e-2
        return weight_var * float(self.second_moment(q)) <= q

    def _vanishes_at_zero(self) -> bool:
        return float(self.function(torch.zeros((), dtype=torch.float64))) == 0.0

    def _fixed_point_variance(self, bias_var: float) -> float:
        def gap(q: float) -> float:
            slope_moment = float(self.derivative_second_moment(q))
            if slope_moment <= 0.0:  # phi' vanishes on the rule's nodes: no fixed point here
                return math.inf
            return q - float(self.second_moment(q)) / slope_moment - bias_var

        grid = np.logspace(-8, 6, 141)
        values = [gap(float(q)) for q in grid]
        for lo, hi, g_lo, g_hi in zip(grid[:-1], grid[1:], values[:-1], values[1:], strict=True):
            if g_lo == 0.0:
                return float(lo)
            if g_lo * g_hi < 0:
                lo, hi = math.log(lo), math.log(hi)
                for _ in range(200):
                    mid = 0.5 * (lo + hi)
                    if (gap(math.exp(mid)) < 0) == (g_lo < 0):
                        lo = mid
                    else:
                        hi = mid
                return math.exp(0.5 * (lo + hi))
        raise self._no_edge_of_chaos(math.sqrt(bias_var))

    def _no_edge_of_chaos(self, bias_std: float) -> WidenetError:
        return WidenetError(
            f"activation {self.name!r} has no edge-of-chaos weight std with bias_std={bias_std}: "
            "the variance map has no fixed point with chi_1 = 1 there; pass weight_std explicitly")

    def __repr__(self) -> str:
        return f"Activation({self.name})"


class AbsLinear(Activation):
    """phi(s) = a s + b |s|, positively 1-homogeneous (Terjek & Gonzalez-Sanchez).

    Closed-form duals, with rho = c / sqrt(q1 q2):
        E[phi(u) phi(v)]   = a^2 c + b^2 sqrt(q1 q2) J(rho)
        E[phi'(u) phi'(v)] = a^2 + b^2 (2/pi) arcsin(rho)
    """

    def __init__(self, a: float, b: float, name: str | None = None):
        self.a = finite_real(a, "a")
        self.b = finite_real(b, "b")
        if self.a == 0.0 and self.b == 0.0:
            raise WidenetError("ab(0, 0) is the zero function; choose a or b non-zero")
        self.name = name or f"ab({self.a:g},{self.b:g})"

    def function(self, s: torch.Tensor) -> torch.Tensor:
        if self.a == self.b:
            return torch.relu(s) * (2.0 * self.a)
        return self.a * s + self.b * s.abs()

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        return self.a + self.b * torch.sign(s)

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, c = _as_tensors(q1, q2, c)
        shape = torch.broadcast_shapes(q1.shape, q2.shape, c.shape)
        product, derivative, work = (torch.empty(shape, dtype=c.dtype, device=c.device)
                                     for _ in range(3))
        return self.duals_into(q1, q2, c, product, derivative, work)

    def duals_into(self, q1: torch.Tensor, q2: torch.Tensor, c: torch.Tensor,
                   product: torch.Tensor, derivative: torch.Tensor, work: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The closed forms, computed in the three given buffers without allocating any other
        array of their size: work = rho, derivative = 1 + rho, then arcsin rho."""
        rho = correlation_into(q1, q2, c, work)
        torch.add(rho, 1.0, out=derivative)
        torch.neg(rho, out=product).add_(1.0).mul_(derivative).sqrt_()  # sqrt(1 - rho^2)
        arcsin_rho = torch.asin(rho, out=derivative)
        a2, b2 = self.a**2, self.b**2
        product.addcmul_(rho, arcsin_rho)  # (pi/2) J(rho)
        scale = _product_into(torch.sqrt(q1), torch.sqrt(q2), work)  # rho is used up
        product.mul_(scale).mul_(b2 * _TWO_OVER_PI)
        if a2 != 0.0:
            product.add_(c, alpha=a2)
        return product, arcsin_rho.mul_(b2 * _TWO_OVER_PI).add_(a2)

    def second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi(u)^2] = (a^2 + b^2) q."""
        (q,) = _as_tensors(q)
        return (self.a**2 + self.b**2) * q

    def derivative_second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi'(u)^2] = a^2 + b^2 for q > 0."""
        (q,) = _as_tensors(q)
        return torch.full_like(q, self.a**2 + self.b**2)

    def edge_of_chaos(self, bias_std: float = 0.0) -> float:
        """sigma_w = 1 / sqrt(a^2 + b^2): chi_1 = sigma_w^2 (a^2 + b^2) = 1 at every variance.

        With sigma_b > 0 chi_1 is still 1 but the variance grows by sigma_b^2 per layer.
        """
        finite_real(bias_std, "bias_std", minimum=0.0)
        return 1.0 / math.hypot(self.a, self.b)

    @property
    def delta(self) -> float:
        """Delta_phi = b^2 / (a^2 + b^2), the share of the nonlinear part."""
        return self.b**2 / (self.a**2 + self.b**2)

    @property
    def kappa(self) -> float:
        """kappa_phi = (|a| + |b|) / sqrt(a^2 + b^2), the normalized Lipschitz constant."""
        return (math.fabs(self.a) + math.fabs(self.b)) / math.hypot(self.a, self.b)


class Erf(Activation):
    """phi(s) = erf(s), phi'(s) = (2 / sqrt(pi)) exp(-s^2), with closed-form duals:

        E[erf(u) erf(v)]   = (2/pi) arcsin(2c / sqrt((1 + 2 q1)(1 + 2 q2)))
        E[phi'(u) phi'(v)] = (4/pi) / sqrt((1 + 2 q1)(1 + 2 q2) - 4 c^2)
    """

    name = "erf"

    def function(self, s: torch.Tensor) -> torch.Tensor:
        return torch.erf(s)

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        return (2.0 / math.sqrt(math.pi)) * torch.exp(-s * s)

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, c = _as_tensors(q1, q2, c)
        # Through rho (snapped to +-1 for identical points) rather than c: arcsin is steep near 1
        # and huge variances put the ratio there, where an ulp in c would cost 1e-11 or more.
        scale, rho = correlation(q1, q2, c)
        shrink1, shrink2 = torch.sqrt(q1 / (1.0 + 2.0 * q1)), torch.sqrt(q2 / (1.0 + 2.0 * q2))
        ratio = (2.0 * rho * (shrink1 * shrink2)).clamp_(-1.0, 1.0)
        product = _TWO_OVER_PI * torch.asin(ratio)
        # det(I + 2 Sigma) = 1 + 2 (q1 + q2) + 4 q1 q2 (1 - rho^2): no cancellation for huge q.
        det = 1.0 + 2.0 * (q1 + q2) + 4.0 * scale**2 * ((1.0 - rho) * (1.0 + rho))
        derivative_product = (2.0 * _TWO_OVER_PI) * torch.rsqrt(det)
        return product, derivative_product


@functools.cache
def _hermite_rule(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the Gauss-Hermite rule for E[f(z)], z ~ N(0, 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(degree)
    return nodes, weights / math.sqrt(2.0 * math.pi)


class Quadrature(Activation):
    """Any elementwise function, with duals by Gauss-Hermite quadrature.

    With the covariance's Cholesky factor, u = sqrt(q1) z1 and
    v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2) for independent standard normals z1, z2, and
    E[f(u) g(v)] ~ sum_ij w_i w_j f(u(z_i)) g(v(z_i, z_j)) on a ``degree``-point rule per axis
    (degree^2 function evaluations per kernel entry). The rule is exact for polynomials of degree
    < 2 * degree in (z1, z2); for other functions its error grows with the variances, since
    phi(sqrt(q) z) gets steeper. Measured worst-case error of either dual, relative to
    sqrt(E[f(u)^2] E[f(v)^2]), against a 160-point rule, over q1, q2 <= Q and rho in [-1, 1]
    (default degree 64):

        Q      tanh     gelu     softplus  sin
        1      2e-7     2e-15    1e-15     2e-15
        4      4e-3     2e-6     2e-9      1e-15
        25     4e-1     4e-2     4e-4      5e-10

    tanh (poles near the real axis) converges slowest: at variances above 1 raise ``degree``
    (up to 160) or prefer ``erf``, which has closed-form duals. Kinks (relu-like user
    functions) converge only algebraically (about 1e-2 at degree 48): use :func:`ab` for those.
    One-dimensional moments use min(4 * degree, 180)
    nodes. The derivative is the one given, or else computed by autograd.
    """

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], name: str | None = None,
                 derivative: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 degree: int = 64):
        if not callable(function):
            raise WidenetError(f"activation must be a name or a callable, got {function!r}")
        self._function = function
        self._derivative = derivative
        self.degree = positive_int(degree, "degree")
        if self.degree > MAX_DEGREE:
            raise WidenetError(f"degree must be at most {MAX_DEGREE} (numpy's Gauss-Hermite "
                               f"nodes lose accuracy beyond), got {degree}")
        self.name = name or getattr(function, "__name__", "custom")

    def function(self, s: torch.Tensor) -> torch.Tensor:
        return self._function(s)

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        if self._derivative is not None:
            return self._derivative(s)
        with torch.enable_grad():
            leaf = s.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._function(leaf).sum(), leaf)
        return grad

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, c = _as_tensors(q1, q2, c)
        _, rho = correlation(q1, q2, c)
        nodes, weights = (torch.as_tensor(t, dtype=rho.dtype, device=rho.device)
                          for t in _hermite_rule(self.degree))
        sd1, sd2 = torch.sqrt(q1), torch.sqrt(q2)
        complement = torch.sqrt(((1.0 - rho) * (1.0 + rho)).clamp_min(0.0))
        inner_shape = (-1,) + (1,) * rho.ndim
        inner_nodes, inner_weights = nodes.view(inner_shape), weights.view(inner_shape)
        shape = torch.broadcast_shapes(q1.shape, q2.shape, c.shape)
        product = torch.zeros(shape, dtype=rho.dtype, device=rho.device)
        derivative_product = torch.zeros_like(product)
        for z1, w1 in zip(nodes, weights, strict=True):
            u = sd1 * z1
            v = sd2 * (rho * z1 + complement * inner_nodes)
            product += w1 * self.function(u) * (inner_weights * self.function(v)).sum(0)
            derivative_product += (w1 * self.derivative(u)
                                   * (inner_weights * self.derivative(v)).sum(0))
        return product, derivative_product

    def _moment(self, f: Callable[[torch.Tensor], torch.Tensor], q: TensorLike) -> torch.Tensor:
        (q,) = _as_tensors(q)
        nodes, weights = (torch.as_tensor(t, dtype=q.dtype, device=q.device)
                          for t in _hermite_rule(min(4 * self.degree, MAX_DEGREE)))
        values = f(torch.sqrt(q).unsqueeze(-1) * nodes)
        return (values * values) @ weights

    def second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi(u)^2], u ~ N(0, q), by a 4 * degree-point Gauss-Hermite rule."""
        return self._moment(self.function, q)

    def derivative_second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi'(u)^2], u ~ N(0, q), by a 4 * degree-point Gauss-Hermite rule."""
        return self._moment(self.derivative, q)


def ab(a: float, b: float, name: str | None = None) -> AbsLinear:
    """phi(s) = a s + b |s|."""
    return AbsLinear(a, b, name)


def leaky_relu(slope: float = 0.01) -> AbsLinear:
    """Leaky ReLU with the given negative slope: ab((1 + slope) / 2, (1 - slope) / 2)."""
    slope = finite_real(slope, "slope")
    return AbsLinear((1.0 + slope) / 2.0, (1.0 - slope) / 2.0, name=f"leaky_relu({slope:g})")


def _tanh_derivative(s: torch.Tensor) -> torch.Tensor:
    """1 - tanh(s)^2 (a module-level function, so that models using tanh can be pickled)."""
    return 1.0 - torch.tanh(s) ** 2


def _gelu_derivative(s: torch.Tensor) -> torch.Tensor:
    """d/ds [s Phi(s)] = Phi(s) + s N(s)."""
    cdf = 0.5 * (1.0 + torch.erf(s / math.sqrt(2.0)))
    return cdf + s * torch.exp(-0.5 * s * s) / math.sqrt(2.0 * math.pi)


relu = AbsLinear(0.5, 0.5, name="relu")
identity = AbsLinear(1.0, 0.0, name="identity")
abs = AbsLinear(0.0, 1.0, name="abs")
erf = Erf()
tanh = Quadrature(torch.tanh, "tanh", derivative=_tanh_derivative)
gelu = Quadrature(torch.nn.functional.gelu, "gelu", derivative=_gelu_derivative)
softplus = Quadrature(torch.nn.functional.softplus, "softplus", derivative=torch.sigmoid)
sin = Quadrature(torch.sin, "sin", derivative=torch.cos)

_NAMED: dict[str, Activation] = {act.name: act for act in
                                 (relu, identity, abs, erf, tanh, gelu, softplus, sin)}


def get_activation(spec: str | Activation | Callable[[torch.Tensor], torch.Tensor]) -> Activation:
    """Resolve an activation from a name, an :class:`Activation`, or any elementwise callable.

    Names: relu, abs, identity, erf, tanh, gelu, softplus, sin, and ``leaky_relu`` or
    ``leaky_relu:SLOPE`` (slope 0.01 by default). A plain callable gets quadrature duals.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        name, _, argument = spec.partition(":")
        if name == "leaky_relu":
            try:
                return leaky_relu(float(argument) if argument else 0.01)
            except ValueError:
                raise WidenetError(f"bad leaky_relu slope in {spec!r}; write e.g. "
                                   "'leaky_relu:0.1'") from None
        if name in _NAMED and not argument:
            return _NAMED[name]
        raise WidenetError(f"unknown activation {spec!r}; choose one of "
                           f"{', '.join(sorted([*_NAMED, 'leaky_relu:SLOPE']))}, an Activation "
                           "such as widenet.activations.ab(a, b), or a callable")
    return Quadrature(spec)
