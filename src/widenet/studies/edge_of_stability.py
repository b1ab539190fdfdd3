"""Study ``edge-of-stability``: full-batch GD sharpens to 2/lr and hovers there; training beyond.

docs/theory.md section 5. The sharpness S = lambda_max(nabla^2 L(theta)) (Cohen et al. 2021): on a
quadratic, GD with step lr diverges iff S > 2/lr; in training, S rises (progressive sharpening)
until it reaches 2/lr and then hovers around it (the edge of stability, EoS) while the loss
keeps falling, non-monotonically.

Part 1 ("eos" tasks) trains an MLP by full-batch GD on a standardized subset of ``digits`` (MSE
on one-hot targets, or cross-entropy) at lr = lr_factor * 2 / S_0 for each factor (S_0 the
sharpness at initialization, so the edge 2/lr = S_0 / lr_factor lies above it) and records the
loss at every step and S every ``sharpness_every`` steps.

Part 2 ("beyond" tasks) trains a bias-free abs MLP with quadratic widths m_l = l^2 m (docs/theory.md
section 5, "training beyond the edge of stability", Terjek 2025) by GD at lr = c * 2 / S_0 for
c in ``beyond_factors``, with and without widenet's depthwise :class:`NormalizedUpdateScaling`,
from ``beyond_seeds`` independent initializations (replicates; both arms and every c share each).
With the scaling the step is preconditioned by D = diag(xi_l) and GD on a quadratic is stable
iff lambda_max(D^1/2 H D^1/2) < 2/lr, so S_0 is that preconditioned sharpness at initialization
there (:func:`preconditioned_sharpness`): the factor c means the same "c times the classical
limit" in both arms. Recorded: loss explosions, final loss, sharpness, the participation ratio
of the last hidden layer's features and the loss's Taylor coefficients c1, c2, c3 along the run.
See docs/studies/edge-of-stability.md.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt, field_validator

from widenet.data import load_dataset
from widenet.diagnostics.builtin import SharpnessMonitor, SoftRankMonitor, TaylorMonitor
from widenet.diagnostics.sharpness import sharpness
from widenet.dynamics.losses import get_loss
from widenet.dynamics.optim import NormalizedUpdateScaling, dense_layers
from widenet.dynamics.train import train
from widenet.models import MLP
from widenet.studies import Study, StudyConfig, StudyContext, Tables, Task
from widenet.studies._edge_of_stability_analysis import REACHED, analyze
from widenet.studies.seeds import derived_seed
from widenet.studies.validators import distinct_values, known_activation
from widenet.widths import constant, polynomial

CLASSES = 10
"""digits has 10 classes; MSE regresses their one-hot codes."""
MAX_BEYOND_FACTOR = 1e6
"""The largest factor c of part 2: far past any edge GD can train beyond, yet a finite lr."""


class EoSConfig(StudyConfig):
    """The sizes of the edge-of-stability study (defaults: the DEFAULT preset)."""

    points: PositiveInt = Field(default=500, le=1797, description="n, the standardized "
                                "digits training points (a seeded subset of the 1797)")
    activation: str = Field(default="tanh", description="part 1's activation (tanh, relu, "
                            "...); sigma_w at its edge of chaos, no biases")
    depth: PositiveInt = Field(default=3, description="part 1: hidden layers L")
    width: PositiveInt = Field(default=64, description="part 1: width of every hidden layer")
    losses: list[Literal["mse", "cross_entropy"]] = Field(
        default=["mse", "cross_entropy"], description="part 1's losses: 'mse' (one-hot "
        "targets, (1/(2n)) sum ||f - y||^2) and/or 'cross_entropy'")
    lr_factors: list[float] = Field(
        default=[0.8, 0.9], description="part 1: lr = lr_factor * 2 / S_0, so the edge 2/lr "
        "= S_0 / lr_factor; each in (0, 0.95) so that S must sharpen to reach it")
    steps: PositiveInt = Field(default=2500, description="part 1: GD steps per run")
    sharpness_every: PositiveInt = Field(default=10, description="steps between sharpness "
                                         "measurements (both parts)")
    late_fraction: float = Field(default=0.5, gt=0, lt=1, description="part 1: the EoS "
                                 "window is the last late_fraction of the steps after S first "
                                 "reaches 2/lr")
    beyond_width: PositiveInt = Field(default=16, description="part 2: m in m_l = l^2 m")
    beyond_depth: PositiveInt = Field(default=3, description="part 2: hidden layers L")
    beyond_factors: list[float] = Field(
        default=[0.5, 2.0, 4.0, 8.0], description="part 2: lr = c * 2 / S_0 (S_0 the "
        "preconditioned sharpness at init with the scaling); c > 1 is past the classical "
        f"limit; each c in (0, {MAX_BEYOND_FACTOR:g}]")
    beyond_steps: PositiveInt = Field(default=400, description="part 2: GD steps per run")
    beyond_seeds: PositiveInt = Field(default=3, description="part 2: independent network "
                                      "initializations (replicates), each run in both arms at "
                                      "every c; standard errors of part 2 are over them")
    explosion_ratio: float = Field(default=10.0, gt=1, description="part 2: a step whose loss "
                                   "is more than this times the previous step's is an explosion")

    QUICK: ClassVar[dict[str, Any]] = {"points": 200, "losses": ["mse"], "lr_factors": [0.9],
                                       "steps": 700, "sharpness_every": 20, "beyond_width": 8,
                                       "beyond_factors": [2.0, 8.0], "beyond_steps": 100}

    _known_activation = field_validator("activation")(known_activation)

    @field_validator("lr_factors")
    @classmethod
    def _below_edge(cls, values: list[float]) -> list[float]:
        if any(not 0 < v < REACHED for v in distinct_values(values)):
            raise ValueError(f"give distinct factors in (0, {REACHED}): the edge 2/lr must lie "
                             f"above S_0 / {REACHED}")
        return sorted(values)

    @field_validator("beyond_factors")
    @classmethod
    def _positive_factors(cls, values: list[float]) -> list[float]:
        if any(not 0 < v <= MAX_BEYOND_FACTOR for v in distinct_values(values)):
            raise ValueError(f"give distinct factors c in (0, {MAX_BEYOND_FACTOR:g}] (finite: "
                             "lr = c * 2 / S_0)")
        return sorted(values)

    @field_validator("losses")
    @classmethod
    def _some_losses(cls, values: list[str]) -> list[str]:
        if not values or len(set(values)) != len(values):
            raise ValueError("give at least one loss, each once")
        return values


# --- measurements ----------------------------------------------------------------------------

def task_seed(config: EoSConfig, *parts: int) -> int:
    """The network seed of a task: a function of ``config.seed`` and integer task parameters."""
    return derived_seed(config.seed, *parts)


def digits_data(config: EoSConfig, loss: str, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """n standardized digits points (float32) and their targets: one-hot rows for 'mse',
    class indices for 'cross_entropy'."""
    data = load_dataset("digits", n=config.points, seed=config.seed, normalize="standardize",
                        dtype=torch.float32)
    y = data.y
    if loss == "mse":
        y = torch.nn.functional.one_hot(y, CLASSES).to(torch.float32)
    return data.x.to(device), y.to(device)


def normalized_update_factors(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                              loss: str) -> list[float]:
    """xi_l = 1 / (rms(h_{l-1}) rms(dL/dz_l)) of :class:`NormalizedUpdateScaling` at the current
    parameters, from one full-batch forward/backward pass (the model's .grad is left clear)."""
    scaling = NormalizedUpdateScaling()
    scaling.attach(net)
    try:
        with torch.enable_grad(), scaling.recording():
            get_loss(loss)(net(x), y).backward()
        return scaling.factors()
    finally:
        scaling.detach()
        net.zero_grad(set_to_none=True)


def preconditioned_sharpness(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str,
                             factors: list[float] | None) -> float:
    """lambda_max(D^1/2 H D^1/2), D = diag(xi_l) per dense layer (all ones when ``factors`` is
    None: the plain sharpness S = lambda_max(H), docs/theory.md section 5). GD with gradients scaled
    by D is GD in u = D^-1/2 theta, whose Hessian this is; it is computed on a copy whose layer
    l has weight multiplier times sqrt(xi_l) and weights divided by it (same function)."""
    model = copy.deepcopy(net)
    for (_, layer), factor in zip(dense_layers(model), factors or [], strict=False):
        for parameter in layer.parameters(recurse=False):
            parameter.data.div_(math.sqrt(factor))
        layer.weight_multiplier *= math.sqrt(factor)
        if getattr(layer, "bias", None) is not None:
            layer.bias_multiplier *= math.sqrt(factor)
    return sharpness(model, get_loss(loss), x.double(), y).value


def loss_explosions(losses: np.ndarray, ratio: float) -> int:
    """The number of steps s with loss_{s+1} > ratio * loss_s or loss_{s+1} not finite (a
    diverged run's last logged step, where training stops)."""
    values = np.asarray(losses, dtype=float)
    later, earlier = values[1:], values[:-1]
    return int(np.sum((later > ratio * earlier) | ~np.isfinite(later)))


def _curve(result, **columns: Any) -> pd.DataFrame:
    history = result.history
    keep = [c for c in history.columns if c in ("step", "loss", "sharpness", "taylor_c1",
                                               "taylor_c2", "taylor_c3")
            or c.startswith("participation_ratio/")]
    curve = history[keep].rename(columns=lambda c: "participation_ratio"
                                 if c.startswith("participation_ratio/") else c)
    return curve.assign(**columns)


def _eos_task(config: EoSConfig, loss: str, factor: float, context: StudyContext) -> Tables:
    x, y = digits_data(config, loss, context.device)
    net = MLP(x.shape[1], constant(config.width, config.depth), CLASSES, config.activation,
              bias_std=0.0, seed=task_seed(config, 1), device=context.device,
              dtype=torch.float32)
    s0 = preconditioned_sharpness(net, x, y, loss, None)
    lr = factor * 2 / s0
    result = train(net, x, y, lr=lr, steps=config.steps, loss=loss, log_every=1,
                   monitors=[SharpnessMonitor(every=config.sharpness_every)], progress=False)
    curve = _curve(result, loss_name=loss, lr_factor=factor, lr=lr)
    run = {"loss_name": loss, "lr_factor": factor, "lr": lr, "edge": 2 / lr,
           "sharpness_init": s0, "status": result.status, "steps": result.steps}
    return {"eos_curves": curve, "eos_runs": pd.DataFrame([run])}


def _beyond_task(config: EoSConfig, scaled: bool, factor: float, replicate: int,
                 context: StudyContext) -> Tables:
    x, y = digits_data(config, "mse", context.device)
    net = MLP(x.shape[1], polynomial(config.beyond_width, config.beyond_depth), CLASSES, "abs",
              bias_std=0.0, seed=task_seed(config, 2, replicate), device=context.device,
              dtype=torch.float32)
    factors = normalized_update_factors(net, x, y, "mse") if scaled else None
    s0 = preconditioned_sharpness(net, x, y, "mse", factors)
    lr = factor * 2 / s0
    every = config.sharpness_every
    monitors = [SharpnessMonitor(every=every), TaylorMonitor(every=every),
                SoftRankMonitor(every=every, layers="last", size=config.points)]
    result = train(net, x, y, lr=lr, steps=config.beyond_steps, log_every=1, monitors=monitors,
                   gradient_scaling=NormalizedUpdateScaling() if scaled else None,
                   progress=False)
    curve = _curve(result, scaled=scaled, c=factor, replicate=replicate, lr=lr)
    measured = curve.dropna(subset=["sharpness"])
    ranks = curve.dropna(subset=["participation_ratio"])
    run = {"scaled": scaled, "c": factor, "replicate": replicate, "lr": lr, "sharpness_init": s0,
           "status": result.status, "steps": result.steps,
           "explosions": loss_explosions(curve["loss"].to_numpy(), config.explosion_ratio),
           "loss_init": float(curve["loss"].iloc[0]), "loss_final": float(curve["loss"].iloc[-1]),
           "raw_sharpness_init": float(measured["sharpness"].iloc[0]),
           "raw_sharpness_final": float(measured["sharpness"].iloc[-1]),
           "rank_init": float(ranks["participation_ratio"].iloc[0]),
           "rank_final": float(ranks["participation_ratio"].iloc[-1])}
    return {"beyond_curves": curve, "beyond_runs": pd.DataFrame([run])}


def plan(config: EoSConfig) -> list[Task]:
    """Part 1: one GD run per (loss, lr factor); part 2: one per (scaling on/off, factor c,
    initialization replicate)."""
    tasks = [Task(f"eos/{loss}/lr_factor={factor:g}", partial(_eos_task, config, loss, factor))
             for loss in config.losses for factor in config.lr_factors]
    tasks += [Task(f"beyond/{'scaled' if scaled else 'plain'}/c={factor:g}/seed={replicate}",
                   partial(_beyond_task, config, scaled, factor, replicate))
              for scaled in (False, True) for factor in config.beyond_factors
              for replicate in range(config.beyond_seeds)]
    return tasks


STUDY = Study(name="edge-of-stability",
              summary="GD sharpens to 2/lr and hovers there; depthwise update scaling trains "
                      "past 2/S without loss explosions",
              config=EoSConfig, plan=plan, analyze=analyze)
