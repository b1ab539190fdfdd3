"""The monitors of the training loss's local shape along the run: its sharpness (top Hessian
eigenvalues) beside the optimizer's stability threshold, and its Taylor coefficients along each
step. Both differentiate the training objective, so both refuse a model that trains with
dropout; their columns are listed in widenet.diagnostics.builtin."""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
from torch import nn

from widenet.diagnostics._functional_loss import NonFiniteDerivativeError
from widenet.diagnostics.sharpness import Sharpness, SharpnessTracker
from widenet.diagnostics.taylor import taylor_coefficients
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import lr_scales
from widenet.errors import WidenetError


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
    loss may be finite while the derivatives overflow; the run's status says it diverged), or
    where the step itself is (a NaN or inf gradient at a finite loss, which ends the run before
    the step)."""

    name = "taylor"

    def __init__(self, every: int | None = None):
        self.every = every

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
        undefined = dict.fromkeys(("taylor_c1", "taylor_c2", "taylor_c3", "taylor_actual"),
                                  math.nan)
        # The loop also measures the step where a run diverges, whose loss can be finite while
        # its gradient is not, or its derivatives overflow: that step's coefficients are
        # undefined, not an error that ends the run (the row is NaN, as for a coefficient that
        # overflows).
        if not all(bool(torch.isfinite(d).all()) for d in direction.values()):
            return undefined
        try:
            result = taylor_coefficients(state.model, _objective(state), state.x, state.y,
                                         direction, state.lr)
        except NonFiniteDerivativeError:
            return undefined
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
