"""The config of the ``lr-transfer`` study, and the drift of the optimal learning rate each
parametrization predicts."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_values, distinct_widths

PREDICTED_SLOPE = {("standard", "sgd"): -1.0, ("standard", "adam"): -1.0,
                   ("mup", "sgd"): 0.0, ("mup", "adam"): 0.0,
                   ("ntk", "sgd"): 0.0, ("ntk", "adam"): -0.5}
"""d log2 lr* / d log2 m from the width scaling of one update (docs, "Theory"): SP's readout
update moves the logits by ~ lr m (SGD and Adam); muP keeps every update O(1); NTK's SGD
dynamics have a width-independent kernel, its Adam updates move z by ~ lr sqrt(m)."""


ParametrizationName = Literal["standard", "ntk", "mup"]
OptimizerName = Literal["sgd", "adam"]


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
        "standard, ntk, mup (each has its lr-shift check)")
    optimizers: list[OptimizerName] = Field(
        default=["sgd", "adam"], description="optimizers: sgd (minibatch, no momentum), adam")
    sgd_log2_lr: list[Log2LR] = Field(
        default=[-10, 5], description="[lowest, highest] log2 of the SGD learning rates; the "
        "grid is every integer in between (one grid step = a factor 2); each in [-60, 20]")
    adam_log2_lr: list[Log2LR] = Field(
        default=[-13, -1], description="[lowest, highest] log2 of the Adam learning rates, "
        "each in [-60, 20]")
    loss: Literal["mse", "cross_entropy"] = Field(
        default="mse", description="training loss: mse = (1/(2n)) sum_i ||f(x_i) - e_(y_i)||^2 "
        "on one-hot targets, or cross_entropy")
    steps: PositiveInt = Field(default=80, description="optimizer steps per training run")
    batch_size: PositiveInt = Field(default=32, description="minibatch size")
    points: PositiveInt = Field(default=512, description="training points (digits, 10 "
                                "classes, standardized pixels)")
    test_points: PositiveInt = Field(default=256, description="held-out test points")
    seeds: int = Field(default=3, ge=2, description="networks per (parametrization, "
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
        "widths": [32, 64, 128, 256], "sgd_log2_lr": [-8, 4], "adam_log2_lr": [-11, -2],
        "steps": 40, "points": 256, "test_points": 128, "coord_steps": 6, "coord_seeds": 3,
        "seeds": 2}

    _distinct_widths = field_validator("widths")(distinct_widths)

    @field_validator("parametrizations", "optimizers")
    @classmethod
    def _distinct_names(cls, values: list[str]) -> list[str]:
        return distinct_values(values, "names")

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
