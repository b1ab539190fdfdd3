"""The run store: an embedded SQLite database of runs, their tables and checks.

Layout of a store folder (default ``./widenet-runs``)::

    runs.db            the database (WAL mode: readers never block the writer)
    <run id>/          one folder per run: figures/*.png, report.html, checkpoints

Every write is one transaction: a task's tables land together with the row that marks the task
finished, and a run's final tables, checks and status land together. A run killed at any point
therefore leaves the store consistent; ``resumable_run`` finds it again and the runner skips the
tasks already stored. A file that is not a widenet store is never modified.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from widenet.checks import Check
from widenet.errors import WidenetError
from widenet.store._database import DEFAULT_ROOT, Database, now
from widenet.store._frames import canonical_json, frame_from_json, frame_to_json

RUN_STATUSES = ("running", "completed", "diverged", "failed", "interrupted", "lost")
FINISHED_STATUSES = ("completed", "diverged")
CHECK_COLUMNS = ["name", "claim", "predicted", "measured", "stderr", "low", "high", "verdict",
                 "note"]


@dataclass(frozen=True)
class RunRecord:
    """One stored run: what was run, with which config, where, and how it ended.

    ``status`` is ``running``, ``completed``, ``diverged`` (completed, but a training the study
    needed diverged; see ``reason``), ``failed`` (raised), ``interrupted`` (its process died or
    was stopped; resumable with ``--resume``) or ``lost`` (a sweep's worker died, even after
    retries). Times are ISO-8601 UTC strings.
    """

    id: str
    study: str
    config: dict[str, Any]
    status: str
    seed: int
    device: str
    created: str
    finished: str | None
    reason: str
    tasks_done: int
    versions: dict[str, str] = field(default_factory=dict)
    sweep: str | None = None


class RunStore(Database):
    """The run store in the folder ``root`` (created on the first write, not before)."""

    # -- writing ---------------------------------------------------------------------------

    def create_run(self, *, study: str, config: dict[str, Any], seed: int, device: str,
                   versions: dict[str, str], sweep: str | None = None) -> str:
        """Insert a new run with status ``running``, make its folder, and return its id."""
        self.ensure_store()
        run_id = self.new_run_id(study)
        with self._transaction() as con:
            con.execute(
                "INSERT INTO runs (id, study, config, status, seed, device, versions, sweep, "
                "created, host, pid) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, study, canonical_json(config), seed, device, json.dumps(versions),
                 sweep, now(), socket.gethostname(), os.getpid()))
        self._make_folder(self.run_folder(run_id))
        return run_id

    @staticmethod
    def new_run_id(study: str) -> str:
        """A fresh run id: ``<study>-<UTC date>-<time>-<4 hex digits>``."""
        return f"{study}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"

    def restart_run(self, run_id: str, *, device: str) -> None:
        """Mark a stored, unfinished run as running again in this process (for ``--resume``)."""
        with self._transaction() as con:
            con.execute("UPDATE runs SET status = 'running', reason = '', finished = NULL, "
                        "device = ?, host = ?, pid = ? WHERE id = ?",
                        (device, socket.gethostname(), os.getpid(), run_id))
        self._make_folder(self.run_folder(run_id))

    def save_task(self, run_id: str, key: str, tables: dict[str, pd.DataFrame],
                  seconds: float) -> None:
        """Store one finished task's tables and mark it done, in one transaction."""
        rows = [(run_id, key, name, frame_to_json(frame, name)) for name, frame in tables.items()]
        with self._transaction() as con:
            position = con.execute("SELECT COUNT(*) FROM tasks WHERE run_id = ?",
                                   (run_id,)).fetchone()[0]
            con.execute("INSERT INTO tasks (run_id, key, position, seconds) VALUES (?, ?, ?, ?)",
                        (run_id, key, position, seconds))
            con.executemany("INSERT INTO task_tables (run_id, key, name, data) "
                            "VALUES (?, ?, ?, ?)", rows)

    def finish_run(self, run_id: str, *, tables: dict[str, pd.DataFrame], checks: list[Check],
                   diverged: str = "") -> None:
        """Store the analysis (tables, checks) and mark the run ``completed`` (or ``diverged``
        with ``diverged`` as the reason), in one transaction."""
        table_rows = [(run_id, name, frame_to_json(frame, name)) for name, frame in tables.items()]
        check_rows = [(run_id, i, *[check.as_row()[column] for column in CHECK_COLUMNS])
                      for i, check in enumerate(checks)]
        with self._transaction() as con:
            con.execute("DELETE FROM result_tables WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM checks WHERE run_id = ?", (run_id,))
            con.executemany("INSERT INTO result_tables (run_id, name, data) VALUES (?, ?, ?)",
                            table_rows)
            con.executemany(f"INSERT INTO checks (run_id, position, {', '.join(CHECK_COLUMNS)}) "
                            f"VALUES ({', '.join('?' * (len(CHECK_COLUMNS) + 2))})", check_rows)
            con.execute("UPDATE runs SET status = ?, finished = ?, reason = ? WHERE id = ?",
                        ("diverged" if diverged else "completed", now(), diverged, run_id))

    def end_run(self, run_id: str, status: str, reason: str) -> None:
        """Mark a run ``failed``, ``interrupted`` or ``lost`` with a reason; its finished tasks
        stay."""
        if status not in ("failed", "interrupted", "lost"):
            raise WidenetError("end_run takes status 'failed', 'interrupted' or 'lost', got "
                               f"{status!r}")
        with self._transaction() as con:
            con.execute("UPDATE runs SET status = ?, reason = ?, finished = ? WHERE id = ?",
                        (status, reason, now(), run_id))

    # -- reading ---------------------------------------------------------------------------

    def run(self, run_id: str) -> RunRecord:
        """The run with this id (or the only run whose id starts with it)."""
        row = self._run_row(run_id)
        return RunRecord(id=row["id"], study=row["study"], config=json.loads(row["config"]),
                         status=_effective_status(row), seed=row["seed"], device=row["device"],
                         created=row["created"], finished=row["finished"], reason=row["reason"],
                         tasks_done=row["tasks_done"], versions=json.loads(row["versions"]),
                         sweep=row["sweep"])

    def runs(self, study: str | None = None) -> pd.DataFrame:
        """One row per stored run, newest last (runs created in the same second in the order
        they were written): id, study, status, seed, device, times, ..."""
        columns = ["id", "study", "status", "seed", "device", "created", "finished",
                   "tasks_done", "reason", "sweep", "point", "config"]
        if not self.has_runs_table():
            return pd.DataFrame(columns=columns)
        query = (_RUNS_QUERY + (" WHERE study = ?" if study else "")
                 + " ORDER BY created, runs.rowid")
        with self._connect() as con:
            rows = con.execute(query, (study,) if study else ()).fetchall()
        records = [{**{c: row[c] for c in columns if c != "status"},
                    "status": _effective_status(row)} for row in rows]
        return pd.DataFrame(records, columns=columns)

    def resumable_run(self, study: str, config: dict[str, Any]) -> str | None:
        """The newest run of ``study`` with exactly this config that did not complete and whose
        process is no longer alive; None when there is none."""
        if not self.has_runs_table():
            return None
        with self._connect() as con:
            rows = con.execute(_RUNS_QUERY + " WHERE study = ? AND config = ? "
                               "AND status NOT IN ('completed', 'diverged') "
                               "ORDER BY created DESC, runs.rowid DESC",
                               (study, canonical_json(config))).fetchall()
        for row in rows:
            if _effective_status(row) != "running":
                return row["id"]
        return None

    def finished_tasks(self, run_id: str) -> set[str]:
        """The keys of the tasks of this run that are stored."""
        with self._connect() as con:
            return {key for (key,) in con.execute("SELECT key FROM tasks WHERE run_id = ?",
                                                  (run_id,))}

    def task_tables(self, run_id: str) -> dict[str, pd.DataFrame]:
        """The tables of all finished tasks, concatenated by name in the order tasks finished."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT t.name, t.data FROM task_tables t JOIN tasks USING (run_id, key) "
                "WHERE run_id = ? ORDER BY tasks.position", (run_id,)).fetchall()
        frames: dict[str, list[pd.DataFrame]] = {}
        for name, data in rows:
            frames.setdefault(name, []).append(frame_from_json(data))
        return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}

    def tables(self, run_id: str) -> dict[str, pd.DataFrame]:
        """All tables of a run: the analysis's tables, then the tasks' (raw) tables."""
        run_id = self._run_row(run_id)["id"]
        with self._connect() as con:
            rows = con.execute("SELECT name, data FROM result_tables WHERE run_id = ? "
                               "ORDER BY rowid", (run_id,)).fetchall()
        results = {name: frame_from_json(data) for name, data in rows}
        raw = {name: frame for name, frame in self.task_tables(run_id).items()
               if name not in results}
        return {**results, **raw}

    def table(self, run_id: str, name: str) -> pd.DataFrame:
        """One table of a run by name (see :meth:`tables`)."""
        tables = self.tables(run_id)
        if name not in tables:
            known = ", ".join(tables) or "none yet"
            raise WidenetError(f"run {run_id} has no table {name!r}; its tables: {known}")
        return tables[name]

    def checks(self, run_id: str) -> pd.DataFrame:
        """The checks of a run, one row each, in the order the study made them."""
        run_id = self._run_row(run_id)["id"]
        with self._connect() as con:
            rows = con.execute(f"SELECT {', '.join(CHECK_COLUMNS)} FROM checks WHERE run_id = ? "
                               "ORDER BY position", (run_id,)).fetchall()
        frame = pd.DataFrame([tuple(row) for row in rows], columns=CHECK_COLUMNS)
        for column in ("predicted", "measured", "stderr", "low", "high"):
            frame[column] = frame[column].astype(float)
        return frame

    def run_folder(self, run_id: str) -> Path:
        """The folder of a run's files: figures/, report.html, checkpoints."""
        return self.root / run_id

    # -- internals -------------------------------------------------------------------------

    def _run_row(self, run_id: str) -> sqlite3.Row:
        """The row of the run ``run_id``, or of the only run whose id starts with it (case
        matters); raises for an empty, unknown or ambiguous id."""
        if not run_id:
            raise WidenetError("the run id is empty; give a run id or its first characters "
                               "(`widenet runs` lists them)")
        if not self.has_runs_table():
            raise WidenetError(f"there is no run store at {self.root} (no runs.db); run a study "
                               "first or pass the folder that holds runs.db with --out")
        with self._connect() as con:
            rows = con.execute(_RUNS_QUERY + " WHERE substr(id, 1, ?) = ? ORDER BY id",
                               (len(run_id), run_id)).fetchall()
        exact = [row for row in rows if row["id"] == run_id]
        if exact or len(rows) == 1:
            return (exact or rows)[0]
        if not rows:
            raise WidenetError(f"no run {run_id!r} in {self.db_path}; `widenet runs` lists them")
        shown = [row["id"] for row in rows[:3]] + (["..."] if len(rows) > 3 else [])
        raise WidenetError(f"{run_id!r} matches {len(rows)} runs ({', '.join(shown)}); give "
                           "more of the id")


_RUNS_QUERY = ("SELECT runs.*, (SELECT COUNT(*) FROM tasks WHERE tasks.run_id = runs.id) "
               "AS tasks_done FROM runs")


def _effective_status(row: sqlite3.Row) -> str:
    """The stored status, except that a 'running' run whose process is gone is 'interrupted'."""
    if row["status"] != "running":
        return row["status"]
    if row["host"] == socket.gethostname() and not _process_alive(row["pid"]):
        return "interrupted"
    return "running"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_runs(root: str | Path = DEFAULT_ROOT, study: str | None = None) -> pd.DataFrame:
    """The runs in the store at ``root`` as a DataFrame (see :meth:`RunStore.runs`)."""
    return RunStore(root).runs(study)


def load_table(run_id: str, name: str, root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """One table of a stored run (see :meth:`RunStore.table`)."""
    return RunStore(root).table(run_id, name)


def load_checks(run_id: str, root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """The checks of a stored run (see :meth:`RunStore.checks`)."""
    return RunStore(root).checks(run_id)
