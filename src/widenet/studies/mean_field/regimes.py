"""The mean-field study's two extra experiments (docs/studies/mean-field.md), and the plan of
all its tasks:

- **global convergence in the number of neurons** (Chizat & Bach 2018): mean-field nets of
  few neurons m (down to below the teacher's width) trained long on the same data; the
  training loss at the end falls as m grows, towards 0 (a finite set of particles can stall
  at a non-global stationary point, the limit measure does not);
- **lazy versus rich** (Chizat, Oyallon & Bach 2019, "On lazy training"): one mean-field net
  of width m started at the scale tau (every stored parameter times tau) with a symmetrized
  initialization (neuron m/2 + i copies neuron i with the output weight negated, so f_0 = 0
  exactly). The model is 2-homogeneous, so its output scale is tau^2 and its NTK ~ tau^2:
  large tau is the lazy regime (the weights barely move relative to their size), small tau the
  rich one, where the neurons align with the teacher's few directions and the net generalizes
  better on such low-dimensional targets. GD runs at lr / max(1, tau^2), the largest rate
  stable for every tau.
"""

from __future__ import annotations

import math
from functools import partial

import pandas as pd
import torch

from widenet.data.synthetic import teacher_student
from widenet.dynamics.losses import mse
from widenet.dynamics.train import train
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.mean_field.config import MeanFieldConfig
from widenet.studies.mean_field.measure import (
    SCALINGS,
    compute_task,
    data_seed,
    two_layer_net,
    with_bias_coordinate,
)

_NEURONS, _SCALE_DATA, _SCALE_NET = 21, 22, 23  # stream tags of derived_seed


def flat(net: torch.nn.Module) -> torch.Tensor:
    """The stored parameters as one detached vector."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def _fit(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
         y_test: torch.Tensor, lr: float, steps: int) -> dict[str, object]:
    """Full-batch GD on (1/(2n)) ||f - y||^2; the final train and test loss, the relative
    movement ||theta_T - theta_0|| / ||theta_0|| and the status (NaN numbers if it diverged)."""
    start = flat(net)
    result = train(net, x, y, lr=lr, steps=steps, log_every=steps, progress=False)
    if result.status != "completed":
        return {"status": result.status, "train_loss": math.nan, "test_loss": math.nan,
                "relative_movement": math.nan}
    with torch.no_grad():
        test = float(mse(net(x_test), y_test))
    return {"status": result.status, "train_loss": float(result.history["loss"].iloc[-1]),
            "test_loss": test,
            "relative_movement": float((flat(net) - start).norm() / start.norm())}


def compute_neurons(config: MeanFieldConfig, replicate: int, context: StudyContext) -> Tables:
    """Table ``neurons``: one row per m in ``neuron_counts``, each a mean-field net trained for
    ``neuron_steps`` steps on replicate ``replicate``'s data (the main experiment's teacher
    and points)."""
    data = teacher_student(config.n, config.dim, n_test=config.n_test,
                           seed=data_seed(config, replicate), width=config.teacher_width,
                           depth=1, noise=config.noise).to(device=context.device)
    x, x_test = with_bias_coordinate(data.x), with_bias_coordinate(data.x_test)
    zero = float(mse(torch.zeros_like(data.y), data.y))
    rows = []
    for width in config.neuron_counts:
        net = two_layer_net("mean-field", config.dim, width,
                            derived_seed(config.seed, _NEURONS, replicate, width), context.device)
        rows.append({"seed": replicate, "width": width, "zero_train_loss": zero,
                     **_fit(net, x, data.y, x_test, data.y_test, config.lr,
                            config.neuron_steps)})
    return {"neurons": pd.DataFrame(rows)}


def symmetrized(net: torch.nn.Module, scale: float) -> torch.nn.Module:
    """The two-layer net with every stored parameter times ``scale`` and neuron m/2 + i a copy
    of neuron i whose output weight is negated, so that f_0 = 0 (m even)."""
    first, second = net.layers
    half = first.weight.shape[0] // 2
    with torch.no_grad():
        first.weight[half:] = first.weight[:half]
        second.weight[:, half:] = -second.weight[:, :half]
        for parameter in net.parameters():
            parameter.mul_(scale)
    return net


def compute_scales(config: MeanFieldConfig, replicate: int, context: StudyContext) -> Tables:
    """Table ``scales``: one row per tau in ``scales``, a symmetrized mean-field net of width
    ``scale_width`` started at scale tau (the same draw for every tau) and trained for
    ``scale_steps`` steps at lr / max(1, tau^2) on a teacher task in ``scale_dim``
    dimensions with ``scale_n`` points."""
    data = teacher_student(config.scale_n, config.scale_dim, n_test=config.n_test,
                           seed=derived_seed(config.seed, _SCALE_DATA, replicate),
                           width=config.teacher_width, depth=1,
                           noise=config.noise).to(device=context.device)
    x, x_test = with_bias_coordinate(data.x), with_bias_coordinate(data.x_test)
    zero = float(mse(torch.zeros_like(data.y_test), data.y_test))
    rows = []
    for scale in config.scales:
        net = symmetrized(two_layer_net("mean-field", config.scale_dim, config.scale_width,
                                        derived_seed(config.seed, _SCALE_NET, replicate),
                                        context.device), scale)
        lr = config.lr / max(1.0, scale**2)
        rows.append({"seed": replicate, "scale": scale, "lr": lr, "zero_test_loss": zero,
                     **_fit(net, x, data.y, x_test, data.y_test, lr, config.scale_steps)})
    return {"scales": pd.DataFrame(rows)}


def plan(config: MeanFieldConfig) -> list[Task]:
    """The study's tasks: per (scaling, replicate) one training every width
    (:func:`~widenet.studies.mean_field.measure.compute_task`), then per replicate one of the
    global-convergence experiment and one of the lazy-versus-rich experiment."""
    replicates = range(config.seeds)
    return [*(Task(f"{scaling}/seed={r}", partial(compute_task, config, scaling, r))
              for scaling in SCALINGS for r in replicates),
            *(Task(f"neurons/seed={r}", partial(compute_neurons, config, r)) for r in replicates),
            *(Task(f"scales/seed={r}", partial(compute_scales, config, r)) for r in replicates)]
