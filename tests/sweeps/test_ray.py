"""Sweeps on a local Ray instance (2 CPUs): faults, resume, and agreement with local."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.sweeps.test_driver import FAULTS, _statuses
from widenet.errors import WidenetError
from widenet.store import RunStore
from widenet.sweeps import LocalEngine, RayEngine, run_sweep

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]


def test_a_ray_sweep_records_faults_resumes_and_matches_local(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("WIDENET_STUDIES", "toy=tests.studies.toy_study")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    store = RunStore(tmp_path / "ray")
    engine = RayEngine(workers=2, retries=1)
    outcome = run_sweep("toy", FAULTS, store=store, engine=engine, name="faults")
    statuses = _statuses(outcome.points)
    assert statuses["fail_at=None,diverge_at=None,crash_at=None"] == "completed"
    assert statuses["fail_at=None,diverge_at=3,crash_at=None"] == "diverged"
    assert statuses["fail_at=2,diverge_at=None,crash_at=None"] == "failed"
    assert {s for label, s in statuses.items() if label.endswith("crash_at=1")} == {"lost"}

    resumed = run_sweep("toy", FAULTS, store=store, engine=engine, name="faults", resume=True)
    unfinished = sum(s not in ("completed", "diverged") for s in statuses.values())
    assert resumed.ran == unfinished
    assert _statuses(resumed.points) == statuses

    local_store = RunStore(tmp_path / "local")
    local = run_sweep("toy", FAULTS, store=local_store, engine=LocalEngine(2, retries=0))
    assert _statuses(local.points) == statuses
    for point in outcome.points[outcome.points["status"] == "completed"].itertuples():
        local_run = local.points.set_index("point").loc[point.point, "run_id"]
        pd.testing.assert_frame_equal(store.table(point.run_id, "draws"),
                                      local_store.table(local_run, "draws"))
        pd.testing.assert_frame_equal(store.checks(point.run_id), local_store.checks(local_run))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_gpus_a_local_instance_lacks_are_refused_not_waited_for() -> None:
    with pytest.raises(WidenetError, match=r"--gpus-per-run 1 but this machine has 0 GPU"):
        RayEngine(workers=1, gpus_per_run=1).run([], lambda job, outcome: None)
    assert not ray.is_initialized()
