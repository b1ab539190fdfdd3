"""Activations with closed-form Gaussian duals: the family a s + b|s|, erf, sin and gelu."""

from __future__ import annotations

import math

import torch

from widenet.activations._gaussian import (
    TWO_OVER_PI,
    TensorLike,
    as_tensors,
    broadcast_shape,
    correlation,
    correlation_into,
    product_into,
)
from widenet.activations.base import Activation
from widenet.errors import WidenetError
from widenet.validation import finite_real


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
        if not math.isfinite(self.a * self.a + self.b * self.b):
            raise WidenetError(f"{self.name}: a^2 + b^2 overflows float64 (a = {self.a:g}, "
                               f"b = {self.b:g}); keep |a| and |b| below 1e150")

    def function(self, s: torch.Tensor) -> torch.Tensor:
        if self.a == self.b:
            return torch.relu(s) * (2.0 * self.a)
        return self.a * s + self.b * s.abs()

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        return self.a + self.b * torch.sign(s)

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, c = as_tensors(q1, q2, c)
        shape = broadcast_shape(q1.shape, q2.shape, c.shape)
        product, derivative, work = (torch.empty(shape, dtype=c.dtype, device=c.device)
                                     for _ in range(3))
        return self.duals_into(q1, q2, c, product, derivative, work)

    def duals_into(self, q1: torch.Tensor, q2: torch.Tensor, c: torch.Tensor,
                   product: torch.Tensor, derivative: torch.Tensor, work: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The closed forms, computed in the three given buffers without allocating any other
        array of their size: work = rho, derivative = 1 + rho, then arcsin rho. Constants are
        folded into the (small) variance factors, so each full-size array is touched as few
        times as possible."""
        rho = correlation_into(q1, q2, c, work)
        torch.add(rho, 1.0, out=derivative)
        torch.neg(rho, out=product).add_(1.0).mul_(derivative).sqrt_()  # sqrt(1 - rho^2)
        arcsin_rho = torch.asin(rho, out=derivative)
        a2, b2 = self.a**2, self.b**2
        product.addcmul_(rho, arcsin_rho)  # (pi/2) J(rho)
        # rho is used up: work = (2/pi) b^2 sqrt(q1 q2), the constant's root folded into both
        # factors alike, so that the pair (x', x) gets the bits of (x, x') (a duplicate point's
        # row must equal the original's: arcsin near rho = 1 turns an ulp into 1e-8)
        root = math.sqrt(b2 * TWO_OVER_PI)
        scale = product_into(torch.sqrt(q1).mul_(root), torch.sqrt(q2).mul_(root), work)
        product.mul_(scale)
        if a2 != 0.0:
            product.add_(c, alpha=a2)
        return product, arcsin_rho.mul_(b2 * TWO_OVER_PI).add_(a2)

    def second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi(u)^2] = (a^2 + b^2) q."""
        (q,) = as_tensors(q)
        return (self.a**2 + self.b**2) * q

    def derivative_second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi'(u)^2] = a^2 + b^2 for q > 0."""
        (q,) = as_tensors(q)
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
        q1, q2, c = as_tensors(q1, q2, c)
        # Through rho (snapped to +-1 for identical points) rather than c: arcsin is steep near 1
        # and huge variances put the ratio there, where an ulp in c would cost 1e-11 or more.
        rho = correlation(q1, q2, c)[1]
        # With u = 1 / (1 + 2q) and t = 2q u = 1 - u, the argument of arcsin is
        # r = 2c / sqrt((1 + 2q1)(1 + 2q2)) = rho sqrt(t1 t2), and
        # 1 - r^2 = det(I + 2 Sigma) u1 u2 = u1 u2 + (t1 u2 + t2 u1) + t1 t2 (1 - rho^2):
        # terms in [0, 1], so 1 - r^2 has no cancellation (arcsin r = atan2(r, sqrt(1 - r^2))
        # stays accurate as r -> 1 at huge variances) and nothing overflows (4 q1 q2 (1 - rho^2)
        # overflowed at q ~ 2e19 in float32, giving inf * 0). u and t are taken as 0.5 / (q + 0.5)
        # and q / (q + 0.5): 1 + 2q would overflow for q above half the dtype's largest number.
        half1, half2 = q1 + 0.5, q2 + 0.5
        u1, u2 = 0.5 / half1, 0.5 / half2
        t1, t2 = q1 / half1, q2 / half2
        ratio = rho * (torch.sqrt(t1) * torch.sqrt(t2))
        complement = (u1 * u2 + (t1 * u2 + t2 * u1)
                      + t1 * t2 * ((1.0 - rho) * (1.0 + rho)))
        product = TWO_OVER_PI * torch.atan2(ratio, torch.sqrt(complement))
        root = torch.sqrt(u1) * torch.sqrt(u2)
        derivative_product = (2.0 * TWO_OVER_PI) * root * torch.rsqrt(complement)
        return product, derivative_product


class Sin(Activation):
    """phi(s) = sin(s), phi'(s) = cos(s), with closed-form duals (m = (q1 + q2) / 2):

        E[sin(u) sin(v)] = exp(-m) sinh(c) = sign(c) exp(|c| - m) (1 - exp(-2|c|)) / 2
        E[cos(u) cos(v)] = exp(-m) cosh(c) = exp(|c| - m) (1 + exp(-2|c|)) / 2

    Both exponents are <= 0 (|c| <= sqrt(q1 q2) <= m), so nothing overflows for huge variances,
    and 1 - exp(-2|c|) is taken by expm1, so tiny covariances keep their relative accuracy,
    and sinh and cosh are power series with non-negative coefficients in c, so the kernel
    matrices stay positive semi-definite (a Gauss-Hermite rule cannot resolve sin at large
    variances and loses both).
    """

    name = "sin"

    def function(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sin(s)

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        return torch.cos(s)

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, c = as_tensors(q1, q2, c)
        size = c.abs()
        half_up = 0.5 * torch.exp(size - 0.5 * (q1 + q2))  # exp(|c| - m) / 2 <= 1/2
        ratio = torch.exp(-2.0 * size)  # exp(-|c| - m) / exp(|c| - m)
        # sinh through expm1: exp(|c|) - exp(-|c|) would cancel to eps absolute for tiny c
        return torch.sign(c) * half_up * -torch.expm1(-2.0 * size), half_up * (1.0 + ratio)


def gelu_derivative(s: torch.Tensor) -> torch.Tensor:
    """d/ds [s Phi(s)] = Phi(s) + s N(s), Phi and N the standard normal CDF and density."""
    cdf = 0.5 * (1.0 + torch.erf(s / math.sqrt(2.0)))
    return cdf + s * torch.exp(-0.5 * s * s) / math.sqrt(2.0 * math.pi)


def _sin_minus_theta_cos(theta: torch.Tensor) -> torch.Tensor:
    """sin(theta) - theta cos(theta) for theta in [0, pi/2]; below 1/2 by its Taylor series
    sum_k (-1)^(k+1) 2k theta^(2k+1) / (2k+1)! (to k = 8: truncation below 1e-17 relative),
    where the difference would cancel (to eps / theta^2 relative)."""
    square = theta * theta
    series = torch.zeros_like(theta)
    for k in range(8, 0, -1):  # Horner in theta^2
        series = series * square + (-1.0) ** (k + 1) * 2 * k / math.factorial(2 * k + 1)
    series = series * square * theta
    return torch.where(theta < 0.5, series, torch.sin(theta) - theta * torch.cos(theta))


class Gelu(Activation):
    """phi(s) = s Phi(s) (torch's exact gelu), with closed-form duals (Tsuchida et al. 2021).

    With A = u - z1, B = v - z2 (z1, z2 independent standard normals), phi(u) phi(v) =
    E_z[u v 1{A >= 0} 1{B >= 0}], and Gaussian integration by parts gives, for
    Q = (1 + q1)(1 + q2) and D = Q - c^2 >= 1 + q1 + q2,

        E[phi(u) phi(v)]   = c (1/4 + arcsin(c / sqrt Q) / (2 pi))
                             + (q1 q2 - c^2 + c^2 (w1 + w2)) / (2 pi sqrt D)
        E[phi'(u) phi'(v)] = 1/4 + arcsin(c / sqrt Q) / (2 pi)
                             + c (w1 + w2 + 1 / D) / (2 pi sqrt D),

    w_i = 1 / (1 + q_i); the second is the c-derivative of the first (Price's theorem). They are
    evaluated in the scaled quantities of :class:`Erf`: r = c / sqrt Q = rho sqrt(t1 t2) and
    1 - r^2 = D / Q = w1 w2 + t1 w2 + t2 w1 + t1 t2 (1 - rho^2) (t_i = q_i w_i), a sum of
    non-negative terms, so nothing cancels or overflows at huge variances or |rho| = 1.
    """

    name = "gelu"

    def function(self, s: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(s)

    def derivative(self, s: torch.Tensor) -> torch.Tensor:
        return gelu_derivative(s)

    def duals(self, q1: TensorLike, q2: TensorLike, c: TensorLike
              ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, c = as_tensors(q1, q2, c)
        rho = correlation(q1, q2, c)[1]  # snapped to +-1 for identical points
        w1, w2 = 1.0 / (1.0 + q1), 1.0 / (1.0 + q2)
        t1, t2 = q1 * w1, q2 * w2
        ratio = rho * (torch.sqrt(t1) * torch.sqrt(t2))  # r = c / sqrt(Q), |r| < 1
        gap = (1.0 - rho) * (1.0 + rho)
        complement = w1 * w2 + (t1 * w2 + t2 * w1) + t1 * t2 * gap  # 1 - r^2 = D / Q
        root_complement = torch.sqrt(complement)
        # P(A, B >= 0) = 1/4 + arcsin(r) / (2 pi) = arccos(-r) / (2 pi), as an angle: the sum
        # cancelled to eps absolute as r -> -1, which c ~ q multiplied into a wrong sign
        angle = torch.atan2(root_complement, -ratio)
        orthant = angle / (2.0 * math.pi)
        # E[phi(u) phi(v)] = sqrt(Q) (r arccos(-r) sqrt(1 - r^2) + t1 t2 M) / (2 pi sqrt(1 - r^2))
        # with M = 1 - rho^2 + rho^2 (w1 + w2) and t1 t2 M = (1 - r^2)(1 - w1 - w2) + w1 w2.
        # For r >= 0 both terms are >= 0. For r < 0 write |r| = cos(theta), theta = arccos|r|:
        # the bracket is sin(theta) g(theta) - (w1 + w2) sin(theta)^2 + w1 w2 with
        # g = sin - theta cos, whose terms no longer cancel as theta -> 0 (rho -> -1 at huge
        # variances, where c arccos(-r) and the second term each exceed the result by q).
        positive = ratio * angle * root_complement + t1 * t2 * (gap + rho * rho * (w1 + w2))
        theta = torch.atan2(root_complement, ratio.abs())
        negative = (root_complement * _sin_minus_theta_cos(theta)
                    - (w1 + w2) * complement + w1 * w2)
        bracket = torch.where(ratio < -0.5, negative, positive)
        product = (torch.sqrt(1.0 + q1) * torch.sqrt(1.0 + q2)) * bracket / (
            2.0 * math.pi * root_complement)
        # c / sqrt(D) = r / sqrt(1 - r^2) and 1 / D = w1 w2 / (1 - r^2)
        derivative = orthant + ratio * ((w1 + w2) + w1 * w2 / complement) / (
            2.0 * math.pi * root_complement)
        return product, derivative
