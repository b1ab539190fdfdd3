"""Activation functions with their Gaussian duals (docs/theory.md section 2).

An :class:`Activation` knows its torch function phi, its derivative phi', and the two Gaussian
expectations the infinite-width recursions need, for (u, v) ~ N(0, [[q1, c], [c, q2]]):

    dual(q1, q2, c)            = E[phi(u) phi(v)]
    derivative_dual(q1, q2, c) = E[phi'(u) phi'(v)]

Closed forms exist for the family phi(s) = a s + b |s| (:func:`ab`, with ``relu``,
``absolute`` (looked up as "abs"), ``identity`` and :func:`leaky_relu` as members) and for
``erf``, ``sin`` and ``gelu`` (s Phi(s)). Every other activation (``tanh``, ``softplus`` or any
user function) gets its duals from a Mehler series in its Hermite coefficients, PSD by
construction, see :class:`Quadrature`. Arguments broadcast against each other: the kernel
recursions pass q1 of shape (n1, 1), q2 of shape (1, n2) and c of shape (n1, n2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from widenet.activation_names import (
    FAMILY,
    LEAKY_RELU_SLOPE,
    leaky_relu_coefficients,
    parse_activation,
)
from widenet.activations._gaussian import arc_cosine_j, correlation, correlation_into
from widenet.activations.base import Activation
from widenet.activations.closed_form import AbsLinear, Erf, Gelu, Sin
from widenet.activations.quadrature import MAX_DEGREE, Quadrature
from widenet.validation import finite_real

__all__ = ["MAX_DEGREE", "AbsLinear", "Activation", "Erf", "Gelu", "Quadrature", "Sin", "ab",
           "absolute", "arc_cosine_j", "correlation", "correlation_into", "erf", "gelu",
           "get_activation", "identity", "leaky_relu", "relu", "sin", "softplus", "tanh"]


def ab(a: float, b: float, name: str | None = None) -> AbsLinear:
    """phi(s) = a s + b |s|."""
    return AbsLinear(a, b, name)


def leaky_relu(slope: float = LEAKY_RELU_SLOPE) -> AbsLinear:
    """Leaky ReLU with the given negative slope: ab((1 + slope) / 2, (1 - slope) / 2)."""
    slope = finite_real(slope, "slope")
    return AbsLinear(*leaky_relu_coefficients(slope), name=f"leaky_relu({slope:g})")


def _tanh_derivative(s: torch.Tensor) -> torch.Tensor:
    """1 - tanh(s)^2 (a module-level function, so that models using tanh can be pickled)."""
    return 1.0 - torch.tanh(s) ** 2


relu = AbsLinear(*FAMILY["relu"], name="relu")  # (a, b) = (1/2, 1/2)
identity = AbsLinear(*FAMILY["identity"], name="identity")  # (1, 0)
absolute = AbsLinear(*FAMILY["abs"], name="abs")  # (0, 1); looked up as "abs", not shadowing abs
erf = Erf()
tanh = Quadrature(torch.tanh, "tanh", derivative=_tanh_derivative)
gelu = Gelu()
softplus = Quadrature(torch.nn.functional.softplus, "softplus", derivative=torch.sigmoid)
sin = Sin()

_NAMED: dict[str, Activation] = {act.name: act for act in
                                 (relu, identity, absolute, erf, tanh, gelu, softplus, sin)}


def get_activation(spec: str | Activation | Callable[[torch.Tensor], torch.Tensor]) -> Activation:
    """Resolve an activation from a name, an :class:`Activation`, or any elementwise callable.

    Names (:mod:`widenet.activation_names`): relu, abs, identity, erf, tanh, gelu, softplus,
    sin, and ``leaky_relu`` or ``leaky_relu:SLOPE`` (slope 0.01 by default). A plain callable
    gets quadrature duals.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        parsed = parse_activation(spec)  # raises for an unknown name, listing the names
        return _NAMED[parsed.name] if parsed.slope is None else leaky_relu(parsed.slope)
    return Quadrature(spec)
