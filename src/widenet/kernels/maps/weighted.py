"""Kernel maps of weighted layers: dense and convolutional (docs/theory.md sections 3 and 7).

With sigma_w^2 = w, sigma_b^2 = b and A the layer's spatial average (identity for a dense layer
on vectors, the mean over positions for a dense readout after a flatten, the mean over filter
offsets for a convolution):

    Sigma_out = w A(K) + b,    Theta_out = Sigma_out + w A(Kdot * Theta_in),

where K and Kdot * Theta_in are what the state carries (an activation below has already
multiplied Theta by Kdot). The weight's share of Theta_out is w A(K), the bias's b; every share
from below is mapped like Theta. A frozen parameter (``requires_grad=False``) has no share: the
NTK sums over the trainable parameters, like the empirical NTK it is the limit of, so Theta_out
then lacks its term (Sigma_out keeps it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.kernels.maps.base import (
    BufferPool,
    Builder,
    Context,
    Law,
    Mode,
    Op,
    Shape,
    State,
    child_name,
    ops_of,
)
from widenet.kernels.maps.spatial import output_size, shift_sum
from widenet.nn.conv import Conv1d, Conv2d, padding_amounts
from widenet.nn.dense import Dense
from widenet.validation import finite_real


class WeightedOp(Op):
    """A dense or convolutional layer ``layer`` with sigma_w^2, sigma_b^2, its parameter names
    and which of its parameters are trained."""

    def __init__(self, name: str, shape_in: Shape, shape_out: Shape, layer: nn.Module,
                 weight_std: float, bias_std: float, finite_ntk: bool,
                 conv: tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...], bool]
                 | None = None):
        has_bias = layer.bias is not None
        self.trains_weight = layer.weight.requires_grad
        self.trains_bias = has_bias and layer.bias.requires_grad
        self.frozen = not self.trains_weight or (has_bias and not self.trains_bias)
        self.name = name
        self.shape_in, self.shape_out = shape_in, shape_out
        self.weight_var: float | None = None
        if weight_std is not None:
            self.set_weight_std(weight_std)
        self.bias_var = (_variance(bias_std, f"bias_std of {name or 'the model'}") if has_bias
                         else 0.0)
        self.weight_name = child_name(name, "weight")
        self.bias_name = child_name(name, "bias") if has_bias else None
        self.finite_ntk = finite_ntk
        self.conv = conv

    def law_out(self, law_in: Law) -> Law:
        # fresh weights over a wide or deterministic input: Gaussian; over the raw input plus a
        # random branch (finite width), Gaussian given that branch only
        return Law.INPUT_SUM if law_in is Law.INPUT_SUM else Law.GAUSSIAN

    def set_weight_std(self, weight_std: float) -> None:
        """sigma_w (a torch layer given weight_std=None gets it from the activation rule)."""
        self.weight_var = _variance(weight_std, f"weight_std of {self.name or 'the model'}")

    def need(self, mode_out: Mode) -> Mode:
        if self.conv is not None:
            return mode_out
        return Mode.DIAG if self.shape_in.spatial else Mode.FLAT

    def average(self, t: torch.Tensor, state: State, scale: float,
                pool: BufferPool | None = None) -> torch.Tensor:
        """scale * A(t): A the mean over filter offsets, or over positions for a readout.
        A dense layer on vectors scales ``t`` in place (the state's tensors are never shared:
        whatever is kept, records and self-pass variances, is a copy)."""
        if self.conv is None:
            if state.dims == 0:
                return t.mul_(scale)
            return t.flatten(t.ndim - state.dims).mean(dim=-1).mul_(scale)
        kernel, stride, pads, circular = self.conv
        groups = 2 if state.mode == Mode.FULL else 1
        return shift_sum(t, groups, kernel, stride, pads, circular,
                         scale=scale / math.prod(kernel), pool=pool)

    def apply(self, state: State, context: Context) -> State:
        w = float(self.weight_var)
        mode = state.mode if self.conv is not None else Mode.FLAT
        dims = len(self.shape_out.spatial) if self.conv is not None else 0
        if context.per_layer and state.kdot is not None:
            context.record(self.average(state.kdot, state, w), "sigma_dot", mode, dims)
        theta = None
        pool = context.pool
        if context.want_ntk and state.theta is not None:
            theta = self.average(state.theta, state, w, pool)
        parts = {}
        if context.per_layer and context.want_ntk:
            parts = {k: self.average(v, state, w, pool) for k, v in state.parts.items()}
        weight_part = self.average(state.sigma, state, w, pool)
        if self.conv is not None:  # the inputs are dead now (whatever is kept was copied)
            pool.give(state.sigma, state.theta, *state.parts.values())
        return self.finish(weight_part, theta, parts, mode, dims, context)

    def finish(self, weight_part: torch.Tensor, theta: torch.Tensor | None,
               parts: dict[str, torch.Tensor], mode: Mode, dims: int, context: Context
               ) -> State:
        """The output state from the averaged inputs w A(K), w A(Theta) and w A(parts):
        Sigma = w A(K) + b, Theta = Sigma + w A(Theta), the weight's share w A(K), the
        bias's b; a frozen parameter's share is left out of Theta and the parts. (The engine
        calls this directly for a first convolution, whose w A(K0) it computes from the input
        patches.)"""
        b = self.bias_var
        keep = context.per_layer and context.want_ntk
        share = None  # Theta's share of this layer's parameters if one is frozen (else Sigma)
        if context.want_ntk and self.frozen:
            bias = b if self.trains_bias else 0.0
            share = (weight_part + bias if self.trains_weight
                     else torch.full_like(weight_part, bias))
        sigma = weight_part + b if keep else (weight_part.add_(b) if b else weight_part)
        if keep:
            if self.trains_weight:
                parts[self.weight_name] = weight_part
            if self.trains_bias:
                parts[self.bias_name] = torch.full_like(sigma, b)
        if context.want_ntk:
            if share is None:
                share = sigma.clone() if theta is None else sigma
            theta = share if theta is None else theta.add_(share)
        if context.per_layer:
            context.record(sigma.clone(), "sigma", mode, dims)
        return State(sigma, theta, mode, dims, parts)


def _variance(std: float, name: str) -> float:
    """std^2 for a finite std >= 0, inf where it overflows (std > 1.3e154), which the engine
    then reports as an overflowing kernel (std ** 2 raised Python's raw OverflowError)."""
    std = finite_real(std, name, minimum=0.0)
    return std * std


def dense_ops(name: str, shape: Shape, layer: nn.Module, in_features: int, out_features: int,
              weight_std: float, bias_std: float, finite_ntk: bool) -> tuple[list[Op], Shape]:
    if shape.spatial and not shape.flattened:
        raise WidenetError(f"dense layer {name!r} gets {shape.describe()}; put a Flatten or a "
                           "global average pooling before it")
    if shape.features != in_features:
        raise WidenetError(f"dense layer {name!r} expects {in_features} features but gets "
                           f"{shape.describe()} ({shape.features} features)")
    out = Shape(out_features)
    return [WeightedOp(name, shape, out, layer, weight_std, bias_std, finite_ntk)], out


@ops_of.register
def _(module: Dense, shape: Shape, builder: Builder, name: str) -> tuple[list[Op], Shape]:
    builder.claim(module, name)
    return dense_ops(name, shape, module, module.in_features, module.out_features,
                     module.weight_std, module.bias_std, module.parametrization.finite_ntk)


@ops_of.register
def _(module: nn.Linear, shape: Shape, builder: Builder, name: str) -> tuple[list[Op], Shape]:
    builder.claim(module, name)
    return dense_ops(name, shape, module, module.in_features, module.out_features,
                     _torch_weight_std(builder, name), builder.std(builder.bias_std, name, 0.0),
                     builder.finite_ntk)


def _torch_weight_std(builder: Builder, name: str) -> float | None:
    return builder.std(builder.weight_std, name)


def _conv_ops(module: nn.Module, name: str, shape: Shape, in_channels: int, out_channels: int,
              kernel: tuple[int, ...], stride: tuple[int, ...],
              padding: str | tuple[tuple[int, int], ...], circular: bool,
              weight_std: float | None, bias_std: float, finite_ntk: bool
              ) -> tuple[list[Op], Shape]:
    """The op of a convolution; ``padding`` is "same", "valid" or "circular" (amounts from
    :func:`~widenet.nn.conv.padding_amounts`) or (before, after) per axis."""
    kind = type(module).__name__
    if len(shape.spatial) != len(kernel) or shape.flattened:
        raise WidenetError(f"{kind} {name!r} needs inputs with {len(kernel)} spatial axes, "
                           f"gets {shape.describe()}")
    if shape.channels != in_channels:
        raise WidenetError(f"{kind} {name!r} expects {in_channels} channels, gets "
                           f"{shape.describe()}")
    pads = (padding_amounts(kernel, padding, shape.spatial, stride) if isinstance(padding, str)
            else padding)
    spatial = tuple(output_size(n, k, s, before, after, f"{kind} {name!r}",
                                "a smaller filter or 'same' padding")
                    for n, k, s, (before, after) in zip(shape.spatial, kernel, stride, pads,
                                                        strict=True))
    wrapped = [(n, max(pad)) for n, pad in zip(shape.spatial, pads, strict=True) if max(pad) > n]
    if circular and wrapped:
        raise WidenetError(f"{kind} {name!r} pads circularly by {wrapped[0][1]} along an axis of "
                           f"only {wrapped[0][0]} positions (it can wrap around once); use larger "
                           "inputs or a smaller filter")
    out = Shape(out_channels, spatial)
    op = WeightedOp(name, shape, out, module, weight_std, bias_std, finite_ntk,
                    conv=(kernel, stride, pads, circular))
    return [op], out


@ops_of.register(Conv1d)
@ops_of.register(Conv2d)
def _(module: Conv1d | Conv2d, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    builder.claim(module, name)
    return _conv_ops(module, name, shape, module.in_channels, module.out_channels,
                     module.kernel_size, module.stride, module.padding,
                     module.padding == "circular", module.weight_std, module.bias_std,
                     module.parametrization.finite_ntk)


@ops_of.register(nn.Conv1d)
@ops_of.register(nn.Conv2d)
def _(module: nn.Conv1d | nn.Conv2d, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    builder.claim(module, name)
    kind = type(module).__name__
    if module.groups != 1 or any(d != 1 for d in module.dilation):
        raise WidenetError(f"{kind} {name!r} has groups={module.groups}, "
                           f"dilation={module.dilation}; infinite_kernels covers groups=1 "
                           "and dilation=1")
    if module.padding_mode not in ("zeros", "circular"):
        raise WidenetError(f"{kind} {name!r} pads with padding_mode={module.padding_mode!r}; "
                           "infinite_kernels covers 'zeros' and 'circular'")
    # torch's "same" (stride 1 only) pads like widenet's
    padding = (module.padding if isinstance(module.padding, str)
               else tuple((p, p) for p in module.padding))
    return _conv_ops(module, name, shape, module.in_channels, module.out_channels,
                     module.kernel_size, module.stride, padding,
                     module.padding_mode == "circular", _torch_weight_std(builder, name),
                     builder.std(builder.bias_std, name, 0.0), builder.finite_ntk)
