"""Two ``widenet run --resume`` of one run, as separate processes (fault injection).

A run is killed (SIGKILL) mid-way; one process resumes it and pauses inside a task; a second
``--resume`` of the same study and config must stop with "run X is being resumed by another
process" (exit 2), store nothing and leave the first one's claim alone; after the first is
killed too, a third ``--resume`` finishes the same run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from widenet.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
WIDENET = [sys.executable, "-c", "import sys; from widenet.cli import main; sys.exit(main())"]


def _widenet(store: Path, *args: str, pause_at: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "WIDENET_STUDIES": "toy=tests.studies.toy_study",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.pop("TOY_PAUSE_AT", None)
    if pause_at is not None:
        env["TOY_PAUSE_AT"] = str(pause_at)
    return subprocess.Popen([*WIDENET, "run", "toy", "--out", str(store), *args], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(store: RunStore, process: subprocess.Popen, tasks: int) -> pd.Series:
    """The only run once it has ``tasks`` tasks and is owned (running) by ``process``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = store.runs() if store.db_path.exists() else pd.DataFrame()
        if len(runs) == 1 and runs["tasks_done"].iloc[0] == tasks:
            with store.database.connect() as con:
                pid = con.execute("SELECT pid FROM runs").fetchone()[0]
            if pid == process.pid and runs["status"].iloc[0] == "running":
                return runs.iloc[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError(f"the run did not reach {tasks} tasks")


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate()


def test_a_second_resume_of_a_run_being_resumed_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    store = RunStore(folder)
    first = _widenet(folder, pause_at=2)
    run_id = _wait_for(store, first, tasks=1)["id"]
    _kill(first)
    assert store.run(run_id).status == "interrupted"

    resumer = _widenet(folder, "--resume", pause_at=3)
    _wait_for(store, resumer, tasks=2)
    db_before = store.db_path.read_bytes()
    second = _widenet(folder, "--resume")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"widenet: error: run {run_id} is being resumed by another "
                               f"process (pid {resumer.pid} on ")
    assert store.db_path.read_bytes() == db_before
    assert len(store.runs()) == 1
    _kill(resumer)

    last = _widenet(folder, "--resume")
    out, err = last.communicate(timeout=120)
    assert last.returncode == 0, err
    assert "resumed: 2 finished task(s) reused" in out
    (run,) = store.runs().itertuples()
    assert (run.id, run.status, run.tasks_done) == (run_id, "completed", 4)
