"""One instrumented forward pass that tells what an empirical NTK of a model needs to know.

It counts module calls (forward hooks), records which module each trainable parameter is used
in (a torch-function mode that watches the parameter tensors), refuses models whose outputs are
random or couple the points of a batch, and decides whether the layer-wise method is exact for
the model: every trainable parameter must belong to exactly one supported module (nn.Linear,
nn.Conv1d/2d, Dense) that is called exactly once and is the only place the parameter is used.

Only what autograd records counts: module calls and parameter uses made with gradient recording
off (inside torch.no_grad, e.g. LazyModel's f(x; w_0)) add no term to any reverse-mode
derivative d f / d theta, so the audit ignores them (it still refuses random or batch-coupling
modules there). The probe pass itself runs with recording on, whatever the caller's mode.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from widenet.errors import WidenetError
from widenet.kernels._functional import FunctionalModel, check_model, check_points
from widenet.kernels._layers import (
    LayerAdapter,
    factor_sizes,
    input_reason,
    make_adapter,
    unsupported_reason,
)


@dataclass(frozen=True)
class Audit:
    """What one probe forward pass revealed about a model.

    ``outputs`` is k, the number of output units per point (``output_shape`` flattened);
    ``layers`` the supported modules holding trainable parameters, in call order;
    ``layerwise_problem`` why the layer-wise method would be wrong for this model (None when it
    is exact); ``activations`` the number of scalars all recorded module calls output per point,
    and ``layer_sizes`` (T, p, q) per layer, for memory estimates; ``untracked`` the trainable
    parameters the model uses with gradient recording off (forward-mode derivatives, which
    ignore torch.no_grad, would count those uses).
    """

    outputs: int
    output_shape: tuple[int, ...]
    layers: tuple[LayerAdapter, ...]
    layerwise_problem: str | None
    activations: int
    layer_sizes: tuple[tuple[int, int, int], ...]
    untracked: tuple[str, ...] = ()


def audit(fmodel: FunctionalModel, probe: torch.Tensor) -> Audit:
    """Run the model once on ``probe`` (two points when possible) and audit it."""
    model = fmodel.module
    record = _Record(batch=probe.shape[0])
    try:
        with torch.enable_grad(), _watch(model, record), _ParameterUses(fmodel.params, record):
            raw = fmodel.raw(fmodel.params, probe)
    except RuntimeError as error:
        raise WidenetError(f"the model cannot be applied to points of shape "
                           f"{tuple(probe.shape[1:])}: {error}") from error
    _check_output(raw, probe.shape[0])
    out = raw.reshape(probe.shape[0], -1)
    _check_independent(fmodel, probe, out)
    trainable = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    owners = _owners(model, trainable)
    problem = _layerwise_problem(fmodel, owners, record)
    holders = {modules[0] for modules in owners.values()} if problem is None else set()
    layers = tuple(make_adapter(record.paths[m], m, trainable)
                   for m in record.call_order if m in holders)
    sizes = tuple(factor_sizes(layer, *record.first_call[layer.module]) for layer in layers)
    return Audit(out.shape[1], tuple(raw.shape[1:]), layers, problem,
                 record.activations // probe.shape[0], sizes,
                 tuple(name for name in fmodel.params if name in record.untracked))


@dataclass
class _Record:
    """Bookkeeping of the probe pass: calls per module, the module stack, parameter uses.

    ``calls``, ``call_order``, ``first_call`` and ``activations`` cover the recorded calls (made
    with gradient recording on); ``stack`` holds (module, recorded) for every call in progress.
    """

    batch: int
    calls: Counter = field(default_factory=Counter)
    call_order: list[nn.Module] = field(default_factory=list)
    paths: dict[nn.Module, str] = field(default_factory=dict)
    stack: list[tuple[nn.Module, bool]] = field(default_factory=list)
    uses: defaultdict = field(default_factory=lambda: defaultdict(set))
    untracked: set[str] = field(default_factory=set)
    first_call: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    activations: int = 0


@contextlib.contextmanager
def _watch(model: nn.Module, record: _Record) -> Iterator[None]:
    """Forward hooks on every submodule that fill ``record``; removed on exit."""
    handles = []
    for path, module in model.named_modules():
        record.paths[module] = path or type(model).__name__
        handles.append(module.register_forward_pre_hook(_enter(record)))
        handles.append(module.register_forward_hook(_leave(record)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _enter(record: _Record):
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


def _leave(record: _Record):
    """A hook: pop the stack; for a recorded call, count output scalars and keep the module's
    first recorded (input, output)."""
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        _, recorded = record.stack.pop()
        if not recorded:
            return
        record.activations += sum(t.numel() for t in tree_leaves(output)
                                  if isinstance(t, torch.Tensor))
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            record.first_call.setdefault(module, (args[0].detach(), output.detach()))
    return hook


class _ParameterUses(TorchFunctionMode):
    """Records, for each trainable parameter, the innermost modules whose forward used it with
    gradient recording on, and which parameters were used with it off."""

    def __init__(self, params: dict[str, torch.Tensor], record: _Record):
        super().__init__()
        self.names = {id(t): name for name, t in params.items()}
        self.record = record

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        recording = torch.is_grad_enabled()
        for leaf in tree_leaves((args, kwargs)):
            name = self.names.get(id(leaf))
            if name is None:
                continue
            if not recording:
                self.record.untracked.add(name)
            elif self.record.stack:
                self.record.uses[name].add(self.record.stack[-1][0])
        return func(*args, **kwargs)


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


def _check_output(out: object, batch: int) -> None:
    """Raise unless the model returned one floating-point tensor with the batch as first axis."""
    if (not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != batch
            or not out.is_floating_point()):
        got = (f"{out.dtype} tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
               else type(out).__name__)
        raise WidenetError(f"the model must map a batch of n points to one floating-point tensor "
                           f"of shape (n, ...); for {batch} points it returned a {got}")


def _check_independent(fmodel: FunctionalModel, probe: torch.Tensor, out: torch.Tensor) -> None:
    """Raise unless the model maps each point on its own (outputs of a batch = outputs one by one).

    The tolerance is sqrt(machine epsilon) relative to the largest output.
    """
    if probe.shape[0] < 2:
        return
    with torch.no_grad():
        alone = torch.cat([fmodel(fmodel.params, probe[i:i + 1]) for i in range(probe.shape[0])])
    tolerance = math.sqrt(torch.finfo(out.dtype).eps) * (1.0 + float(out.detach().abs().max()))
    if float((alone - out.detach()).abs().max()) > tolerance:
        raise WidenetError("the model's output for one point depends on the other points of the "
                           "batch, so the per-point Jacobian and the NTK are not defined; put "
                           "batch-dependent layers in eval mode (model.eval()) or remove them")


def _owners(model: nn.Module, trainable: dict[int, str]) -> dict[str, list[nn.Module]]:
    """name -> the modules that register that trainable parameter (more than one: it is shared)."""
    owners = defaultdict(list)
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if id(p) in trainable:
                owners[trainable[id(p)]].append(module)
    return owners


def _layerwise_problem(fmodel: FunctionalModel, owners: dict[str, list[nn.Module]],
                       record: _Record) -> str | None:
    """Why the layer-wise method would be wrong for this model, or None when it is exact."""
    for name in fmodel.params:
        if len(owners[name]) > 1:
            return f"parameter {name!r} is shared by several modules (weight sharing)"
        module = owners[name][0]
        path = record.paths[module]
        reason = _module_problem(module, record)
        if reason is not None:
            return f"parameter {name!r} belongs to {path}, and {reason}"
        if record.uses[name] - {module}:
            return f"parameter {name!r} is used outside {path}.forward"
    return None


def _module_problem(module: nn.Module, record: _Record) -> str | None:
    """Why the parameters of ``module`` cannot be handled layer-wise, or None."""
    reason = unsupported_reason(module)
    if reason is not None:
        return reason
    if record.calls[module] != 1:
        return (f"it is called {record.calls[module]} times in one forward pass with gradient "
                "recording on (the layer-wise method needs exactly one such call)")
    if module._forward_hooks:
        return "it has forward hooks of its own, which may change its output"
    call = record.first_call.get(module)
    if call is None:
        return "it is not called with a tensor as its first positional argument"
    return input_reason(module, *call, record.batch)


def prepare(model: object, x1: object, x2: object = None,
            names: tuple[str, str] = ("x1", "x2")) -> tuple[FunctionalModel, Audit]:
    """Validate a model and its data (named ``names`` in messages), then audit the model.

    The probe is two points of x1 (one of x1 and one of x2 when x1 has a single point), so
    that a coupling between the points of a batch shows.
    """
    model = check_model(model)
    x1 = check_points(x1, names[0])
    if x2 is not None:
        check_points(x2, names[1], like=(x1, names[0]))
    fmodel = FunctionalModel(model, x1)
    probe = x1[:2] if x1.shape[0] > 1 or x2 is None else torch.cat([x1, x2[:1]])
    return fmodel, audit(fmodel, probe)
