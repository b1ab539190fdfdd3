"""Kernel maps of the position-wise layers without weights: activations and layer norm.

Activation (docs/theory.md sections 3 and 7), with (u, v) ~ N(0, [[q, c], [c, q']]),
q = Sigma_{ii}(x, x), q' = Sigma_{i'i'}(x', x'), c = Sigma_{ii'}(x, x'):
    K = E[phi(u) phi(v)],   Kdot = E[phi'(u) phi'(v)],   Theta -> Kdot * Theta;
exact when the inputs are zero-mean Gaussian in the limit (a linear image of weighted layers'
outputs), so a nonlinear activation of the raw input or of another activation is refused.
Layer norm over channels, for zero-mean inputs: every kernel is divided by
sqrt((q + eps)(q' + eps)).
"""

from __future__ import annotations

import torch
from torch import nn

from widenet import activations
from widenet.activations import AbsLinear, Activation
from widenet.errors import WidenetError
from widenet.kernels.maps.base import Builder, Context, Law, Op, Shape, State, ops_of
from widenet.nn.elementwise import Activation as ActivationLayer
from widenet.nn.elementwise import LayerNorm


class ActivationOp(Op):
    """phi applied at every position."""

    def __init__(self, name: str, shape: Shape, activation: Activation):
        self.name = name
        self.shape_in = self.shape_out = shape
        self.activation = activation

    @property
    def linear(self) -> bool:
        """Whether phi is linear (a s), whose map is exact on any input."""
        return isinstance(self.activation, AbsLinear) and self.activation.b == 0.0

    def law_out(self, law_in: Law) -> Law:
        if self.linear:
            return law_in
        if law_in is not Law.GAUSSIAN:
            where = f" at {self.name!r}" if self.name else ""
            raise _refusal(f"activation {self.activation.name!r}{where} gets inputs that are "
                           "not Gaussian in the limit", law_in, "its kernel map needs Gaussian "
                           "ones: put a weighted layer before it, or apply it to the data "
                           "beforehand")
        return Law.ACTIVATED

    def apply(self, state: State, context: Context) -> State:
        q1, q2 = context.variances(self, state)
        sigma, pool = state.sigma, context.pool
        work = pool.take(sigma)
        product, derivative = self.activation.duals_into(q1, q2, sigma, pool.take(sigma),
                                                         pool.take(sigma), work)
        theta = None if state.theta is None else state.theta.mul_(derivative)
        parts = {k: v.mul_(derivative) for k, v in state.parts.items()}
        kdot = derivative if context.per_layer else None
        pool.give(work, sigma, None if context.per_layer else derivative)
        return State(product, theta, state.mode, state.dims, parts, kdot)


class LayerNormOp(Op):
    """Layer normalization over channels at each position (zero-mean inputs only)."""

    def __init__(self, name: str, shape: Shape, eps: float):
        self.name = name
        self.shape_in = self.shape_out = shape
        self.eps = eps

    def law_out(self, law_in: Law) -> Law:
        if law_in is not Law.GAUSSIAN:
            raise _refusal(f"LayerNorm {self.name!r} gets inputs that are not zero-mean "
                           "Gaussian", law_in, "its limit is covered right after a weighted "
                           "layer (pre-activations): move it there")
        return Law.GAUSSIAN

    def apply(self, state: State, context: Context) -> State:
        q1, q2 = context.variances(self, state)
        # a product of roots, divided by: 1/sqrt(q1 + eps) 1/sqrt(q2 + eps) overflows for
        # variances below the smallest normal number (eps = 0); a zero root gives 0 (t / inf)
        roots = torch.sqrt(q1 + self.eps) * torch.sqrt(q2 + self.eps)
        roots = torch.where(roots > 0, roots, torch.inf)
        state = state.map(lambda t: t / roots)  # not in place: sigma may be recorded
        state.kdot = None
        return state


def _refusal(problem: str, law: Law, fix: str) -> WidenetError:
    """One line: the problem, what the input is, and the fix (after a sum with the raw input,
    a weighted layer before that sum)."""
    if law is Law.INPUT_SUM:
        fix = "put a weighted layer (a stem) before the sum with the raw input"
    return WidenetError(f"{problem} ({law.value}); {fix}")


def _activation_ops(name: str, shape: Shape, activation: Activation) -> tuple[list[Op], Shape]:
    return [ActivationOp(name, shape, activation)], shape


@ops_of.register
def _(module: ActivationLayer, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    return _activation_ops(name, shape, module.activation)


@ops_of.register
def _(module: LayerNorm, shape: Shape, builder: Builder, name: str) -> tuple[list[Op], Shape]:
    if shape.flattened and shape.spatial:
        raise WidenetError(f"LayerNorm {name!r} comes after a Flatten; the limit covers "
                           "normalization over the channels at each position: put it before "
                           "the Flatten")
    return [LayerNormOp(name, shape, module.eps)], shape


_TORCH_ACTIVATIONS = {nn.ReLU: lambda m: activations.relu,
                      nn.Tanh: lambda m: activations.tanh,
                      nn.Softplus: lambda m: _softplus(m),
                      nn.GELU: lambda m: _gelu(m),
                      nn.LeakyReLU: lambda m: activations.leaky_relu(m.negative_slope)}


def _softplus(module: nn.Softplus) -> Activation:
    if module.beta != 1.0:
        raise WidenetError(f"nn.Softplus with beta={module.beta} is not supported; use beta=1 "
                           "or widenet.nn.Activation with your own function")
    return activations.softplus


def _gelu(module: nn.GELU) -> Activation:
    if module.approximate != "none":
        raise WidenetError(f"nn.GELU(approximate={module.approximate!r}) is not supported; "
                           "use approximate='none'")
    return activations.gelu


def _torch_activation(module: nn.Module, shape: Shape, builder: Builder, name: str
                      ) -> tuple[list[Op], Shape]:
    make = next(make for kind, make in _TORCH_ACTIVATIONS.items() if isinstance(module, kind))
    return _activation_ops(name, shape, make(module))


for _kind in _TORCH_ACTIVATIONS:
    ops_of.register(_kind, _torch_activation)
