"""The audit of a model: what an empirical NTK of it needs to know, from a few probe passes.

A pass on a batch of up to ``PROBE_POINTS`` distinct points and one pass per point alone are
instrumented (``_probe``: module calls, each parameter-holding module's first input and output,
and, on the batch, where each trainable parameter is used). The audit refuses models whose
outputs are random or couple the points of a batch, and decides whether the layer-wise method is
exact for the model: every trainable parameter must belong to exactly one supported module
(nn.Linear, nn.Conv1d/2d, Dense) that is called exactly once, is the only place the parameter is
used, and whose input and output have the points as their first axis. That last property is
checked so that no coincidence of sizes can fake it: the first axis must have the batch's size
in the pass on several points and in the passes on one, and row i of the layer's input and
output in the batch must be what point i alone gives (a (2, d) tensor of prototypes, a
sequence-first (T, n, d) input, a batch taken in reverse order all fail it, whatever T and n
are). The audit also notes operations whose derivatives torch.func.vmap batches wrongly or not
at all (``UNBATCHED_OPS``), for which the Jacobian methods loop over points instead. A plain
stack (``_structure``), which has these properties by its modules' types, is audited from one
pass on one point instead (``audit_plain_stack``).

Only what autograd records counts: module calls and parameter uses made with gradient recording
off (inside torch.no_grad, e.g. LazyModel's f(x; w_0)) add no term to any reverse-mode
derivative d f / d theta, so the probe does not record them (it still refuses random or
batch-coupling modules there). The probe passes themselves run with recording on, whatever the
caller's mode.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.kernels._functional import (
    FunctionalModel,
    all_finite,
    check_model,
    check_points,
    first_line,
    rows_close,
)
from widenet.kernels._layers import (
    LAYER_KINDS,
    LayerAdapter,
    factor_sizes,
    input_reason,
    make_adapter,
    unsupported_reason,
)
from widenet.kernels._probe import ParameterUses, Record, watch
from widenet.kernels._structure import is_plain_stack


@dataclass(frozen=True)
class Audit:
    """What the probe passes revealed about a model.

    ``outputs`` is k, the number of output units per point (``output_shape`` flattened);
    ``layers`` the supported modules holding trainable parameters, in call order;
    ``layerwise_problem`` why the layer-wise method would be wrong for this model (None when it
    is exact); ``activations`` the number of scalars all recorded module calls output per point,
    and ``layer_sizes`` (T, p, q) per layer, for memory estimates; ``untracked`` the trainable
    parameters the model uses with gradient recording off (forward-mode derivatives, which
    ignore torch.no_grad, would count those uses); ``unbatched`` the operations of
    ``UNBATCHED_OPS`` the model calls; ``in_place`` says, per layer, whether the layer's input
    or output was modified in place after the layer ran (``ReLU(inplace=True)`` after it), so
    that the layer-wise pass copies them for that layer only.
    """

    outputs: int
    output_shape: tuple[int, ...]
    layers: tuple[LayerAdapter, ...]
    layerwise_problem: str | None
    activations: int
    layer_sizes: tuple[tuple[int, int, int], ...]
    untracked: tuple[str, ...] = ()
    unbatched: tuple[str, ...] = ()
    in_place: tuple[bool, ...] = ()
    singles: tuple[SinglePass, ...] = ()

    def single(self, point: torch.Tensor) -> SinglePass | None:
        """The probe's pass on ``point`` alone (the same bits: values and signs of zeros), or
        None when no probe point is that point."""
        for run in self.singles:
            if (run.point.shape == point.shape and torch.equal(run.point, point)
                    and torch.equal(run.point.signbit(), point.signbit())):
                return run
        return None


@dataclass(frozen=True)
class SinglePass:
    """What the probe's pass on one of its points alone gave: the point, the model's output
    (1, k), and the (input, output) of each layer's call, in the order of ``Audit.layers``."""

    point: torch.Tensor
    output: torch.Tensor
    calls: tuple[tuple[torch.Tensor, torch.Tensor], ...]


# torch functions whose derivatives vmap batches wrongly or not at all (torch 2.x): prelu's are
# silently wrong when the batch has as many points as the model has outputs, cdist's when jacrev
# batches the output units (a few per cent off); the recurrent ones raise. Matched by name, so
# that functional calls count as much as nn.PReLU, nn.LSTM, nn.GRU.
UNBATCHED_OPS = frozenset({"prelu", "cdist", "lstm", "gru", "rnn_tanh", "rnn_relu"})
PROBE_POINTS = 3  # distinct points in the probe batch; the passes on single points have 1


def audit(fmodel: FunctionalModel, probe: torch.Tensor) -> Audit:
    """Run the model on the batch ``probe`` and on each of its points alone, and audit it."""
    paths, trainable = _names(fmodel)
    owners = _owners(paths, trainable)
    candidates = {module for modules in owners.values() for module in modules}
    record = Record(probe.shape[0], paths, candidates)
    alone = [Record(1, paths, candidates) for _ in range(probe.shape[0])]
    raw = _probe_pass(fmodel, probe.detach(), record, uses=True)
    _check_no_cached_parameters(fmodel, raw)
    out = raw.reshape(probe.shape[0], -1)
    if out.shape[1] == 0:
        raise WidenetError(f"the model returns no output units per point (output shape "
                           f"{tuple(raw.shape)}), so its NTK is empty; give it at least one "
                           "output")
    outs = [_one_point(_probe_pass(fmodel, probe[i:i + 1], single, batch=False), out.shape[1])
            for i, single in enumerate(alone)]
    _check_independent(out, torch.cat(outs))
    problem = _layerwise_problem(fmodel, owners, record, alone)
    holders = {modules[0] for modules in owners.values()} if problem is None else set()
    layers = tuple(make_adapter(record.paths[m], m, trainable)
                   for m in record.call_order if m in holders)
    sizes = tuple(factor_sizes(layer, *record.first_call[layer.module]) for layer in layers)
    singles = tuple(SinglePass(probe[i], o.detach(),
                               tuple(run.first_call[layer.module] for layer in layers))
                    for i, (o, run) in enumerate(zip(outs, alone, strict=True))) if layers else ()
    return Audit(out.shape[1], tuple(raw.shape[1:]), layers, problem,
                 record.activations // probe.shape[0], sizes,
                 tuple(name for name in fmodel.params if name in record.untracked),
                 tuple(sorted(record.unbatched)),
                 tuple(record.modified_in_place(layer.module) for layer in layers), singles)


def audit_plain_stack(fmodel: FunctionalModel, point: torch.Tensor) -> Audit | None:
    """The audit of a plain stack (``_structure``), whose points are mapped each on its own and
    whose parameters are each used in one layer by construction: one instrumented pass on
    ``point`` (1, ...) gives the output's shape, the layers' sizes and in-place changes, and is
    kept as the pass on that point alone. None when that pass shows anything the construction
    does not promise (then the full audit decides): no output, a non-finite one, one that
    requires grad (the model reaches a tensor computed from a parameter before the call: the
    copies in the slots and the point do not require grad), or a layer, frozen ones included,
    whose call does not have the point as its first axis (a convolution on an unbatched
    input)."""
    paths, trainable = _names(fmodel)
    holders = {modules[0] for modules in _owners(paths, trainable).values()}
    stack_layers = {module for module in paths if type(module) in LAYER_KINDS}  # holders too
    record = Record(1, paths, stack_layers)
    raw = _probe_pass(fmodel, point.detach(), record)
    out = raw.reshape(1, -1)
    if (out.shape[1] == 0 or raw.requires_grad or not all_finite(out)
            or any(_module_problem(module, record, []) is not None for module in stack_layers)):
        return None
    layers = tuple(make_adapter(record.paths[m], m, trainable)
                   for m in record.call_order if m in holders)
    calls = tuple(record.first_call[layer.module] for layer in layers)
    return Audit(out.shape[1], tuple(raw.shape[1:]), layers, None, record.activations,
                 tuple(factor_sizes(layer, *call) for layer, call in zip(layers, calls,
                                                                         strict=True)),
                 in_place=tuple(record.modified_in_place(layer.module) for layer in layers),
                 singles=(SinglePass(point[0], out.detach(), calls),))


def _names(fmodel: FunctionalModel) -> tuple[dict[nn.Module, str], dict[int, str]]:
    """The paths of the model's modules (the model itself named by its type) and the names of
    its trainable parameters by their ids."""
    model = fmodel.module
    paths = {module: path or type(model).__name__ for module, path in fmodel.paths.items()}
    return paths, {id(p): name for name, p in model.named_parameters() if p.requires_grad}


def _probe_pass(fmodel: FunctionalModel, x: torch.Tensor, record: Record, *,
                uses: bool = False, batch: bool = True) -> torch.Tensor:
    """The output of the model (with its parameters, fresh buffers) on ``x`` (with ``batch``,
    checked to be one (n, ...) tensor), filling ``record``; ``uses``: also record where each
    trainable parameter is used."""
    watch_uses = (ParameterUses(fmodel.params, record, UNBATCHED_OPS) if uses
                  else contextlib.nullcontext())
    try:
        with (torch.enable_grad(), fmodel.applied(fmodel.params) as module, watch(record),
              watch_uses):
            raw = module(x.clone())  # a model may write to its input (see FunctionalModel.raw)
    except WidenetError:  # the probe's own refusals (a ValueError too) say what they refuse
        raise
    except (RuntimeError, IndexError, TypeError, ValueError) as error:
        raise WidenetError(f"the model cannot be applied to {x.shape[0]} point(s) of shape "
                           f"{tuple(x.shape[1:])}: {first_line(error)}"
                           f"{_dtype_hint(fmodel, x) if 'type' in str(error) else ''}") from error
    if batch:
        _check_output(raw, x.shape[0])
    return raw


def _check_no_cached_parameters(fmodel: FunctionalModel, raw: torch.Tensor) -> None:
    """Raise if the output of a pass on detached points reaches one of the model's own trainable
    parameters through autograd: the copies in the slots do not require grad, so the model uses
    a tensor computed from the parameter before the call (``self.w_t = self.w.t()`` in
    ``__init__``), whose share of the kernel every method would miss."""
    if not raw.requires_grad:
        return
    own = [(name, p) for name, p in fmodel.module.named_parameters() if p.requires_grad]
    try:  # the graph is kept: parts of it may be the user's; the caller may be in no_grad
        with torch.enable_grad():
            grads = torch.autograd.grad(raw.sum(), [p for _, p in own], retain_graph=True,
                                        allow_unused=True)
    except RuntimeError:  # a model autograd cannot differentiate: the methods say so
        return
    for (name, _), grad in zip(own, grads, strict=True):
        if grad is not None:
            raise WidenetError(f"the model's output depends on parameter {name!r} through a "
                               "tensor computed from it before the call (a view or copy kept "
                               "as an attribute, e.g. self.w_t = self.w.t() in __init__), which "
                               "the kernel cannot follow; compute that tensor in forward")


def _dtype_hint(fmodel: FunctionalModel, x: torch.Tensor) -> str:
    """For a dtype error of a model whose parameters have another floating dtype than the points:
    that it is evaluated in the points' dtype (a forward that casts to its own, ``x.float()``,
    fails)."""
    own = {p.dtype for p in fmodel.module.parameters() if p.is_floating_point()} - {x.dtype}
    if not own:
        return ""
    return (f" (the model is evaluated in the points' dtype, {x.dtype}, not its own, "
            f"{min(own, key=str)}; if its forward casts to that, pass points of that dtype)")


def _one_point(raw: object, k: int) -> torch.Tensor:
    """The output of a pass on one point as a (1, k) row; any shape holding k values will do
    (``f(x).squeeze()`` returns a scalar for one point)."""
    if not isinstance(raw, torch.Tensor) or not raw.is_floating_point() or raw.numel() != k:
        got = (f"{raw.dtype} tensor of shape {tuple(raw.shape)}" if isinstance(raw, torch.Tensor)
               else type(raw).__name__)
        raise WidenetError(f"for one point the model returned a {got}, not the {k} "
                           "floating-point outputs per point it returns for a batch")
    return raw.reshape(1, k)


def _check_output(out: object, batch: int) -> None:
    """Raise unless the model returned one floating-point tensor with the batch as first axis."""
    if (not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != batch
            or not out.is_floating_point()):
        got = (f"{out.dtype} tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
               else type(out).__name__)
        raise WidenetError(f"the model must map a batch of n points to one floating-point tensor "
                           f"of shape (n, ...); for {batch} points it returned a {got}")


def _check_independent(out: torch.Tensor, alone: torch.Tensor) -> None:
    """Raise unless the model maps each point on its own: the outputs of the batch, ``out``, are
    the outputs of the points one by one, ``alone`` (to ``_close``'s tolerance), all finite."""
    if not all_finite(alone):
        raise WidenetError("the model's output is NaN or inf at some of the points, so its "
                           "derivatives there are not defined; check the model at these points "
                           "(or rescale them)")
    if not _close(out, alone):
        raise WidenetError("the model's output for one point depends on the other points of the "
                           "batch (or is random), so the per-point Jacobian and the NTK are not "
                           "defined; put batch-dependent or random layers in eval mode "
                           "(model.eval()) or remove them")


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """|a - b| <= sqrt(machine epsilon) (1 + max |a|, |b|) everywhere (same shapes): the whole
    tensors as one row of :func:`rows_close`."""
    return bool(rows_close([(a.reshape(1, -1), b.reshape(1, -1))])[0, 0])


def _owners(modules: Iterable[nn.Module],
            trainable: dict[int, str]) -> dict[str, list[nn.Module]]:
    """name -> the modules of ``modules`` that register that trainable parameter (more than one:
    it is shared); ``trainable`` names the parameters by their ids."""
    owners = defaultdict(list)
    for module in modules:
        for name in dict.fromkeys(trainable[id(p)] for p in module._parameters.values()
                                  if id(p) in trainable):
            owners[name].append(module)
    return owners


def _layerwise_problem(fmodel: FunctionalModel, owners: dict[str, list[nn.Module]],
                       record: Record, alone: list[Record]) -> str | None:
    """Why the layer-wise method would be wrong for this model, or None when it is exact."""
    # the checks of each module, which its weight and bias share: its kind, calls and shapes,
    # then, for all the modules that pass those at once, its rows
    modules = dict.fromkeys(modules[0] for modules in owners.values() if len(modules) == 1)
    problems = {module: _module_problem(module, record, alone) for module in modules}
    problems |= _row_problems([module for module in modules if problems[module] is None],
                              record, alone)
    for name in fmodel.params:
        if len(owners[name]) > 1:
            return f"parameter {name!r} is shared by several modules (weight sharing)"
        module = owners[name][0]
        path = record.paths[module]
        reason = problems[module]
        if reason is not None:
            return f"parameter {name!r} belongs to {path}, and {reason}"
        if record.uses[name] - {module}:
            return f"parameter {name!r} is used outside {path}.forward"
    return None


def _module_problem(module: nn.Module, record: Record, alone: list[Record]) -> str | None:
    """Why the parameters of ``module`` cannot be handled layer-wise, as far as its kind, its
    calls and the shapes of their inputs tell (its rows: ``_row_problems``), or None."""
    reason = unsupported_reason(module)
    if reason is not None:
        return reason
    for run in (record, *alone):
        if run.calls[module] != 1:
            return (f"it is called {run.calls[module]} times in one forward pass on "
                    f"{run.batch} point(s) with gradient recording on (the layer-wise method "
                    "needs exactly one such call)")
    if module._forward_hooks or module._forward_pre_hooks:
        return "it has forward hooks of its own, which may change its input or output"
    for run in (record, *alone):
        if module not in run.first_call:
            return "it is not called with a tensor as its first positional argument"
        reason = input_reason(module, *run.first_call[module], run.batch)
        if reason is not None:
            return reason
    return None


def _row_problems(modules: list[nn.Module], record: Record,
                  alone: list[Record]) -> dict[nn.Module, str | None]:
    """Why the rows of each module's input a and output z on the batch are not its calls on
    the points alone (``alone[i]`` for point i), or None: the first axis must follow the points.
    The modules' calls, with the batch as first axis, are compared all at once."""
    problems: dict[nn.Module, str | None] = {}
    pairs = []
    for module in modules:
        a, z = record.first_call[module]
        singles = [run.first_call[module] for run in alone]
        odd = [a_i for a_i, z_i in singles
               if a_i.shape[1:] != a.shape[1:] or z_i.shape[1:] != z.shape[1:]]
        if odd:
            problems[module] = (f"its input has shape {tuple(a.shape)} for {a.shape[0]} points "
                                f"but {tuple(odd[0].shape)} for one, so its first axis is not "
                                "the points")
        else:
            pairs += [(a, torch.cat([a_i for a_i, _ in singles])),
                      (z, torch.cat([z_i for _, z_i in singles]))]
    if not pairs:
        return problems
    compared = [module for module in modules if module not in problems]
    close = rows_close(pairs).reshape(len(compared), 2, -1).all(1).tolist()  # input and output
    for module, rows in zip(compared, close, strict=True):
        i = rows.index(False) if False in rows else None
        problems[module] = None if i is None else (
            f"row {i} of its input or output for {len(rows)} points is not what point {i} alone "
            "gives, so its first axis does not follow the points")
    return problems


def prepare(model: object, x1: object, x2: object = None,
            names: tuple[str, str] = ("x1", "x2")) -> tuple[FunctionalModel, Audit]:
    """Validate a model and its data (named ``names`` in messages), then audit the model.

    The probe is the first PROBE_POINTS distinct points of x1 and x2 (see ``probe_points``);
    a plain stack is audited from its pass on the last point of x1 alone when that pass shows
    nothing its construction does not promise (``audit_plain_stack``).
    """
    model = check_model(model)
    x1 = check_points(x1, names[0])
    if x2 is not None:
        check_points(x2, names[1], like=(x1, names[0]))
    fmodel = FunctionalModel(model, x1)
    found = audit_plain_stack(fmodel, x1[-1:]) if is_plain_stack(model, x1) else None
    if found is not None:
        return fmodel, found
    return fmodel, audit(fmodel, probe_points(x1) if x2 is None else probe_points(x1, x2))


def probe_points(*xs: torch.Tensor) -> torch.Tensor:
    """The first PROBE_POINTS pairwise distinct points of the last point of each tensor of
    ``xs``, then of the tensors in turn (as many as there are, and the one point twice when all
    are equal), so that the probe can tell a layer's rows apart and a coupling between the
    points of a batch shows. With fewer distinct points, a permutation of equal points in the
    data cannot change the kernel either. The last points come first because a batch of all
    the points ends with them: the guard behind the probe then finds its pass on that point
    alone already made (``Audit.single``)."""
    sources = [x[-1:] for x in xs] + list(xs)
    head = torch.cat([x[:PROBE_POINTS] for x in sources[:PROBE_POINTS]])[:PROBE_POINTS]
    flat = head.reshape(head.shape[0], -1)
    pairs = PROBE_POINTS * (PROBE_POINTS - 1)
    if head.shape[0] == PROBE_POINTS and int((flat[:, None] != flat[None]).any(-1).sum()) == pairs:
        return head  # the usual case: the last points and the first ones are distinct
    chosen = [sources[0][0]]
    for x in sources:
        flat = x.reshape(x.shape[0], -1)
        start = 0  # the rows before ``start`` equal a chosen point
        while len(chosen) < PROBE_POINTS and start < x.shape[0]:
            first = _first_new_row(flat, start, chosen)
            if first is None:
                break
            chosen.append(x[first])
            start = first + 1
    return torch.stack(chosen if len(chosen) > 1 else chosen * 2)


def _first_new_row(flat: torch.Tensor, start: int, chosen: list[torch.Tensor]) -> int | None:
    """The first row from ``start`` on that differs from every chosen point, or None; the rows
    are searched in windows that double, so that distinct leading rows are found at once."""
    window = PROBE_POINTS
    while start < flat.shape[0]:
        rows = flat[start:start + window]
        differs = torch.ones(rows.shape[0], dtype=torch.bool, device=flat.device)
        for point in chosen:
            differs &= (rows != point.reshape(-1)).any(1)
        found = differs.nonzero()
        if found.numel():
            return start + int(found[0])
        start, window = start + window, 2 * window
    return None
