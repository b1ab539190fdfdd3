"""The config of the ``info-nuisance`` study."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PositiveInt, field_validator, model_validator

from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import known_activation

DIGITS = 1797
"""Points in scikit-learn's digits set: train + test must fit in it."""


class InfoNuisanceConfig(StudyConfig):
    """The sizes of the info-nuisance study (defaults: the DEFAULT preset)."""

    points: PositiveInt = Field(default=500, description="n, training points drawn from digits "
                                "(10 classes, inputs on the sphere ||x||^2 = 64)")
    test_points: PositiveInt = Field(default=500, description="test points (never corrupted) "
                                     "for the test error")
    width: PositiveInt = Field(default=256, description="m, the width of every hidden layer")
    depth: PositiveInt = Field(default=2, description="L, the number of hidden layers")
    activation: str = Field(default="relu", description="the activation (relu, tanh, erf, ...); "
                            "sigma_w at its edge of chaos, no biases, NTK parametrization")
    corrupt: float = Field(default=0.5, gt=0, le=1, description="the fraction of training "
                           "labels replaced by random ones in the corrupted runs (the clean "
                           "runs use 0)")
    sweep: list[float] = Field(default=[0.25, 0.75], description="further corruption "
                               "fractions, in (0, 1], trained like `corrupt`: the levels 0, "
                               "corrupt and these relate ||P_N y|| to the test error (fewer "
                               "than 3 distinct levels: that check is inconclusive)")
    rich_scale: float = Field(default=0.1, gt=0, lt=1, description="alpha of the non-lazy "
                              "runs h = alpha (f - f_0), trained at lr / alpha^2 (Chizat et "
                              "al.'s lazy scale: the weights move 1/alpha times farther)")
    seeds: int = Field(default=3, ge=2, description="replicates per label condition (>= 2, "
                       "for standard errors); each draws data, corruption and weights")
    information_dim: int = Field(default=10, ge=1, description="r = dim I: the information "
                                 "space is spanned by the top r eigenvectors of the NTK at "
                                 "initialization (cutoff alpha = lambda_r)")
    lr_factor: float = Field(default=1.0, gt=0, le=100, description="lr = lr_factor * n / "
                             "lambda_max(K_0), K_0 the NTK per output unit (k = 10); "
                             "fixed-kernel GD is stable iff lr_factor < 2 (a run that "
                             "diverges is recorded with status 'diverged')")
    steps: PositiveInt = Field(default=3000, description="full-batch GD steps per run")
    check_fraction: float = Field(default=0.1, gt=0, lt=1, description="the check step "
                                  "t_c is the logged step nearest check_fraction * steps: the "
                                  "decay of the two parts and the test error are compared there")

    QUICK: ClassVar[dict[str, Any]] = {"points": 200, "test_points": 300, "width": 128,
                                       "steps": 800, "sweep": [0.25]}

    _known_activation = field_validator("activation")(known_activation)

    @field_validator("sweep")
    @classmethod
    def _fractions(cls, levels: list[float]) -> list[float]:
        if any(not 0 < level <= 1 for level in levels):
            raise ValueError(f"every sweep level must lie in (0, 1], got {levels}")
        return sorted(set(levels))

    @model_validator(mode="after")
    def _sizes_fit(self) -> InfoNuisanceConfig:
        if self.points + self.test_points > DIGITS:
            raise ValueError(f"points + test_points = {self.points + self.test_points} exceeds "
                             f"the {DIGITS} digits")
        if self.information_dim >= self.points:
            raise ValueError(f"information_dim = {self.information_dim} must be below points "
                             f"= {self.points} (N would be empty)")
        return self
