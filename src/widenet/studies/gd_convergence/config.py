"""The config of the ``gd-convergence`` study."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from widenet.memory import FLOAT64_BYTES
from widenet.studies.common.base import StudyConfig
from widenet.studies.common.validators import distinct_widths, known_activation


class GDConfig(StudyConfig):
    """The sizes of the gd-convergence study (defaults: the DEFAULT preset)."""

    dataset: Literal["sphere", "teacher"] = Field(
        default="sphere", description="training data, x uniform on ||x||^2 = d: 'sphere' "
        "(targets i.i.d. N(0, 1), labels to memorize) or 'teacher' (targets from a random "
        "ReLU teacher MLP); drawn once from `seed`")
    points: int = Field(default=32, ge=2, description="n, the number of training points "
                        "(>= 2: with one, GD on the kernel reaches zero loss in a single step)")
    dim: PositiveInt = Field(default=16, description="d, the input dimension")
    depth: PositiveInt = Field(default=1, description="L, the number of hidden layers")
    activation: str = Field(default="relu", description="the activation (relu, abs, tanh, "
                            "erf, leaky_relu:SLOPE, ...); sigma_w at its edge of chaos, no biases")
    widths: list[PositiveInt] = Field(
        default=[128, 512, 2048, 8192, 32768], description="hidden widths m (every hidden "
        "layer m wide); at least 2 distinct values")
    seeds: int = Field(default=8, ge=2, description="networks trained per width (>= 2, for a "
                       "standard error)")
    lr_factor: float = Field(
        default=1.0, gt=0, lt=2, description="the shared learning rate is "
        "lr = lr_factor * n / lambda_max(Theta); GD on the kernel is stable iff lr_factor < 2")
    decades: float = Field(
        default=10.0, gt=0, le=20, description="the run lasts T = ceil(decades ln 10 / "
        "(-2 ln rho)) steps, so that the kernel prediction's loss falls at least this many "
        "decades (rho = max_i |1 - lr lambda_i / n|); at most 20 (float64 round-off)")
    fit_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="the rate is fitted on the last fit_fraction of "
        "the run's steps")

    QUICK: ClassVar[dict[str, Any]] = {"widths": [128, 512, 2048]}

    _known_activation = field_validator("activation")(known_activation)

    def memory_bytes(self) -> int:
        """The lower bound of :meth:`StudyConfig.memory_bytes` plus the float64 n x n NTK."""
        return super().memory_bytes() + FLOAT64_BYTES * self.points ** 2

    _distinct_widths = field_validator("widths")(distinct_widths)
