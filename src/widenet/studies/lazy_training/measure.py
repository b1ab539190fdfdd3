"""The measurements of the lazy-training study, one task at a time (docs/theory.md sections 1
and 5).

A task is one student (activation, width, replicate) on one teacher-student data set. The
student is trained as the lazy model h_alpha = alpha (f(w) - f(w_0)) with the objective
R(h_alpha) / alpha^2, R(F) = (1/(2n)) ||F - y||^2, by full-batch GD with the same learning rate
and number of steps at every alpha. Its linearization is trained exactly by the recursion of
:func:`linear_gd`, which does not depend on alpha (see there).
"""

from __future__ import annotations

import copy
import math
from functools import partial

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, jvp, vjp

from widenet.activations import get_activation
from widenet.activations.closed_form import AbsLinear
from widenet.data import load_dataset
from widenet.diagnostics.features import module_outputs
from widenet.diagnostics.kernel_motion import kernel_movement
from widenet.diagnostics.movement import weight_movement
from widenet.dynamics.lazy import LazyModel
from widenet.dynamics.losses import mse
from widenet.dynamics.train import train
from widenet.kernels.empirical import empirical_ntk
from widenet.models import MLP
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.lazy_training.config import LazyTrainingConfig

HESSIAN_ITERATIONS = 30
"""Iterations of the higher-order power method behind :func:`hessian_norm`."""

_DATA, _STUDENT, _POWER = 1, 2, 3  # stream tags of derived_seed


def is_kinked(activation: str) -> bool:
    """Whether phi = a s + b |s| with b != 0 (relu, abs, leaky relu): then Dh is not
    Lipschitz, the hypothesis of the O(1/alpha) bound of Chizat, Oyallon & Bach (2019)."""
    phi = get_activation(activation)
    return isinstance(phi, AbsLinear) and phi.b != 0.0


def linear_gd(kernel: torch.Tensor, test_kernel: torch.Tensor, y: torch.Tensor, lr: float,
              steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test outputs after ``steps`` GD steps of the linearized lazy model (docs/theory.md
    section 1; the discrete-time form of section 5's kernel dynamics).

    The linearization alpha J_0 (w - w_0) of h_alpha, trained on R(.) / alpha^2 with step lr,
    moves its training outputs by F_{s+1} = F_s - (lr / n) K_0 (F_s - y) from F_0 = 0, with
    K_0 = J_0 J_0^T the empirical NTK of f at w_0 (``kernel``, n x n): alpha cancels. Its test
    outputs are F_test,T = -(lr / n) K_0(test, train) sum_{s<T} (F_s - y) (``test_kernel`` is
    K_0(test, train)). Exact (no gradient-flow approximation), in the kernels' dtype.
    """
    n = kernel.shape[0]
    residual = -y.to(kernel.dtype).reshape(n, -1)
    accumulated = torch.zeros_like(residual)
    for _ in range(steps):
        accumulated += residual
        residual = residual - (lr / n) * (kernel @ residual)
    return residual + y.reshape(residual.shape), -(lr / n) * (test_kernel @ accumulated)


def preactivations(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """[z_1, ..., z_L]: the hidden layers' pre-activations on ``x``."""
    return module_outputs(model, x, list(model.layers[:-1]))


def pattern_flips(current: list[torch.Tensor], initial: list[torch.Tensor]) -> int:
    """#{(l, unit, input): [z_l > 0] now != [z_l > 0] at w_0}, the number of hidden
    pre-activations that changed sign, over all hidden layers (each list holds z_1..z_L)."""
    return sum(int(((now > 0) != (before > 0)).sum())
               for now, before in zip(current, initial, strict=True))


def hessian_norm(model: nn.Module, x: torch.Tensor, *, iterations: int = HESSIAN_ITERATIONS,
                 seed: int = 0) -> float:
    """A lower bound on ||D^2 f(w)||, the norm of the second derivative of the outputs
    f(w) = (f(x_1; w), ..., f(x_n; w)) in R^n at the current parameters w: the curvature in
    the relative-scale criterion kappa of docs/theory.md section 1.

    For the symmetric bilinear map B = D^2 f(w): R^P x R^P -> R^n,
    ||B|| = sup_{||u|| = 1} ||B[u, u]|| = sup_{||c|| = 1} ||sum_i c_i Hess f_i(w)||_op. A
    higher-order power method alternates c = B[u, u] / ||B[u, u]|| and
    u = (sum_i c_i Hess f_i) u / ||.|| (B[u, u] by nested Jacobian-vector products, the
    Hessian-vector product by a vector-Jacobian product of D f(w)[u]) from a seeded Gaussian u;
    the largest ||B[u, u]|| seen is returned, a lower bound that equals ||B|| when the iteration
    finds the global maximum. Autodiff sees the smooth part of f only: for kinked activations
    it misses the kinks' contribution (see :func:`is_kinked`).
    """
    params = {name: p.detach() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    direction = {name: torch.randn(p.shape, generator=generator, dtype=torch.float64)
                 .to(p) for name, p in params.items()}

    def outputs(values: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, values, (x,)).reshape(-1)

    best = 0.0
    for _ in range(iterations):
        norm = math.sqrt(sum(float(v.square().sum()) for v in direction.values()))
        direction = {name: v / norm for name, v in direction.items()}

        def derivative(values: dict[str, torch.Tensor], u=direction) -> torch.Tensor:
            return jvp(outputs, (values,), (u,))[1]

        _, second = jvp(derivative, (params,), (direction,))
        size = float(second.norm())
        best = max(best, size)
        if size == 0.0:
            break
        _, pullback = vjp(derivative, params)
        direction = pullback(second / size)[0]
    return best


def compute_task(config: LazyTrainingConfig, activation: str, width: int, replicate: int,
                 context: StudyContext) -> Tables:
    """All measurements of one student (see the module docstring): the table ``runs`` (one
    row per alpha) and the table ``reference`` (one row: the initial kernel, the learning rate,
    the linearized model's losses and the relative-scale criterion at alpha = 1)."""
    device = context.device
    data = load_dataset("teacher", n=config.n, n_test=config.n_test, dim=config.dim,
                        seed=derived_seed(config.seed, _DATA, replicate), noise=config.noise,
                        ).to(device=device, dtype=torch.float64)
    x, y, x_test, y_test = data.x, data.y, data.x_test, data.y_test
    student = MLP(config.dim, [width] * config.depth, 1, activation,
                  seed=derived_seed(config.seed, _STUDENT, replicate, width), device=device,
                  dtype=torch.float64)
    kernel = empirical_ntk(student, x).ntk
    eigenvalues = torch.linalg.eigvalsh(kernel)
    lambda_max = float(eigenvalues[-1])
    lr = config.lr_fraction * 2.0 * config.n / lambda_max
    linear_train, linear_test = linear_gd(kernel, empirical_ntk(student, x_test, x).ntk, y, lr,
                                          config.steps)
    parameters = {"activation": activation, "width": width, "seed": replicate}
    kinked = is_kinked(activation)
    curvature = math.nan if kinked else hessian_norm(
        student, x, seed=derived_seed(config.seed, _POWER, replicate, width))
    reference = {**parameters, "lr": lr, "lambda_max": lambda_max,
                 "lambda_min": float(eigenvalues[0]), "hessian_norm": curvature,
                 "kappa_1": float(y.norm()) * curvature / lambda_max,
                 "initial_train_loss": float(mse(torch.zeros_like(y), y)),
                 "initial_test_loss": float(mse(torch.zeros_like(y_test), y_test)),
                 "train_loss_linear": float(mse(linear_train, y)),
                 "test_loss_linear": float(mse(linear_test, y_test))}
    initial_z = preactivations(student, x)
    rows = [train_lazily(student, alpha, x, y, (x_test, y_test), lr, config.steps, kernel,
                         linear_train, initial_z) | parameters for alpha in config.alphas]
    return {"runs": pd.DataFrame(rows), "reference": pd.DataFrame([reference])}


def train_lazily(initial: MLP, alpha: float, x: torch.Tensor, y: torch.Tensor,
                 test_data: tuple[torch.Tensor, torch.Tensor], lr: float, steps: int,
                 kernel: torch.Tensor, linear_train: torch.Tensor,
                 initial_z: list[torch.Tensor]) -> dict[str, object]:
    """Train h_alpha = alpha (f(w) - f(w_0)) from a copy of ``initial`` by ``steps`` GD steps
    on R(h_alpha) / alpha^2 (docs/theory.md section 1) and measure (section 5): the weight movement
    ||w_T - w_0|| / ||w_0||, the NTK movement ||K_T - K_0||_F / ||K_0||_F on x (``kernel`` = K_0),
    the linearization error ||h_T - h_lin,T|| / ||h_T - h_0|| on x (h_0 = 0, ``linear_train`` =
    h_lin,T from :func:`linear_gd`), the pattern flips against ``initial_z`` and the final train
    and test losses. A run that diverged gives status "diverged" and NaN measurements."""
    student = copy.deepcopy(initial)
    lazy = LazyModel(student, alpha)
    result = train(lazy, x, y, lr=lr, steps=steps, loss_scale=lazy.loss_scale,
                   test_data=test_data, log_every=max(steps, 1), progress=False)
    row: dict[str, object] = {"alpha": alpha, "status": result.status, "steps": result.steps}
    if result.status != "completed":
        return row | dict.fromkeys(("weight_movement", "kernel_movement", "linearization_error",
                                    "pattern_flips", "train_loss", "test_loss"), math.nan)
    final = result.history.iloc[-1]
    with torch.no_grad():
        output = lazy(x)
    return row | {
        "weight_movement": weight_movement(student, initial).relative,
        "kernel_movement": kernel_movement(empirical_ntk(student, x).ntk, kernel),
        "linearization_error": float((output - linear_train).norm() / output.norm()),
        "pattern_flips": float(pattern_flips(preactivations(student, x), initial_z)),
        "train_loss": float(final["loss"]), "test_loss": float(final["test_loss"])}


def plan(config: LazyTrainingConfig) -> list[Task]:
    """One task per (activation, width, replicate), each training every alpha."""
    return [Task(f"{activation}/m={width}/seed={replicate}",
                 partial(compute_task, config, activation, width, replicate))
            for activation in config.activations for width in config.widths
            for replicate in range(config.seeds)]
