"""A tiny study for testing the runner: one task per value, each a seeded random number.

``TOY_PAUSE_AT=<value>`` in the environment makes that value's task sleep, so that a test can
kill the process in the middle of a run.
"""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from widenet.checks import check_interval
from widenet.figures import label, new_figure
from widenet.studies import Analysis, Study, StudyConfig, StudyContext, Tables, Task


class ToyConfig(StudyConfig):
    values: list[int] = Field(default=[1, 2, 3, 4], description="one task per value")
    fail_at: int | None = Field(default=None, description="the value whose task raises")
    diverge_at: int | None = Field(default=None, description="the value whose draw is inf")
    crash_at: int | None = Field(default=None,
                                 description="the value whose task kills its own process")
    QUICK: ClassVar[dict[str, Any]] = {"values": [1, 2]}


def _compute(config: ToyConfig, value: int, context: StudyContext) -> Tables:
    if os.environ.get("TOY_PAUSE_AT") == str(value):
        time.sleep(120)
    if value == config.fail_at:
        raise RuntimeError(f"task {value} failed on purpose")
    if value == config.crash_at:
        os.kill(os.getpid(), signal.SIGKILL)
    draw = np.random.default_rng([config.seed, value]).standard_normal()
    if value == config.diverge_at:
        draw = np.inf
    return {"draws": pd.DataFrame({"value": [value], "draw": [draw]})}


def plan(config: ToyConfig) -> list[Task]:
    return [Task(f"v={value}", partial(_compute, config, value)) for value in config.values]


def analyze(config: ToyConfig, tables: Tables) -> Analysis:
    draws = tables["draws"]
    figure, axes = new_figure()
    axes[0, 0].plot(draws["value"], draws["draw"], "o")
    label(axes[0, 0], "draws", "value", "draw")
    mean = float(draws["draw"].mean())
    check = check_interval("mean draw", "the mean of N(0,1) draws is 0", predicted=0.0,
                           measured=mean, low=-5.0, high=5.0)
    diverged = "" if np.isfinite(mean) else "a draw diverged to inf"
    return Analysis(tables={"summary": pd.DataFrame({"mean": [mean]})},
                    figures={"draws": figure}, checks=[check], diverged=diverged)


STUDY = Study(name="toy", summary="seeded random draws", config=ToyConfig, plan=plan,
              analyze=analyze)
