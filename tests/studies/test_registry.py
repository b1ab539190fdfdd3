"""The registry of studies (widenet/studies/__init__.py) and the steps of the built-in ones."""

from __future__ import annotations

import inspect

import pytest

from widenet.deferred import Deferred
from widenet.studies import get_study, study_names


@pytest.mark.parametrize("name", study_names())
def test_a_built_in_study_names_its_steps_in_its_own_package(name: str) -> None:
    """Each built-in study's plan and analysis are deferred to first use (get_study imports only
    the config) and name functions of the study's own package with the runner's signatures."""
    study = get_study(name)
    package = study.config.__module__.rpartition(".")[0]
    for step, arguments in ((study.plan, ["config"]), (study.analyze, ["config", "tables"])):
        assert isinstance(step, Deferred)
        assert step.module.rpartition(".")[0] == package
        assert list(inspect.signature(step.function).parameters) == arguments
