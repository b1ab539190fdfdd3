"""The Activation base class: phi, phi', Gaussian duals, moments and the edge of chaos."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from widenet.activations._gaussian import TensorLike, as_tensors
from widenet.errors import WidenetError
from widenet.validation import finite_real

NEGLIGIBLE_BIAS_VAR = 1e-32
"""sigma_b^2 below which the edge of chaos of an activation with phi(0) = 0 is its sigma_b = 0
one (see :meth:`Activation.edge_of_chaos`)."""


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
        (q,) = as_tensors(q)
        return self.dual(q, q, q)

    def derivative_second_moment(self, q: TensorLike) -> torch.Tensor:
        """E[phi'(u)^2] for u ~ N(0, q)."""
        (q,) = as_tensors(q)
        return self.derivative_dual(q, q, q)

    def edge_of_chaos(self, bias_std: float = 0.0) -> float:
        """The weight std sigma_w on the edge of chaos for the given sigma_b (section 2).

        Solves q* = sigma_w^2 E[phi(sqrt(q*) z)^2] + sigma_b^2 together with
        chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] = 1. Eliminating sigma_w leaves one equation in q*,
        g(q) = q - E[phi^2](q) / E[phi'^2](q) - sigma_b^2 = 0, solved by bracketing its positive
        roots on a logarithmic grid and bisecting; the smallest root at which q* attracts the
        variance map is taken (a repelling q* is no edge of chaos: the variances run away from
        it, as for gelu with sigma_b < 0.416). With sigma_b = 0 and phi(0) = 0 the
        fixed point is q* = 0 and sigma_w = 1 / s, s^2 = lim_{q -> 0} E[phi'(sqrt(q) z)^2] (see
        :meth:`_slope_at_zero`: |phi'(0)| where phi is differentiable, 1 / sqrt(2) for relu),
        provided q* = 0 attracts the variance map (gelu's does not: give it a bias or an explicit
        weight std). So is a sigma_b^2 below ``NEGLIGIBLE_BIAS_VAR`` (sigma_b < 1e-16): q* is
        then below 1e-10 (tanh, erf, sin: q* ~ sigma_b^(2/3)), sigma_w within 1e-10 of its
        sigma_b = 0 value, and g is round-off over the whole range where q* could be (from
        sigma_b = 1e-13 on its roots are partly round-off, which moves sigma_w by 1e-9 at most).
        """
        bias_std = finite_real(bias_std, "bias_std", minimum=0.0)
        bias_var = bias_std * bias_std  # inf past 1.3e154 (** 2 raised OverflowError)
        if math.isinf(bias_var):  # no finite fixed point (and the message names bias_std)
            raise self._no_edge_of_chaos(bias_std)
        if bias_var < NEGLIGIBLE_BIAS_VAR and self._vanishes_at_zero():
            slope = self._slope_at_zero()
            # s^2 = 0 (phi'(0) = 0: s * s has s = 2e-308 here) leaves no edge of chaos
            weight_var = 1.0 / slope**2 if slope**2 > 0.0 else math.inf
            if not math.isfinite(weight_var) or not self._attracts_zero(weight_var):
                raise self._no_edge_of_chaos(bias_std)
            return 1.0 / slope
        q_star = self._fixed_point_variance(bias_var)
        return 1.0 / math.sqrt(self._moments(q_star)[1])

    def _moments(self, q: float) -> tuple[float, float]:
        """(E[phi(u)^2], E[phi'(u)^2]) for u ~ N(0, q), as the edge of chaos reads them."""
        return float(self.second_moment(q)), float(self.derivative_second_moment(q))

    def _slope_at_zero(self) -> float:
        """sqrt((phi'(0+)^2 + phi'(0-)^2) / 2), the limit of E[phi'(sqrt(q) z)^2]^(1/2) as
        q -> 0, from phi' at plus and minus the smallest normal float64: |phi'(0)| where phi is
        differentiable, and the right value at a kink, where phi'(0) itself is a convention (a
        callable relu's autograd derivative there is 0, which refused relu's sqrt(2))."""
        tiny = torch.finfo(torch.float64).tiny
        right, left = self.derivative(torch.tensor([tiny, -tiny], dtype=torch.float64)).abs()
        if right == left:
            return float(right)
        return math.sqrt(0.5 * float(right**2 + left**2))

    def _attracts_zero(self, weight_var: float) -> bool:
        """Whether q* = 0 attracts the variance map q -> sigma_w^2 E[phi(sqrt(q) z)^2]: chi_1 = 1
        there, so the sign of the next order decides; tested at q = 1e-2 (tanh, erf, sin shrink
        q; gelu grows it by 2%). A positively homogeneous phi (relu given as a callable) leaves
        every q where it is: neutral, accepted up to round-off (1e-9 relative)."""
        q = 1e-2
        return weight_var * self._moments(q)[0] <= q * (1.0 + 1e-9)

    def _vanishes_at_zero(self) -> bool:
        return float(self.function(torch.zeros((), dtype=torch.float64))) == 0.0

    def _fixed_point_variance(self, bias_var: float) -> float:
        """The smallest q* > 0 with q* = E[phi^2](q*) / E[phi'^2](q*) + sigma_b^2 (the fixed point
        of the variance map at sigma_w^2 = 1 / E[phi'^2](q*), where chi_1 = 1) that attracts
        that map: a repelling q* is never where the variances settle (gelu at sigma_b = 0.1:
        q* = 0.18 repels with slope 1.10, variances above it grow without bound)."""
        def gap(q: float) -> float:
            moment, slope_moment = self._moments(q)
            if slope_moment <= 0.0:  # phi' is 0 (to round-off) at this variance: no root here
                return math.inf
            return q - moment / slope_moment - bias_var

        # q* >= sigma_b^2: the grid starts there when that is below 1e-8
        lowest = math.floor(math.log10(min(1e-8, bias_var))) if bias_var > 0.0 else -8
        roots = self._roots(gap, np.logspace(lowest, 6, 10 * (6 - lowest) + 1))
        attracting = next((q for q in roots if self._attracts(q)), None)
        if attracting is None:
            raise self._no_edge_of_chaos(math.sqrt(bias_var))
        return attracting

    def _attracts(self, q_star: float) -> bool:
        """Whether the fixed point q* > 0 attracts the variance map
        q -> sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2 at sigma_w^2 = 1 / E[phi'^2](q*): its
        slope there, by a five-point central difference over q* (1 +- 1e-3, 1 +- 2e-3; within
        3e-13 of quadrature for tanh, erf, sin, gelu, silu at q* = 1e-6..1e4), is at most 1 (up
        to 1e-10, so that a neutral map is accepted). The tolerance must stay far below the
        slope's excess over 1 at small q*, c q* with c = O(1) (silu: q* / 2; a tolerance of
        1e-6 accepted silu's repelling q* = 1e-6..2e-6). Below q* = 1e-6 with phi(0) = 0 what
        decides is what decides at sigma_b = 0: whether the map shrinks q = 1e-2
        (:meth:`_attracts_zero`; tanh yes, gelu no)."""
        weight_var = 1.0 / self._moments(q_star)[1]
        if q_star < 1e-6 and self._vanishes_at_zero():
            return self._attracts_zero(weight_var)

        def difference(step: float) -> float:
            return self._moments(q_star + step)[0] - self._moments(q_star - step)[0]

        step = 1e-3 * q_star
        slope = weight_var * (8.0 * difference(step) - difference(2.0 * step)) / (12.0 * step)
        return slope <= 1.0 + 1e-10

    @staticmethod
    def _roots(gap: Callable[[float], float], grid: Iterable[float]) -> Iterator[float]:
        """The positive roots of ``gap`` bracketed on ``grid``, in increasing order, each
        bisected in log q (lazily: the caller stops at the one it wants)."""
        values = [(float(q), gap(float(q))) for q in grid]
        for (lo, g_lo), (hi, g_hi) in itertools.pairwise(values):
            if g_lo == 0.0:
                yield lo
            elif -math.inf < g_lo * g_hi < 0:  # a jump from or to inf is no root
                lo, hi = math.log(lo), math.log(hi)
                for _ in range(200):
                    mid = 0.5 * (lo + hi)
                    if (gap(math.exp(mid)) < 0) == (g_lo < 0):
                        lo = mid
                    else:
                        hi = mid
                yield math.exp(0.5 * (lo + hi))

    def _no_edge_of_chaos(self, bias_std: float) -> WidenetError:
        return WidenetError(
            f"activation {self.name!r} has no edge-of-chaos weight std with bias_std={bias_std}: "
            "the variance map has no stable fixed point with chi_1 = 1 there; pass weight_std "
            "explicitly or try another bias_std")

    def __repr__(self) -> str:
        return f"Activation({self.name})"
