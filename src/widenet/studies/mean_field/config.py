"""The config of the ``mean-field`` study."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from widenet.studies.common.base import StudyConfig

PositiveInt = Annotated[int, Field(gt=0)]


class MeanFieldConfig(StudyConfig):
    """The keys of the ``mean-field`` study (docs/studies/mean-field.md)."""

    widths: list[PositiveInt] = Field(
        default=[64, 128, 256, 512, 1024, 2048, 4096], min_length=3,
        description="hidden widths m (sorted, de-duplicated; the widest is the reference of "
                    "the transport distances)")
    particle_width: PositiveInt = Field(
        default=256, description="the width whose particles are drawn (one of `widths`)")
    seeds: int = Field(default=4, ge=2, description="independent replicates (teacher, data "
                                                    "and initializations)")
    dim: int = Field(default=2, ge=2, description="input dimension d (x on ||x||^2 = d)")
    teacher_width: PositiveInt = Field(default=4, description="neurons of the bias-free "
                                                              "two-layer ReLU teacher")
    n: int = Field(default=64, ge=2, description="training points")
    n_test: PositiveInt = Field(default=256, description="test points")
    noise: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                         description="std of the teacher's label noise")
    lr: float = Field(default=0.5, gt=0, allow_inf_nan=False,
                      description="base GD rate eta: mean field trains with eta * m, NTK with "
                                  "eta")
    steps: PositiveInt = Field(default=1000, description="full-batch GD steps (time eta * steps)")
    projections: PositiveInt = Field(default=256, description="directions of the sliced "
                                                              "Wasserstein distance")
    slope_tolerance: float = Field(default=0.1, gt=0, lt=0.25,
                                   description="accepted |slope - prediction| of the movement")
    transport_tolerance: float = Field(
        default=0.1, gt=0, lt=0.25,
        description="accepted |slope| of the trained-to-initial transport ratio against m (a "
                    "trained measure that stops converging gives up to +1/2)")
    loss_tolerance: float = Field(default=0.1, gt=0, allow_inf_nan=False,
                                  description="accepted relative test-loss change between the "
                                              "two widest mean-field nets")

    QUICK: ClassVar[dict[str, Any]] = {"widths": [64, 256, 1024], "seeds": 3, "steps": 300}

    @field_validator("widths")
    @classmethod
    def _sorted_widths(cls, widths: list[int]) -> list[int]:
        widths = sorted(set(widths))
        if len(widths) < 3:
            raise ValueError("needs three distinct widths (two below the widest, to fit the "
                             "slope of the transport distance)")
        return widths

    @field_validator("particle_width")
    @classmethod
    def _drawn_width(cls, width: int, info: ValidationInfo) -> int:
        widths = info.data.get("widths", [])
        if width not in widths:
            raise ValueError(f"{width} is not one of the widths {widths}")
        return width
