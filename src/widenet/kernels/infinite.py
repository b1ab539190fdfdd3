"""Exact infinite-width NNGP and NTK of any model built from supported layers, computed
blockwise (docs/theory.md sections 3 and 7; docs/architectures.md).

``infinite_kernels(model, x1, x2)`` turns the model into kernel ops (:mod:`widenet.kernels.maps`),
decides which spatial covariances to track, and lets the :mod:`engine <widenet.kernels.engine>`
fill the (n1, n2) matrices block by block under a memory budget. For an MLP this is the
recursion of section 3: Sigma^1 = sigma_w^2 <x, x'>/d + sigma_b^2, Sigma^{l+1} =
sigma_w^2 E[phi(u) phi(v)] + sigma_b^2, Theta^{l+1} = Sigma^{l+1} + sigma_w^2 E[phi'(u) phi'(v)]
Theta^l.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.kernels.engine import Engine, block_side
from widenet.kernels.maps import Builder, Mode, Plan, Shape, compile_plan
from widenet.kernels.result import Kernels
from widenet.parametrizations import Parametrization, get_parametrization
from widenet.validation import data_points, positive_int

DEFAULT_MEMORY_BUDGET = 2**30  # bytes of working memory for the blocks (outputs not counted)


@dataclass(frozen=True)
class LayerKernels:
    """Intermediate kernels kept with ``per_layer=True``, each (n1, n2, *positions) in the form
    the engine tracked it in (flat, per position, or position by position).

    sigma: the NNGP after every weighted layer, in order (for an MLP Sigma^1..Sigma^{L+1}).
    sigma_dot: at every weighted layer that follows an activation, sigma_w^2 A(Kdot) with
    Kdot = E[phi'(u) phi'(v)] of that activation and A the layer's spatial average (for an MLP
    Sigmadot^2..Sigmadot^{L+1}).
    """

    sigma: tuple[torch.Tensor, ...]
    sigma_dot: tuple[torch.Tensor, ...]


def infinite_kernels(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                     weight_std: float | dict[str, float | None] | None = None,
                     bias_std: float | dict[str, float] = 0.0,
                     parametrization: str | Parametrization = "ntk",
                     per_layer: bool = False, dtype: torch.dtype | None = None,
                     block_size: int | None = None,
                     memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Kernels:
    """The NNGP and NTK of ``model``'s infinite-width limit between the points of x1 and x2.

    ``model``: a widenet.MLP, a model of widenet.nn layers, or a torch model of supported layers
    (docs/architectures.md lists them); an unsupported module raises a WidenetError naming it.
    Only the architecture and the stds enter, never the widths or weights (a model built on
    ``device="meta"`` works); the NTK, like :func:`~widenet.empirical_ntk`, sums over the
    trainable parameters (a frozen one, ``requires_grad=False``, adds nothing to it). Inputs:
    (n, d) vectors, (n, C, L) sequences or (n, C, H, W) images. ``weight_std``, ``bias_std`` and
    ``parametrization`` apply to plain torch layers (widenet layers carry their own): one value
    for every weighted layer, or a dict from the layer's name in ``model.named_modules()`` to
    its value (a layer it does not name gets the default); ``weight_std=None`` means the
    edge-of-chaos std of the activation that follows the layer.

    Returns :class:`~widenet.kernels.result.Kernels`: ``.nngp`` and ``.ntk`` per output unit,
    (n1, n2), in the inputs' dtype (``dtype=`` overrides) and on their device; ``x2=None`` gives
    exactly symmetric matrices. ``per_layer=True`` adds ``.blocks`` (each parameter's share of
    the NTK, keyed like ``model.named_parameters()``) and ``.layers`` (:class:`LayerKernels`).
    Memory: blocks of pairs of inputs are filled under ``memory_budget`` bytes of working
    memory (a budget below what one pair needs raises, naming the minimum); ``block_size``
    fixes the side of the blocks instead.
    """
    if not isinstance(model, nn.Module):
        raise WidenetError(f"infinite_kernels needs a torch.nn.Module, got {type(model).__name__}")
    features = getattr(model, "in_features", None)
    x1 = data_points(x1, "x1", features=features).detach()
    symmetric = x2 is None
    x2 = x1 if symmetric else data_points(x2, "x2", features=features).detach()
    if x1.shape[1:] != x2.shape[1:]:
        raise WidenetError(f"x1 has points of shape {tuple(x1.shape[1:])} but x2 of shape "
                           f"{tuple(x2.shape[1:])}: expected x2 of shape (n, "
                           f"{', '.join(map(str, x1.shape[1:]))})")
    if x1.device != x2.device:
        raise WidenetError(f"x1 is on {x1.device} but x2 is on {x2.device}; move both to one "
                           "device")
    dtype = dtype or torch.promote_types(x1.dtype, x2.dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise WidenetError(f"dtype must be a floating-point torch dtype such as torch.float64, "
                           f"got {dtype!r}")
    torch_parametrization = get_parametrization(parametrization)
    if not torch_parametrization.kernel_limit:
        raise WidenetError(f"parametrization must be 'ntk' or 'standard' for plain torch "
                           f"layers, got {torch_parametrization.name!r}")
    builder = Builder(weight_std, bias_std, torch_parametrization.finite_ntk)
    plan = compile_plan(model, Shape(x1.shape[1], tuple(x1.shape[2:])), builder)
    # half types (8 or 11 significant bits) lose a few percent over a CNN's layers: spatial
    # kernels are worked in float32 at least and rounded once
    work = (torch.float64 if plan.largest_mode == Mode.FLAT
            else torch.promote_types(dtype, torch.float32))
    memory_budget = positive_int(memory_budget, "memory_budget")
    side = block_side(plan, work, memory_budget, per_layer)
    if block_size is not None:
        side = positive_int(block_size, "block_size")
    want_ntk = plan.finite_ntk
    x1 = x1.to(work)
    x2 = x1 if symmetric else x2.to(work)  # one copy of the inputs in the working dtype
    engine = Engine(plan, x1, x2, symmetric=symmetric, per_layer=per_layer,
                    want_ntk=want_ntk, block_side=side, out_dtype=dtype)
    heads, records, part_names = engine.run()
    return _assemble(model, plan, heads, records, part_names, per_layer, want_ntk)


def _assemble(model: nn.Module, plan: Plan, heads: list[torch.Tensor],
              records: dict[str, list[torch.Tensor]], part_names: list[str], per_layer: bool,
              want_ntk: bool) -> Kernels:
    nngp = heads[0]
    ntk = heads[1] if want_ntk else None
    parts = dict(zip(part_names, heads[2 if want_ntk else 1:], strict=True))
    blocks = {name: parts[name] for name, _ in model.named_parameters() if name in parts}
    layers = (LayerKernels(tuple(records["sigma"]), tuple(records["sigma_dot"]))
              if per_layer else None)
    missing = None if want_ntk else (
        "this model's parametrization has no finite infinite-width NTK (its empirical NTK "
        "grows with width); use parametrization='ntk' for the NTK. The NNGP (.nngp) is "
        "available.")
    return Kernels(nngp, ntk, blocks, plan.shape_out.features, layers=layers,
                   missing_ntk=missing)
