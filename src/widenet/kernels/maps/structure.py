"""Kernel maps of the layers that move or combine features: flatten, identity, average and
global average pooling, sequences and sums of branches (docs/theory.md section 7).

Average pooling is linear with no weights: Sigma_out_{j,j'} = (1/|W|^2) sum_{i in W_j,
i' in W_j'} Sigma_{i,i'}, Theta likewise, so it needs the FULL position-by-position kernel.
A sum y = sum_b a_b f_b(x) gives Sigma_out = sum_b a_b^2 Sigma_b (Theta likewise) when the
branches are uncorrelated in the limit, which holds when every branch but at most one ends in
a weighted layer of its own, possibly followed by maps that are odd in that layer's output
(layer norm, average pooling, flatten, a linear activation): such a branch is an odd function
of fresh zero-mean weights, so its covariance with anything else vanishes. Otherwise the map
is refused.
"""

from __future__ import annotations

from torch import nn

from widenet.errors import WidenetError
from widenet.kernels.maps.base import (
    Builder,
    Context,
    Law,
    Mode,
    Op,
    Shape,
    State,
    child_name,
    ops_of,
    sequence_ops,
)
from widenet.kernels.maps.elementwise import ActivationOp, LayerNormOp
from widenet.kernels.maps.spatial import output_size, pool_mean
from widenet.kernels.maps.weighted import WeightedOp
from widenet.nn.containers import Residual, Sum
from widenet.nn.elementwise import Flatten
from widenet.nn.pooling import AvgPool1d, AvgPool2d, GlobalAvgPool


class FlattenOp(Op):
    """Positions become features; the kernel is unchanged (a dense readout then averages the
    diagonal over positions)."""

    def __init__(self, name: str, shape: Shape):
        self.name = name
        self.shape_in = shape
        self.shape_out = Shape(shape.channels, shape.spatial, flattened=True)

    def apply(self, state: State, context: Context) -> State:
        return state


class PoolOp(Op):
    """Average pooling with windows ``window`` moved by ``stride`` (global: output FLAT)."""

    def __init__(self, name: str, shape_in: Shape, shape_out: Shape,
                 window: tuple[int, ...] | None, stride: tuple[int, ...] | None):
        self.name = name
        self.shape_in, self.shape_out = shape_in, shape_out
        self.window, self.stride = window, stride

    def need(self, mode_out: Mode) -> Mode:
        return Mode.FULL

    def apply(self, state: State, context: Context) -> State:
        if self.window is None:  # global
            positions = 2 * state.dims
            state = state.map(lambda t: t.flatten(t.ndim - positions).mean(dim=-1))
            state.mode, state.dims, state.kdot = Mode.FLAT, 0, None
            return state
        state = state.map(lambda t: pool_mean(t, 2, self.window, self.stride))
        state.kdot = None
        return state


class SumOp(Op):
    """sum_b a_b f_b(x) over branches of ops (an empty branch is the identity)."""

    def __init__(self, name: str, shape_in: Shape, shape_out: Shape,
                 branches: list[list[Op]], weights: tuple[float, ...]):
        self.name = name
        self.shape_in, self.shape_out = shape_in, shape_out
        self.branches, self.weights = branches, weights
        self.needs: list[Mode] = []  # each branch's input mode, set by need()
        self.mode_out = Mode.FLAT

    def law_out(self, law_in: Law) -> Law:
        laws = {law_after(branch, law_in) for branch in self.branches}  # checks every branch
        if len(laws) == 1:
            return laws.pop()
        # a random branch added to the raw input has its finite width; else wide, not Gaussian
        return Law.INPUT_SUM if laws & {Law.INPUT, Law.INPUT_SUM} else Law.ACTIVATED

    def children(self) -> list[list[Op]]:
        return self.branches

    def need(self, mode_out: Mode) -> Mode:
        self.needs = [branch_need(branch, mode_out) for branch in self.branches]
        self.mode_out = mode_out
        return max(self.needs)

    def apply(self, state: State, context: Context) -> State:
        total: State | None = None
        for index, (branch, need, weight) in enumerate(zip(self.branches, self.needs,
                                                          self.weights, strict=True)):
            last = index == len(self.branches) - 1
            out = run_ops(branch, (state if last else state.clone()).reduced_to(need),
                          context).reduced_to(self.mode_out)
            out = out.map(lambda t, a=weight * weight: t.mul_(a) if a != 1.0 else t)
            total = out if total is None else _add(total, out)
        total.kdot = None
        return total


def _add(total: State, other: State) -> State:
    total.sigma.add_(other.sigma)
    if total.theta is None or other.theta is None:
        total.theta = total.theta if other.theta is None else other.theta
    else:
        total.theta.add_(other.theta)
    for name, part in other.parts.items():
        total.parts[name] = total.parts[name].add_(part) if name in total.parts else part
    return total


def branch_need(ops: list[Op], mode_out: Mode) -> Mode:
    """The mode a sequence's input must be tracked in for its output to be in ``mode_out``;
    also fixes each op's own needs (``op.mode_in``, the mode it is run in)."""
    mode = mode_out
    for op in reversed(ops):
        mode = op.need(mode)
        op.mode_in = mode
    return mode


def law_after(ops: list[Op], law: Law) -> Law:
    """The :class:`Law` of a sequence's output given its input's (each op checks its input)."""
    for op in ops:
        law = op.law_out(law)
    return law


def run_ops(ops: list[Op], state: State, context: Context) -> State:
    """Apply ``ops`` in order, cutting each output down to what the next op needs."""
    for op in ops:
        state = op.apply(state.reduced_to(op.mode_in), context)
    return state


@ops_of.register
def _(module: Flatten | nn.Flatten, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    if isinstance(module, nn.Flatten) and (module.start_dim != 1 or module.end_dim != -1):
        raise WidenetError(f"nn.Flatten {name!r} must flatten from dimension 1 to the end "
                           f"(got start_dim={module.start_dim}, end_dim={module.end_dim})")
    if not shape.spatial:
        return [], shape
    op = FlattenOp(name, shape)
    return [op], op.shape_out


@ops_of.register
def _(module: nn.Identity, shape: Shape, builder: Builder, name: str) -> tuple[list[Op], Shape]:
    return [], shape


def _pool_ops(module: nn.Module, name: str, shape: Shape, window: tuple[int, ...],
              stride: tuple[int, ...]) -> tuple[list[Op], Shape]:
    kind = type(module).__name__
    if len(shape.spatial) != len(window) or shape.flattened:
        raise WidenetError(f"{kind} {name!r} needs inputs with {len(window)} spatial axes, "
                           f"gets {shape.describe()}")
    spatial = tuple(output_size(n, w, s, 0, 0, f"{kind} {name!r}")
                    for n, w, s in zip(shape.spatial, window, stride, strict=True))
    out = Shape(shape.channels, spatial)
    return [PoolOp(name, shape, out, window, stride)], out


@ops_of.register(AvgPool1d)
@ops_of.register(AvgPool2d)
def _(module: AvgPool1d | AvgPool2d, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    return _pool_ops(module, name, shape, module.window, module.stride)


@ops_of.register(nn.AvgPool1d)
@ops_of.register(nn.AvgPool2d)
def _(module: nn.AvgPool1d | nn.AvgPool2d, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    dims = 1 if isinstance(module, nn.AvgPool1d) else 2
    window, stride, padding = (tuple(v) if isinstance(v, tuple | list) else (v,) * dims
                               for v in (module.kernel_size, module.stride or module.kernel_size,
                                         module.padding))
    divisor = getattr(module, "divisor_override", None)  # AvgPool1d has none
    if any(padding) or module.ceil_mode or divisor is not None:
        raise WidenetError(f"{type(module).__name__} {name!r} has padding={module.padding}, "
                           f"ceil_mode={module.ceil_mode}, divisor_override={divisor}; "
                           "infinite_kernels covers padding=0, ceil_mode=False and "
                           "divisor_override=None")
    return _pool_ops(module, name, shape, window, stride)


@ops_of.register(nn.AdaptiveAvgPool1d)
@ops_of.register(nn.AdaptiveAvgPool2d)
def _(module: nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d, shape: Shape, builder: Builder,
      name: str) -> tuple[list[Op], Shape]:
    dims = 1 if isinstance(module, nn.AdaptiveAvgPool1d) else 2
    if len(shape.spatial) != dims or shape.flattened:
        # torch reads a batch with one spatial axis too few as one unbatched input and pools
        # over the channels as well (AdaptiveAvgPool2d on sequences, AdaptiveAvgPool1d on
        # vectors), and refuses one axis too many
        raise WidenetError(f"{type(module).__name__} {name!r} needs inputs with {dims} spatial "
                           f"axes, gets {shape.describe()}")
    sizes = (tuple(module.output_size) if isinstance(module.output_size, tuple | list)
             else (module.output_size,))
    if any(size != 1 for size in sizes):
        raise WidenetError(f"{type(module).__name__} {name!r} has output_size="
                           f"{module.output_size}; infinite_kernels covers output size 1")
    return _pool_ops(module, name, shape, shape.spatial, (1,) * len(shape.spatial))


@ops_of.register
def _(module: GlobalAvgPool, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    if not shape.spatial or shape.flattened:
        raise WidenetError(f"GlobalAvgPool {name!r} needs images or sequences, gets "
                           f"{shape.describe()}")
    out = Shape(shape.channels)
    return [PoolOp(name, shape, out, None, None)], out


@ops_of.register
def _(module: nn.Sequential, shape: Shape, builder: Builder, name: str
      ) -> tuple[list[Op], Shape]:
    return sequence_ops([(child_name(name, key), child) for key, child in module._modules.items()],
                        shape, builder)


def _ends_in_fresh_weights(ops: list[Op]) -> bool:
    """Whether a branch ends in a weighted layer followed only by maps odd in its output (layer
    norm, average pooling, flatten, linear activations): see the module docstring."""
    for op in reversed(ops):
        if isinstance(op, WeightedOp):
            return True
        odd = isinstance(op, LayerNormOp | PoolOp | FlattenOp) or (
            isinstance(op, ActivationOp) and op.linear)
        if not odd:
            return False
    return False


def _sum_ops(name: str, shape: Shape, builder: Builder, branches: list[tuple[str, nn.Module]],
             weights: tuple[float, ...]) -> tuple[list[Op], Shape]:
    branch_ops, shapes = [], []
    for branch_name, branch in branches:
        ops, out = ops_of(branch, shape, builder, branch_name)
        branch_ops.append(ops)
        shapes.append(out)
    if len(set(shapes)) > 1:
        raise WidenetError(f"the branches of {name!r} give different outputs: "
                           f"{'; '.join(s.describe() for s in shapes)}")
    correlated = [n for (n, _), ops in zip(branches, branch_ops, strict=True)
                  if not _ends_in_fresh_weights(ops)]
    if len(correlated) > 1:
        raise WidenetError(f"the branches {', '.join(repr(n) for n in correlated)} of {name!r} "
                           "do not end in a weighted layer of their own, so they are correlated "
                           "and the limit of their sum is not covered; end every branch but one "
                           "in a Dense or convolution (a layer norm, pooling or flatten may "
                           "follow it)")
    return [SumOp(name, shape, shapes[0], branch_ops, weights)], shapes[0]


@ops_of.register
def _(module: Residual, shape: Shape, builder: Builder, name: str) -> tuple[list[Op], Shape]:
    return _sum_ops(name, shape, builder, [(child_name(name, "skip"), nn.Identity()),
                                           (child_name(name, "branch"), module.branch)],
                    (1.0, module.alpha))


@ops_of.register
def _(module: Sum, shape: Shape, builder: Builder, name: str) -> tuple[list[Op], Shape]:
    branches = [(child_name(name, f"branches.{i}"), b) for i, b in enumerate(module.branches)]
    return _sum_ops(name, shape, builder, branches, module.weights)


