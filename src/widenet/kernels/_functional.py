"""A torch model as a pure function of its trainable parameters, and checks of what it is fed.

Every empirical-kernel method evaluates the user's ``nn.Module`` with detached copies of its
parameters and buffers, cast to the dtype and device of the data, swapped into the module's
parameter and buffer slots for the duration of one call (what ``torch.func.functional_call``
does, but with each slot swapped exactly once, so that a module registered under two attribute
names is restored too). The slots, and the plain tensor attributes that hooks such as
``torch.nn.utils.weight_norm`` write during a forward pass, are restored on every exit,
exceptions included: the model's own tensors, their ``.grad`` and ``requires_grad`` are never
touched, and float64 data give float64 derivatives of a float32 model.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.modules.module import _global_backward_hooks, _global_backward_pre_hooks
from torch.nn.parameter import is_lazy

from widenet.errors import WidenetError
from widenet.validation import trainable_module

T = TypeVar("T")

_KERNEL_HOOKS = ("the kernel is made of, while the NTK is that of the forward function (the "
                "layer-wise method would use the changed gradients, the others cannot run); "
                "remove them for the kernel (handle.remove())")

Params = dict[str, torch.Tensor]


class FunctionalModel:
    """f(params, x) -> (n, k): the model's outputs for n points, flattened to k units per point.

    ``params`` are the trainable parameters, keyed by their names in ``model.named_parameters()``
    (a parameter tied to several names appears once, under its first name). Frozen parameters are
    held fixed in ``constants``, buffers in ``buffers``; every pass gets fresh copies of the
    buffers, so that a forward pass updating them in place (a step counter, spectral_norm's power
    iteration in training mode) sees the model's current state every time, leaves the model's
    own untouched, and writes to a tensor made inside torch.func's transforms (which refuse
    writes to the tensors they capture).
    """

    def __init__(self, model: nn.Module, like: torch.Tensor):
        self.module = model
        parameters, buffers = list(model.named_parameters()), list(model.named_buffers())
        self.params: Params = {name: _cast(p, like) for name, p in parameters if p.requires_grad}
        self.constants: Params = {name: _cast(p, like) for name, p in parameters
                                  if not p.requires_grad}
        self.buffers: Params = {name: _cast(b, like) for name, b in buffers}
        self.paths = {module: path for path, module in model.named_modules()}
        self.slots = _slots(self.paths, parameters + buffers)
        self.sparse = [module for module in self.paths
                       if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.sparse]

    def __call__(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return self.raw(params, x).reshape(x.shape[0], -1)

    def raw(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The model's own output for the points ``x`` (shape (n, *output_shape)), fed a copy of
        them, so that a model writing to its input in place (``ReLU(inplace=True)`` first)
        changes neither the caller's points nor those of later passes (nor a tensor that
        torch.func's transforms capture, which they refuse)."""
        with self.applied(params) as module:
            return module(x.clone())

    @contextlib.contextmanager
    def applied(self, params: Params) -> Iterator[nn.Module]:
        """The module with ``params``, the constants and fresh copies of the buffers in its slots,
        for one pass (see ``substituted``), its embeddings made with ``sparse=True`` set to dense
        gradients meanwhile (the same function, whose derivatives torch.func can take; it cannot
        batch sparse gradients) and the parts compiled by ``torch.compile`` run eagerly (see
        ``_eager``)."""
        fresh = {name: b.clone() for name, b in self.buffers.items()}
        with (substituted(self.paths, self.slots, {**self.constants, **fresh, **params}),
              _eager()):
            for module in self.sparse:
                module.sparse = False
            try:
                yield self.module
            finally:
                for module in self.sparse:
                    module.sparse = True

    def numel(self) -> int:
        """P, the number of trainable scalars."""
        return sum(p.numel() for p in self.params.values())


def _eager() -> contextlib.AbstractContextManager:
    """A context in which modules and functions compiled by ``torch.compile`` run their own
    Python code, eagerly: the same function, whose passes the probe's hooks, the swapped
    parameters and torch.func's transforms can follow (dynamo fails on them). Nothing to do when
    dynamo was never imported, so nothing was compiled."""
    if "torch._dynamo.eval_frame" not in sys.modules:
        return contextlib.nullcontext()
    return torch.compiler.set_stance("force_eager")


UNBATCHABLE = (RuntimeError, NotImplementedError)  # what torch.func.vmap raises when it cannot


@contextlib.contextmanager
def unbatched(mode: str, advice: str) -> Iterator[None]:
    """Turn a failure of the model's unbatched ``mode`` derivatives into a one-line WidenetError
    ending with ``advice`` (or, for a model run through torch.utils.checkpoint, which no method
    can differentiate, saying so)."""
    try:
        yield
    except UNBATCHABLE as error:
        if isinstance(error, torch.OutOfMemoryError):
            raise
        if type(error).__name__ == "CheckpointError" or "saved tensor hooks" in str(error):
            advice = ("no method can run through torch.utils.checkpoint (or other saved-tensor "
                      "hooks); call the model without it for the kernel")
        raise WidenetError(f"torch cannot take the {mode} derivatives of this model "
                           f"({type(error).__name__}: {first_line(error)}); {advice}") from error


def check_per_point(fmodel: FunctionalModel, x: torch.Tensor, f: torch.Tensor, outs: slice,
                    advice: str) -> None:
    """Raise unless the last row of ``f``, the outputs ``outs`` (flattened) of one pass on the
    points ``x``, is what the last point alone gives (see ``check_last_point``)."""
    if x.shape[0] == 1:
        return
    with torch.no_grad():
        alone = fmodel(fmodel.params, x[-1:])[:, outs]
    check_last_point([("the model's output", f, alone)], x.shape[0], advice)


def check_last_point(pairs: list[tuple[str, torch.Tensor, torch.Tensor | None]], c: int,
                     advice: str, error: type[WidenetError] = WidenetError) -> None:
    """Raise unless, for every (what, batch, alone), the last row of ``batch``, a tensor of a pass
    on c points, is ``alone``, the same tensor of a pass on the last point alone (None: not
    made), to ``rows_close``'s tolerance, NaN equal to NaN: a guard, on every batch a method
    evaluates, behind the audit's probe on a few points, for a model that changes, reorders or
    mixes the points of larger batches. ``advice`` ends the message; ``error`` is raised."""
    made = [(batch[-1:], alone) for _, batch, alone in pairs
            if alone is not None and alone.shape == batch[-1:].shape]
    close = iter(rows_close(made, nan_equal=True)[:, 0].tolist() if made else ())
    for what, batch, alone in pairs:
        if alone is None or alone.shape != batch[-1:].shape or not next(close):
            raise error(f"{what} for the last of the {c} points of a batch is not what that "
                        "point alone gives (the model changes, reorders or mixes the points of "
                        "batches larger than the probe's), so this method does not apply to the "
                        f"model; {advice}")


def rows_close(pairs: list[tuple[torch.Tensor, torch.Tensor]], *,
               nan_equal: bool = False) -> torch.Tensor:
    """Whether, for each pair (a, b) of tensors of one shape, each row (first-axis slice) i has
    max |a_i - b_i| <= sqrt(machine epsilon of a) (1 + max |a_i|, |b_i|): a (pairs, rows)
    boolean tensor on the CPU, all pairs, which have as many rows, at once. A NaN difference is
    never close, unless ``nan_equal``: then NaN equals NaN (and an infinity the same infinity)."""
    groups: dict[tuple, list[int]] = {}  # pairs of one dtype and device are compared together
    for i, (a, b) in enumerate(pairs):
        groups.setdefault((a.dtype, b.dtype, a.device, b.device), []).append(i)
    with torch.no_grad():
        if len(groups) == 1:
            return _rows_close(pairs, nan_equal)
        close = torch.empty(len(pairs), pairs[0][0].shape[0], dtype=torch.bool)
        for indices in groups.values():
            close[indices] = _rows_close([pairs[i] for i in indices], nan_equal)
        return close


def _rows_close(pairs: list[tuple[torch.Tensor, torch.Tensor]], nan_equal: bool) -> torch.Tensor:
    """``rows_close`` for pairs of one dtype and device, their rows side by side: entries that
    all differ by at most the tolerance tol = sqrt(eps), which makes every row close, the usual
    case, are seen in three operations; otherwise the maxima of each pair's columns decide
    (moduli, for complex pairs)."""
    rows = pairs[0][0].shape[0]
    a = torch.cat([a.reshape(rows, -1) for a, _ in pairs], 1)
    b = torch.cat([b.reshape(rows, -1) for _, b in pairs], 1)
    if nan_equal:
        a, b = a.nan_to_num(), b.nan_to_num()
    tolerance = math.sqrt(torch.finfo(pairs[0][0].dtype).eps)
    if bool(((a - b).abs() <= tolerance).all()):  # abs, not abs_: complex rows too
        return torch.ones(len(pairs), rows, dtype=torch.bool)
    values = torch.stack((a - b, a, b)).abs()
    maxima = torch.stack([part.amax(2) if part.shape[2] else part.new_zeros(3, rows)
                          for part in values.split([t.numel() // rows for t, _ in pairs], 2)])
    return (maxima[:, 0] <= maxima[:, 1:].amax(1).add_(1.0).mul_(tolerance)).cpu()


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (torch's can run over many lines)."""
    return (str(error).strip().splitlines() or [""])[0]


def _slots(modules: Iterable[nn.Module],
           named: list[tuple[str, torch.Tensor]]) -> list[tuple[dict, str, str]]:
    """(tensors, attribute, name) for every parameter and buffer slot of the distinct
    ``modules``: ``tensors`` is the module's ``_parameters`` or ``_buffers``, ``name`` the
    tensor's first name in ``named``, ``named_parameters()`` then ``named_buffers()``. A tensor
    tied to several slots, or a module reachable under several paths, is one entry of the maps
    but each slot is listed (and later swapped) exactly once.
    """
    names = {id(t): name for name, t in named}
    return [(tensors, attribute, names[id(t)]) for module in modules
            for tensors in (module._parameters, module._buffers)
            for attribute, t in tensors.items() if t is not None]


@contextlib.contextmanager
def substituted(modules: Iterable[nn.Module], slots: list[tuple[dict, str, str]],
                tensors: Params) -> Iterator[None]:
    """Put ``tensors[name]`` in every slot (see ``_slots``) for the duration of the block, then
    restore the slots and the plain tensor attributes of every module of ``modules`` (as hooks
    like weight_norm's set them), always."""
    attributes = [(module, vars(module).copy()) for module in modules]
    originals = []
    try:
        for held, attribute, name in slots:
            originals.append((held, attribute, held[attribute]))
            held[attribute] = tensors[name]
        yield
    finally:
        for held, attribute, original in reversed(originals):
            held[attribute] = original
        for module, before in attributes:
            _restore_tensor_attributes(vars(module), before)


def _restore_tensor_attributes(now: dict, before: dict) -> None:
    """Make the tensor-valued entries of a module's ``__dict__`` those of its copy ``before``:
    drop tensors that were not there (or not tensors), put back the tensors that were. Nothing
    to do when the keys, in order, and every entry are still the very objects they were (checked
    without a Python loop)."""
    if list(now) == list(before) and all(map(operator.is_, now.values(), before.values())):
        return
    for key in [key for key, value in now.items() if isinstance(value, torch.Tensor)
                and not isinstance(before.get(key), torch.Tensor)]:
        del now[key]
    now.update({key: value for key, value in before.items() if isinstance(value, torch.Tensor)})


def _cast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` detached, on ``like``'s device and in its dtype when floating (a view if no change),
    copied to an ordinary tensor if it is one made in inference mode (a model built under
    torch.inference_mode), which autograd refuses to save for the derivatives."""
    dtype = like.dtype if t.is_floating_point() else t.dtype
    cast = t.detach().to(device=like.device, dtype=dtype)
    return cast.clone() if cast.is_inference() else cast


def check_model(model: object, consequence: str = "its NTK is zero",
                hooks: str = _KERNEL_HOOKS) -> nn.Module:
    """Return ``model`` if it is an nn.Module with at least one trainable parameter, tensors that
    hold values (none uninitialized or on the meta device), real trainable parameters, and no
    backward hooks (its own modules' or torch's global ones), which change the gradients that
    derivatives of the forward function are made of. ``consequence`` says what having no
    trainable parameter means for the caller, ``hooks`` (after "which change the gradients ")
    why the hooks are refused and how to remove them."""
    model = trainable_module(model, consequence)
    named = list(model.named_parameters())
    tensors = (*(p for _, p in named), *model.buffers())
    if any(map(is_lazy, tensors)):
        raise WidenetError("model has uninitialized parameters or buffers (a lazy module such as "
                           "nn.LazyLinear before its first call), which hold no values; run the "
                           "model once on a batch of points first")
    if any(t.is_meta for t in tensors):
        raise WidenetError("model has parameters or buffers on the meta device, which hold no "
                           "values; materialize them first (model.to_empty(device=...) and "
                           "initialize them, or load a state dict)")
    complex_names = [name for name, p in named if p.requires_grad and p.is_complex()]
    if complex_names:
        raise WidenetError(f"parameter {complex_names[0]!r} of the model is complex: derivatives "
                           "with respect to complex parameters (J J^T or J J^H?) are not defined "
                           "here; hold its real and imaginary parts as two real parameters, or "
                           "freeze it (requires_grad_(False))")
    hooked = [path for path, module in model.named_modules()
              if module._backward_hooks or module._backward_pre_hooks]
    if hooked or _global_backward_hooks or _global_backward_pre_hooks:
        where = ("torch has global module backward hooks (register_module_full_backward_hook "
                 "and the like)" if not hooked else
                 f"{f'module {hooked[0]} of the model' if hooked[0] else 'the model'} has "
                 "backward hooks (register_full_backward_hook and the like)")
        raise WidenetError(f"{where}, which change the gradients {hooks}")
    return model


def check_points(x: object, name: str, *,
                 like: tuple[torch.Tensor, str] | None = None) -> torch.Tensor:
    """Check that ``x`` is a finite, non-empty (n, ...) real floating-point tensor of data points.

    With ``like = (other, its name)``, also require the per-point shape, dtype and device of
    ``other``.
    """
    if not isinstance(x, torch.Tensor):
        raise WidenetError(f"{name} must be a torch.Tensor of shape (n, ...), "
                           f"got {type(x).__name__}")
    if x.is_meta:
        raise WidenetError(f"{name} is on the meta device, which holds no values; pass a tensor "
                           "on a real device")
    if x.layout != torch.strided:
        raise WidenetError(f"{name} must be a dense tensor, got layout {x.layout}; pass "
                           f"{name}.to_dense()")
    if x.ndim == 0 or x.shape[0] == 0 or x.numel() == 0:
        raise WidenetError(f"{name} must hold at least one point, shape (n, ...) with n >= 1, "
                           f"got shape {tuple(x.shape)}; reshape a single point with "
                           "x.unsqueeze(0)")
    if not x.is_floating_point():
        raise WidenetError(f"{name} must be a real floating-point tensor (the kernel takes its "
                           f"dtype), got dtype {x.dtype}; convert it with x.double() or "
                           "x.float(), and a model that takes indices (nn.Embedding) converts "
                           "them back in its forward: self.embedding(x.long())")
    if not all_finite(x):
        raise WidenetError(f"{name} contains NaN or inf values; clean or drop those points first")
    if like is not None:
        other, other_name = like
        if x.shape[1:] != other.shape[1:]:
            wanted = tuple(other.shape[1:])
            hint = f"; a single point is {name}.unsqueeze(0)" if x.ndim == 1 else ""
            raise WidenetError(f"{name} of shape {tuple(x.shape)} has points of shape "
                               f"{tuple(x.shape[1:])} but {other_name} has points of shape "
                               f"{wanted}: expected {name} of shape (n, "
                               f"{', '.join(map(str, wanted))}){hint}")
        if x.dtype != other.dtype or x.device != other.device:
            raise WidenetError(f"{name} is {x.dtype} on {x.device} but {other_name} is "
                               f"{other.dtype} on {other.device}; move both to the same dtype "
                               "and device")
    return x


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of the non-empty real tensor ``t`` is finite: its minimum and maximum
    are (a NaN is both), one reduction instead of an elementwise test."""
    return all(map(math.isfinite, torch.aminmax(t)))


def on_values(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` (a kernel of a model at some points, or a derivative of a model's loss) run
    on the values of its tensor arguments: outside ``torch.inference_mode`` (derivatives need
    autograd, which it turns off), with tensors made in that mode copied to ordinary ones (they
    neither take ``requires_grad`` nor keep the version counters the audit reads), every tensor
    argument detached, and under ``torch.no_grad`` (the passes that need recording turn it on
    themselves), so that the result is differentiable neither in them nor in tensors the model
    holds that require grad: torch.func's derivatives through a Jacobian are not exact for every
    model (LayerNorm's), and a kernel that autograd could differentiate wrongly must not be
    offered. Calls inside torch.func transforms (vmap, grad), whose tensors cannot be detached
    from them and in which autograd's own passes cannot run, are refused."""

    @functools.wraps(function)
    def outside(*args: Any, **kwargs: Any) -> T:
        if torch._C._functorch.peek_interpreter_stack() is not None:
            raise WidenetError(f"{function.__name__} cannot run inside a torch.func transform "
                               "(vmap, grad, jacrev, ...): its result is a value, not "
                               "differentiable or batchable in its arguments; call "
                               f"{function.__name__} outside the transform")
        with torch.inference_mode(False), torch.no_grad():
            return function(*(_value(value, function.__name__) for value in args),
                            **{name: _value(value, function.__name__)
                               for name, value in kwargs.items()})

    return outside


def _value(value: Any, caller: str) -> Any:
    """``value``, or, for a tensor, an ordinary detached one with its values (a copy if it was
    made in inference mode); a tensor of a torch.func transform raises, naming ``caller``."""
    if not isinstance(value, torch.Tensor):
        return value
    if torch._C._functorch.is_functorch_wrapped_tensor(value):
        raise WidenetError(f"{caller} takes values, not tensors of torch.func transforms (vmap, "
                           "grad): its result is not differentiable in its tensor arguments "
                           "(torch.func's derivatives through a Jacobian are not exact for every "
                           f"model); call {caller} outside the transform")
    return value.clone() if value.is_inference() else value.detach()

