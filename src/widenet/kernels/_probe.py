"""Instrumented forward passes that record module calls and parameter uses.

``watch(record)`` installs forward hooks on every module at once: each call of one of the
model's modules is counted, in order, with the number of scalars it outputs, and the input and
output of the first call of each module of ``record.holders`` (those that register trainable
parameters; in a plain stack, every layer) are kept: copies, and the tensors themselves with
their version counters, so that a later in-place change shows. ``ParameterUses`` is a
torch-function mode that records in which module's forward each trainable parameter is used,
which parameters are used with gradient recording off, and which of a given set of operations
are called. Module calls made with recording off (under torch.no_grad) are not counted: they
add nothing to reverse-mode derivatives. Modules whose outputs couple the points of a batch
or are random (BatchNorm in training mode or without running statistics, dropout in training
mode) are refused wherever they are called.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from widenet.errors import WidenetError


@dataclass
class Record:
    """Bookkeeping of one instrumented pass on ``batch`` points: calls per module, the module
    stack, parameter uses; ``paths`` names the model's modules (the others are not watched).

    ``calls``, ``call_order``, ``first_call`` and ``activations`` cover the recorded calls (made
    with gradient recording on); ``stack`` holds (module, recorded) for every call in progress;
    ``first_call`` (copies) and ``versions`` (the tensors themselves, with their version
    counters, which in-place operations advance) keep the input and output of the first
    recorded call of each module in ``holders``, those that register trainable parameters (in
    a plain stack, every layer).
    """

    batch: int
    paths: dict[nn.Module, str]
    holders: set[nn.Module]
    calls: Counter = field(default_factory=Counter)
    call_order: list[nn.Module] = field(default_factory=list)
    stack: list[tuple[nn.Module, bool]] = field(default_factory=list)
    uses: defaultdict = field(default_factory=lambda: defaultdict(set))
    untracked: set[str] = field(default_factory=set)
    unbatched: set[str] = field(default_factory=set)
    first_call: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    versions: dict[nn.Module, tuple[torch.Tensor, torch.Tensor, int, int]] = field(
        default_factory=dict)
    activations: int = 0

    def modified_in_place(self, module: nn.Module) -> bool:
        """Whether the input or output of ``module``'s first recorded call changed in place
        after the call (to be asked once the pass is over)."""
        a, z, a_version, z_version = self.versions[module]
        return a._version != a_version or z._version != z_version


@contextlib.contextmanager
def watch(record: Record) -> Iterator[None]:
    """Forward hooks that fill ``record`` from the calls of the modules of ``record.paths`` (the
    model and its submodules); removed on exit. They are registered for all modules at once, two
    registrations instead of two per module, and skip modules that are not the model's."""
    enter, leave = _enter(record), _leave(record)
    handles = [register_module_forward_pre_hook(
                   lambda module, args: enter(module, args) if module in record.paths else None),
               register_module_forward_hook(
                   lambda module, args, output: leave(module, args, output)
                   if module in record.paths else None)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _enter(record: Record):
    """A pre-hook: refuse batch-coupling or random modules, count a recorded call, push."""
    def hook(module: nn.Module, args: tuple) -> None:
        _refuse_batch_coupling_or_randomness(module, record.paths[module])
        recorded = torch.is_grad_enabled()
        if recorded:
            record.calls[module] += 1
            if record.calls[module] == 1:
                record.call_order.append(module)
        record.stack.append((module, recorded))
    return hook


def _leave(record: Record):
    """A hook: pop the stack; for a recorded call, count output scalars and keep a holder's
    first recorded (input, output). Its own tensor operations are hidden from torch-function
    modes (``ParameterUses``): they are bookkeeping, not uses by the model."""
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        _, recorded = record.stack.pop()
        if not recorded:
            return
        with torch._C.DisableTorchFunction():
            record.activations += sum(t.numel() for t in _leaves(output)
                                      if isinstance(t, torch.Tensor))
            if (module in record.holders and args and isinstance(args[0], torch.Tensor)
                    and isinstance(output, torch.Tensor) and module not in record.first_call):
                record.first_call[module] = (args[0].detach().clone(), output.detach().clone())
                record.versions[module] = (args[0], output, args[0]._version, output._version)
    return hook


class ParameterUses(TorchFunctionMode):
    """Records, for each trainable parameter of ``params`` (name -> the tensor the model uses),
    the innermost modules whose forward used it with gradient recording on (None: outside every
    module's forward, e.g. in a pre-hook of the model itself), which parameters were used with
    it off, and which torch functions named in ``ops`` were called (into ``record.unbatched``)."""

    def __init__(self, params: dict[str, torch.Tensor], record: Record, ops: frozenset[str]):
        super().__init__()
        self.names = {id(t): name for name, t in params.items()}
        self.record = record
        self.ops = ops

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in self.ops:
            self.record.unbatched.add(func.__name__)
        recording = torch.is_grad_enabled()
        for leaf in _leaves((args, kwargs)):
            name = self.names.get(id(leaf))
            if name is None:
                continue
            if not recording:
                self.record.untracked.add(name)
            else:
                self.record.uses[name].add(self.record.stack[-1][0] if self.record.stack
                                           else None)
        return func(*args, **kwargs)


def _leaves(tree: object) -> list:
    """The leaves of a pytree, as ``tree_leaves`` gives them, with plain tuples, lists and dicts
    (the arguments of nearly every torch call) walked directly: pytree's generic walk costs more
    than the small operations of a probe pass."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if type(tree) in (tuple, list):
        return [leaf for item in tree for leaf in _leaves(item)]
    if type(tree) is dict:
        return [leaf for item in tree.values() for leaf in _leaves(item)]
    return tree_leaves(tree)


def _refuse_batch_coupling_or_randomness(module: nn.Module, path: str) -> None:
    """Raise for modules that make a point's output depend on the batch or on chance."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training:
            raise WidenetError(f"{path} ({type(module).__name__}) is in training mode: its batch "
                               "statistics couple the points, so the per-point Jacobian and the "
                               "NTK are not defined; call model.eval() first")
        if not module.track_running_stats:
            raise WidenetError(f"{path} ({type(module).__name__}) has track_running_stats=False "
                               "and so normalizes with batch statistics even in eval mode, which "
                               "couples the points; use running statistics")
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
        raise WidenetError(f"{path} ({type(module).__name__}) is in training mode and makes the "
                           "network random, so its NTK is not defined; call model.eval() first")
