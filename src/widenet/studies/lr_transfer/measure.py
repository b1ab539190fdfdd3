"""The tasks of the ``lr-transfer`` study: a learning-rate sweep per (parametrization, optimizer,
width, seed), and a coordinate check per the same."""

from __future__ import annotations

import math
from functools import lru_cache, partial

import pandas as pd
import torch

from widenet.data import load_dataset
from widenet.diagnostics.features import module_outputs
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import Optimizer
from widenet.dynamics.train import train
from widenet.models import MLP
from widenet.parametrizations import NTK, STANDARD, MuP, Parametrization
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables, Task
from widenet.studies.lr_transfer.config import PROBE_POINTS, LRTransferConfig


def parametrization(name: str, base_width: int) -> Parametrization:
    """The library's parametrization called ``name``; muP relative to ``base_width``."""
    return {"standard": STANDARD, "ntk": NTK}.get(name) or MuP(base_hidden=base_width)


def network_seed(config: LRTransferConfig, m: int, replicate: int) -> int:
    """The seed of network ``replicate`` at width m (initial weights and minibatch order): a
    function of ``config.seed``, m and the replicate only, shared by every parametrization,
    optimizer and learning rate so that their curves are paired."""
    return derived_seed(config.seed, m, replicate)


@lru_cache(maxsize=4)
def _digits(points: int, test_points: int, seed: int) -> tuple[torch.Tensor, ...]:
    data = load_dataset("digits", n=points, n_test=test_points, normalize="standardize",
                        seed=seed, dtype=torch.float32)
    return data.x, data.y, data.x_test, data.y_test


def targets(labels: torch.Tensor, loss: str) -> torch.Tensor:
    """The training targets of integer labels: the labels for cross_entropy, their one-hot
    vectors e_y (float32, 10 classes) for mse."""
    if loss == "cross_entropy":
        return labels
    return torch.nn.functional.one_hot(labels, 10).to(torch.float32)


def training_data(config: LRTransferConfig, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, labels, x_test, test labels) of the digits task on ``device``: 10 classes,
    standardized pixels, float32 inputs, the split drawn from ``config.seed``."""
    return tuple(t.to(device) for t in _digits(config.points, config.test_points, config.seed))


def _network(config: LRTransferConfig, name: str, m: int, replicate: int,
             device: torch.device) -> MLP:
    """Bias-free relu MLP(64, [m] * depth, 10) at the edge of chaos (sigma_w^2 = 2), float32."""
    return MLP(64, [m] * config.depth, 10, "relu", bias_std=0.0,
               parametrization=parametrization(name, config.base()),
               seed=network_seed(config, m, replicate), device=device, dtype=torch.float32)


def compute_sweep_task(config: LRTransferConfig, name: str, optimizer: str, m: int,
                       replicate: int, context: StudyContext) -> Tables:
    """Train one net per learning rate 2^k of the grid; one row per k with the final full-batch
    train loss, test loss and test accuracy (+inf losses and NaN accuracy if it diverged)."""
    x, labels, x_test, labels_test = training_data(config, context.device)
    y, y_test = targets(labels, config.loss), targets(labels_test, config.loss)
    rows = []
    for k in config.log2_grid(optimizer):
        net = _network(config, name, m, replicate, context.device)
        result = train(net, x, y, lr=2.0**k, steps=config.steps, loss=config.loss,
                       optimizer=Optimizer(optimizer, batch_size=config.batch_size),
                       log_every=config.steps, test_data=(x_test, y_test),
                       seed=network_seed(config, m, replicate), progress=False)
        last = result.history.iloc[-1]
        completed = result.status == "completed" and math.isfinite(float(last["loss"]))
        with torch.no_grad():
            accuracy = float((net(x_test).argmax(dim=1) == labels_test).float().mean())
        rows.append({"parametrization": name, "optimizer": optimizer, "m": m,
                     "seed": replicate, "log2_lr": k, "lr": 2.0**k, "status": result.status,
                     "steps_done": result.steps,
                     "train_loss": float(last["loss"]) if completed else math.inf,
                     "test_loss": float(last["test_loss"]) if completed else math.inf,
                     "test_accuracy": accuracy if completed else math.nan})
    return {"sweep": pd.DataFrame(rows)}


class CoordinateMonitor(Monitor):
    """``mean_abs/<l>`` = mean over probe points and units of |z_l| and ``mean_abs_change/<l>``
    = mean |z_l - z_l(step 0)|, z_l the output of dense layer l = 1..L+1 (z_{L+1} = logits):
    the coordinate check of Tensor Programs V (docs/theory.md section 1)."""

    name = "coordinates"
    every = 1

    def __init__(self, probe: torch.Tensor):
        self.probe = probe
        self.initial: list[torch.Tensor] = []

    def _outputs(self, model: MLP) -> list[torch.Tensor]:
        return module_outputs(model, self.probe, list(model.layers))

    def start(self, state: RunState) -> None:
        self.initial = self._outputs(state.model)

    def measure(self, state: RunState) -> dict[str, float]:
        row = {}
        for index, (z, z0) in enumerate(zip(self._outputs(state.model), self.initial,
                                            strict=True), start=1):
            row[f"mean_abs/{index}"] = float(z.abs().mean())
            row[f"mean_abs_change/{index}"] = float((z - z0).abs().mean())
        return row

    def state_dict(self) -> dict:
        return {"initial": self.initial}

    def load_state_dict(self, state: dict) -> None:
        self.initial = state["initial"]


def compute_coordinate_task(config: LRTransferConfig, name: str, optimizer: str, m: int,
                            replicate: int, context: StudyContext) -> Tables:
    """Train one net for ``coord_steps`` steps on the cross-entropy loss (whatever
    ``config.loss``: its logit gradient p - e_y is O(1) at every init scale, see the docs); one
    row per (step, layer) with mean |z_l| and mean |z_l - z_l,0| on the probe points (rows stop
    where a run diverged)."""
    x, labels, _, _ = training_data(config, context.device)
    log2_lr = config.coord_sgd_log2_lr if optimizer == "sgd" else config.coord_adam_log2_lr
    seed = network_seed(config, m, 1000 + replicate)
    net = _network(config, name, m, 1000 + replicate, context.device)
    result = train(net, x, labels, lr=2.0**log2_lr, steps=config.coord_steps,
                   loss="cross_entropy",
                   optimizer=Optimizer(optimizer, batch_size=config.batch_size), log_every=1,
                   monitors=[CoordinateMonitor(x[:PROBE_POINTS])], seed=seed, progress=False)
    history = result.measurements[CoordinateMonitor.name]
    rows = [{"parametrization": name, "optimizer": optimizer, "m": m, "seed": replicate,
             "log2_lr": log2_lr, "status": result.status, "step": int(row["step"]),
             "layer": layer, "mean_abs": float(row[f"mean_abs/{layer}"]),
             "mean_abs_change": float(row[f"mean_abs_change/{layer}"])}
            for _, row in history.iterrows() for layer in range(1, config.depth + 2)]
    return {"coords": pd.DataFrame(rows)}


def plan(config: LRTransferConfig) -> list[Task]:
    """One sweep task per (parametrization, optimizer, width, seed), covering the whole lr
    grid, and one coordinate-check task per (parametrization, optimizer, width, seed)."""
    combos = [(name, opt) for name in config.parametrizations for opt in config.optimizers]
    sweep = [Task(f"sweep/{name}/{opt}/m={m}/seed={r}",
                  partial(compute_sweep_task, config, name, opt, m, r))
             for name, opt in combos for m in config.widths for r in range(config.seeds)]
    coords = [Task(f"coord/{name}/{opt}/m={m}/seed={r}",
                   partial(compute_coordinate_task, config, name, opt, m, r))
              for name, opt in combos for m in config.widths for r in range(config.coord_seeds)]
    return sweep + coords
