"""What every kernel map shares: the tracking modes, the kernel state, the op protocol, and the
single-dispatch entry ``ops_of`` that turns a module into kernel ops (docs/theory.md section 7).

A pair of inputs (x, x') carries, per output channel, Sigma (the NNGP) and Theta (the NTK) of the
current layer, in one of three forms chosen once per architecture by the engine:

- FLAT: one number per pair (vectors: after a global pool, or an MLP);
- DIAG: Sigma_{i,i}(x, x') for every position i (enough when only convolutions, activations
  and a flatten + dense readout follow);
- FULL: Sigma_{i,i'}(x, x') for every pair of positions (needed below any pooling).

Tensors are laid out (*batch, *positions) with batch = (b1, b2) for a block of pairs of
different inputs, or (n,) for the pairs (x, x) of the self pass; positions are (*spatial) for
DIAG and (*spatial, *spatial) for FULL, so every map indexes positions from the end.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import nn
from torch.nn.utils import parametrize

from widenet.errors import WidenetError


class Mode(enum.IntEnum):
    """How much of the position-by-position kernel is tracked; larger holds more."""

    FLAT = 0
    DIAG = 1
    FULL = 2


@dataclass(frozen=True)
class Shape:
    """A layer's output without the batch: ``channels`` features at each of ``spatial``
    positions; ``flattened`` once a Flatten made it a vector of channels * positions entries
    (positions are still tracked: a dense readout averages over them)."""

    channels: int
    spatial: tuple[int, ...] = ()
    flattened: bool = False

    @property
    def positions(self) -> int:
        return math.prod(self.spatial)

    @property
    def features(self) -> int:
        return self.channels * self.positions

    def describe(self) -> str:
        if not self.spatial:
            return f"vectors of {self.channels} features"
        size = "x".join(map(str, self.spatial))
        return (f"flattened {self.channels}-channel {size} maps" if self.flattened
                else f"{self.channels}-channel {size} maps")


@dataclass
class State:
    """Sigma and Theta of a block of pairs, in ``mode`` over ``dims`` spatial axes.

    ``theta`` None means Theta = 0 (no parameter below yet) or that no NTK is tracked;
    ``parts`` holds each parameter's share of Theta (per-layer runs only); ``kdot`` the last
    activation's E[phi'(u) phi'(v)] until the next weighted layer records it.
    """

    sigma: torch.Tensor
    theta: torch.Tensor | None
    mode: Mode
    dims: int
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    kdot: torch.Tensor | None = None

    def clone(self) -> State:
        return replace(self, sigma=self.sigma.clone(),
                       theta=None if self.theta is None else self.theta.clone(),
                       parts={k: v.clone() for k, v in self.parts.items()},
                       kdot=None if self.kdot is None else self.kdot.clone())

    def map(self, function) -> State:
        """Apply one linear map to Sigma, Theta and every part."""
        return replace(self, sigma=function(self.sigma),
                       theta=None if self.theta is None else function(self.theta),
                       parts={k: function(v) for k, v in self.parts.items()})

    def reduced_to(self, mode: Mode) -> State:
        """This state with FULL cut down to its diagonal when only ``mode`` is needed."""
        if self.mode == Mode.FULL and mode == Mode.DIAG:
            return replace(self.map(lambda t: position_diagonal(t, self.dims)), mode=Mode.DIAG,
                           kdot=None if self.kdot is None
                           else position_diagonal(self.kdot, self.dims))
        return self


def position_diagonal(t: torch.Tensor, dims: int) -> torch.Tensor:
    """(*batch, *S, *S) -> (*batch, *S): the entries with i = i'."""
    spatial = t.shape[t.ndim - dims:]
    batch = t.shape[:t.ndim - 2 * dims]
    positions = math.prod(spatial)
    return t.reshape(*batch, positions, positions).diagonal(dim1=-2, dim2=-1).reshape(
        *batch, *spatial)


class BufferPool:
    """Recycled working arrays: taking a fresh array for every operation costs more in page
    faults than the arithmetic (measured: 7.1 s -> 3.5 s for a 10-layer MLP kernel at n = 4000),
    so ops give back the arrays they know are dead and take them again for the next block."""

    def __init__(self, keep: int = 4):
        self.free: dict[tuple, list[torch.Tensor]] = {}
        self.keep = keep

    def take(self, like: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """An uninitialized array of ``like``'s dtype and device and its shape (or ``shape``)."""
        shape = tuple(like.shape) if shape is None else tuple(shape)
        stack = self.free.get((shape, like.dtype, like.device))
        return stack.pop() if stack else torch.empty(shape, dtype=like.dtype, device=like.device)

    def give(self, *tensors: torch.Tensor | None) -> None:
        """Return arrays nobody else references (contiguous ones only)."""
        for t in tensors:
            if t is not None and t.is_contiguous() and t._base is None:
                stack = self.free.setdefault((tuple(t.shape), t.dtype, t.device), [])
                if len(stack) < self.keep:
                    stack.append(t)


class Context(Protocol):
    """What an op learns from the engine about the block it runs on."""

    per_layer: bool
    want_ntk: bool
    pool: BufferPool

    def variances(self, op: Op, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Sigma_{ii}(x, x) of the rows and columns at ``op``'s input, shaped to broadcast
        against ``state.sigma``."""

    def record(self, tensor: torch.Tensor, group: str, mode: Mode, dims: int) -> None:
        """Keep an intermediate kernel (per-layer runs)."""


class Law(enum.Enum):
    """What the limit knows of an op's output over the random init; the maps of nonlinear
    activations and layer norms hold for GAUSSIAN inputs only (the value says what a refusal
    names)."""

    INPUT = "the raw input"  # deterministic, of the input's finite width
    GAUSSIAN = "zero-mean Gaussian"  # a linear image of weighted layers' outputs
    ACTIVATED = "an activation's output, or a sum with one"  # wide and random, not Gaussian
    INPUT_SUM = ("the raw input plus a random branch, or a layer after that sum: it keeps the "
                 "input's finite width, so its covariance stays random")


class Op:
    """One kernel map. ``shape_in``/``shape_out`` are set when it is built, ``index`` by the
    engine. ``need(mode_out)`` is the least mode its input must be tracked in."""

    name: str = ""
    shape_in: Shape
    shape_out: Shape
    index: int = -1
    mode_in: Mode = Mode.FLAT  # the mode the engine runs it in, set by branch_need

    def law_out(self, law_in: Law) -> Law:
        """The output's :class:`Law` given the input's (a linear map keeps it); an op whose map
        needs GAUSSIAN inputs (a nonlinear activation, layer norm) raises when they are not."""
        return law_in

    def need(self, mode_out: Mode) -> Mode:
        return mode_out

    def apply(self, state: State, context: Context) -> State:
        raise NotImplementedError

    def children(self) -> list[list[Op]]:
        """Nested op sequences (branches of a sum)."""
        return []


@dataclass
class Builder:
    """What turning a model into ops needs besides the module: the stds and parametrization
    of plain torch layers, and the weighted modules and parameters seen so far (a module used
    twice, or a parameter held by two layers, shares weights, which the limit does not
    cover)."""

    weight_std: float | dict[str, float | None] | None = None
    bias_std: float | dict[str, float] = 0.0
    finite_ntk: bool = True
    seen: set[int] = field(default_factory=set)
    owners: dict[int, str] = field(default_factory=dict)  # parameter id -> its layer's name
    asked: set[str] = field(default_factory=set)

    def std(self, spec: object, name: str, default: float | None = None) -> object:
        """The std of the torch layer ``name`` from one value or a dict by layer name (a layer
        the dict does not name gets ``default``, the argument's own default)."""
        self.asked.add(name)
        return spec.get(name, default) if isinstance(spec, dict) else spec

    def check_names(self) -> None:
        """Refuse dict keys that name no plain torch weighted layer (a typo would otherwise
        silently fall back to the default)."""
        for what, spec in (("weight_std", self.weight_std), ("bias_std", self.bias_std)):
            unknown = sorted(set(spec) - self.asked) if isinstance(spec, dict) else []
            if unknown:
                known = ", ".join(repr(n) for n in sorted(self.asked)) or "none"
                raise WidenetError(f"{what} names {', '.join(map(repr, unknown))}, which are "
                                   f"not torch weighted layers of the model (those are: {known})")

    def claim(self, module: nn.Module, name: str) -> None:
        if id(module) in self.seen:
            raise WidenetError(f"module {name!r} is used twice (shared weights); the "
                               "infinite-width limit covers nets whose layers have their own "
                               "weights")
        self.seen.add(id(module))
        for parameter_name, parameter in module.named_parameters(recurse=False):
            owner = self.owners.setdefault(id(parameter), name)
            if owner != name:
                raise WidenetError(f"{child_name(name, parameter_name)} is also a parameter "
                                   f"of {owner!r} (tied weights); the infinite-width limit "
                                   "covers nets whose layers have their own weights")


def _supported() -> str:
    return ", ".join(sorted({cls.__module__.split(".")[0] + "." + cls.__qualname__
                             for cls in _maps.registry if cls is not object}))


def _unsupported(module: nn.Module, shape: Shape, builder: Builder, name: str
                 ) -> tuple[list[Op], Shape]:
    where = f" (at {name!r})" if name else ""
    raise WidenetError(f"infinite_kernels does not support {type(module).__name__}{where}; "
                       f"supported modules: {_supported()}")


_maps = functools.singledispatch(_unsupported)
# forward, and the methods the supported modules' forwards compute with: torch's convolutions'
# _conv_forward, widenet's weighted layers' multipliers and bias
_COMPUTING = ("forward", "_conv_forward", "_scale", "_bias_shaped")


def ops_of(module: nn.Module, shape: Shape, builder: Builder, name: str
           ) -> tuple[list[Op], Shape]:
    """The kernel ops of ``module`` (whose parameters are named ``name.*``) applied to inputs of
    ``shape``, and its output shape, from the maps registered for its class (``ops_of.register``)
    or for the nearest base class. A subclass that overrides ``forward``, or a method of
    ``_COMPUTING`` that the base class's forward computes with, computes something the base
    class's map does not describe (a residual written as a Sequential subclass, a Conv2d whose
    ``_conv_forward`` standardizes the weight), so it is refused."""
    _check_plain(module, name)
    kind = type(module)
    known = next((cls for cls in kind.__mro__ if cls in _maps.registry), object)
    overridden = next((method for method in _COMPUTING if known is not object
                       and getattr(kind, method, None) is not getattr(known, method, None)), None)
    if overridden is not None:
        where = f" (at {name!r})" if name else ""
        raise WidenetError(f"infinite_kernels does not support {kind.__name__}{where}: it "
                           f"subclasses {known.__qualname__} but overrides its {overridden}, "
                           "whose kernel map is not known; build the model from the supported "
                           f"modules: {_supported()}")
    return _maps(module, shape, builder, name)


ops_of.register = _maps.register


def _check_plain(module: nn.Module, name: str) -> None:
    """Raise for a module whose call computes with something else than its own parameters and
    input: a parametrization (``torch.nn.utils.parametrizations.weight_norm``, spectral_norm,
    orthogonal: the weight is a function of other tensors) or a forward pre-hook (the old
    ``torch.nn.utils.weight_norm`` and ``spectral_norm`` are pre-hooks; any such hook may
    change the input or the weights before the call)."""
    where = f" (at {name!r})" if name else ""
    if parametrize.is_parametrized(module):
        raise WidenetError(f"{type(module).__name__}{where} has parametrizations "
                           f"({', '.join(module.parametrizations.keys())} computed from other "
                           "tensors, e.g. weight_norm or spectral_norm), whose infinite-width "
                           "limit is not that of the plain layer; infinite_kernels needs the "
                           "plain module (torch.nn.utils.parametrize.remove_parametrizations)")
    if module._forward_pre_hooks:
        raise WidenetError(f"{type(module).__name__}{where} has forward pre-hooks (e.g. the old "
                           "torch.nn.utils.weight_norm or spectral_norm), which may change its "
                           "input or weights before each call, so its kernel map is not known; "
                           "remove them for infinite_kernels")


def child_name(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def sequence_ops(modules: list[tuple[str, nn.Module]], shape: Shape, builder: Builder
                 ) -> tuple[list[Op], Shape]:
    """The ops of modules applied one after another."""
    ops: list[Op] = []
    for name, module in modules:
        more, shape = ops_of(module, shape, builder, name)
        ops.extend(more)
    return ops, shape
