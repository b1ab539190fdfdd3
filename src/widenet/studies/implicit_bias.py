"""Study ``implicit-bias``: GD on separable data maximizes the normalized margin (docs/theory.md
section 5; Lyu & Li 2020).

Bias-free relu / abs MLPs with L hidden layers are positively homogeneous of degree L_h = L + 1.
Started small (every parameter times ``init_scale``) and trained by full-batch GD with a fixed
learning rate on the exponential or logistic loss of a linearly separable set, theory says: once
the training loss is below l(0) (so the data are separated) the smoothed margin never decreases,
||theta_t|| grows like (log t)^(1/L_h), the normalized margin gamma_t = min_i y_i f(x_i) /
||theta_t||^L_h rises, and the small-init (rich) net ends with a larger normalized margin than the
best a net with features frozen at initialization (the lazy / NTK regime) can reach. The
measurements are in :mod:`widenet.studies._implicit_bias_measure`, statistics and figures in
:mod:`widenet.studies._implicit_bias_analysis`; docs/studies/implicit-bias.md explains the checks.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from widenet.activations import AbsLinear, get_activation
from widenet.checks import Check, check_interval
from widenet.errors import WidenetError
from widenet.studies._implicit_bias_analysis import (
    DECREASE_TOLERANCE,
    final_margin_figure,
    margin_figure,
    norm_figure,
    run_statistics,
    summarize,
)
from widenet.studies._implicit_bias_measure import compute_task
from widenet.studies.base import Analysis, Study, StudyConfig, Tables, Task
from widenet.studies.fits import all_diverged

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
    seeds: int = Field(default=3, ge=1, description="independent replicates (data and net)")

    QUICK: ClassVar[dict[str, Any]] = {"depths": [1], "width": 32, "steps": 3000,
                                       "log_every": 5, "seeds": 2}

    @field_validator("activations")
    @classmethod
    def _homogeneous_activations(cls, names: list[str]) -> list[str]:
        for name in names:
            try:
                activation = get_activation(name)
            except WidenetError as error:
                raise ValueError(f"activation {name!r}: {error}") from None
            if not isinstance(activation, AbsLinear):
                raise ValueError(f"activation {name!r} is not positively homogeneous; use one "
                                 "of the a s + b|s| family (relu, abs, leaky_relu, identity)")
        if len(set(names)) != len(names):
            raise ValueError("repeated activation")
        return names

    @field_validator("depths")
    @classmethod
    def _distinct_depths(cls, depths: list[int]) -> list[int]:
        if len(set(depths)) != len(depths):
            raise ValueError("repeated depth")
        return depths


def plan(config: ImplicitBiasConfig) -> list[Task]:
    """One task per (activation, depth, replicate): one long GD run."""
    return [Task(f"{activation}/L={depth}/m={config.width}/seed={replicate}",
                 partial(compute_task, config, activation, depth, replicate))
            for activation in config.activations for depth in config.depths
            for replicate in range(config.seeds)]


def analyze(config: ImplicitBiasConfig, tables: Tables) -> Analysis:
    """Per-run statistics, their summary per (activation, depth), figures and checks."""
    trajectory = tables["trajectory"]
    runs = run_statistics(trajectory, tables["runs"], config.steps * config.late_fraction)
    summary = summarize(runs)
    checks = [check for row in summary.itertuples() for check in _checks(row)]
    figures = {"margins": margin_figure(trajectory, runs),
               "norm": norm_figure(trajectory, runs),
               "final-margins": final_margin_figure(summary)}
    diverged = all_diverged(runs["status"], "training runs", "lower lr or init_scale")
    return Analysis(tables={"runs": runs, "summary": summary}, figures=figures, checks=checks,
                    diverged=diverged)


def _checks(row: Any) -> list[Check]:
    """The four checks of one (activation, depth) (see docs/studies/implicit-bias.md)."""
    where = f"{row.activation}, L={row.depth}, L_h={row.degree}"
    note = f"{row.completed} of {row.runs} runs completed; mean over them ± stderr"
    return [
        check_interval(
            f"smoothed margin non-decreasing ({where})",
            "after L_sum < l(0), the smoothed margin never decreases: fraction of logged "
            f"steps where it fell by more than {DECREASE_TOLERANCE:g} (relative) = 0",
            measured=row.decrease_fraction_max, high=0.0, predicted=0.0,
            note=f"largest fraction over the runs; {note}"),
        check_interval(
            f"norm grows ({where})",
            "||theta_t||^L_h ~ log t: late slope of ||theta||^L_h against log t > 0",
            measured=row.norm_slope, stderr=row.norm_slope_se, low=0.0, predicted=0.0,
            note=note),
        check_interval(
            f"margin rises after separation ({where})",
            "gamma_T - gamma_{t_0} > 0 (t_0: first logged step with L_sum < l(0))",
            measured=row.margin_gain, stderr=row.margin_gain_se, low=0.0, predicted=0.0,
            note=note),
        check_interval(
            f"rich beats lazy ({where})",
            "small-init GD ends with a larger normalized margin than the NTK max margin at "
            "init: gamma_T / gamma_NTK(theta_0) > 1",
            measured=row.rich_over_lazy, stderr=row.rich_over_lazy_se, low=1.0, predicted=1.0,
            note=note),
    ]


STUDY = Study(name="implicit-bias",
              summary="GD on separable data: margins rise, rich margin beats the NTK margin",
              config=ImplicitBiasConfig, plan=plan, analyze=analyze)
