"""The config of the ``implicit-bias`` study."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from widenet.activation_names import parse_activation
from widenet.errors import WidenetError
from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_values

PositiveInt = Annotated[int, Field(gt=0)]


class ImplicitBiasConfig(StudyConfig):
    """The keys of the ``implicit-bias`` study (docs/studies/implicit-bias.md)."""

    activations: list[str] = Field(
        default=["relu", "abs"], min_length=1,
        description="activations of the a s + b|s| family (the net must be homogeneous)")
    depths: list[PositiveInt] = Field(
        default=[1, 2], min_length=1,
        description="numbers of hidden layers L (homogeneity degree L_h = L + 1)")
    width: PositiveInt = Field(default=64, description="hidden width m of every layer")
    init_scale: float = Field(
        default=0.1, ge=1e-6, le=1e3,
        description="every initial parameter is multiplied by this (small: rich regime; in "
                    "[1e-6, 1e3], beyond which the NTK at init under- or overflows)")
    n: int = Field(default=32, ge=2, description="training points of the 'separable' set")
    dim: PositiveInt = Field(default=8, description="input dimension d (||x||^2 = d)")
    loss: Literal["exponential", "logistic"] = Field(
        default="exponential", description="training loss (a mean over the points)")
    lr: float = Field(default=1.0, gt=0, allow_inf_nan=False,
                      description="fixed GD learning rate (time t = lr * step)")
    steps: PositiveInt = Field(default=20000, description="GD steps")
    log_every: PositiveInt = Field(default=10, description="steps between logged rows")
    late_fraction: float = Field(
        default=0.1, gt=0, lt=1,
        description="the norm-growth fits use the logged steps >= late_fraction * steps")
    checkpoints: int = Field(
        default=6, ge=3, le=50,
        description="steps, evenly spaced in log t from late_fraction * steps to steps, at "
                    "which the direction, its alignment with -grad L and the KKT residual "
                    "are measured (>= 3: two direction changes to compare)")
    seeds: int = Field(default=3, ge=1, description="independent replicates (data and net)")

    QUICK: ClassVar[dict[str, Any]] = {"depths": [1], "width": 32, "steps": 3000,
                                       "log_every": 5, "seeds": 2}

    @field_validator("activations")
    @classmethod
    def _homogeneous_activations(cls, names: list[str]) -> list[str]:
        for name in names:
            try:
                activation = parse_activation(name)
            except WidenetError as error:
                raise ValueError(f"activation {name!r}: {error}") from None
            if activation.coefficients is None:
                raise ValueError(f"activation {name!r} is not positively homogeneous; use one "
                                 "of the a s + b|s| family (relu, abs, leaky_relu, identity)")
        return distinct_values(names, "activations")

    @field_validator("depths")
    @classmethod
    def _distinct_depths(cls, depths: list[int]) -> list[int]:
        return distinct_values(depths, "depths")
