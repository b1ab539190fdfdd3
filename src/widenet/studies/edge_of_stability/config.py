"""The config of the ``edge-of-stability`` study."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_values, known_activation

MAX_BEYOND_FACTOR = 1e6
"""The largest factor c of part 2: far past any edge GD can train beyond, yet a finite lr."""


REACHED = 0.95
"""S has reached the edge at the first measurement with S >= REACHED * 2/lr (lr factors stay
below it, so the start S_0 = lr_factor * 2/lr does not count)."""


class EoSConfig(StudyConfig):
    """The sizes of the edge-of-stability study (defaults: the DEFAULT preset)."""

    points: PositiveInt = Field(default=500, le=1797, description="n, the standardized "
                                "digits training points (a seeded subset of the 1797)")
    activation: str = Field(default="tanh", description="part 1's activation (tanh, relu, "
                            "...); no biases")
    mse_weight_std: float | None = Field(
        default=0.6, gt=0, description="part 1, MSE runs (and the Taylor task): sigma_w; below "
        "the edge of chaos (1 for tanh) the signal shrinks with depth, so S_0 is small and S "
        "sharpens by 1/lr_factor before the edge; null: the edge-of-chaos value")
    depth: PositiveInt = Field(default=3, description="part 1: hidden layers L")
    width: PositiveInt = Field(default=64, description="part 1: width of every hidden layer")
    losses: list[Literal["mse", "cross_entropy"]] = Field(
        default=["mse", "cross_entropy"], description="part 1's losses: 'mse' (one-hot "
        "targets, (1/(2n)) sum ||f - y||^2) and/or 'cross_entropy'")
    lr_factors: list[float] = Field(
        default=[0.2, 0.4, 0.8], description="part 1: lr = lr_factor * 2 / S_0, so the edge "
        "2/lr = S_0 / lr_factor; each in (0, 0.95) so that S must sharpen to reach it")
    steps: PositiveInt = Field(default=1500, description="part 1: GD steps per run")
    sharpness_every: PositiveInt = Field(default=10, description="steps between sharpness "
                                         "measurements (both parts)")
    ce_label_noise: float = Field(default=0.5, ge=0, le=1, description="part 1, "
                                  "cross-entropy runs: the fraction of training labels "
                                  "replaced by random classes (load_dataset's corrupt): a "
                                  "task on which the loss stays large while S sharpens")
    late_fraction: float = Field(default=0.5, gt=0, lt=1, description="part 1: the EoS "
                                 "window is the last late_fraction of the judged steps after S "
                                 "first reaches 2/lr")
    large_loss_fraction: float = Field(default=0.1, gt=0, lt=1, description="part 1, "
                                       "cross-entropy: judged only while the loss is at least "
                                       "this fraction of its initial value (the large-loss "
                                       "phase; later the softmax saturates and S falls)")
    beyond_width: PositiveInt = Field(default=16, description="part 2: m in m_l = l^2 m")
    beyond_depth: PositiveInt = Field(default=3, description="part 2: hidden layers L")
    beyond_factors: list[float] = Field(
        default=[1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0], description="part 2: lr = c * 2 / S_0 "
        "(S_0 the "
        "preconditioned sharpness at init with the scaling); c > 1 is past the classical "
        f"limit; each c in (0, {MAX_BEYOND_FACTOR:g}]")
    beyond_steps: PositiveInt = Field(default=400, description="part 2: GD steps per run")
    beyond_seeds: PositiveInt = Field(default=3, description="part 2: independent network "
                                      "initializations (replicates), each run in both arms at "
                                      "every c; standard errors of part 2 are over them")
    explosion_ratio: float = Field(default=10.0, gt=1, description="part 2: a step whose loss "
                                   "is more than this times the previous step's is an explosion")

    QUICK: ClassVar[dict[str, Any]] = {"points": 200, "losses": ["mse"], "lr_factors": [0.9],
                                       "steps": 700, "sharpness_every": 20, "beyond_width": 8,
                                       "beyond_factors": [2.0, 8.0], "beyond_steps": 100}

    _known_activation = field_validator("activation")(known_activation)

    @field_validator("lr_factors")
    @classmethod
    def _below_edge(cls, values: list[float]) -> list[float]:
        if any(not 0 < v < REACHED for v in distinct_values(values)):
            raise ValueError(f"give distinct factors in (0, {REACHED}): the edge 2/lr must lie "
                             f"above S_0 / {REACHED}")
        return sorted(values)

    @field_validator("beyond_factors")
    @classmethod
    def _positive_factors(cls, values: list[float]) -> list[float]:
        if any(not 0 < v <= MAX_BEYOND_FACTOR for v in distinct_values(values)):
            raise ValueError(f"give distinct factors c in (0, {MAX_BEYOND_FACTOR:g}] (finite: "
                             "lr = c * 2 / S_0)")
        return sorted(values)

    @field_validator("losses")
    @classmethod
    def _some_losses(cls, values: list[str]) -> list[str]:
        return distinct_values(values, "losses")
