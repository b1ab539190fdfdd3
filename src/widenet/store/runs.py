"""The run store: an embedded SQLite database of runs, their tables and checks.

Layout of a store folder (default ``./widenet-runs``)::

    runs.db            the database (WAL mode: readers never block the writer)
    <run id>/          one folder per run: figures/*.png, report.html, checkpoints

Every write is one transaction: a task's tables land together with the row that marks the task
finished, and a run's final tables, checks and status land together. A run killed at any point
therefore leaves the store consistent; ``claim_run`` finds it again and the runner skips the
tasks already stored. A file that is not a widenet store is never modified.

A run is owned by the process that created or claimed it (its ``host`` and ``pid`` columns).
Claiming checks and sets the owner in one transaction, so two ``--resume`` of one run cannot
both get it, and every later write of a run (a task, the analysis, the final status) checks
the owner in its transaction, so a process never overwrites a run it does not own.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from widenet.checks import Check
from widenet.errors import WidenetError
from widenet.store._frames import canonical_json, frame_to_json
from widenet.store.database import DEFAULT_ROOT, Database, now
from widenet.store.names import check_run_id
from widenet.store.records import (
    CHECK_COLUMNS,
    RunRecord,
    checks_frame,
    record_from_row,
    table_from_row,
)


class RunStore:
    """The run store in the folder ``root`` (created on the first write, not before).

    ``database`` is the store's :class:`Database`; the sweep store writes through it too.
    """

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.database = Database(root)

    @property
    def root(self) -> Path:
        """The store's folder."""
        return self.database.root

    @property
    def db_path(self) -> Path:
        """The store's ``runs.db``."""
        return self.database.db_path

    # -- writing ---------------------------------------------------------------------------

    def create_run(self, *, study: str, config: dict[str, Any], seed: int, device: str,
                   versions: dict[str, str], sweep: str | None = None) -> str:
        """Insert a new run with status ``running``, owned by this process, make its folder,
        and return its id."""
        run_id = check_run_id(self.new_run_id(study), f"the study name {study!r}")
        self.database.ensure_schema()
        with self.database.transaction() as con:
            con.execute(
                "INSERT INTO runs (id, study, config, status, seed, device, versions, sweep, "
                "created, host, pid) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, study, canonical_json(config), seed, device, json.dumps(versions),
                 sweep, now(), *_owner()))
        self.database.make_folder(self.run_folder(run_id))
        return run_id

    @staticmethod
    def new_run_id(study: str) -> str:
        """A fresh run id: ``<study>-<UTC date>-<time>-<4 hex digits>``."""
        return f"{study}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"

    def claim_run(self, study: str, config: dict[str, Any], *, device: str) -> str | None:
        """Take over the run ``--resume`` continues, in one transaction: the newest run of
        ``study`` with exactly this config that did not complete and whose process is gone
        becomes ``running``, owned by this process; returns its id, or None when there is no
        such run and none is in progress. If the only unfinished runs of this config are
        still running (another process created or claimed them), raises "run X is being
        resumed by another process"."""
        if not self.database.has_schema():
            return None
        with self.database.transaction() as con:
            rows = con.execute(_RUNS_QUERY + " WHERE study = ? AND config = ? "
                               "AND status NOT IN ('completed', 'diverged') "
                               "ORDER BY created DESC, runs.rowid DESC",
                               (study, canonical_json(config))).fetchall()
            dead = [row for row in rows if _effective_status(row) != "running"]
            if not dead and rows:
                live = rows[0]
                raise WidenetError(f"run {live['id']} is being resumed by another process "
                                   f"(pid {live['pid']} on {live['host']}); wait for it to "
                                   "end, or leave out --resume to start a new run")
            if not dead:
                return None
            run_id = dead[0]["id"]
            con.execute("UPDATE runs SET status = 'running', reason = '', finished = NULL, "
                        "device = ?, host = ?, pid = ? WHERE id = ?",
                        (device, *_owner(), run_id))
        self.database.make_folder(self.run_folder(run_id))
        return run_id

    def save_task(self, run_id: str, key: str, tables: dict[str, pd.DataFrame],
                  seconds: float) -> None:
        """Store one finished task's tables and mark it done, in one transaction (refused if
        this process does not own the run)."""
        rows = [(run_id, key, name, frame_to_json(frame, name)) for name, frame in tables.items()]
        with self.database.transaction() as con:
            self._require_owner(con, run_id)
            if con.execute("SELECT 1 FROM tasks WHERE run_id = ? AND key = ?",
                           (run_id, key)).fetchone():
                raise WidenetError(f"run {run_id} holds task {key!r} already; a task is "
                                   "stored once")
            position = con.execute("SELECT COUNT(*) FROM tasks WHERE run_id = ?",
                                   (run_id,)).fetchone()[0]
            con.execute("INSERT INTO tasks (run_id, key, position, seconds) VALUES (?, ?, ?, ?)",
                        (run_id, key, position, seconds))
            con.executemany("INSERT INTO task_tables (run_id, key, name, data) "
                            "VALUES (?, ?, ?, ?)", rows)

    def finish_run(self, run_id: str, *, tables: dict[str, pd.DataFrame], checks: list[Check],
                   diverged: str = "") -> None:
        """Store the analysis (tables, checks) and mark the run ``completed`` (or ``diverged``
        with ``diverged`` as the reason), in one transaction (refused if this process does not
        own the run)."""
        table_rows = [(run_id, name, frame_to_json(frame, name)) for name, frame in tables.items()]
        check_rows = [(run_id, i, *[check.as_row()[column] for column in CHECK_COLUMNS])
                      for i, check in enumerate(checks)]
        with self.database.transaction() as con:
            self._require_owner(con, run_id)
            con.execute("DELETE FROM result_tables WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM checks WHERE run_id = ?", (run_id,))
            con.executemany("INSERT INTO result_tables (run_id, name, data) VALUES (?, ?, ?)",
                            table_rows)
            con.executemany(f"INSERT INTO checks (run_id, position, {', '.join(CHECK_COLUMNS)}) "
                            f"VALUES ({', '.join('?' * (len(CHECK_COLUMNS) + 2))})", check_rows)
            con.execute("UPDATE runs SET status = ?, finished = ?, reason = ? WHERE id = ?",
                        ("diverged" if diverged else "completed", now(), diverged, run_id))

    def end_run(self, run_id: str, status: str, reason: str) -> bool:
        """Mark a run ``failed``, ``interrupted`` or ``lost`` with a reason; its finished tasks
        stay. Only a ``running`` run owned by this process is changed (compare-and-set), so a
        run another process claimed or finished keeps its state; returns whether it changed."""
        if status not in ("failed", "interrupted", "lost"):
            raise WidenetError("end_run takes status 'failed', 'interrupted' or 'lost', got "
                               f"{status!r}")
        with self.database.transaction() as con:
            changed = con.execute("UPDATE runs SET status = ?, reason = ?, finished = ? "
                                  "WHERE id = ? AND status = 'running' AND host = ? AND pid = ?",
                                  (status, reason, now(), run_id, *_owner())).rowcount
        return changed > 0

    # -- reading ---------------------------------------------------------------------------

    def run(self, run_id: str) -> RunRecord:
        """The run with this id (or the only run whose id starts with it)."""
        row = self._run_row(run_id)
        return record_from_row(row, _effective_status(row), self.db_path)

    def runs(self, study: str | None = None) -> pd.DataFrame:
        """One row per stored run, newest last (runs created in the same second in the order
        they were written): id, study, status, seed, device, times, ..."""
        columns = ["id", "study", "status", "seed", "device", "created", "finished",
                   "tasks_done", "reason", "sweep", "point", "config"]
        if not self.database.has_schema():
            return pd.DataFrame(columns=columns)
        query = (_RUNS_QUERY + (" WHERE study = ?" if study else "")
                 + " ORDER BY created, runs.rowid")
        with self.database.connect() as con:
            rows = con.execute(query, (study,) if study else ()).fetchall()
        records = [{**{c: row[c] for c in columns if c != "status"},
                    "status": _effective_status(row)} for row in rows]
        return pd.DataFrame(records, columns=columns)

    def studies(self) -> list[str]:
        """The names of the studies that have runs in the store, sorted."""
        if not self.database.has_schema():
            return []
        with self.database.connect() as con:
            return [study for (study,) in con.execute("SELECT DISTINCT study FROM runs "
                                                      "ORDER BY study")]

    def finished_tasks(self, run_id: str) -> set[str]:
        """The keys of the tasks of this run that are stored."""
        with self.database.connect() as con:
            return {key for (key,) in con.execute("SELECT key FROM tasks WHERE run_id = ?",
                                                  (run_id,))}

    def task_tables(self, run_id: str) -> dict[str, pd.DataFrame]:
        """The tables of all finished tasks, concatenated by name in the order tasks finished."""
        with self.database.connect() as con:
            rows = con.execute(
                "SELECT t.key, t.name, t.data FROM task_tables t JOIN tasks USING (run_id, key) "
                "WHERE run_id = ? ORDER BY tasks.position", (run_id,)).fetchall()
        frames: dict[str, list[pd.DataFrame]] = {}
        for key, name, data in rows:
            frames.setdefault(name, []).append(
                table_from_row(data, run_id, f"table {name!r} of task {key!r}", self.db_path))
        return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}

    def tables(self, run_id: str) -> dict[str, pd.DataFrame]:
        """All tables of a run: the analysis's tables, then the tasks' (raw) tables."""
        run_id = self._run_row(run_id)["id"]
        with self.database.connect() as con:
            rows = con.execute("SELECT name, data FROM result_tables WHERE run_id = ? "
                               "ORDER BY rowid", (run_id,)).fetchall()
        results = {name: table_from_row(data, run_id, f"table {name!r}", self.db_path)
                   for name, data in rows}
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
        with self.database.connect() as con:
            rows = con.execute(f"SELECT {', '.join(CHECK_COLUMNS)} FROM checks WHERE run_id = ? "
                               "ORDER BY position", (run_id,)).fetchall()
        return checks_frame(rows, run_id, self.db_path)

    def run_folder(self, run_id: str) -> Path:
        """The folder of a run's files: figures/, report.html, checkpoints. The id must be a
        plain name (see :func:`widenet.store.names.check_run_id`), so the folder is always
        inside the store."""
        return self.root / check_run_id(run_id, f"the run store {self.db_path} (damaged or "
                                                "edited by hand?)")

    # -- internals -------------------------------------------------------------------------

    def _require_owner(self, con: sqlite3.Connection, run_id: str) -> None:
        """Raise unless ``run_id`` is ``running`` and owned by this process (inside the
        caller's transaction, so the check and the write are one step)."""
        row = con.execute("SELECT status, host, pid FROM runs WHERE id = ?",
                          (run_id,)).fetchone()
        if row is None:
            raise WidenetError(f"no run {run_id!r} in {self.db_path}")
        if (row["status"], row["host"], row["pid"]) != ("running", *_owner()):
            raise WidenetError(f"run {run_id} is no longer this process's to write (it is "
                               f"{row['status']}, owned by pid {row['pid']} on {row['host']}; "
                               "another process resumed or ended it); nothing was stored")

    def _run_row(self, run_id: str) -> sqlite3.Row:
        """The row of the run ``run_id``, or of the only run whose id starts with it (case
        matters); raises for an empty, unknown or ambiguous id."""
        if not run_id:
            raise WidenetError("the run id is empty; give a run id or its first characters "
                               "(`widenet runs` lists them)")
        if not self.database.has_schema():
            raise WidenetError(f"there is no run store at {self.root} (no runs.db); run a study "
                               "first or pass the folder that holds runs.db with --out")
        with self.database.connect() as con:
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


def _owner() -> tuple[str, int]:
    """This process as the owner of a run: (host name, process id)."""
    return socket.gethostname(), os.getpid()


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
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # no process (an imported run) or a damaged value
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
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
