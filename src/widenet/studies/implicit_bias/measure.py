"""Measurements of the ``implicit-bias`` study: one long GD run of a small-init homogeneous net
with margins logged, and the lazy (NTK) margin of the same net at initialization.

The lazy margin is the hard-margin SVM of the tangent features at theta_0 (docs/theory.md section 5,
docs/studies/implicit-bias.md): for an L_h-homogeneous net, Euler's identity
<theta, grad f(x; theta)> = L_h f(x; theta) gives

    gamma(theta) = min_i y_i f(x_i; theta) / ||theta||^L_h
        = (1 / L_h) min_i y_i <theta / ||theta||, grad f(x_i; theta)> / ||theta||^(L_h - 1)
        <= (1 / L_h) max_{||u|| = 1} min_i y_i <u, grad f(x_i; theta)> / ||theta||^(L_h - 1)
        =: gamma_tangent(theta),

the max-margin linear classifier of the features grad f(x_i; theta), whose kernel is the empirical
NTK. gamma_tangent(theta_0) is the best normalized margin a net whose features stay frozen at
initialization (the lazy regime) can reach; it does not depend on the scale of theta_0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from functools import partial

import numpy as np
import pandas as pd
import torch

from widenet.data import load_dataset
from widenet.diagnostics.builtin import MarginMonitor
from widenet.diagnostics.margins import homogeneity_degree, parameter_norm
from widenet.dynamics.train import train
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.models import MLP
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.implicit_bias.config import ImplicitBiasConfig
from widenet.studies.implicit_bias.kkt import DirectionMonitor, checkpoint_steps

RUN_KEYS = ["activation", "depth", "degree", "seed"]
CHECKPOINT_COLUMNS = ["direction_change", "gradient_alignment", "kkt_stationarity",
                      "kkt_slackness"]
GROUP_KEYS = ["activation", "depth", "degree"]


SVM_TOLERANCE = 1e-9
"""Largest relative duality gap (upper - achieved) / upper that :func:`max_margin` accepts."""

_DATA, _NET = 11, 12  # stream tags of derived_seed


def max_margin(kernel: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The hard-margin SVM without bias in the feature space of ``kernel``: returns
    (achieved, upper), achieved <= gamma* = max_{||w|| = 1} min_i y_i <w, phi(x_i)> <= upper.

    The dual min_alpha alpha^T Q alpha / 2 - 1^T alpha over alpha >= 0, Q = diag(y) K diag(y),
    is solved exactly by the Lawson-Hanson active-set method (:func:`_active_set_qp`). With
    w = sum_i alpha_i y_i phi(x_i): achieved = min_i (Q alpha)_i / sqrt(alpha^T Q alpha) (the
    margin of that w) and, by duality, 1 / (2 gamma*^2) = max D >= max_t D(t alpha) =
    (1^T alpha)^2 / (2 alpha^T Q alpha) for D(alpha) = 1^T alpha - alpha^T Q alpha / 2, so
    upper = sqrt(alpha^T Q alpha) / 1^T alpha. Raises a WidenetError when the kernel is not
    finite, the points are not separable in the feature space or the gap exceeds
    SVM_TOLERANCE.
    """
    y = labels.to(torch.float64).cpu().numpy()
    q = (y[:, None] * kernel.to(torch.float64).cpu().numpy()) * y[None, :]
    if not np.isfinite(q).all():
        raise WidenetError("the kernel has non-finite entries (it overflowed), so its max "
                           "margin is not defined; use a parameter scale closer to 1")
    scale = float(np.abs(q).max()) or 1.0  # solved on q / scale: the solver's tolerances are
    alpha = _active_set_qp(q / scale) / scale  # absolute, the kernel's scale is arbitrary
    gradient = q @ alpha
    quadratic = float(alpha @ gradient)
    if quadratic <= 0 or float(gradient.min()) <= 0:
        raise WidenetError("the data are not separable by these features (a singular kernel?), "
                           "so their max margin is not defined")
    achieved = float(gradient.min()) / math.sqrt(quadratic)
    upper = math.sqrt(quadratic) / float(alpha.sum())
    if upper - achieved > SVM_TOLERANCE * upper:
        raise WidenetError(f"the max-margin solver stopped with a relative duality gap of "
                           f"{(upper - achieved) / upper:.2g}; the kernel is too ill-conditioned")
    return achieved, upper


def _active_set_qp(q: np.ndarray) -> np.ndarray:
    """argmin over alpha >= 0 of alpha^T q alpha / 2 - 1^T alpha for a positive definite q
    (Lawson & Hanson's NNLS active-set method written for the quadratic form)."""
    n = q.shape[0]
    alpha = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    threshold = 1e-12 * max(1.0, float(np.abs(q).max()))
    for _ in range(3 * n):
        descent = 1.0 - q @ alpha  # minus the gradient
        candidates = np.where(passive, -np.inf, descent)
        if candidates.max() <= threshold:
            return alpha
        passive[int(candidates.argmax())] = True
        while True:
            trial = np.zeros(n)
            try:
                trial[passive] = np.linalg.solve(q[np.ix_(passive, passive)],
                                                 np.ones(passive.sum()))
            except np.linalg.LinAlgError:
                raise WidenetError("the kernel is singular on the support vectors, so the "
                                   "points may not be separable by these features") from None
            if trial[passive].min() > 0:
                alpha = trial
                break
            shrinking = passive & (trial <= 0)
            step = np.min(alpha[shrinking] / (alpha[shrinking] - trial[shrinking]))
            alpha = alpha + step * (trial - alpha)
            passive &= alpha > threshold * 1e-3
            alpha[~passive] = 0.0
    raise WidenetError("the max-margin solver did not converge in 3n active-set changes")


def tangent_margin(net: MLP, x: torch.Tensor, labels: torch.Tensor) -> float:
    """gamma_tangent(theta) = (1 / L_h) gamma*_NTK / ||theta||^(L_h - 1) (module docstring):
    the max margin of the tangent features at the net's current theta, with the empirical NTK
    K = J J^T computed in float64, normalized like gamma (docs/theory.md section 5)."""
    degree = homogeneity_degree(net)
    kernel = empirical_ntk(net, x.to(torch.float64)).ntk
    achieved, _ = max_margin(kernel, labels)
    return achieved / degree / parameter_norm(net) ** (degree - 1)


def separable_data(config: ImplicitBiasConfig, replicate: int, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The "separable" training set of a replicate, labels mapped from {0, 1} to y = 2c - 1."""
    data = load_dataset("separable", n=config.n, dim=config.dim,
                        seed=derived_seed(config.seed, _DATA, replicate))
    return (data.x.to(device), (2 * data.y - 1).to(device=device, dtype=torch.float64))


def small_net(config: ImplicitBiasConfig, activation: str, depth: int, replicate: int,
              device: torch.device) -> MLP:
    """A bias-free edge-of-chaos MLP (NTK parametrization, float64) with every parameter
    multiplied by ``init_scale``: homogeneous of degree depth + 1, so the scale only moves it
    towards the rich regime and leaves every normalized margin of theta_0 unchanged."""
    net = MLP(config.dim, [config.width] * depth, 1, activation,
              seed=derived_seed(config.seed, _NET, replicate, depth), device=device,
              dtype=torch.float64)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(config.init_scale)
    return net


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch's CPU ops on one intra-op thread, restoring the previous count afterwards.

    The study's matrices are tiny (n x width), so threads bring no speed; on a loaded machine
    they cost up to 20x through OpenMP oversubscription (measured: 500 GD steps 22 s with two
    threads, 1 s with one, at load 8 on two cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compute_task(config: ImplicitBiasConfig, activation: str, depth: int, replicate: int,
                 context: StudyContext) -> Tables:
    """Train one net by full-batch GD with a fixed lr on ``config.loss`` (a mean over the data)
    and return the tables ``trajectory`` (one row per logged step: loss, gamma_t, the smoothed
    margin of the loss, ||theta_t||), ``checkpoints`` (one row per checkpoint, evenly spaced in
    log t from late_fraction * steps to steps: direction change, gradient alignment, KKT
    residuals; :class:`~widenet.studies.implicit_bias.kkt.DirectionMonitor`) and ``runs`` (one
    row: status, lazy margin at theta_0, tangent margin at theta_T)."""
    x, y = separable_data(config, replicate, context.device)
    net = small_net(config, activation, depth, replicate, context.device)
    degree = homogeneity_degree(net)
    parameters = {"activation": activation, "depth": depth, "degree": degree,
                  "width": config.width, "seed": replicate}
    lazy = tangent_margin(net, x, y)
    steps = checkpoint_steps(config.late_fraction * config.steps, config.steps,
                             config.checkpoints, config.log_every)
    with single_thread():
        result = train(net, x, y, lr=config.lr, steps=config.steps, loss=config.loss,
                       monitors=[MarginMonitor(degree), DirectionMonitor(steps, y, degree)],
                       log_every=config.log_every, progress=False)
    smoothed = f"smoothed_margin_{config.loss}"
    # A row whose loss was not finite has no margins (a run that diverged at step 0 has none
    # at all): those come back NaN.
    history = result.measured(MarginMonitor.name, how="left")
    history = history.reindex(columns=["step", "loss", "normalized_margin", smoothed,
                                              "parameter_norm"])
    trajectory = pd.DataFrame({
        "step": history["step"].astype(int), "time": config.lr * history["step"],
        "loss": history["loss"], "normalized_margin": history["normalized_margin"],
        "smoothed_margin": history[smoothed],
        "parameter_norm": history["parameter_norm"]}).assign(**parameters)
    measured = result.measured(DirectionMonitor.name).reindex(
        columns=["step", *CHECKPOINT_COLUMNS])
    checkpoints = measured[measured["step"].isin(steps)
                           & measured["gradient_alignment"].notna()].assign(**parameters)
    completed = result.status == "completed"
    final = tangent_margin(net, x, y) if completed else math.nan
    runs = {**parameters, "status": result.status, "reason": result.reason,
            "steps": result.steps, "lazy_margin": lazy, "final_tangent_margin": final}
    return {"trajectory": trajectory, "checkpoints": checkpoints.reset_index(drop=True),
            "runs": pd.DataFrame([runs])}


def plan(config: ImplicitBiasConfig) -> list[Task]:
    """One task per (activation, depth, replicate): one long GD run."""
    return [Task(f"{activation}/L={depth}/m={config.width}/seed={replicate}",
                 partial(compute_task, config, activation, depth, replicate))
            for activation in config.activations for depth in config.depths
            for replicate in range(config.seeds)]
