"""The runner: a study into the store, failures, kills and resumes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.studies.toy_study import STUDY, ToyConfig
from widenet.deferred import Deferred
from widenet.errors import WidenetError
from widenet.runner import run_study
from widenet.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_stores_tables_checks_figures_and_a_report(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    seen = []
    outcome = run_study(STUDY, ToyConfig(), store=store,
                        on_task=lambda done, total, key: seen.append((done, total, key)))
    assert outcome.record.status == "completed"
    assert outcome.record.tasks_done == 4
    assert seen[0] == (0, 4, "v=1")
    assert seen[-1] == (4, 4, "analysis")
    assert list(outcome.checks["verdict"]) == ["pass"]
    assert set(store.tables(outcome.record.id)) == {"summary", "draws"}
    figure = store.run_folder(outcome.record.id) / "figures" / "draws.png"
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert outcome.report.exists()
    assert outcome.resumed_tasks == 0


def test_a_failing_task_marks_the_run_failed_and_keeps_finished_tasks(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        run_study(STUDY, ToyConfig(fail_at=3), store=store)
    (run,) = store.runs().itertuples()
    assert run.status == "failed"
    assert "task 3 failed on purpose" in run.reason
    assert run.tasks_done == 2


def test_resume_after_a_kill_gives_the_uninterrupted_results(tmp_path: Path) -> None:
    code = ("import sys; from tests.studies.toy_study import STUDY, ToyConfig; "
            "from widenet.store import RunStore; from widenet.runner import run_study; "
            "run_study(STUDY, ToyConfig(), store=RunStore(sys.argv[1]))")
    path = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "TOY_PAUSE_AT": "3", "PYTHONPATH": os.pathsep.join(path)}
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "killed")], env=env,
                               cwd=ROOT)
    store = RunStore(tmp_path / "killed")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = store.runs() if store.db_path.exists() else pd.DataFrame()
        if not runs.empty and runs["tasks_done"].iloc[0] == 2:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (killed,) = store.runs().itertuples()
    assert (killed.status, killed.tasks_done) == ("interrupted", 2)

    resumed = run_study(STUDY, ToyConfig(), store=store, resume=True)
    assert resumed.record.id == killed.id
    assert resumed.resumed_tasks == 2
    assert resumed.record.status == "completed"
    fresh_store = RunStore(tmp_path / "fresh")
    fresh = run_study(STUDY, ToyConfig(), store=fresh_store)
    for name in ("draws", "summary"):
        pd.testing.assert_frame_equal(store.table(killed.id, name),
                                      fresh_store.table(fresh.record.id, name))
    pd.testing.assert_frame_equal(resumed.checks, fresh.checks)


def test_resume_without_an_unfinished_run_starts_a_new_one(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first = run_study(STUDY, ToyConfig(), store=store)
    second = run_study(STUDY, ToyConfig(), store=store, resume=True)
    assert second.record.id != first.record.id
    assert second.resumed_tasks == 0


def test_a_config_of_another_study_is_refused(tmp_path: Path) -> None:
    from widenet.studies.common.base import StudyConfig

    with pytest.raises(WidenetError, match="must be a ToyConfig"):
        run_study(STUDY, StudyConfig(), store=RunStore(tmp_path))
    assert not tmp_path.joinpath("runs.db").exists()


@pytest.mark.parametrize(("analyze", "message"), [
    (Deferred("tests.studies.no_such_module", "analyze"),
     "cannot import module 'tests.studies.no_such_module'"),
    (Deferred("tests.studies.toy_study", "no_such_function"),
     "module 'tests.studies.toy_study' defines no function 'no_such_function'")])
def test_a_deferred_step_that_cannot_be_imported_fails_before_any_task(
        tmp_path: Path, analyze: Deferred, message: str) -> None:
    """A study naming its analysis by a module or function that does not exist fails with one
    line before it creates a run, not after its tasks."""
    broken = dataclasses.replace(STUDY, analyze=analyze)
    with pytest.raises(WidenetError, match=message):
        run_study(broken, ToyConfig(), store=RunStore(tmp_path))
    assert not tmp_path.joinpath("runs.db").exists()


def test_a_report_that_cannot_be_read_or_written_is_refused_in_one_line(tmp_path: Path) -> None:
    """A folder where report.html or a figure should be (a damaged run folder) was an
    IsADirectoryError traceback from `widenet report`; the page in place stays as it was."""
    from widenet.runner import write_run_report

    store = RunStore(tmp_path)
    run_id = run_study(STUDY, ToyConfig(), store=store).record.id
    folder = store.run_folder(run_id)
    (folder / "figures" / "in-the-way.png").mkdir()
    page = (folder / "report.html").read_bytes()
    with pytest.raises(WidenetError, match=rf"cannot read the figures of run {run_id}: Is a "
                                           r"directory \(.*in-the-way\.png\)"):
        write_run_report(store, run_id)
    assert (folder / "report.html").read_bytes() == page
    (folder / "figures" / "in-the-way.png").rmdir()
    (folder / "report.html").unlink()
    (folder / "report.html").mkdir()
    with pytest.raises(WidenetError, match=rf"cannot write the report of run {run_id}: Is a "
                                           r"directory \(.*report\.html\)"):
        write_run_report(store, run_id)
    assert [path.name for path in folder.iterdir() if path.name.endswith(".tmp")] == []
