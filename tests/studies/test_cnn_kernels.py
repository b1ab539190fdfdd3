"""Tests of the cnn-kernels study: end to end on tiny sizes, the NTK's gradient-descent
prediction against the iterated linear dynamics, reproducible tasks, and config errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.studies.conftest import run_in_memory
from widenet.checks import VERDICTS
from widenet.errors import WidenetError
from widenet.kernels.infinite import infinite_kernels
from widenet.studies import StudyContext, get_study
from widenet.studies.cnn_kernels import measure as ck_measure
from widenet.studies.cnn_kernels.config import CnnKernelsConfig
from widenet.studies.common.config import validate_config

STUDY = get_study("cnn-kernels")
TINY = {"kernel_points": 4, "widths": [4, 8, 16], "seeds": 2, "train_points": 20,
        "test_points": 10, "train_widths": [4, 8], "train_seeds": 2, "steps": 5, "classes": 3}


def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    _, analysis = run_in_memory(STUDY, tmp_path, **TINY)
    assert set(analysis.tables) == {"concentration_slopes", "approach_slopes", "trained",
                                    "kernel_accuracy"}
    assert set(analysis.figures) == {"concentration", "accuracy", "distance"}
    assert list(analysis.tables["concentration_slopes"]["readout"]) == ["flatten", "gap"]
    assert set(analysis.tables["kernel_accuracy"]["kernel"]) == {"nngp", "ntk",
                                                                 "ntk after 5 steps"}
    assert analysis.tables["trained"]["networks"].tolist() == [2, 2, 2, 2]
    assert [check.name for check in analysis.checks] == [
        "concentration slope flatten", "concentration slope gap",
        "approach to the NTK prediction flatten", "approach to the NTK prediction gap"]
    assert all(check.verdict in VERDICTS for check in analysis.checks)
    assert all(np.isfinite(check.measured) for check in analysis.checks)


def test_ntk_prediction_is_the_iterated_linear_dynamics() -> None:
    """F_{t+1} = F_t - lr Theta (F_t - Y) on the train points and F*_{t+1} = F*_t - lr
    Theta*(F_t - Y) on the test points, from F_0 = 0, equal the closed form; also for a
    kernel with zero eigenvalues (gain lr * steps in those directions)."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(9, 5, generator=generator, dtype=torch.float64)
    full, cross = features[:6] @ features[:6].T, features[6:] @ features[:6].T
    targets = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    lr, steps = 0.9 / float(torch.linalg.eigvalsh(full)[-1]), 17
    low_rank = features[:6, :2] @ features[:6, :2].T  # rank 2 of 6
    for theta in (full, low_rank, torch.zeros(6, 6, dtype=torch.float64)):
        train, test = torch.zeros_like(targets), torch.zeros(3, 2, dtype=torch.float64)
        for _ in range(steps):
            residual = train - targets
            train, test = train - lr * theta @ residual, test - lr * cross @ residual
        closed = ck_measure.ntk_prediction(theta, cross, targets, lr, steps)
        assert torch.allclose(closed, test, rtol=1e-9, atol=1e-9)


def test_cnn_matches_its_description_and_its_limit_ignores_width() -> None:
    device = torch.device("cpu")
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for readout, features in (("flatten", 5 * 64), ("gap", 5)):
        net = ck_measure.cnn(readout, 2, 5, 3, seed=4, device=device)
        assert net(x).shape == (3, 3)
        assert net[-1].in_features == features
        assert torch.equal(net(x), ck_measure.cnn(readout, 2, 5, 3, seed=4, device=device)(x))
        assert not torch.equal(net(x), ck_measure.cnn(readout, 2, 5, 3, seed=5,
                                                      device=device)(x))
        narrow = infinite_kernels(ck_measure.cnn(readout, 2, 1, 1, 0, device), x).ntk
        wide = infinite_kernels(net, x).ntk
        assert torch.allclose(narrow, wide, rtol=1e-12)


def test_tasks_are_tidy_and_reproducible(tmp_path: Path) -> None:
    config = validate_config(CnnKernelsConfig, TINY)
    tasks = ck_measure.plan(config)
    assert [task.key for task in tasks] == [
        "concentration/flatten/m=4", "concentration/flatten/m=8", "concentration/flatten/m=16",
        "concentration/gap/m=4", "concentration/gap/m=8", "concentration/gap/m=16",
        "regression/flatten", "regression/gap"]
    context = StudyContext(device=torch.device("cpu"), folder=tmp_path)
    first = tasks[1].compute(context)["concentration"]
    pd.testing.assert_frame_equal(first, tasks[1].compute(context)["concentration"])
    assert list(first.columns) == ["readout", "m", "seed", "error"]
    assert bool((first["error"] > 0).all())
    regression = tasks[-1].compute(context)
    assert list(regression["trained"].columns) == ["readout", "m", "seed", "accuracy",
                                                   "distance"]
    assert all(0 <= value <= 1 for value in regression["kernel_accuracy"]["accuracy"])
    assert all(math.isfinite(value) for value in regression["trained"]["distance"])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"widths": [8, 8, 16]}, "'widths': the list has repeated values"),
    ({"widths": [8, 16]}, "at least 3 distinct widths"),
    ({"train_widths": [8]}, "needs at least 2 widths"),
    ({"readouts": ["flatten", "flatten"]}, "'readouts': the list has repeated values"),
    ({"readouts": ["maxpool"]}, "should be 'flatten' or 'gap'"),
    ({"lr_fraction": 1.0}, "'lr_fraction': Input should be less than 1"),
    ({"classes": 11}, "'classes': Input should be less than or equal to 10"),
])
def test_bad_configs(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        validate_config(CnnKernelsConfig, overrides)
