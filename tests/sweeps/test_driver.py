"""Sweeps on the local engine: faults recorded per point, resume, interruption."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from widenet.errors import WidenetError
from widenet.store import RunStore
from widenet.sweeps import LocalEngine, SweepSpec, run_sweep

FAULTS = SweepSpec(grid={"fail_at": [None, 2], "diverge_at": [None, 3], "crash_at": [None, 1]})
# points: every combination; a point with crash_at=1 dies before fail_at/diverge_at matter


@pytest.fixture(autouse=True)
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIDENET_STUDIES", "toy=tests.studies.toy_study")


def _statuses(points: pd.DataFrame) -> dict[str, str]:
    return dict(zip(points["point"], points["status"], strict=True))


def test_each_fault_is_recorded_and_the_rest_complete(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    outcome = run_sweep("toy", FAULTS, store=store, engine=LocalEngine(2, retries=1))
    statuses = _statuses(outcome.points)
    assert len(statuses) == 8
    assert statuses["fail_at=None,diverge_at=None,crash_at=None"] == "completed"
    assert statuses["fail_at=None,diverge_at=3,crash_at=None"] == "diverged"
    assert statuses["fail_at=2,diverge_at=None,crash_at=None"] == "failed"
    assert statuses["fail_at=2,diverge_at=3,crash_at=None"] == "failed"
    assert {s for label, s in statuses.items() if label.endswith("crash_at=1")} == {"lost"}
    lost = outcome.points[outcome.points["status"] == "lost"]["reason"].iloc[0]
    assert "worker died (exit code -9) 2 times" in lost
    results = pd.read_csv(outcome.report.parent / "results.csv")
    assert set(results["status"]) == {"completed", "diverged", "failed", "lost"}
    assert "mean draw" in outcome.report.read_text()
    # each point is an ordinary run of the study, with its own report
    completed = outcome.points[outcome.points["status"] == "completed"]["run_id"].iloc[0]
    assert store.run(completed).sweep == outcome.name
    assert (store.run_folder(completed) / "report.html").exists()


def test_resume_runs_only_the_unfinished_points(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    spec = SweepSpec(grid={"values": [[1, 2], [3, 4]]}, seeds=3)
    stop_after = {"count": 0}

    def interrupt(done: int, total: int, label: str, status: str) -> None:
        if label:
            stop_after["count"] += 1
            if stop_after["count"] == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep("toy", spec, store=store, engine=LocalEngine(1), name="s", on_point=interrupt)
    before = store.runs()
    assert set(before["status"]) == {"completed"}
    assert len(before) == 2
    resumed = run_sweep("toy", spec, store=store, engine=LocalEngine(2), name="s", resume=True)
    assert resumed.ran == 4
    assert set(resumed.points["status"]) == {"completed"}
    assert len(store.runs()) == 6
    assert set(before["id"]) <= set(resumed.points["run_id"])
    again = run_sweep("toy", spec, store=store, engine=LocalEngine(2), resume=True)
    assert (again.name, again.ran) == ("s", 0)


def test_points_equal_plain_runs(tmp_path: Path) -> None:
    from tests.studies.toy_study import STUDY, ToyConfig
    from widenet.studies.runner import run_study

    store = RunStore(tmp_path / "sweep")
    outcome = run_sweep("toy", SweepSpec(seeds=2), store=store, engine=LocalEngine(2))
    plain_store = RunStore(tmp_path / "plain")
    for point in outcome.points.itertuples():
        seed = int(point.point.split("=")[1])
        plain = run_study(STUDY, ToyConfig(seed=seed), store=plain_store)
        pd.testing.assert_frame_equal(store.table(point.run_id, "draws"),
                                      plain_store.table(plain.record.id, "draws"))


def test_a_bad_point_is_refused_before_anything_runs(tmp_path: Path) -> None:
    spec = SweepSpec(grid={"values": [[1], "x"]})
    with pytest.raises(WidenetError, match="sweep point values=x: config key 'values'"):
        run_sweep("toy", spec, store=RunStore(tmp_path), engine=LocalEngine(1))
    assert not (tmp_path / "runs.db").exists()


def test_a_name_in_use_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_sweep("toy", SweepSpec(), store=store, engine=LocalEngine(1), name="mine")
    with pytest.raises(WidenetError, match="a sweep named 'mine' exists already"):
        run_sweep("toy", SweepSpec(seeds=2), store=store, engine=LocalEngine(1), name="mine")
    with pytest.raises(WidenetError, match="made with another study or spec"):
        run_sweep("toy", SweepSpec(seeds=2), store=store, engine=LocalEngine(1), name="mine",
                  resume=True)
