"""How far parameters and features moved from initialization (docs/theory.md section 5).

    weight movement    ||theta_t - theta_0||_2 / ||theta_0||_2   (overall and per parameter)
    feature movement   ||H_t - H_0||_F / ||H_0||_F               (per hidden layer, on a probe set)

Arguments come in the order (current, initial), as in the formulas. All norms are computed in
float64. A relative movement whose denominator is zero (a zero-initialized bias, a layer whose
features were all zero at t = 0) is 0.0 if nothing moved and inf otherwise, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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


def _check_tensor(tensor: object, which: str, name: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise WidenetError(f"{which} {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not bool(torch.isfinite(tensor).all()):
        raise WidenetError(f"{which} {name} contains NaN or inf; the movement is undefined "
                           "(did training diverge?)")
    return tensor


class MovementReference:
    """Fixed tensors t_0 (by name) for repeated movements: :meth:`norms` gives
    (||t - t_0||_F, ||t_0||_F) per name, both in float64.

    ||t_0||_F is computed once; each difference t - t_0 is formed exactly in float64 in one
    scratch buffer reused across calls, and the norms of a call are read back together (one
    device synchronization). The numbers are those of a fresh float64 computation; a monitor
    keeps one reference instead of reallocating float64 copies at every measurement.
    """

    def __init__(self, initial: Mapping[str, torch.Tensor], describe: Callable[[str], str]):
        self.describe = describe
        self.initial = {name: _check_tensor(t, "initial", describe(name)).detach()
                        for name, t in initial.items()}
        norms = [torch.linalg.vector_norm(t, dtype=torch.float64) for t in self.initial.values()]
        self.initial_norms = {name: rescued_norm(norm, t) for (name, t), norm in
                              zip(self.initial.items(), _floats(norms), strict=True)}
        self._scratch: torch.Tensor | None = None

    def _difference(self, current: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        """current - initial in float64, in (a view of) the scratch buffer."""
        size = initial.numel()
        if (self._scratch is None or self._scratch.numel() < size
                or self._scratch.device != initial.device):
            largest = max(t.numel() for t in self.initial.values())
            self._scratch = torch.empty(largest, dtype=torch.float64, device=initial.device)
        buffer = self._scratch[:size].view(initial.shape)
        return buffer.copy_(current.detach()).sub_(initial)

    def norms(self, current: Mapping[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
        """{name: (||current - initial||_F, ||initial||_F)} for the reference's names."""
        for name, initial in self.initial.items():
            tensor = current[name]
            if not isinstance(tensor, torch.Tensor):
                _check_tensor(tensor, "current", self.describe(name))
            if tensor.shape != initial.shape:
                raise WidenetError(f"{self.describe(name)} has shape {tuple(tensor.shape)} now "
                                   f"but {tuple(initial.shape)} initially; compare the same "
                                   "model")
        moved = _floats([torch.linalg.vector_norm(self._difference(current[name], initial))
                         for name, initial in self.initial.items()])
        if not all(math.isfinite(value) for value in moved):  # NaN/inf in current, or overflow
            for name in self.initial:
                _check_tensor(current[name], "current", self.describe(name))
        moved = [rescued_norm(value, self._difference(current[name], initial))
                 if value == math.inf or (value == 0.0 and self.initial_norms[name] < _UNDERFLOW)
                 else value for (name, initial), value in zip(self.initial.items(), moved,
                                                              strict=True)]
        return {name: (value, self.initial_norms[name])
                for name, value in zip(self.initial, moved, strict=True)}


_EXTREMES = (0.0, math.inf)
# A difference whose norm came out 0 by underflow has entries below 1.5e-154, so a norm below
# 1e-148 (up to 1e12 entries): negligible beside a reference norm of 1e-130 or more (1e-18 of
# it), and recomputed only below that.
_UNDERFLOW = 1e-130


def rescued_norm(norm: float, tensor: torch.Tensor) -> float:
    """``norm`` = ||tensor||_F as torch computes it, by summing squares; where that gave 0 or
    inf (squares of entries below 1e-154 underflow in float64, above 1e154 overflow), the norm
    recomputed with the largest |entry| factored out (a second pass, for these cases only)."""
    if norm not in _EXTREMES:
        return norm
    largest = float(tensor.detach().abs().max().to(torch.float64)) if tensor.numel() else 0.0
    if largest in _EXTREMES:
        return largest
    return largest * float(torch.linalg.vector_norm(tensor.detach().to(torch.float64) / largest))


def _floats(scalars: list[torch.Tensor]) -> list[float]:
    """Python floats of 0-dim tensors, read back in one transfer."""
    return torch.stack(scalars).tolist() if scalars else []


def relative_change(current: torch.Tensor, initial: torch.Tensor) -> float:
    """||current - initial||_F / ||initial||_F for two tensors of one shape (0/0 = 0, x/0 = inf)."""
    reference = MovementReference({"tensor": initial}, lambda _: "tensor")
    return _ratio(*reference.norms({"tensor": current})["tensor"])


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


def weight_reference(initial: Parameters) -> MovementReference:
    """theta_0 as a :class:`MovementReference`, for repeated :func:`weight_movement` calls; a
    module's parameters are copied (the reference must not move with the model)."""
    before = _named(parameter_snapshot(initial) if isinstance(initial, nn.Module) else initial,
                    "initial")
    if not before:
        raise WidenetError("the model has no parameters, so there is no weight movement")
    return MovementReference(before, lambda name: f"parameter {name!r}")


def weight_movement(current: Parameters,
                    initial: Parameters | MovementReference) -> WeightMovement:
    """||theta_t - theta_0|| / ||theta_0||, overall and per parameter (see :class:`WeightMovement`).

    ``current`` and ``initial`` are modules (all of ``named_parameters()``, trainable or not) or
    name -> tensor mappings such as :func:`parameter_snapshot`'s, with the same names and shapes;
    ``initial`` may also be :func:`weight_reference`'s, built once for many calls.
    """
    now = _named(current, "current")
    reference = initial if isinstance(initial, MovementReference) else weight_reference(initial)
    if now.keys() != reference.initial.keys():
        before = reference.initial.keys()
        missing, extra = sorted(before - now.keys()), sorted(now.keys() - before)
        raise WidenetError(f"current and initial parameters differ in names (missing now: "
                           f"{missing}, new: {extra}); compare snapshots of the same model")
    norms = reference.norms(now)
    absolute = math.hypot(*(moved for moved, _ in norms.values()))  # no squares to overflow
    initial_norm = math.hypot(*(size for _, size in norms.values()))
    return WeightMovement(
        relative=_ratio(absolute, initial_norm), absolute=absolute,
        per_parameter_relative={name: _ratio(*pair) for name, pair in norms.items()},
        per_parameter_absolute={name: moved for name, (moved, _) in norms.items()})


def feature_reference(initial: Sequence[torch.Tensor]) -> MovementReference:
    """[H_0^1, ..., H_0^L] as a :class:`MovementReference`, for repeated
    :func:`feature_movement` calls."""
    if isinstance(initial, torch.Tensor):
        raise WidenetError("feature_movement takes lists of per-layer feature tensors; wrap a "
                           "single layer's features as [h]")
    return MovementReference({str(i): h for i, h in enumerate(initial)},
                             lambda i: f"features of layer {i}")


def feature_movement(current: Sequence[torch.Tensor],
                     initial: Sequence[torch.Tensor] | MovementReference) -> list[float]:
    """[||H_t^l - H_0^l||_F / ||H_0^l||_F for each layer l], features on one probe set.

    Pass the outputs of :func:`~widenet.diagnostics.features.hidden_features` (widenet MLPs) or
    :func:`~widenet.diagnostics.features.module_outputs` (any model) at time t and at t = 0 (or
    :func:`feature_reference` of the latter, built once for many calls).
    """
    if isinstance(current, torch.Tensor):
        raise WidenetError("feature_movement takes lists of per-layer feature tensors; wrap a "
                           "single layer's features as [h]")
    reference = (initial if isinstance(initial, MovementReference)
                 else feature_reference(initial))
    if len(current) != len(reference.initial):
        raise WidenetError(f"got features of {len(current)} layers now but "
                           f"{len(reference.initial)} initially; pass the same layers, computed "
                           "on the same probe set")
    norms = reference.norms({str(i): h for i, h in enumerate(current)})
    return [_ratio(*pair) for pair in norms.values()]
