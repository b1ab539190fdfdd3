"""The monitors that measure training against the start of the run: weight, feature and NTK
movement, the linearized model, and the information/nuisance spaces of the initial NTK. Each
records its reference (theta_0, H_0, K_0, f_0, r_0) at the start and checkpoints it; their
columns are listed in widenet.diagnostics.builtin."""

from __future__ import annotations

import torch
from torch import nn

from widenet.diagnostics._probes import checked_probe, probe_inputs, shared_features
from widenet.diagnostics.feature_layers import FeatureModules, HiddenFeatures
from widenet.diagnostics.kernel_motion import (
    information_space,
    kernel_movement,
    kernel_target_alignment,
    label_information,
    residual_projections,
)
from widenet.diagnostics.movement import (
    MovementReference,
    feature_movement,
    feature_reference,
    parameter_snapshot,
    weight_movement,
    weight_reference,
)
from widenet.dynamics.linearize import linearize
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import gd_step
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.spectra import spectrum


class _InitialReference(Monitor):
    """A monitor that compares with ``self.initial``, recorded at the start and checkpointed."""

    initial: object = None

    def state_dict(self) -> dict:
        return {"initial": self.initial}

    def load_state_dict(self, state: dict) -> None:
        self.initial = state["initial"]


class WeightMovementMonitor(_InitialReference):
    """Relative weight movement, overall and per parameter (see the module docstring)."""

    name = "weight_movement"

    def __init__(self, every: int | None = None, per_parameter: bool = True):
        self.every, self.per_parameter = every, per_parameter
        self.initial: dict[str, torch.Tensor] = {}
        self.reference: MovementReference | None = None

    def start(self, state: RunState) -> None:
        self.initial = parameter_snapshot(state.model)

    def measure(self, state: RunState) -> dict[str, float]:
        if self.reference is None:
            self.reference = weight_reference(self.initial)
        movement = weight_movement(state.model, self.reference)
        row = {"weight_movement": movement.relative}
        if self.per_parameter:
            row.update({f"weight_movement/{name}": value
                        for name, value in movement.per_parameter_relative.items()})
        return row

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.reference = state["initial"], None


class FeatureMovementMonitor(_InitialReference):
    """Relative movement of each hidden layer's features on a probe set (default: the first
    256 training points). ``modules``: the modules whose outputs are the features (objects or
    names), None to find them (a widenet MLP's hidden layers, an nn.Sequential's activations),
    or a :class:`~widenet.diagnostics.feature_layers.HiddenFeatures` shared with other monitors;
    see widenet.diagnostics.feature_layers."""

    name = "feature_movement"

    def __init__(self, probe: torch.Tensor | None = None, every: int | None = None,
                 size: int = 256, modules: FeatureModules | HiddenFeatures | None = None):
        self.probe_x, self.every, self.size = checked_probe(probe), every, size
        self.features = shared_features(modules)
        self.initial: list[torch.Tensor] = []
        self.reference: MovementReference | None = None

    def _read(self, state: RunState) -> list[tuple[str, torch.Tensor]] | None:
        return self.features.read(state.model, probe_inputs(state, self.probe_x, self.size),
                                  state.step)

    def start(self, state: RunState) -> None:
        features = self._read(state)
        self.initial = [] if features is None else [h for _, h in features]

    def measure(self, state: RunState) -> dict[str, float]:
        features = self._read(state)
        if features is None:
            return {}
        if self.reference is None:
            self.reference = feature_reference(self.initial)
        movements = feature_movement([h for _, h in features], self.reference)
        return {f"feature_movement/{label}": value
                for (label, _), value in zip(features, movements, strict=True)}

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.reference = state["initial"], None


class KernelMonitor(_InitialReference):
    """Movement, target alignment and extreme eigenvalues of the empirical NTK on a probe set
    (default: the first 256 training points and their targets)."""

    name = "ntk"

    def __init__(self, probe: tuple[torch.Tensor, torch.Tensor] | None = None,
                 every: int | None = None, size: int = 256):
        if probe is not None and (not isinstance(probe, tuple | list) or len(probe) != 2
                                  or not isinstance(probe[1], torch.Tensor)):
            raise WidenetError("probe must be a pair (x, y) of probe points and their targets "
                               f"(tensors), got {type(probe).__name__}"
                               + (f" of {len(probe)}" if isinstance(probe, tuple | list) else ""))
        self.probe = None if probe is None else (checked_probe(probe[0], "probe x"), probe[1])
        self.every, self.size = every, size
        self.initial: torch.Tensor | None = None

    def _kernel_and_targets(self, state: RunState) -> tuple[torch.Tensor, torch.Tensor]:
        if self.probe is None:
            x, y = state.x[:self.size], state.y[:self.size]
        else:
            x, y = probe_inputs(state, self.probe[0], self.size), self.probe[1]
        return empirical_ntk(state.model, x).ntk, y

    def start(self, state: RunState) -> None:
        self.initial = self._kernel_and_targets(state)[0]

    def measure(self, state: RunState) -> dict[str, float]:
        kernel, targets = self._kernel_and_targets(state)
        if not targets.is_floating_point():  # class indices: align with the one-hot targets
            targets = torch.nn.functional.one_hot(targets.long().reshape(-1))
        eigen = spectrum(kernel)
        return {"ntk_movement": kernel_movement(kernel, self.initial),
                "ntk_alignment": kernel_target_alignment(kernel, targets.to(kernel)),
                "ntk_lambda_min": eigen.lambda_min, "ntk_lambda_max": eigen.lambda_max}


class LinearizationMonitor(Monitor):
    """||f_t - f_lin,t|| / ||f_t - f_0|| on the training points. Plain full-batch GD only
    (optimizer "gd", no gradient scaling): the linearized model is advanced by the same GD steps
    (:func:`~widenet.dynamics.optim.gd_step`) between measurements."""

    name = "linearization"

    def __init__(self, every: int | None = None):
        self.every = every
        self.linear: nn.Module | None = None
        self.saved: dict | None = None

    def start(self, state: RunState) -> None:
        if state.optimizer != "gd" or state.gradient_scaled:
            raise WidenetError("the linearization monitor follows plain full-batch GD; train "
                               "with optimizer='gd' and no gradient scaling to use it")
        self.linear = linearize(state.model)
        with torch.no_grad():
            self.initial_output = state.model(state.x)
        self.steps = 0

    def measure(self, state: RunState) -> dict[str, float]:
        if self.linear is None:  # resumed: rebuild around the same theta_0 from the checkpoint
            self.linear = linearize(state.model)
            self.linear.load_state_dict(self.saved)
        for _ in range(self.steps, state.step):
            gd_step(self.linear, state.x, state.y, lr=state.lr, loss=state.loss_fn,
                    loss_scale=state.loss_scale)
        self.steps = max(self.steps, state.step)
        with torch.no_grad():
            output, linear = state.model(state.x), self.linear(state.x)
        moved = float((output - self.initial_output).norm())
        gap = float((output - linear).norm())
        return {"linearization_error": gap / moved if moved > 0 else 0.0}

    def state_dict(self) -> dict:
        linear = self.linear.state_dict() if self.linear is not None else self.saved
        return {"linear": linear, "initial_output": self.initial_output, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.linear, self.saved = None, state["linear"]
        self.initial_output, self.steps = state["initial_output"], state["steps"]


class InfoNuisanceMonitor(Monitor):
    """Residual projections on the information and nuisance spaces of the NTK at
    initialization, and the labels' share in the current NTK's information space. The spaces
    are chosen by ``cutoff`` (eigenvalues >= alpha of the NTK per output unit) or ``top`` (the r
    largest); give one."""

    name = "info_nuisance"

    def __init__(self, *, cutoff: float | None = None, top: int | None = None,
                 every: int | None = None):
        if (cutoff is None) == (top is None):
            raise WidenetError("give exactly one of cutoff= or top= for the information space")
        self.cutoff, self.top, self.every = cutoff, top, every

    def _space(self, kernel: torch.Tensor):
        return information_space(kernel, cutoff=self.cutoff, top=self.top)

    def start(self, state: RunState) -> None:
        with torch.no_grad():
            output = state.model(state.x)
        if not state.y.is_floating_point() or state.y.numel() != output.numel():
            raise WidenetError("the information/nuisance monitor needs regression targets "
                               f"shaped like the output {tuple(output.shape)} (one-hot rows "
                               "for classes), trained with the mse loss")
        self.initial_kernel = empirical_ntk(state.model, state.x).ntk
        with torch.no_grad():
            self.initial_residual = _residual(state)
        self.initial_space = self._space(self.initial_kernel)
        self.initial_label_information = label_information(
            self.initial_space, state.y.reshape(self.initial_residual.shape))

    def measure(self, state: RunState) -> dict[str, float]:
        with torch.no_grad():
            residual = _residual(state)
        projections = residual_projections(self.initial_space, residual, self.initial_residual)
        current = self._space(empirical_ntk(state.model, state.x).ntk)
        return {"residual_information": projections.information,
                "residual_nuisance": projections.nuisance,
                "label_information": label_information(current, state.y.reshape(residual.shape)),
                "label_information_init": self.initial_label_information}

    def state_dict(self) -> dict:
        return {"kernel": self.initial_kernel, "residual": self.initial_residual,
                "label_information": self.initial_label_information}

    def load_state_dict(self, state: dict) -> None:
        self.initial_kernel, self.initial_residual = state["kernel"], state["residual"]
        self.initial_space = self._space(self.initial_kernel)
        self.initial_label_information = state["label_information"]


def _residual(state: RunState) -> torch.Tensor:
    """f(x) - y on the training points, shaped like the output (regression targets)."""
    output = state.model(state.x)
    return output - state.y.reshape(output.shape).to(output)
