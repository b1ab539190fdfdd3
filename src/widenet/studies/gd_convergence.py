"""Study ``gd-convergence``: wide nets converge linearly under GD at one learning rate.

docs/theory.md sections 3 (Du et al.), 4 (A Framework for Overparameterized Learning) and 5
(closed-form kernel dynamics). Full-batch GD with step lr on the MSE loss (1/(2n)) ||f(X) - y||^2
of a bias-free edge-of-chaos MLP in the NTK parametrization is, in the kernel regime, the linear
recurrence r_{s+1} = (I - (lr/n) Theta) r_s on the residual r = f(X) - y, with Theta the
infinite-width NTK on the n training points (K_inf = Theta / n in section 4's notation). So:

- one learning rate, lr = lr_factor * n / lambda_max(Theta), is stable (lr < 2n / lambda_max) at
  every width, since the empirical NTK concentrates around the width-independent Theta;
- the loss decays linearly, asymptotically by rho^2 per step, rho = max_i |1 - lr lambda_i / n|,
  and the whole curve is predicted by Theta and the network's own f_0
  (:meth:`widenet.predict.KernelDynamics.gd_train`);
- the parameters travel ||theta_T - theta_0|| -> sqrt(r_0^T Theta^-1 r_0), independent of
  width (GD on the linearized model converges to the interpolant nearest theta_0), while the
  relative movement ||theta_T - theta_0|| / ||theta_0|| -> 0 like P^{-1/2} (P parameters).

Each task trains one network (one width m, one seed) on the same data at the same lr and
records its loss curve beside the kernel prediction. See docs/studies/gd-convergence.md.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt, field_validator

from widenet.checks import Check, check_close, check_interval
from widenet.data import load_dataset
from widenet.diagnostics.monitors import Monitor, RunState
from widenet.diagnostics.movement import parameter_snapshot, weight_movement
from widenet.dynamics.predict import KernelDynamics
from widenet.dynamics.train import train
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP
from widenet.studies import Analysis, Study, StudyConfig, StudyContext, Tables, Task
from widenet.studies._gd_convergence_figures import (
    deviation_figure,
    distance_figure,
    loss_curves_figure,
    rate_figure,
)
from widenet.studies.fits import all_diverged, mean_stderr, power_law_fit
from widenet.studies.seeds import derived_seed
from widenet.studies.validators import distinct_widths, known_activation

LOGGED_STEPS = 100
"""At most about this many evenly spaced steps of every run (and its last) are logged and
compared with the kernel prediction."""
PREDICTED_DEVIATION_SLOPE = -0.5
DEVIATION_SLOPE_TOLERANCE = 0.1
"""Accepted |fitted slope + 1/2| of the curve deviation against m (docs, "Checks")."""
BAND_SIGMAS = 2.0
"""The rate and distance checks accept a mean error at the widest width within this many
typical one-network errors, extrapolated by the m^{-1/2} law (docs, "Checks")."""
DIVERGED_RATIO = 1e6
"""loss_T / loss_0 recorded for a run whose loss became NaN or inf: ``train``'s default
divergence threshold, which any diverged run has reached."""


class GDConfig(StudyConfig):
    """The sizes of the gd-convergence study (defaults: the DEFAULT preset)."""

    dataset: Literal["sphere", "teacher"] = Field(
        default="sphere", description="training data, x uniform on ||x||^2 = d: 'sphere' "
        "(targets i.i.d. N(0, 1), labels to memorize) or 'teacher' (targets from a random "
        "ReLU teacher MLP); drawn once from `seed`")
    points: int = Field(default=32, ge=2, description="n, the number of training points "
                        "(>= 2: with one, GD on the kernel reaches zero loss in a single step)")
    dim: PositiveInt = Field(default=16, description="d, the input dimension")
    depth: PositiveInt = Field(default=1, description="L, the number of hidden layers")
    activation: str = Field(default="relu", description="the activation (relu, abs, tanh, "
                            "erf, leaky_relu:SLOPE, ...); sigma_w at its edge of chaos, no biases")
    widths: list[PositiveInt] = Field(
        default=[128, 512, 2048, 8192, 32768], description="hidden widths m (every hidden "
        "layer m wide); at least 2 distinct values")
    seeds: int = Field(default=8, ge=2, description="networks trained per width (>= 2, for a "
                       "standard error)")
    lr_factor: float = Field(
        default=1.0, gt=0, lt=2, description="the shared learning rate is "
        "lr = lr_factor * n / lambda_max(Theta); GD on the kernel is stable iff lr_factor < 2")
    decades: float = Field(
        default=10.0, gt=0, le=20, description="the run lasts T = ceil(decades ln 10 / "
        "(-2 ln rho)) steps, so that the kernel prediction's loss falls at least this many "
        "decades (rho = max_i |1 - lr lambda_i / n|); at most 20 (float64 round-off)")
    fit_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="the rate is fitted on the last fit_fraction of "
        "the run's steps")

    QUICK: ClassVar[dict[str, Any]] = {"widths": [128, 512, 2048]}

    _known_activation = field_validator("activation")(known_activation)

    _distinct_widths = field_validator("widths")(distinct_widths)


# --- the theory's numbers --------------------------------------------------------------------

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


def _compute(config: GDConfig, m: int, replicate: int, context: StudyContext) -> Tables:
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
    entk = empirical_ntk(net, x)
    dynamics = KernelDynamics(theta, y, f0)
    start = parameter_snapshot(net)
    result = train(net, x, y, lr=lr, steps=steps, log_every=math.ceil(steps / LOGGED_STEPS),
                   monitors=[_PredictionDeviation(dynamics, lr, float(residual.norm()))],
                   progress=False)
    finite = all(bool(torch.isfinite(p).all()) for p in net.parameters())
    moved = weight_movement(net, start) if finite else None  # None: the run blew up to NaN/inf
    theta_values = torch.linalg.eigvalsh(theta)
    entk_values = torch.linalg.eigvalsh(entk)
    curve = result.history[["step", "loss", "deviation"]].assign(m=m, seed=replicate)
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
    return [Task(f"m={m}/seed={replicate}", partial(_compute, config, m, replicate))
            for m in config.widths for replicate in range(config.seeds)]


# --- analysis --------------------------------------------------------------------------------

def with_errors(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with rate_error = rate / rate_pred - 1, distance_error = distance /
    distance_pred - 1 and loss_ratio = loss_T / loss_0 (DIVERGED_RATIO where not finite)."""
    ratio = runs["loss_final"] / runs["loss_initial"]
    return runs.assign(rate_error=runs["rate"] / runs["rate_pred"] - 1,
                       distance_error=runs["distance"] / runs["distance_pred"] - 1,
                       loss_ratio=ratio.where(np.isfinite(ratio), DIVERGED_RATIO))


def width_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per width m: mean over seeds and standard error (std / sqrt(seeds)) of the relative rate
    error, the curve deviation, the relative distance error and the measured and predicted
    relative movements; the largest loss ratio loss_T / loss_0 and the diverged runs."""
    rows = []
    for m, group in runs.groupby("m", sort=True):
        row: dict[str, Any] = {"m": m, "params": int(group["params"].iloc[0]),
                               "runs": len(group),
                               "diverged": int((group["status"] != "completed").sum()),
                               "loss_ratio_max": float(group["loss_ratio"].max())}
        for column in ("rate_error", "deviation_max", "distance_error", "relative_movement",
                       "relative_movement_pred"):
            row[column], row[f"{column}_stderr"] = mean_stderr(group[column])
        rows.append(row)
    return pd.DataFrame(rows)


def fit_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Power-law fits against m pooled over seeds (OLS slope, its standard error): the curve
    deviation (theory: -1/2) and the measured and predicted relative movement (theory: the
    predicted one's slope, -(1/2) d ln P / d ln m for a width-independent distance)."""
    rows = []
    for quantity in ("deviation_max", "relative_movement", "relative_movement_pred"):
        fit = power_law_fit(runs["m"], runs[quantity])
        rows.append({"quantity": quantity, "slope": fit.slope, "slope_stderr": fit.slope_stderr,
                     "intercept": fit.intercept, "points": fit.points})
    return pd.DataFrame(rows)


def extrapolated_tolerance(runs: pd.DataFrame, column: str) -> float:
    """BAND_SIGMAS typical one-network errors at the widest width m_max, carried there from the
    narrower widths by the m^{-1/2} law: BAND_SIGMAS * sqrt(mean over their runs of
    error^2 m / m_max) (error^2 m estimates the squared bias plus variance of sqrt(m) error),
    over the finite errors; NaN when there is none (e.g. every narrower run diverged)."""
    narrow = runs[(runs["m"] < runs["m"].max()) & np.isfinite(runs[column])]
    if narrow.empty:
        return math.nan
    scaled = narrow[column].to_numpy(dtype=float) ** 2 * narrow["m"].to_numpy(dtype=float)
    return BAND_SIGMAS * math.sqrt(float(np.mean(scaled)) / float(runs["m"].max()))


def _widest_error_check(runs: pd.DataFrame, column: str, name: str, claim: str) -> Check:
    """Mean of ``column`` (a relative error) over the seeds of the widest width against 0,
    within :func:`extrapolated_tolerance`, with the seeds' standard error; inconclusive when
    the narrower widths have no finite error to set the tolerance."""
    widest = runs[runs["m"] == runs["m"].max()]
    mean, stderr = mean_stderr(widest[column])
    m = int(widest["m"].iloc[0])
    tolerance = extrapolated_tolerance(runs, column)
    note = (f"{len(widest)} seeds; tolerance: {BAND_SIGMAS:g} x the narrower widths' rms "
            f"one-network error scaled by m^-1/2 to m = {m}")
    if not math.isfinite(tolerance):
        note += " (none is finite, so no tolerance: inconclusive)"
    return check_close(name, f"{claim} at m = {m}", predicted=0.0, measured=mean,
                       tolerance=tolerance, stderr=stderr, note=note)


def convergence_check(runs: pd.DataFrame, decades: float) -> Check:
    """Every run's loss ratio at or below Du et al.'s guarantee (1 - lr lambda_min / (2n))^T."""
    bound = float(runs["steps"].iloc[0] * np.log10(runs["du_factor"].iloc[0]))
    diverged = int((runs["status"] != "completed").sum())
    return check_interval(
        "converges at shared lr", "every width converges linearly at the one learning rate: "
        "max over runs of log10(loss_T / loss_0) <= log10 of Du et al.'s (1 - lr "
        "lambda_min(Theta) / (2n))^T", measured=float(np.log10(runs["loss_ratio"].max())),
        high=bound, predicted=bound,
        note=f"{len(runs)} runs, {diverged} diverged; T = {int(runs['steps'].iloc[0])} steps "
             f"at lr = {runs['lr'].iloc[0]:.4g}; the kernel prediction falls >= {decades:g} "
             "decades")


def collapse_check(fits: pd.DataFrame) -> Check:
    """Fitted slope of the curve deviation against m within DEVIATION_SLOPE_TOLERANCE of -1/2."""
    fit = fits[fits["quantity"] == "deviation_max"].iloc[0]
    return check_close(
        "curves collapse", "the training curves collapse onto the kernel prediction: "
        "max_s ||f_s - f_pred,s|| / ||r_0|| ~ m^-1/2 (fitted log-log slope = -1/2)",
        predicted=PREDICTED_DEVIATION_SLOPE, measured=fit.slope,
        tolerance=DEVIATION_SLOPE_TOLERANCE, stderr=fit.slope_stderr,
        note=f"{fit.points} runs pooled; stderr from the OLS fit")


def analyze(config: GDConfig, tables: Tables) -> Analysis:
    """Per-width summaries, power-law fits, the four figures and the four checks."""
    runs = with_errors(tables["runs"])
    widths_summary, fits = width_table(runs), fit_table(runs)
    checks = [
        _widest_error_check(runs, "rate_error", "linear rate",
                            "the loss decays at the kernel rate: late-window fitted rate / the "
                            "K_inf prediction's rate on the same window - 1 = 0"),
        convergence_check(runs, config.decades),
        collapse_check(fits),
        _widest_error_check(runs, "distance_error", "distance travelled",
                            "GD ends at the interpolant nearest theta_0: ||theta_T - theta_0|| "
                            "/ sqrt(r_0^T Theta^-1 r_0) - 1 = 0"),
    ]
    figures = {"loss_curves": loss_curves_figure(tables["curves"], runs),
               "rate": rate_figure(runs, extrapolated_tolerance(runs, "rate_error")),
               "deviation": deviation_figure(runs, fits, PREDICTED_DEVIATION_SLOPE),
               "distance": distance_figure(runs, fits,
                                           extrapolated_tolerance(runs, "distance_error"))}
    diverged = all_diverged(runs["status"], "training runs", "lower lr_factor")
    return Analysis(tables={"runs": runs, "widths": widths_summary, "fits": fits},
                    figures=figures, checks=checks, diverged=diverged)


STUDY = Study(name="gd-convergence",
              summary="GD converges linearly at one lr across widths, along the kernel "
                      "prediction, to the nearest interpolant",
              config=GDConfig, plan=plan, analyze=analyze)
