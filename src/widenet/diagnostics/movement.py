"""How far parameters and features moved from initialization (docs/theory.md section 5).

    weight movement    ||theta_t - theta_0||_2 / ||theta_0||_2   (overall and per parameter)
    feature movement   ||H_t - H_0||_F / ||H_0||_F               (per hidden layer, on a probe set)

Arguments come in the order (current, initial), as in the formulas. All norms are computed in
float64. A relative movement whose denominator is zero (a zero-initialized bias, a layer whose
features were all zero at t = 0) is 0.0 if nothing moved and inf otherwise, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from widenet.errors import WidenetError

Parameters = nn.Module | Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class WeightMovement:
    """Movement of the parameters from theta_0 to theta_t, keyed by ``named_parameters`` names.

    relative = ||theta_t - theta_0|| / ||theta_0||, absolute = ||theta_t - theta_0|| (2-norms of
    all parameters together); per_parameter_relative[name] = ||p_t - p_0||_F / ||p_0||_F and
    per_parameter_absolute[name] = ||p_t - p_0||_F for each parameter p.
    """

    relative: float
    absolute: float
    per_parameter_relative: dict[str, float]
    per_parameter_absolute: dict[str, float]


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0 / 0 = 0 and x / 0 = inf for x > 0."""
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else math.inf
    return numerator / denominator


def _difference_norms(current: torch.Tensor, initial: torch.Tensor,
                      name: str) -> tuple[float, float]:
    """(||current - initial||_F, ||initial||_F) in float64, after checking shapes and values."""
    for which, tensor in (("current", current), ("initial", initial)):
        if not isinstance(tensor, torch.Tensor):
            raise WidenetError(f"{which} {name} must be a torch.Tensor, got "
                               f"{type(tensor).__name__}")
        if not bool(torch.isfinite(tensor).all()):
            raise WidenetError(f"{which} {name} contains NaN or inf; the movement is undefined "
                               "(did training diverge?)")
    if current.shape != initial.shape:
        raise WidenetError(f"{name} has shape {tuple(current.shape)} now but "
                           f"{tuple(initial.shape)} initially; compare the same model")
    initial = initial.detach().to(torch.float64)
    difference = current.detach().to(device=initial.device, dtype=torch.float64) - initial
    return float(torch.linalg.vector_norm(difference)), float(torch.linalg.vector_norm(initial))


def relative_change(current: torch.Tensor, initial: torch.Tensor) -> float:
    """||current - initial||_F / ||initial||_F for two tensors of one shape (0/0 = 0, x/0 = inf)."""
    return _ratio(*_difference_norms(current, initial, "tensor"))


def parameter_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of ``model.named_parameters()``: theta_0 for :func:`weight_movement`."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _named(parameters: Parameters, which: str) -> dict[str, torch.Tensor]:
    if isinstance(parameters, nn.Module):
        return dict(parameters.named_parameters())
    if isinstance(parameters, Mapping):
        return dict(parameters)
    raise WidenetError(f"{which} must be an nn.Module or a dict of named tensors (see "
                       f"parameter_snapshot), got {type(parameters).__name__}")


def weight_movement(current: Parameters, initial: Parameters) -> WeightMovement:
    """||theta_t - theta_0|| / ||theta_0||, overall and per parameter (see :class:`WeightMovement`).

    ``current`` and ``initial`` are modules (all of ``named_parameters()``, trainable or not) or
    name -> tensor mappings such as :func:`parameter_snapshot`'s, with the same names and shapes.
    """
    now, before = _named(current, "current"), _named(initial, "initial")
    if now.keys() != before.keys():
        missing, extra = sorted(before.keys() - now.keys()), sorted(now.keys() - before.keys())
        raise WidenetError(f"current and initial parameters differ in names (missing now: "
                           f"{missing}, new: {extra}); compare snapshots of the same model")
    if not now:
        raise WidenetError("the model has no parameters, so there is no weight movement")
    norms = {name: _difference_norms(now[name], before[name], f"parameter {name!r}")
             for name in before}
    absolute = math.sqrt(sum(moved**2 for moved, _ in norms.values()))
    initial_norm = math.sqrt(sum(size**2 for _, size in norms.values()))
    return WeightMovement(
        relative=_ratio(absolute, initial_norm), absolute=absolute,
        per_parameter_relative={name: _ratio(*pair) for name, pair in norms.items()},
        per_parameter_absolute={name: moved for name, (moved, _) in norms.items()})


def feature_movement(current: Sequence[torch.Tensor],
                     initial: Sequence[torch.Tensor]) -> list[float]:
    """[||H_t^l - H_0^l||_F / ||H_0^l||_F for each layer l], features on one probe set.

    Pass the outputs of :func:`~widenet.diagnostics.features.hidden_features` (widenet MLPs) or
    :func:`~widenet.diagnostics.features.module_outputs` (any model) at time t and at t = 0.
    """
    if isinstance(current, torch.Tensor) or isinstance(initial, torch.Tensor):
        raise WidenetError("feature_movement takes lists of per-layer feature tensors; wrap a "
                           "single layer's features as [h]")
    if len(current) != len(initial):
        raise WidenetError(f"got features of {len(current)} layers now but {len(initial)} "
                           "initially; pass the same layers, computed on the same probe set")
    return [_ratio(*_difference_norms(h_t, h_0, f"features of layer {i}"))
            for i, (h_t, h_0) in enumerate(zip(current, initial, strict=True))]
