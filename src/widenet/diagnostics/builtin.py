"""The built-in monitors: each wraps one documented diagnostic for the training loop.

Column names (one row per logged step):

- :class:`WeightMovementMonitor`: ``weight_movement`` = ||theta_t - theta_0|| / ||theta_0||, and
  ``weight_movement/<parameter>`` = ||p_t - p_0||_F / ||p_0||_F.
- :class:`FeatureMovementMonitor`: ``feature_movement/<l>`` = ||H_t - H_0||_F / ||H_0||_F of the
  hidden features H of layer l on a probe set: a widenet MLP's post-activation features, an
  nn.Sequential's activation outputs (l = 1, 2, ...), or the outputs of the modules named
  (l = their names); widenet.diagnostics.feature_layers.
- :class:`KernelMonitor`: of the empirical NTK K_t (per output unit, ``.ntk``) on a probe set:
  ``ntk_movement`` = ||K_t - K_0||_F / ||K_0||_F, ``ntk_alignment`` = <K_t, Y Y^T>_F /
  (||K_t||_F ||Y Y^T||_F), ``ntk_lambda_min`` and ``ntk_lambda_max``.
- :class:`LinearizationMonitor`: ``linearization_error`` = ||f_t - f_lin,t|| / ||f_t - f_0|| on the
  training points, f_lin the linearized model advanced alongside by the same full-batch GD
  steps (widenet.dynamics.optim.gd_step).
- :class:`MarginMonitor`: ``normalized_margin`` = min_i q_i / ||theta||^L,
  ``smoothed_margin_exponential``, ``smoothed_margin_logistic`` and ``parameter_norm``.
- :class:`SoftRankMonitor`: ``participation_ratio/<l>``, ``stable_rank/<l>`` and
  ``entropy_rank/<l>`` of the same hidden features on a probe set.
- :class:`SharpnessMonitor`: ``sharpness`` = lambda_max of the Hessian of the full-batch training
  objective (``sharpness_2``.. ``sharpness_k`` below it) by Lanczos warm-started from the previous
  measurement, ``stability_threshold`` = (2 + 2 beta) / lr (2 / lr for GD) for GD and SGD (NaN
  under adaptive optimizers such as Adam, whose threshold bounds the preconditioned sharpness
  instead; a warning says so) and ``sharpness_hvps``, the Hessian-vector products it took.
- :class:`TaylorMonitor`: ``taylor_c1``, ``taylor_c2``, ``taylor_c3`` and ``taylor_actual`` =
  L(theta') - L(theta) along the step theta' = theta - lr G with G_p = (lr_p / lr) grad_p (exact
  for GD and SGD without momentum; the gradient direction otherwise).
- :class:`InfoNuisanceMonitor`: with I, N the information and nuisance spaces of the NTK on the
  training set at initialization, ``residual_information`` = ||P_I r_t|| / ||r_0|| and
  ``residual_nuisance`` = ||P_N r_t|| / ||r_0|| (r = f - y), and ``label_information`` =
  ||P_I y|| / ||y|| with the current NTK's spaces (``label_information_init`` at step 0).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
from torch import nn

from widenet.diagnostics._functional_loss import NonFiniteDerivativeError
from widenet.diagnostics.feature_layers import FeatureModules, HiddenFeatures
from widenet.diagnostics.features import soft_ranks
from widenet.diagnostics.kernel_motion import (
    information_space,
    kernel_movement,
    kernel_target_alignment,
    label_information,
    residual_projections,
)
from widenet.diagnostics.margins import homogeneity_degree, margins_of
from widenet.diagnostics.movement import (
    MovementReference,
    feature_movement,
    feature_reference,
    parameter_snapshot,
    weight_movement,
    weight_reference,
)
from widenet.diagnostics.sharpness import Sharpness, SharpnessTracker
from widenet.diagnostics.taylor import taylor_coefficients
from widenet.dynamics.linearize import linearize
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import gd_step, lr_scales
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.spectra import spectrum
from widenet.validation import data_points


def _checked_probe(probe: object, name: str = "probe") -> torch.Tensor | None:
    """A monitor's probe inputs when it is made: None, or finite points ((n, d) or images)."""
    return None if probe is None else data_points(probe, name)


def _probe(state: RunState, probe: torch.Tensor | None, size: int) -> torch.Tensor:
    """The given probe inputs (shaped like the training points), or the first ``size``
    training points."""
    if probe is None:
        return state.x[:size]
    if probe.shape[1:] != state.x.shape[1:]:
        raise WidenetError(f"the probe points have shape {tuple(probe.shape[1:])} but the "
                           f"training points {tuple(state.x.shape[1:])}; give probe points "
                           "the model takes")
    return probe.to(state.x)


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


def _hidden_features(modules: FeatureModules | HiddenFeatures | None) -> HiddenFeatures:
    return modules if isinstance(modules, HiddenFeatures) else HiddenFeatures(modules)


class FeatureMovementMonitor(_InitialReference):
    """Relative movement of each hidden layer's features on a probe set (default: the first
    256 training points). ``modules``: the modules whose outputs are the features (objects or
    names), None to find them (a widenet MLP's hidden layers, an nn.Sequential's activations),
    or a :class:`~widenet.diagnostics.feature_layers.HiddenFeatures` shared with other monitors;
    see widenet.diagnostics.feature_layers."""

    name = "feature_movement"

    def __init__(self, probe: torch.Tensor | None = None, every: int | None = None,
                 size: int = 256, modules: FeatureModules | HiddenFeatures | None = None):
        self.probe_x, self.every, self.size = _checked_probe(probe), every, size
        self.features = _hidden_features(modules)
        self.initial: list[torch.Tensor] = []
        self.reference: MovementReference | None = None

    def _read(self, state: RunState) -> list[tuple[str, torch.Tensor]] | None:
        return self.features.read(state.model, _probe(state, self.probe_x, self.size), state.step)

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
        self.probe = None if probe is None else (_checked_probe(probe[0], "probe x"), probe[1])
        self.every, self.size = every, size
        self.initial: torch.Tensor | None = None

    def _kernel_and_targets(self, state: RunState) -> tuple[torch.Tensor, torch.Tensor]:
        if self.probe is None:
            x, y = state.x[:self.size], state.y[:self.size]
        else:
            x, y = _probe(state, self.probe[0], self.size), self.probe[1]
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


class MarginMonitor(Monitor):
    """Normalized and smoothed margins of a homogeneous net on the training data (labels +-1
    for one output, class indices otherwise); the degree is inferred at the start unless given."""

    name = "margins"

    def __init__(self, degree: int | None = None, every: int | None = None):
        self.degree, self.every = degree, every

    def start(self, state: RunState) -> None:
        if self.degree is None:
            self.degree = homogeneity_degree(state.model)

    def measure(self, state: RunState) -> dict[str, float]:
        labels = state.y.reshape(-1) if state.y.ndim == 2 and state.y.shape[1] == 1 else state.y
        margins = margins_of(state.model, state.x, labels, degree=self.degree)
        return {"normalized_margin": margins.normalized,
                "smoothed_margin_exponential": margins.smoothed_exponential,
                "smoothed_margin_logistic": margins.smoothed_logistic,
                "parameter_norm": margins.parameter_norm}

    def state_dict(self) -> dict:
        return {"degree": self.degree}

    def load_state_dict(self, state: dict) -> None:
        self.degree = state["degree"]


class SoftRankMonitor(Monitor):
    """Participation ratio, stable rank and entropy effective rank of hidden features on a
    probe set (default: the first 256 training points); ``layers="last"`` or ``"all"``;
    ``modules`` as for :class:`FeatureMovementMonitor`."""

    name = "soft_ranks"

    def __init__(self, probe: torch.Tensor | None = None, layers: str = "last",
                 every: int | None = None, size: int = 256,
                 modules: FeatureModules | HiddenFeatures | None = None):
        if layers not in ("last", "all"):
            raise WidenetError(f"layers must be 'last' or 'all', got {layers!r}")
        self.probe_x, self.layers = _checked_probe(probe), layers
        self.every, self.size = every, size
        self.features = _hidden_features(modules)

    def start(self, state: RunState) -> None:
        self.features.layers(state.model)  # unknown layers are reported before training

    def measure(self, state: RunState) -> dict[str, float]:
        features = self.features.read(state.model, _probe(state, self.probe_x, self.size),
                                      state.step) or []
        row = {}
        for label, matrix in features[-1:] if self.layers == "last" else features:
            ranks = soft_ranks(matrix)
            row[f"participation_ratio/{label}"] = ranks.participation_ratio
            row[f"stable_rank/{label}"] = ranks.stable_rank
            row[f"entropy_rank/{label}"] = ranks.entropy_effective_rank
        return row


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


class SharpnessMonitor(Monitor):
    """Top-k Hessian eigenvalues of the full-batch objective beside the stability threshold of
    GD / heavy-ball SGD, (2 + 2 beta) / lr. Under an adaptive optimizer (Adam, ...) that
    threshold does not apply: Adam's (2 + 2 beta_1) / ((1 - beta_1) lr) bounds the
    preconditioned sharpness lambda_max(P^-1 H) (Cohen et al. 2022), which this monitor does
    not measure; the threshold column is then NaN and a warning says so."""

    name = "sharpness"

    def __init__(self, k: int = 1, every: int | None = None, tol: float = 1e-4):
        self.every = every
        self.tracker = SharpnessTracker(k, tol=tol)
        self.warned = False

    def start(self, state: RunState) -> None:
        _refuse_dropout_in_training(self, state.model)

    def measure(self, state: RunState) -> dict[str, float]:
        result = self.tracker(state.model, _objective(state), state.x, state.y)
        threshold = result.threshold(state.lr, state.momentum) \
            if state.optimizer in ("gd", "sgd") else math.nan
        if math.isnan(threshold) and not self.warned:
            self.warned = True
            warnings.warn(f"SharpnessMonitor: under {state.optimizer} the GD threshold 2/lr does "
                          "not apply (stability_threshold is NaN): an adaptive optimizer's "
                          "threshold bounds the preconditioned sharpness lambda_max(P^-1 H) "
                          "(for Adam (2 + 2 beta_1) / ((1 - beta_1) lr)), not the sharpness "
                          "measured here", stacklevel=2)
        row = {"sharpness": result.value, "stability_threshold": threshold,
               "sharpness_hvps": float(result.hvps)}
        row.update({f"sharpness_{i}": float(v)
                    for i, v in enumerate(result.eigenvalues[1:].tolist(), start=2)})
        return row

    def state_dict(self) -> dict:
        last = self.tracker.last
        return {"last": None if last is None else dataclasses.asdict(last)}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.last = None if state["last"] is None else Sharpness(**state["last"])


class TaylorMonitor(Monitor):
    """The loss's Taylor coefficients along the step taken at this step; all NaN at a step
    where a derivative of the loss along it is NaN or inf (the step where a run diverges, whose
    loss may be finite while the derivatives overflow), with a warning the first time."""

    name = "taylor"

    def __init__(self, every: int | None = None):
        self.every = every
        self.warned = False

    def start(self, state: RunState) -> None:
        _refuse_dropout_in_training(self, state.model)

    def measure(self, state: RunState) -> dict[str, float]:
        if not state.gradients:  # the final row: no step follows
            return {}
        scales = lr_scales(state.model, "adam" if state.optimizer == "adam" else "sgd")
        # A trainable parameter without a gradient (unused by the forward pass) is not moved
        # by the step: its direction is zero.
        direction = {name: state.gradients[name] * scales.get(name, 1.0)
                     if name in state.gradients else torch.zeros_like(p)
                     for name, p in state.model.named_parameters() if p.requires_grad}
        try:
            result = taylor_coefficients(state.model, _objective(state), state.x, state.y,
                                         direction, state.lr)
        except NonFiniteDerivativeError as error:
            # The loop also measures the step where a run diverges, whose loss can be finite
            # while its derivatives overflow: that step's coefficients are undefined, not an
            # error that ends the run (the row is NaN, as for a coefficient that overflows).
            if not self.warned:
                self.warned = True
                warnings.warn(f"TaylorMonitor: at step {state.step}, {error}; the coefficients "
                              "are recorded as NaN", stacklevel=2)
            return dict.fromkeys(("taylor_c1", "taylor_c2", "taylor_c3", "taylor_actual"),
                                 math.nan)
        return {"taylor_c1": result.c1, "taylor_c2": result.c2, "taylor_c3": result.c3,
                "taylor_actual": result.actual}


def _refuse_dropout_in_training(monitor: Monitor, model: nn.Module) -> None:
    """Raise before training if ``model`` trains with dropout: its loss is random, which the
    loss diagnostics refuse at every measurement, and their advice (model.eval()) would, before
    train(), turn dropout off for the training itself."""
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
            raise WidenetError(f"{type(monitor).__name__}: module {path!r} "
                               f"({type(module).__name__}) is in training mode, so the training "
                               "loss is random and has no derivatives for the monitor to "
                               "measure (model.eval() before train() would train without "
                               "dropout); leave the monitor out and measure the trained model in "
                               "eval mode (widenet.diagnostics.sharpness, taylor_coefficients), "
                               "or train without dropout")


def _objective(state: RunState):
    """The training objective loss_scale * loss, as a loss function."""
    if state.loss_scale == 1.0:
        return state.loss_fn
    return lambda output, target: state.loss_scale * state.loss_fn(output, target)


def _residual(state: RunState) -> torch.Tensor:
    """f(x) - y on the training points, shaped like the output (regression targets)."""
    output = state.model(state.x)
    return output - state.y.reshape(output.shape).to(output)


def default_monitors(feature_modules: FeatureModules | None = None) -> list[Monitor]:
    """The default set, at cadences (in steps) that keep its cost near a tenth of training's
    (benchmarks/bench_monitors.py): weight movement at every logged step, feature movement every
    50 steps, the last feature layer's soft ranks and the NTK on 256 probe points every 100.

    The feature monitors read the outputs of ``feature_modules`` (modules of the model or their
    names), by default a widenet MLP's hidden layers or an nn.Sequential's activations; for
    another model without ``feature_modules`` they warn at the start and record nothing
    (widenet.diagnostics.feature_layers). The two share one forward pass of the probe set.
    """
    features = HiddenFeatures(feature_modules, skip_unknown=True)
    return [WeightMovementMonitor(), FeatureMovementMonitor(every=50, modules=features),
            SoftRankMonitor(every=100, modules=features), KernelMonitor(every=100)]
