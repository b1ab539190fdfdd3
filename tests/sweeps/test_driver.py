"""Sweeps on the local engine: faults recorded per point, resume, interruption."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from widenet.errors import WidenetError
from widenet.store import RunStore
from widenet.sweeps import LocalEngine, RayEngine, SweepSpec, run_sweep
from widenet.sweeps.engines import Job, OnResult, Outcome
from widenet.sweeps.worker import execute_point

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
    from widenet.runner import run_study

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


class _BrokenEngine:
    """An engine that stores ``points`` points and then fails, as Ray does on a bad cluster."""

    def __init__(self, points: int = 0):
        self.points = points

    def check(self, device: str = "cpu") -> None:
        """Any device: the failure comes later."""

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        for job in jobs[:self.points]:
            on_result(job, Outcome("done", result=execute_point(*job.args)))
        raise ConnectionError("no cluster")


def test_a_sweep_whose_engine_fails_before_any_point_leaves_no_trace(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(ConnectionError):
        run_sweep("toy", SweepSpec(seeds=2), store=store, engine=_BrokenEngine(), name="g2")
    outcome = run_sweep("toy", SweepSpec(seeds=2), store=store, engine=LocalEngine(1),
                        name="g2")
    assert outcome.ran == 2
    with pytest.raises(ConnectionError):
        run_sweep("toy", SweepSpec(seeds=3), store=store, engine=_BrokenEngine(1), name="g3")
    resumed = run_sweep("toy", SweepSpec(seeds=3), store=store, engine=LocalEngine(1),
                        name="g3", resume=True)
    assert resumed.ran == 2


@pytest.mark.parametrize(("arguments", "message"), [
    ({"name": "../escaped"}, "bad sweep name '../escaped'"),
    ({"device": "cuda:99"}, "device 'cuda:99'"),
    ({"device": "quantum", "engine": RayEngine()}, "unknown device 'quantum'"),
    ({"name": "typo", "resume": True}, "no sweep named 'typo' to resume"),
])
def test_bad_sweep_arguments_are_refused_before_anything_is_stored(
        tmp_path: Path, arguments: dict, message: str) -> None:
    with pytest.raises(WidenetError, match=re.escape(message)):
        run_sweep("toy", SweepSpec(), store=RunStore(tmp_path),
                  **{"engine": LocalEngine(1), **arguments})
    assert not (tmp_path / "runs.db").exists()


def test_a_point_that_fails_before_its_run_exists_reports_the_real_error() -> None:
    with pytest.raises(WidenetError, match="device 'cuda:99'"):
        execute_point("toy", {}, "cuda:99")


def test_resume_writes_the_report_of_a_point_stored_just_before_the_sweep_died(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path)
    spec = SweepSpec(seeds=2)

    def die_before_the_report(store: RunStore, run_id: str) -> None:
        raise KeyboardInterrupt  # the sweep is killed between storing a point and its report

    monkeypatch.setattr("widenet.sweeps.driver.write_run_report", die_before_the_report)
    with pytest.raises(KeyboardInterrupt):
        run_sweep("toy", spec, store=store, engine=LocalEngine(1), name="s")
    (stored,) = store.runs().itertuples()
    assert stored.status == "completed"
    assert not (store.run_folder(stored.id) / "report.html").exists()
    monkeypatch.undo()
    monkeypatch.setenv("WIDENET_STUDIES", "toy=tests.studies.toy_study")
    resumed = run_sweep("toy", spec, store=store, engine=LocalEngine(1), name="s", resume=True)
    assert resumed.ran == 1
    assert set(resumed.points["status"]) == {"completed"}
    for run_id in resumed.points["run_id"]:
        assert (store.run_folder(run_id) / "report.html").exists()
