"""The config of the ``cnn-kernels`` study."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_values

Readout = Literal["flatten", "gap"]


class CnnKernelsConfig(StudyConfig):
    """The sizes of the convolutional-limit study (defaults: the DEFAULT preset)."""

    readouts: list[Readout] = Field(
        default=["flatten", "gap"], description="the readouts compared: flatten (only the "
        "per-position kernel diagonal enters the limit) and gap (global average pooling: the "
        "full position-by-position covariance)")
    depth: PositiveInt = Field(default=2, description="3x3 ReLU convolutions before the readout")
    classes: int = Field(default=10, ge=2, le=10, description="digits kept: 0..classes-1")
    kernel_points: PositiveInt = Field(default=12, description="digits on which the empirical "
                                       "NTK is compared with its limit (part a)")
    widths: list[PositiveInt] = Field(
        default=[16, 32, 64, 128, 256, 512], description="channel counts m for the "
        "concentration fit (part a; at least 3 distinct)")
    seeds: PositiveInt = Field(default=8, description="networks per (readout, m) in part a")
    train_seeds: PositiveInt = Field(default=3, description="networks trained per (readout, m) "
                                     "in part b")
    train_points: PositiveInt = Field(default=150, description="train digits (part b)")
    test_points: PositiveInt = Field(default=200, description="test digits (part b)")
    train_widths: list[PositiveInt] = Field(
        default=[16, 32, 64, 128], description="channel counts of the trained CNNs (part b; "
        "at least 2 distinct)")
    steps: PositiveInt = Field(default=200, description="full-batch gradient-descent steps")
    lr_fraction: float = Field(default=0.5, gt=0, lt=1, description="learning rate as a "
                                       "fraction of 2 / lambda_max(Theta), the stability edge")

    QUICK: ClassVar[dict[str, Any]] = {"kernel_points": 6, "widths": [16, 32, 64, 128, 256],
                                       "seeds": 6, "train_points": 60, "test_points": 100,
                                       "train_widths": [16, 64], "train_seeds": 3,
                                       "steps": 40, "classes": 4}

    @field_validator("readouts")
    @classmethod
    def _distinct(cls, values: list[Any]) -> list[Any]:
        return distinct_values(values)

    @field_validator("widths")
    @classmethod
    def _fit_widths(cls, values: list[int]) -> list[int]:
        if len(distinct_values(values)) < 3:
            raise ValueError("a power-law fit needs at least 3 distinct widths")
        return sorted(values)

    @field_validator("train_widths")
    @classmethod
    def _train_widths(cls, values: list[int]) -> list[int]:
        if len(distinct_values(values)) < 2:
            raise ValueError("the approach to the NTK's prediction needs at least 2 widths")
        return sorted(values)
