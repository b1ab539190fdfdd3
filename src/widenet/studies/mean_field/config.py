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

    neuron_counts: list[PositiveInt] = Field(
        default=[2, 4, 8, 16, 64, 256], min_length=3,
        description="numbers of neurons m of the global-convergence experiment (mean field, "
                    "the main experiment's data; sorted, de-duplicated)")
    neuron_steps: PositiveInt = Field(default=2000, description="GD steps of the "
                                      "global-convergence experiment")
    global_loss_tolerance: float = Field(
        default=0.01, gt=0, lt=1,
        description="accepted final training loss at the largest neuron count, relative to "
                    "the zero predictor's ((1/2n) ||y||^2)")
    scales: list[float] = Field(
        default=[0.03, 0.1, 0.3, 1.0, 3.0, 10.0], min_length=2,
        description="initialization scales tau of the lazy-versus-rich experiment (sorted, "
                    "de-duplicated, in [1e-3, 1e3])")
    scale_width: PositiveInt = Field(default=128, description="m of the lazy-versus-rich "
                                     "nets (even: the initialization is symmetrized)")
    scale_dim: int = Field(default=10, ge=2, description="input dimension of the "
                           "lazy-versus-rich teacher task")
    scale_n: int = Field(default=256, ge=2, description="training points of the "
                         "lazy-versus-rich task")
    scale_steps: PositiveInt = Field(default=2000, description="GD steps of the "
                                     "lazy-versus-rich runs")

    QUICK: ClassVar[dict[str, Any]] = {"widths": [64, 256, 1024], "seeds": 3, "steps": 300,
                                       "neuron_counts": [2, 8, 32], "neuron_steps": 800,
                                       "scales": [0.1, 10.0], "scale_width": 64,
                                       "scale_n": 128, "scale_steps": 800}

    @field_validator("widths")
    @classmethod
    def _sorted_widths(cls, widths: list[int]) -> list[int]:
        widths = sorted(set(widths))
        if len(widths) < 3:
            raise ValueError("needs three distinct widths (two below the widest, to fit the "
                             "slope of the transport distance)")
        return widths

    @field_validator("neuron_counts")
    @classmethod
    def _sorted_counts(cls, counts: list[int]) -> list[int]:
        counts = sorted(set(counts))
        if len(counts) < 3:
            raise ValueError("needs three distinct neuron counts (a slope and its spread)")
        return counts

    @field_validator("scales")
    @classmethod
    def _sorted_scales(cls, scales: list[float]) -> list[float]:
        if any(not 1e-3 <= scale <= 1e3 for scale in scales):
            raise ValueError(f"every scale must lie in [1e-3, 1e3], got {scales}")
        scales = sorted(set(scales))
        if len(scales) < 2:
            raise ValueError("needs two distinct scales (a small and a large tau)")
        return scales

    @field_validator("scale_width")
    @classmethod
    def _even_width(cls, width: int) -> int:
        if width % 2:
            raise ValueError(f"{width} is odd; the symmetrized initialization pairs neurons")
        return width

    @field_validator("particle_width")
    @classmethod
    def _drawn_width(cls, width: int, info: ValidationInfo) -> int:
        widths = info.data.get("widths", [])
        if width not in widths:
            raise ValueError(f"{width} is not one of the widths {widths}")
        return width
