"""Study ``lazy-training``: output scale alpha and the lazy regime
(docs/theory.md sections 1 and 5).

Chizat, Oyallon & Bach (2019): training h_alpha = alpha (f(w) - f(w_0)) with the objective
R(h_alpha) / alpha^2 keeps the function-space time scale fixed, and on a finite horizon the
trajectory deviates from that of the linearized model by O(1/alpha) when Dh is Lipschitz. A
teacher-student regression is fitted by bias-free edge-of-chaos MLPs (NTK parametrization) at
a grid of alphas with the same learning rate and number of GD steps; measured against alpha:
the relative weight movement, the relative NTK movement, the linearization error, the number
of activation-pattern flips, and the train and test losses beside the linearized model's (the
paired relative test-loss gap, whose first-order term inherits the O(1/alpha) deviation).
The measurements are in :mod:`widenet.studies._lazy_measure`, the statistics in
:mod:`widenet.studies._lazy_analysis`, the figures in :mod:`widenet.studies._lazy_figures`;
docs/studies/lazy-training.md explains the checks and their tolerances.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, ValidationInfo, field_validator

from widenet.activations import get_activation
from widenet.checks import Check, check_close, check_interval
from widenet.errors import WidenetError
from widenet.studies._lazy_analysis import KEYS, MEASURES, fit_slopes, summarize
from widenet.studies._lazy_figures import criterion_figure, loss_figure, movement_figure
from widenet.studies._lazy_measure import compute_task
from widenet.studies.base import Analysis, Study, StudyConfig, Tables, Task
from widenet.studies.fits import all_diverged

PositiveInt = Annotated[int, Field(gt=0)]
ALPHA_RANGE = (1e-6, 1e12)
"""The accepted output scales: past them 1/alpha^2 (the loss scale) and alpha (f - f_0) leave
the range where float64 training means anything."""
Alpha = Annotated[float, Field(ge=ALPHA_RANGE[0], le=ALPHA_RANGE[1])]


class LazyTrainingConfig(StudyConfig):
    """The keys of the ``lazy-training`` study (docs/studies/lazy-training.md)."""

    activations: list[str] = Field(
        default=["tanh", "relu"], min_length=1,
        description="student activations (a smooth one tests the O(1/alpha) theorem; relu/abs "
                    "are kinked)")
    widths: list[PositiveInt] = Field(default=[128, 512], min_length=1,
                                      description="hidden width m of the student")
    depth: PositiveInt = Field(default=2, description="number of hidden layers L")
    alphas: list[Alpha] = Field(
        default=[0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048], min_length=2,
        description="output scales alpha (a log grid; sorted and de-duplicated), each in "
                    "[1e-6, 1e12]")
    alpha_min: Alpha = Field(
        default=32.0, description="slopes are fitted over the alphas >= alpha_min (in "
                                  "[1e-6, 1e12])")
    slope_tolerance: float = Field(
        default=0.15, gt=0, lt=0.5, description="accepted |slope + 1| of the checked slopes")
    seeds: int = Field(default=4, ge=2, description="independent replicates (data and "
                                                    "student) per activation and width")
    n: int = Field(default=64, ge=2, description="training points")
    n_test: PositiveInt = Field(default=64, description="test points")
    dim: PositiveInt = Field(default=8, description="input dimension d (||x||^2 = d)")
    noise: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                         description="std of the teacher's label noise")
    lr_fraction: float = Field(default=0.5, gt=0, lt=1,
                               description="learning rate as a fraction of the stability limit "
                                           "2n / lambda_max(K_0)")
    steps: PositiveInt = Field(default=100, description="GD steps (the same for every alpha)")

    QUICK: ClassVar[dict[str, Any]] = {"widths": [128], "seeds": 3,
                                       "alphas": [0.25, 1, 4, 16, 64, 256, 1024], "alpha_min": 16.0}

    @field_validator("activations")
    @classmethod
    def _known_activations(cls, names: list[str]) -> list[str]:
        for name in names:
            try:
                get_activation(name).edge_of_chaos(0.0)
            except WidenetError as error:
                raise ValueError(f"activation {name!r}: {error}") from None
        if len(set(names)) != len(names):
            raise ValueError("repeated activation")
        return names

    @field_validator("widths")
    @classmethod
    def _distinct_widths(cls, widths: list[int]) -> list[int]:
        if len(set(widths)) != len(widths):
            raise ValueError("repeated width")
        return widths

    @field_validator("alphas")
    @classmethod
    def _sorted_alphas(cls, alphas: list[float]) -> list[float]:
        return sorted(set(alphas))

    @field_validator("alpha_min")
    @classmethod
    def _fit_range(cls, alpha_min: float, info: ValidationInfo) -> float:
        alphas = info.data.get("alphas", [])
        if sum(alpha >= alpha_min for alpha in alphas) < 2:
            raise ValueError(f"alpha_min={alpha_min:g} leaves fewer than two alphas to fit a "
                             "slope over; lower it or add larger alphas")
        return alpha_min


def plan(config: LazyTrainingConfig) -> list[Task]:
    """One task per (activation, width, replicate), each training every alpha."""
    return [Task(f"{activation}/m={width}/seed={replicate}",
                 partial(compute_task, config, activation, width, replicate))
            for activation in config.activations for width in config.widths
            for replicate in range(config.seeds)]


def analyze(config: LazyTrainingConfig, tables: Tables) -> Analysis:
    """Summaries per alpha, fitted slopes, figures and checks (docs/studies/lazy-training.md)."""
    runs = tables["runs"].merge(tables["reference"], on=KEYS)
    runs["test_gap"] = (runs["test_loss"] - runs["test_loss_linear"]) / runs["test_loss_linear"]
    runs["kappa"] = runs["kappa_1"] / runs["alpha"]
    summary = summarize(runs)
    slopes = fit_slopes(runs, config.alpha_min)
    checks = [check for (activation, width), group in summary.groupby(["activation", "width"])
              for check in _checks(config, activation, width, group, slopes)]
    figures = {"movement": movement_figure(summary, config.alpha_min),
               "losses": loss_figure(summary)}
    smooth = summary[np.isfinite(summary["kappa"])]
    if not smooth.empty:
        figures["criterion"] = criterion_figure(smooth)
    diverged = all_diverged(runs["status"], "training runs",
                            "lower lr_fraction or noise, or use moderate alphas")
    return Analysis(tables={"summary": summary, "slopes": slopes}, figures=figures,
                    checks=checks, diverged=diverged)


def _checks(config: LazyTrainingConfig, activation: str, width: int, summary: pd.DataFrame,
            slopes: pd.DataFrame) -> list[Check]:
    """The checks of one (activation, width) (see docs/studies/lazy-training.md)."""
    where = f"{activation}, m={width}"
    fits = slopes[(slopes["activation"] == activation) & (slopes["width"] == width)
                  & slopes["checked"]]
    checks = [check_close(
        f"{fit.measure} slope ({where})", f"{MEASURES[fit.measure]} ~ alpha^-1",
        predicted=-1.0, measured=fit.slope, stderr=fit.stderr,
        tolerance=config.slope_tolerance,
        note=f"{fit.fit} fit over alpha >= {config.alpha_min:g}, mean of {fit.seeds} seeds")
        for fit in fits.itertuples()]
    alpha_max = config.alphas[-1]
    top = summary[summary["alpha"] == alpha_max].iloc[0]
    checks.append(check_interval(
        f"linearization error at alpha={alpha_max:g} ({where})",
        "lazy limit reached: ||f_T - f_lin,T|| / ||f_T - f_0|| <= 1/alpha_max",
        measured=top["linearization_error"], stderr=top["linearization_error_se"], low=0.0,
        high=1.0 / alpha_max, predicted=0.0,
        note=f"{top['diverged']} of {top['runs']} runs diverged"))
    return checks


STUDY = Study(name="lazy-training",
              summary="output scale alpha: weight, NTK and linearization movement ~ 1/alpha",
              config=LazyTrainingConfig, plan=plan, analyze=analyze)
