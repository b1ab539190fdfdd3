"""The tasks of the ``edge-of-stability`` study: GD runs that sharpen to 2/lr (part 1), and
plain against normalized-update GD past 2/S (part 2)."""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from widenet.data import load_dataset
from widenet.diagnostics.builtin import SharpnessMonitor, SoftRankMonitor, TaylorMonitor
from widenet.diagnostics.sharpness import sharpness
from widenet.diagnostics.taylor import taylor_coefficients
from widenet.dynamics.losses import get_loss
from widenet.dynamics.optim import NormalizedUpdateScaling, Optimizer, dense_layers
from widenet.dynamics.train import train
from widenet.models import MLP
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.edge_of_stability.config import EoSConfig
from widenet.widths import constant, polynomial

CLASSES = 10
"""digits has 10 classes; MSE regresses their one-hot codes."""
TAYLOR_FRACTIONS = tuple(2.0**-k for k in range(1, 7))
"""The small steps of the Taylor-identity task: lr = fraction * 2/S_0, halving from 1/2 to
1/64, so that the remainder L(theta') - L(theta) - (c1 + c2 + c3) = O(lr^4) shrinks 16-fold per
halving."""


def task_seed(config: EoSConfig, *parts: int) -> int:
    """The network seed of a task: a function of ``config.seed`` and integer task parameters."""
    return derived_seed(config.seed, *parts)


def digits_data(config: EoSConfig, loss: str, device: torch.device, label_noise: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """n standardized digits points (float32) and their targets: one-hot rows for 'mse',
    class indices for 'cross_entropy'; a fraction ``label_noise`` of the labels replaced by
    random classes (``load_dataset``'s ``corrupt``)."""
    data = load_dataset("digits", n=config.points, seed=config.seed, normalize="standardize",
                        corrupt=label_noise, dtype=torch.float32)
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
    # every step's loss, with the monitors' columns where they ran
    history = result.measured(*result.measurements, how="left")
    keep = [c for c in history.columns if c in ("step", "loss", "sharpness", "taylor_c1",
                                               "taylor_c2", "taylor_c3")
            or c.startswith("participation_ratio/")]
    curve = history[keep].rename(columns=lambda c: "participation_ratio"
                                 if c.startswith("participation_ratio/") else c)
    return curve.assign(**columns)


def compute_eos_task(config: EoSConfig, loss: str, factor: float, context: StudyContext) -> Tables:
    """One part-1 run: full-batch GD at lr = factor * 2/S_0 with ``loss``. MSE on clean digits
    with sigma_w = ``mse_weight_std`` (a small S_0); cross-entropy on digits with a fraction
    ``ce_label_noise`` of random labels and edge-of-chaos sigma_w."""
    mse = loss == "mse"
    x, y = digits_data(config, loss, context.device, 0.0 if mse else config.ce_label_noise)
    net = MLP(x.shape[1], constant(config.width, config.depth), CLASSES, config.activation,
              config.mse_weight_std if mse else None, bias_std=0.0, seed=task_seed(config, 1),
              device=context.device, dtype=torch.float32)
    s0 = preconditioned_sharpness(net, x, y, loss, None)
    lr = factor * 2 / s0
    result = train(net, x, y, lr=lr, steps=config.steps, loss=loss, log_every=1,
                   monitors=[SharpnessMonitor(every=config.sharpness_every)], progress=False)
    curve = _curve(result, loss_name=loss, lr_factor=factor, lr=lr)
    run = {"loss_name": loss, "lr_factor": factor, "lr": lr, "edge": 2 / lr,
           "sharpness_init": s0, "status": result.status, "steps": result.steps}
    return {"eos_curves": curve, "eos_runs": pd.DataFrame([run])}


def compute_beyond_task(config: EoSConfig, scaled: bool, factor: float, replicate: int,
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
                   optimizer=Optimizer(
                       gradient_scaling=NormalizedUpdateScaling() if scaled else None),
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


def compute_taylor_task(config: EoSConfig, replicate: int, context: StudyContext) -> Tables:
    """At initialization of a part-1 network (float64 copy, MSE), one GD step along the gradient
    for each lr = fraction * 2/S_0 (:data:`TAYLOR_FRACTIONS`): c1, c2, c3, the actual change and
    the remainder actual - (c1 + c2 + c3) (:func:`widenet.diagnostics.taylor_coefficients`)."""
    x, y = digits_data(config, "mse", context.device)
    net = MLP(x.shape[1], constant(config.width, config.depth), CLASSES, config.activation,
              config.mse_weight_std, bias_std=0.0, seed=task_seed(config, 3, replicate),
              device=context.device,
              dtype=torch.float64)
    x, y = x.double(), y.double()
    s0 = sharpness(net, get_loss("mse"), x, y).value
    rows = []
    for fraction in TAYLOR_FRACTIONS:
        result = taylor_coefficients(net, get_loss("mse"), x, y, None, fraction * 2 / s0)
        rows.append({"replicate": replicate, "fraction": fraction, "lr": result.lr,
                     "sharpness_init": s0, "loss": result.loss, "c1": result.c1,
                     "c2": result.c2, "c3": result.c3, "actual": result.actual,
                     "remainder": result.remainder})
    return {"taylor_identity": pd.DataFrame(rows)}


def plan(config: EoSConfig) -> list[Task]:
    """Part 1: one GD run per (loss, lr factor); part 2: one per (scaling on/off, factor c,
    initialization replicate); the Taylor identity: one per replicate."""
    tasks = [Task(f"eos/{loss}/lr_factor={factor:g}",
                  partial(compute_eos_task, config, loss, factor))
             for loss in config.losses for factor in config.lr_factors]
    tasks += [Task(f"beyond/{'scaled' if scaled else 'plain'}/c={factor:g}/seed={replicate}",
                   partial(compute_beyond_task, config, scaled, factor, replicate))
              for scaled in (False, True) for factor in config.beyond_factors
              for replicate in range(config.beyond_seeds)]
    tasks += [Task(f"taylor/seed={replicate}", partial(compute_taylor_task, config, replicate))
              for replicate in range(config.beyond_seeds)]
    return tasks
