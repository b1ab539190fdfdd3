"""The measurements of the ``info-nuisance`` study: one training run per (labels, seed).

docs/theory.md section 5 (Oymak et al. 2019). A bias-free ReLU MLP in the NTK parametrization,
centered as h = f - f_0 (:class:`widenet.LazyModel` with alpha = 1: the same NTK, zero output at
initialization, so r_0 = -y), is trained by full-batch GD on the MSE loss (1/(2n)) ||h - Y||^2
with one-hot targets Y (n, k) of clean or partly corrupted digit labels. With K_0 the empirical
NTK at initialization per output unit (the trace over the k outputs / k, float64) and I the
span of its top r eigenvectors (N = I^perp), the run logs ||P_I r_t|| / ||r_0||,
||P_N r_t|| / ||r_0||, the same two numbers for the fixed-kernel GD prediction
r_t = (I - (lr/n) K_0)^t r_0, the test error and
the fraction of clean and of corrupted training points fitted (argmax of h = the given label).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import torch

from widenet.data import load_dataset
from widenet.diagnostics.kernel_motion import (
    InformationSpace,
    information_space,
    kernel_movement,
    label_information,
    residual_projections,
)
from widenet.dynamics.lazy import LazyModel
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.predict import KernelDynamics
from widenet.dynamics.train import train
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.models import MLP
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.info_nuisance.config import InfoNuisanceConfig

LOGGED_ROWS = 150
"""About this many evenly spaced steps of every run are logged."""
CLASSES = 10
"""The digits set's classes: the one-hot targets have k = 10 columns."""


_DATA, _NET = 0, 1
"""Tags that give the data and the network of a replicate independent seeds."""


def replicate_seed(config: InfoNuisanceConfig, replicate: int, tag: int) -> int:
    """The seed of replicate ``replicate``'s data (``tag`` _DATA: the train/test split and the
    corrupted labels) or network (_NET: its weights). Both are shared by the clean and the
    corrupted run of that replicate (paired comparison); each is a function of ``config.seed``,
    the replicate and the tag only."""
    return derived_seed(config.seed, tag, replicate) % 2**31


def fitted_fractions(outputs: torch.Tensor, labels: torch.Tensor,
                     corrupted: torch.Tensor) -> tuple[float, float]:
    """(fraction of the clean points, fraction of the corrupted points) whose argmax output is
    their training label; nan for an empty group."""
    hits = (outputs.argmax(dim=1) == labels).double()
    clean, flipped = hits[~corrupted], hits[corrupted]
    return (float(clean.mean()) if clean.numel() else math.nan,
            float(flipped.mean()) if flipped.numel() else math.nan)


def crossing_step(steps: np.ndarray, values: np.ndarray, level: float = 0.5) -> float:
    """The first step at which ``values`` reaches ``level``, linearly interpolated between the
    two logged steps around the crossing (the first step if it starts there); nan if never."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    above = np.flatnonzero(values >= level)
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(steps[0])
    s0, s1, v0, v1 = steps[i - 1], steps[i], values[i - 1], values[i]
    return float(s0 + (level - v0) / (v1 - v0) * (s1 - s0))


class _Progress(Monitor):
    """``residual_information`` = ||P_I r_t|| / ||r_0||, ``residual_nuisance`` = ||P_N r_t|| /
    ||r_0|| (I, N of K_0, r = h - Y), ``test_error`` (argmax), ``fit_clean`` and
    ``fit_corrupted`` (fractions of training points fitted); nan once the outputs are not
    finite."""

    name = "info_nuisance_progress"

    def __init__(self, space: InformationSpace, labels: torch.Tensor, corrupted: torch.Tensor,
                 x_test: torch.Tensor, y_test: torch.Tensor):
        self.space, self.labels, self.corrupted = space, labels, corrupted
        self.x_test, self.y_test = x_test, y_test

    @torch.no_grad()
    def measure(self, state: RunState) -> dict[str, float]:
        outputs = state.model(state.x)
        if not bool(torch.isfinite(outputs).all()):
            return dict.fromkeys(("residual_information", "residual_nuisance", "test_error",
                                  "fit_clean", "fit_corrupted"), math.nan)
        projections = residual_projections(self.space, (outputs - state.y).double(),
                                           -state.y.double())
        clean, flipped = fitted_fractions(outputs, self.labels, self.corrupted)
        test_error = (state.model(self.x_test).argmax(dim=1) != self.y_test).double().mean()
        return {"residual_information": projections.information,
                "residual_nuisance": projections.nuisance, "test_error": float(test_error),
                "fit_clean": clean, "fit_corrupted": flipped}


def constant_free_information(space: InformationSpace, targets: torch.Tensor
                              ) -> tuple[float, float, float]:
    """The label information with the near-constant eigenvector left out: among the top r + 1
    eigenvectors of K (r = ``space.dimension``) the one v_c with the largest overlap
    |<v, 1>| / sqrt(n) with the constant vector is dropped, the other r span I'. Returns
    (||P_I' y|| / ||y||, ||P_c y|| / ||y|| the share of v_c alone, |<v_c, 1>| / sqrt(n));
    norms are Frobenius norms over the columns of y (n, k)."""
    n, r = space.eigenvectors.shape[0], space.dimension
    if r + 1 > n:
        raise WidenetError(f"the information space has dimension {r} of {n}: no eigenvector "
                           "is left to replace the constant one; lower information_dim")
    top = space.eigenvectors[:, n - r - 1:]
    overlaps = top.sum(dim=0).abs() / math.sqrt(n)
    constant = int(overlaps.argmax())
    kept = torch.cat([top[:, :constant], top[:, constant + 1:]], dim=1)
    y = targets.to(top)
    norm = float(torch.linalg.norm(y))
    return (float(torch.linalg.norm(kept.T @ y)) / norm,
            float(torch.linalg.norm(top[:, constant] @ y)) / norm, float(overlaps[constant]))


def _predicted_projections(space: InformationSpace, kernel: torch.Tensor, targets: torch.Tensor,
                           steps: list[int], lr: float) -> tuple[list[float], list[float]]:
    """||P_I r_s|| / ||r_0|| and ||P_N r_s|| / ||r_0|| of fixed-kernel GD with the per-output
    kernel K_0 from h_0 = 0 (docs/theory.md section 5, :meth:`KernelDynamics.gd_train`)."""
    outputs = KernelDynamics(kernel, targets).gd_train(steps, lr)
    parts = [residual_projections(space, f - targets, -targets) for f in outputs]
    return [p.information for p in parts], [p.nuisance for p in parts]


def compute_task(config: InfoNuisanceConfig, corrupt: float, replicate: int, scale: float,
                 context: StudyContext) -> Tables:
    """Train one centered network h = scale (f - f_0) on digits with a ``corrupt`` fraction of
    flipped labels and return its ``curves`` (one row per logged step) and its ``runs`` row.

    ``scale`` = alpha is Chizat et al.'s lazy scale: h has the NTK alpha^2 K_0 and trains at
    lr = lr_factor n / (alpha^2 lambda_max(K_0)), so its function-space dynamics at
    initialization are those of alpha = 1, while the weights move 1/alpha times farther (the
    kernel with them): alpha < 1 is a network that is not lazy."""
    data = load_dataset("digits", n=config.points, n_test=config.test_points,
                        normalize="sphere", corrupt=corrupt,
                        seed=replicate_seed(config, replicate, _DATA))
    device = context.device
    x, labels = data.x.to(device), data.y.to(device)
    corrupted = data.corrupted.to(device)
    targets = torch.nn.functional.one_hot(labels, CLASSES).to(torch.float64)
    net = MLP(x.shape[1], [config.width] * config.depth, CLASSES, config.activation,
              seed=replicate_seed(config, replicate, _NET), device=device, dtype=torch.float32)
    kernel0 = empirical_ntk(net, x).ntk
    space = information_space(kernel0, top=config.information_dim)
    per_output = space.eigenvalues
    lr = config.lr_factor * config.points / float(per_output[-1]) / scale**2
    model = LazyModel(net, scale)
    monitor = _Progress(space, labels, corrupted, data.x_test.to(device, torch.float32),
                        data.y_test.to(device))
    result = train(model, x.float(), targets.float(), lr=lr, steps=config.steps, loss="mse",
                   log_every=max(1, config.steps // LOGGED_ROWS), monitors=[monitor],
                   progress=False)
    curves = result.measured(monitor.name, how="left")[[
        "step", "loss", "residual_information", "residual_nuisance", "test_error", "fit_clean",
        "fit_corrupted"]].copy()
    predicted = _predicted_projections(space, kernel0, targets, curves["step"].tolist(),
                                       lr * scale**2)
    curves["residual_information_pred"], curves["residual_nuisance_pred"] = predicted
    curves.insert(0, "seed", replicate)
    curves.insert(0, "corrupt", corrupt)
    curves.insert(0, "scale", scale)
    completed = result.status == "completed"
    kernel_end = empirical_ntk(net, x).ntk if completed else None
    space_end = information_space(kernel_end, top=config.information_dim) if completed else None
    free_init, constant_share, constant_overlap = constant_free_information(space, targets)
    row = {
        "scale": scale, "corrupt": corrupt, "seed": replicate, "status": result.status, "lr": lr,
        "steps": config.steps, "lambda_max": float(per_output[-1]),
        "cutoff": float(per_output[-config.information_dim]),
        "label_information_init": label_information(space, targets),
        "label_information_end": label_information(space_end, targets)
        if completed else math.nan,
        "label_information_nc_init": free_init,
        "label_information_nc_end": constant_free_information(space_end, targets)[0]
        if completed else math.nan,
        "constant_share": constant_share, "constant_overlap": constant_overlap,
        "kernel_movement": kernel_movement(kernel_end, kernel0) if completed else math.nan,
        "test_error_final": float(curves["test_error"].iloc[-1]),
        "fit_corrupted_final": float(curves["fit_corrupted"].iloc[-1]),
        "t50_clean": crossing_step(curves["step"], curves["fit_clean"]),
        "t50_corrupted": crossing_step(curves["step"], curves["fit_corrupted"]),
    }
    return {"curves": curves, "runs": pd.DataFrame([row])}


def plan(config: InfoNuisanceConfig) -> list[Task]:
    """One task per (scale, label condition, seed): the lazy-scale (alpha = 1) runs with clean
    labels, ``corrupt`` and every ``sweep`` level, then the non-lazy (alpha = ``rich_scale``)
    runs with clean labels and ``corrupt``."""
    levels = dict.fromkeys((0.0, config.corrupt, *config.sweep))  # ordered, no repeats
    conditions = [(1.0, level) for level in levels]
    conditions += [(config.rich_scale, level) for level in (0.0, config.corrupt)]
    return [Task(("" if scale == 1 else f"scale={scale:g}/")
                 + f"corrupt={corrupt:g}/seed={replicate}",
                 partial(compute_task, config, corrupt, replicate, scale))
            for scale, corrupt in conditions for replicate in range(config.seeds)]
