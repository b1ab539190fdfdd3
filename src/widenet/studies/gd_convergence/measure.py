"""The tasks of the ``gd-convergence`` study: one network trained by full-batch GD per (width m,
seed), with its kernel-dynamics predictions."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import torch

from widenet.data import load_dataset
from widenet.diagnostics.movement import parameter_snapshot, weight_movement
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.predict import KernelDynamics
from widenet.dynamics.train import train
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.gd_convergence.config import GDConfig

LOGGED_STEPS = 100
"""At most about this many evenly spaced steps of every run (and its last) are logged and
compared with the kernel prediction."""


def shared_learning_rate(theta: torch.Tensor, lr_factor: float) -> float:
    """lr = lr_factor * n / lambda_max(Theta): lr_factor / lambda_max(K_inf), K_inf = Theta / n
    (docs/theory.md sections 4-5); GD on the kernel is stable iff lr_factor < 2."""
    return lr_factor * theta.shape[0] / float(torch.linalg.eigvalsh(theta)[-1])


def contraction_factor(theta: torch.Tensor, lr: float) -> float:
    """rho = max_i |1 - lr lambda_i(Theta) / n|, the spectral radius of I - (lr/n) Theta: the
    kernel regime's residual shrinks like rho^s and its loss like rho^(2s) (docs/theory.md 3, 5)."""
    values = torch.linalg.eigvalsh(theta)
    return float((1 - lr * values / theta.shape[0]).abs().max())


def step_count(rho: float, decades: float) -> int:
    """T = ceil(decades ln 10 / (-2 ln rho)): the GD steps after which the kernel prediction's
    loss has fallen at least ``decades`` decades, since loss_s <= rho^(2s) loss_0."""
    if not 0 <= rho < 1:
        raise WidenetError(f"GD on the kernel does not contract (rho = {rho:.6g}): the kernel "
                           "is singular (e.g. a linear activation with more points than "
                           "dimensions) or lr_factor >= 2")
    return 1 if rho == 0 else math.ceil(decades * math.log(10) / (-2 * math.log(rho)))


def entk_distance(entk: torch.Tensor, residual: torch.Tensor) -> float:
    """:func:`min_norm_distance` with the eNTK at init, reported beside the prediction; NaN
    when the eNTK is singular (a net with fewer parameters than points), whose linearized model
    need not interpolate."""
    try:
        return min_norm_distance(entk, residual)
    except WidenetError:
        return math.nan


def asymptotic_rate(rho: float) -> float:
    """-2 ln rho, the kernel regime's loss decay rate per step (nats); inf when rho = 0 (the
    residual vanishes in one step: lr_factor = 1 on a multiple of the identity)."""
    return -2 * math.log(rho) if rho > 0 else math.inf


def min_norm_distance(kernel: torch.Tensor, residual: torch.Tensor) -> float:
    """sqrt(r_0^T K^-1 r_0): the length of the smallest parameter change J^T K^-1 (y - f_0) that
    interpolates the linearized model, with K = J J^T (docs/theory.md section 5), by Cholesky.
    Raises for a K that is singular to working precision (then no such interpolant need exist)."""
    factor, info = torch.linalg.cholesky_ex(kernel.to(torch.float64))
    if int(info) != 0:
        raise WidenetError("the kernel is singular to working precision, so GD need not reach "
                           "an interpolant; use wider networks (more parameters than points) "
                           "or distinct inputs")
    r = residual.reshape(-1, 1).to(torch.float64)
    return float(torch.linalg.solve_triangular(factor, r, upper=False).norm())


def decay_rate(steps: np.ndarray, losses: np.ndarray, start: float) -> float:
    """-slope of the least-squares line ln loss = c - rate * step over the steps >= ``start``:
    the loss's decay rate per step (nats); the kernel regime predicts -2 ln rho."""
    late = (np.asarray(steps) >= start) & (np.asarray(losses) > 0)
    if late.sum() < 2:
        return math.nan
    slope = np.polyfit(np.asarray(steps)[late], np.log(np.asarray(losses)[late]), 1)[0]
    return float(-slope)


def du_factor(lr: float, lambda_min: float, n: int) -> float:
    """1 - lr lambda_min / (2n): the per-step loss factor that Du et al. guarantee,
    ||y - u(k)||^2 <= (1 - eta lambda_0 / 2)^k ||y - u(0)||^2 (docs/theory.md section 3), with
    eta lambda_0 -> lr lambda_min(Theta) / n in this loss convention."""
    return 1 - lr * lambda_min / (2 * n)


class _PredictionDeviation(Monitor):
    """``deviation`` = ||f_s(X) - f_pred,s|| / ||f_0(X) - y||: the distance of the network's
    training outputs from the kernel prediction f_pred,s = y + (I - (lr/n) Theta)^s (f_0 - y)."""

    name = "kernel_prediction"

    def __init__(self, dynamics: KernelDynamics, lr: float, initial_residual: float):
        self.dynamics, self.lr, self.scale = dynamics, lr, initial_residual

    @torch.no_grad()
    def measure(self, state: RunState) -> dict[str, float]:
        gap = state.model(state.x) - self.dynamics.gd_train(state.step, self.lr)
        return {"deviation": float(gap.norm()) / self.scale}


# --- tasks -----------------------------------------------------------------------------------

def network_seed(config: GDConfig, m: int, replicate: int) -> int:
    """The weight seed of network ``replicate`` at width m: a function of ``config.seed``, m and
    the replicate only, so a resumed run redraws the same network."""
    return derived_seed(config.seed, m, replicate)


def _data(config: GDConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset(config.dataset, n=config.points, dim=config.dim, seed=config.seed)
    return data.x.to(device), data.y.to(device)


def compute_task(config: GDConfig, m: int, replicate: int, context: StudyContext) -> Tables:
    x, y = _data(config, context.device)
    n = x.shape[0]
    net = MLP(config.dim, [m] * config.depth, 1, config.activation, weight_std=None,
              bias_std=0.0, seed=network_seed(config, m, replicate), device=context.device,
              dtype=torch.float64)
    theta = infinite_kernels(net, x).ntk
    lr = shared_learning_rate(theta, config.lr_factor)
    rho = contraction_factor(theta, lr)
    steps = step_count(rho, config.decades)
    with torch.no_grad():
        f0 = net(x)
    residual = f0 - y
    entk = empirical_ntk(net, x).ntk
    dynamics = KernelDynamics(theta, y, f0)
    start = parameter_snapshot(net)
    result = train(net, x, y, lr=lr, steps=steps, log_every=math.ceil(steps / LOGGED_STEPS),
                   monitors=[_PredictionDeviation(dynamics, lr, float(residual.norm()))],
                   progress=False)
    finite = all(bool(torch.isfinite(p).all()) for p in net.parameters())
    moved = weight_movement(net, start) if finite else None  # None: the run blew up to NaN/inf
    theta_values = torch.linalg.eigvalsh(theta)
    entk_values = torch.linalg.eigvalsh(entk)
    curve = result.measured(_PredictionDeviation.name, how="left")[["step", "loss", "deviation"]]
    curve = curve.assign(m=m, seed=replicate)
    predicted = dynamics.gd_train(curve["step"].tolist(), lr)
    curve["loss_pred"] = 0.5 * (predicted - y).square().sum(dim=(1, 2)).cpu().numpy() / n
    fit_start = (1 - config.fit_fraction) * steps
    row = {
        "m": m, "seed": replicate, "params": sum(p.numel() for p in net.parameters()),
        "status": result.status, "lr": lr, "steps": steps,
        "lambda_min_inf": float(theta_values[0]), "lambda_max_inf": float(theta_values[-1]),
        "lambda_min_entk": float(entk_values[0]), "lambda_max_entk": float(entk_values[-1]),
        "loss_initial": float(curve["loss"].iloc[0]), "loss_final": float(curve["loss"].iloc[-1]),
        "du_factor": du_factor(lr, float(theta_values[0]), n),
        "rate": decay_rate(curve["step"], curve["loss"], fit_start),
        "rate_pred": decay_rate(curve["step"], curve["loss_pred"], fit_start),
        "rate_asymptotic": asymptotic_rate(rho),
        "deviation_max": float(curve["deviation"].max()),
        "log_loss_ratio_max": float(np.abs(np.log(curve["loss"] / curve["loss_pred"])).max()),
        "distance": moved.absolute if moved else math.nan,
        "distance_pred": min_norm_distance(theta, residual),
        "distance_entk": entk_distance(entk, residual),
        "theta0_norm": math.sqrt(sum(float(p.square().sum()) for p in start.values())),
        "relative_movement": moved.relative if moved else math.nan,
    }
    row["relative_movement_pred"] = row["distance_pred"] / row["theta0_norm"]
    return {"curves": curve, "runs": pd.DataFrame([row])}


def plan(config: GDConfig) -> list[Task]:
    """One task per (width m, seed): train one network at the shared learning rate."""
    return [Task(f"m={m}/seed={replicate}", partial(compute_task, config, m, replicate))
            for m in config.widths for replicate in range(config.seeds)]
