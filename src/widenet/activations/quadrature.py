"""Activations whose Gaussian duals come from Gauss-Hermite quadrature."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from widenet.activations._gaussian import TensorLike, as_tensors, broadcast_shape, correlation
from widenet.activations.base import Activation
from widenet.errors import WidenetError
from widenet.validation import positive_int

MAX_DEGREE = 180  # largest Gauss-Hermite rule numpy computes accurately


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
        q1, q2, c = as_tensors(q1, q2, c)
        _, rho = correlation(q1, q2, c)
        nodes, weights = (torch.as_tensor(t, dtype=rho.dtype, device=rho.device)
                          for t in _hermite_rule(self.degree))
        sd1, sd2 = torch.sqrt(q1), torch.sqrt(q2)
        complement = torch.sqrt(((1.0 - rho) * (1.0 + rho)).clamp_min(0.0))
        inner_shape = (-1,) + (1,) * rho.ndim
        inner_nodes, inner_weights = nodes.view(inner_shape), weights.view(inner_shape)
        shape = broadcast_shape(q1.shape, q2.shape, c.shape)
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
        (q,) = as_tensors(q)
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
