"""Study ``lr-transfer``: does the optimal learning rate transfer across widths (muP vs SP)?

docs/theory.md section 1. Under the standard parametrization (SP) with one global learning rate the
size of an update grows with width (the readout's update moves the logits by ~ lr * m, and with
Adam every hidden layer's too), so the largest useful learning rate, and with it the optimum,
shifts to smaller values as the net widens. Under muP (Tensor Programs V, Table 3, relative to a
base width where it equals SP) every layer's update stays O(1) per coordinate at every width, so
the optimum stays put ("muTransfer"): the drift across widths should be at most one grid step.
The coordinate check makes the same statement about activations: the mean |z_l| of every layer
after a few steps is flat in width under muP and grows under SP.

Each ``sweep`` task trains one (parametrization, optimizer, width, seed) at every learning rate
of the log2 grid on a digits classification task (``loss``: mse on one-hot targets by default,
or cross-entropy; minibatch SGD or Adam) and records the final train and test loss; each
``coord`` task trains one net for a few steps at a fixed learning rate on the cross-entropy
loss and records mean |z_l| of every dense layer's output at every step. The drift of the
optimum is fitted on the optima inside the grid; one at the grid's edge is only a bound.
See docs/studies/lr-transfer.md.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Annotated, Any, ClassVar, Literal

import pandas as pd
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator

from widenet.checks import Check, check_interval
from widenet.data import load_dataset
from widenet.diagnostics.features import module_outputs
from widenet.diagnostics.monitors import Monitor, RunState
from widenet.dynamics.train import train
from widenet.models import MLP
from widenet.parametrizations import NTK, STANDARD, MuP, Parametrization
from widenet.studies import Analysis, Study, StudyConfig, StudyContext, Tables, Task
from widenet.studies._lr_transfer_analysis import (
    coordinate_slopes,
    drift_table,
    optimum_table,
)
from widenet.studies._lr_transfer_figures import (
    coordinate_figure,
    loss_curves_figure,
    optimum_figure,
)
from widenet.studies.fits import all_diverged
from widenet.studies.seeds import derived_seed
from widenet.studies.validators import distinct_widths

ParametrizationName = Literal["standard", "ntk", "mup"]
OptimizerName = Literal["sgd", "adam"]
DRIFT_TOLERANCE = 1.0
"""muP: |drift| <= 1 grid step; SP: downward drift >= 1 grid step (docs/theory.md section 1)."""
FLATNESS_TOLERANCE = 0.1
"""muP coordinate check: |slope of mean |z_l| against m| <= 0.1; SP: slope >= 0.1 (docs)."""
PROBE_POINTS = 64
"""The coordinate check measures activations on the first this many training points."""
DIGITS = 1797
"""Images in scikit-learn's digits set."""
LOG2_LR_RANGE = (-60, 20)
"""The accepted log2 learning rates: 2^-60 ~ 1e-18 moves no float32 weight, 2^20 ~ 1e6 blows
any net up at once; beyond them 2^k stops being a useful (or a finite) learning rate."""
Log2LR = Annotated[int, Field(ge=LOG2_LR_RANGE[0], le=LOG2_LR_RANGE[1])]


class LRTransferConfig(StudyConfig):
    """The sizes of the lr-transfer study (defaults: the DEFAULT preset)."""

    widths: list[PositiveInt] = Field(
        default=[64, 128, 256, 512, 1024], description="hidden widths m (every hidden layer "
        "m wide); at least 2 distinct values")
    base_width: PositiveInt | None = Field(
        default=None, description="muP's base width, where muP equals SP (default: the "
        "smallest width)")
    depth: PositiveInt = Field(default=2, description="L, the number of hidden layers (>= 2 "
                               "gives muP's hidden-weight rule something to do)")
    parametrizations: list[ParametrizationName] = Field(
        default=["standard", "ntk", "mup"], description="parametrizations to sweep: "
        "standard, ntk, mup (checks need standard and mup)")
    optimizers: list[OptimizerName] = Field(
        default=["sgd", "adam"], description="optimizers: sgd (minibatch, no momentum), adam")
    sgd_log2_lr: list[Log2LR] = Field(
        default=[-10, 2], description="[lowest, highest] log2 of the SGD learning rates; the "
        "grid is every integer in between (one grid step = a factor 2); each in [-60, 20]")
    adam_log2_lr: list[Log2LR] = Field(
        default=[-13, -3], description="[lowest, highest] log2 of the Adam learning rates, "
        "each in [-60, 20]")
    loss: Literal["mse", "cross_entropy"] = Field(
        default="mse", description="training loss: mse = (1/(2n)) sum_i ||f(x_i) - e_(y_i)||^2 "
        "on one-hot targets, or cross_entropy")
    steps: PositiveInt = Field(default=80, description="optimizer steps per training run")
    batch_size: PositiveInt = Field(default=32, description="minibatch size")
    points: PositiveInt = Field(default=512, description="training points (digits, 10 "
                                "classes, standardized pixels)")
    test_points: PositiveInt = Field(default=256, description="held-out test points")
    seeds: int = Field(default=2, ge=2, description="networks per (parametrization, "
                       "optimizer, width) in the sweep (>= 2, for standard errors)")
    coord_steps: PositiveInt = Field(default=10, description="steps of the coordinate check "
                                     "(always on the cross-entropy loss); its slopes are "
                                     "measured at the last one")
    coord_seeds: int = Field(default=4, ge=2, description="networks per (parametrization, "
                             "optimizer, width) in the coordinate check (>= 2)")
    coord_sgd_log2_lr: Log2LR = Field(default=-2, description="log2 of the coordinate check's "
                                      "SGD learning rate, in [-60, 20]")
    coord_adam_log2_lr: Log2LR = Field(default=-7, description="log2 of the coordinate check's "
                                       "Adam learning rate, in [-60, 20]")

    QUICK: ClassVar[dict[str, Any]] = {
        "widths": [32, 64, 128, 256], "sgd_log2_lr": [-8, 1], "adam_log2_lr": [-11, -4],
        "steps": 40, "points": 256, "test_points": 128, "coord_steps": 6, "coord_seeds": 3}

    _distinct_widths = field_validator("widths")(distinct_widths)

    @field_validator("parametrizations", "optimizers")
    @classmethod
    def _distinct_names(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("the list is empty")
        if len(set(values)) != len(values):
            raise ValueError("the list has repeated names")
        return values

    @field_validator("sgd_log2_lr", "adam_log2_lr")
    @classmethod
    def _grid_range(cls, values: list[int]) -> list[int]:
        if len(values) != 2 or values[1] - values[0] < 2:
            raise ValueError("give [lowest, highest] with highest >= lowest + 2 (3 or more "
                             "learning rates)")
        return values

    @model_validator(mode="after")
    def _batch_fits(self) -> LRTransferConfig:
        if self.batch_size > self.points:
            raise ValueError(f"batch_size ({self.batch_size}) exceeds points ({self.points})")
        if self.points < PROBE_POINTS:
            raise ValueError(f"points must be >= {PROBE_POINTS} (the coordinate check's probe)")
        if self.points + self.test_points > DIGITS:
            raise ValueError(f"points + test_points must be <= {DIGITS}, the size of digits")
        return self

    def base(self) -> int:
        """muP's base width: ``base_width`` or the smallest width."""
        return self.base_width or self.widths[0]

    def log2_grid(self, optimizer: str) -> list[int]:
        """The integer exponents k of the learning rates 2^k swept for ``optimizer``."""
        low, high = self.sgd_log2_lr if optimizer == "sgd" else self.adam_log2_lr
        return list(range(low, high + 1))


# --- one network -----------------------------------------------------------------------------

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


def _sweep(config: LRTransferConfig, name: str, optimizer: str, m: int, replicate: int,
           context: StudyContext) -> Tables:
    """Train one net per learning rate 2^k of the grid; one row per k with the final full-batch
    train loss, test loss and test accuracy (+inf losses and NaN accuracy if it diverged)."""
    x, labels, x_test, labels_test = training_data(config, context.device)
    y, y_test = targets(labels, config.loss), targets(labels_test, config.loss)
    rows = []
    for k in config.log2_grid(optimizer):
        net = _network(config, name, m, replicate, context.device)
        result = train(net, x, y, lr=2.0**k, steps=config.steps, loss=config.loss,
                       optimizer=optimizer, batch_size=config.batch_size,
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


def _coordinates(config: LRTransferConfig, name: str, optimizer: str, m: int, replicate: int,
                 context: StudyContext) -> Tables:
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
                   optimizer=optimizer, batch_size=config.batch_size, log_every=1,
                   monitors=[CoordinateMonitor(x[:PROBE_POINTS])], seed=seed, progress=False)
    history = result.history.dropna(subset=["mean_abs/1"])
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
                  partial(_sweep, config, name, opt, m, r))
             for name, opt in combos for m in config.widths for r in range(config.seeds)]
    coords = [Task(f"coord/{name}/{opt}/m={m}/seed={r}",
                   partial(_coordinates, config, name, opt, m, r))
              for name, opt in combos for m in config.widths for r in range(config.coord_seeds)]
    return sweep + coords


# --- analysis --------------------------------------------------------------------------------

def _drift_note(row: pd.Series, what: str) -> str:
    """The check's note: what is measured, how many optima were fitted and at the grid's edge,
    and the raw argmin spread."""
    edge = (f"; {row['edge_optima']} of {row['optima']} optima at the grid's edge (bounds, "
            "left out of the fit: inconclusive)" if row["edge_optima"] else "")
    return (f"{what}, fitted on {row['fitted_optima']} interior optima{edge}; raw argmin "
            f"spread {row['argmin_spread']:.0f} steps")


def _drift_checks(drifts: pd.DataFrame) -> list[Check]:
    """muP: drift in [-1, 1] grid steps; SP: downward drift >= 1 grid step (docs, "Checks").
    Inconclusive when ``drift_stderr`` is NaN: optima at the grid's edge, or too few interior
    optima for a slope with a standard error (:func:`drift_table`)."""
    checks = []
    for _, row in drifts.iterrows():
        name, opt = row["parametrization"], row["optimizer"]
        if name == "mup":
            checks.append(check_interval(
                f"muP lr transfers ({opt})",
                f"muP ({opt}): the optimal learning rate drifts by at most one grid step "
                "(a factor 2) across widths", measured=row["drift"], stderr=row["drift_stderr"],
                low=-DRIFT_TOLERANCE, high=DRIFT_TOLERANCE, predicted=0.0,
                note=_drift_note(row, "fitted log2 lr* slope x log2(m_max/m_min)")))
        elif name == "standard":
            checks.append(check_interval(
                f"SP lr drifts ({opt})",
                f"SP ({opt}): the optimal learning rate moves down by more than one grid step "
                "across widths", measured=-row["drift"], stderr=row["drift_stderr"],
                low=DRIFT_TOLERANCE, predicted=-float(row["drift_pred"]),
                note=_drift_note(row, "downward drift in grid steps")))
    return checks


def _coordinate_checks(slopes: pd.DataFrame) -> list[Check]:
    """muP: every layer's slope of mean |z_l| against m in [-0.1, 0.1] (the steepest is
    checked; a NaN slope, all runs diverged, is inconclusive); SP: the logits' slope >= 0.1."""
    checks = []
    for (name, opt), group in slopes.groupby(["parametrization", "optimizer"], sort=False):
        if name == "mup":
            worst = group.loc[group["slope"].abs().fillna(math.inf).idxmax()]
            checks.append(check_interval(
                f"muP coordinates flat ({opt})",
                f"muP ({opt}): mean |z_l| after the coordinate-check steps is flat in width "
                "for every layer (steepest layer shown)", measured=worst["slope"],
                stderr=worst["slope_stderr"], low=-FLATNESS_TOLERANCE,
                high=FLATNESS_TOLERANCE, predicted=0.0, note=f"layer {worst['layer']}"))
        elif name == "standard":
            out = group.loc[group["layer"].idxmax()]
            checks.append(check_interval(
                f"SP logits grow ({opt})",
                f"SP ({opt}): mean |logits| after the coordinate-check steps grows with width",
                measured=out["slope"], stderr=out["slope_stderr"], low=FLATNESS_TOLERANCE,
                predicted=1.0, note=f"layer {out['layer']} (the readout)"))
    return checks


def analyze(config: LRTransferConfig, tables: Tables) -> Analysis:
    """Optimal learning rates per width, their drift, coordinate-check slopes; figures; checks
    (``diverged`` when every run of the learning-rate sweep diverged)."""
    sweep, coords = tables["sweep"], tables["coords"]
    optima = optimum_table(sweep)
    drifts = drift_table(optima, config.widths)
    slopes = coordinate_slopes(coords, config.coord_steps)
    figures = {"loss_vs_lr": loss_curves_figure(sweep, optima, config.loss),
               "optimal_lr": optimum_figure(optima, drifts, config.base()),
               **{f"coordinate_check_{opt}": coordinate_figure(coords, slopes, opt)
                  for opt in config.optimizers}}
    checks = _drift_checks(drifts) + _coordinate_checks(slopes)
    diverged = all_diverged(sweep["status"], "learning-rate sweep runs",
                            "lower sgd_log2_lr and adam_log2_lr")
    return Analysis(tables={"sweep": sweep, "coords": coords, "optima": optima,
                            "drifts": drifts, "coord_slopes": slopes},
                    figures=figures, checks=checks, diverged=diverged)


STUDY = Study(
    name="lr-transfer",
    summary="muP vs SP vs NTK: does the optimal learning rate stay put across widths? "
            "(+ coordinate check)",
    config=LRTransferConfig, plan=plan, analyze=analyze)
