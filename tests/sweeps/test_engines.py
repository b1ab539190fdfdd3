"""The local engine's workers: what they inherit from the driver."""

from __future__ import annotations

import os
import sys

import pytest

from widenet.sweeps import LocalEngine
from widenet.sweeps.engines import Job, Outcome


def _worker_view() -> tuple[str | None, bool]:
    return os.environ.get("WIDENET_STUDIES"), "/nowhere/plugins" in sys.path


def _views(engine: LocalEngine) -> list[tuple[str | None, bool]]:
    results: list[Outcome] = []
    engine.run([Job("view", _worker_view, ())], lambda _job, outcome: results.append(outcome))
    assert [outcome.status for outcome in results] == ["done"]
    return [outcome.result for outcome in results]


def test_workers_see_the_environment_and_path_of_each_run_not_of_the_fork_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = LocalEngine(1, retries=0)
    monkeypatch.setenv("WIDENET_STUDIES", "first=a.b")
    assert _views(engine) == [("first=a.b", False)]  # the fork server runs from here on
    monkeypatch.setenv("WIDENET_STUDIES", "second=c.d")
    monkeypatch.syspath_prepend("/nowhere/plugins")
    assert _views(engine) == [("second=c.d", True)]
    monkeypatch.delenv("WIDENET_STUDIES")
    assert _views(engine) == [(None, True)]
