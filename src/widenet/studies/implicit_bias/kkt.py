"""Directional convergence, gradient alignment and the KKT residual of the max-margin problem
(Ji & Telgarsky 2020; Lyu & Li 2020), measured at checkpoints of one GD run.

For an L_h-homogeneous net with margins q_i(theta) = y_i f(x_i; theta), u = theta / ||theta||:

- directional convergence: u_t converges, so the change ||u_{s_k} - u_{s_{k-1}}|| between
  checkpoints s_k spaced evenly in log t shrinks (Ji & Telgarsky 2020, theorem 3.1);
- alignment: cos(theta_t, -grad L(theta_t)) -> 1 (Ji & Telgarsky 2020, theorem 4.1);
- KKT: theta / q_min^(1/L_h) approaches a KKT point of min ||theta||^2 / 2 s.t. q_i(theta) >= 1
  (Lyu & Li 2020, theorem 4.4). At theta~ = theta / q_min^(1/L_h) (so min_i q_i(theta~) = 1)
  lambda >= 0 is fitted by one non-negative least-squares problem (scipy's NNLS) for both KKT
  conditions at once,

      lambda = argmin_{lambda >= 0} ||theta~ - sum_i lambda_i grad q_i(theta~)||^2
                                    + (sum_i lambda_i (q_i(theta~) - 1))^2,

  (the gradients alone need not fix lambda: they may be linearly dependent), and the
  stationarity residual eps = ||theta~ - sum_i lambda_i grad q_i(theta~)|| / ||theta~|| and the
  complementary slackness delta = sum_i lambda_i (q_i(theta~) - 1) >= 0 are reported. Lyu & Li's
  (eps, delta)-KKT points have both small; at an exact KKT point both are 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import nnls

from widenet.dynamics.monitor import Monitor, RunState
from widenet.errors import WidenetError


def flat_parameters(net: torch.nn.Module) -> torch.Tensor:
    """theta as one detached float64 vector (the parameters in ``named_parameters`` order)."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).double()


def margin_jacobian(net: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, J): the margins q_i = y_i f(x_i; theta) (n,) and their gradients J_i = grad q_i
    (n, P), float64, one backward pass per point."""
    parameters = list(net.parameters())
    margins = labels.reshape(-1).to(torch.float64) * net(x).reshape(-1).to(torch.float64)
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(q, parameters,
                                                                  retain_graph=True)])
            for q in margins]
    return margins.detach(), torch.stack(rows).double()


def kkt_residual(net: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, degree: int
                 ) -> tuple[float, float]:
    """(eps, delta): the relative stationarity residual and the complementary slackness of
    theta~ = theta / q_min^(1/L_h) for the max-margin problem (module docstring); (nan, nan)
    when the data are not separated (q_min <= 0) or a number is not finite."""
    margins, jacobian = margin_jacobian(net, x, labels)
    smallest = float(margins.min())
    if not smallest > 0 or not bool(torch.isfinite(jacobian).all()):
        return math.nan, math.nan
    scale = smallest ** (-1.0 / degree)
    theta = (flat_parameters(net) * scale).cpu().numpy()
    gradients = (jacobian * scale ** (degree - 1)).cpu().numpy()  # grad q_i(theta~)
    excess = (margins / smallest).cpu().numpy() - 1  # q_i(theta~) - 1 >= 0
    # one NNLS for both conditions: stationarity rows and the slackness row sum lambda_i excess_i
    system = np.vstack([gradients.T, excess[None, :]])
    target = np.append(theta, 0.0)
    weights, _ = nnls(system, target, maxiter=50 * gradients.shape[0])
    stationarity = float(np.linalg.norm(theta - gradients.T @ weights))
    return stationarity / float(np.linalg.norm(theta)), float(weights @ excess)


def gradient_alignment(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn
                       ) -> float:
    """cos(theta, -grad L(theta)) for the full-batch training loss ``loss_fn(f(x), y)``."""
    gradient = torch.autograd.grad(loss_fn(net(x), y), list(net.parameters()))
    flat = torch.cat([g.reshape(-1) for g in gradient]).double()
    theta = flat_parameters(net)
    denominator = float(theta.norm() * flat.norm())
    return -float(theta @ flat) / denominator if denominator > 0 else math.nan


def checkpoint_steps(first: float, steps: int, count: int, log_every: int) -> list[int]:
    """``count`` steps evenly spaced in log t from ``first`` to ``steps``, each rounded to a
    multiple of ``log_every`` (the steps the training loop logs; ``steps`` itself is always
    logged), repeats dropped."""
    if count < 2 or not 0 < first < steps:
        raise WidenetError(f"checkpoints need count >= 2 and 0 < first < steps, got count = "
                           f"{count}, first = {first}, steps = {steps}")
    grid = np.geomspace(first, steps, count)
    rounded = [min(steps, max(log_every, round(float(s) / log_every) * log_every))
               for s in grid]
    return sorted({*rounded[:-1], steps})


class DirectionMonitor(Monitor):
    """At the checkpoint steps only: ``direction_change`` = ||u_s - u_prev|| (u = theta /
    ||theta||, u_prev at the previous checkpoint; nan at the first), ``gradient_alignment`` =
    cos(theta, -grad L), ``kkt_stationarity`` and ``kkt_slackness`` (:func:`kkt_residual`);
    other logged rows get nothing from it."""

    name = "direction"

    def __init__(self, checkpoints: list[int], labels: torch.Tensor, degree: int):
        self.checkpoints, self.labels, self.degree = set(checkpoints), labels, degree
        self.previous: torch.Tensor | None = None

    def measure(self, state: RunState) -> dict[str, float]:
        if state.step not in self.checkpoints:
            return {}
        theta = flat_parameters(state.model)
        direction = theta / theta.norm()
        change = math.nan if self.previous is None else float((direction - self.previous).norm())
        self.previous = direction
        with torch.enable_grad():
            alignment = gradient_alignment(state.model, state.x, state.y, state.loss_fn)
            stationarity, slackness = kkt_residual(state.model, state.x, self.labels,
                                                   self.degree)
        return {"direction_change": change, "gradient_alignment": alignment,
                "kkt_stationarity": stationarity, "kkt_slackness": slackness}
