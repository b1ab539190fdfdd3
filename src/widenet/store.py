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

import contextlib
import json
import os
import secrets
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from widenet.checks import Check
from widenet.errors import WidenetError

DEFAULT_ROOT = Path("widenet-runs")
SCHEMA_VERSION = 1
RUN_STATUSES = ("running", "completed", "failed", "interrupted")

_SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, study TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
    seed INTEGER NOT NULL, device TEXT NOT NULL, versions TEXT NOT NULL, sweep TEXT,
    created TEXT NOT NULL, finished TEXT, reason TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE tasks (
    run_id TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL, position INTEGER NOT NULL,
    seconds REAL NOT NULL, PRIMARY KEY (run_id, key));
CREATE TABLE task_tables (
    run_id TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, key, name));
CREATE TABLE result_tables (
    run_id TEXT NOT NULL REFERENCES runs(id), name TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, name));
CREATE TABLE checks (
    run_id TEXT NOT NULL REFERENCES runs(id), position INTEGER NOT NULL, name TEXT NOT NULL,
    claim TEXT NOT NULL, predicted REAL, measured REAL, stderr REAL, low REAL, high REAL,
    verdict TEXT NOT NULL, note TEXT NOT NULL, PRIMARY KEY (run_id, position));
"""

CHECK_COLUMNS = ["name", "claim", "predicted", "measured", "stderr", "low", "high", "verdict",
                 "note"]


@dataclass(frozen=True)
class RunRecord:
    """One stored run: what was run, with which config, where, and how it ended.

    ``status`` is ``running``, ``completed``, ``failed`` or ``interrupted`` (a run whose process
    died or was stopped; resumable with ``--resume``). Times are ISO-8601 UTC strings.
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


class RunStore:
    """The run store in the folder ``root`` (created on the first write, not before)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.db_path = self.root / "runs.db"
        if self.db_path.exists():
            with self._connect() as con:
                self._check_schema(con)

    # -- writing ---------------------------------------------------------------------------

    def create_run(self, *, study: str, config: dict[str, Any], seed: int, device: str,
                   versions: dict[str, str], sweep: str | None = None) -> str:
        """Insert a new run with status ``running``, make its folder, and return its id."""
        self._ensure_store()
        run_id = f"{study}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        with self._transaction() as con:
            con.execute(
                "INSERT INTO runs (id, study, config, status, seed, device, versions, sweep, "
                "created, host, pid) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, study, canonical_json(config), seed, device, json.dumps(versions),
                 sweep, _now(), socket.gethostname(), os.getpid()))
        self._make_folder(self.run_folder(run_id))
        return run_id

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

    def finish_run(self, run_id: str, *, tables: dict[str, pd.DataFrame],
                   checks: list[Check]) -> None:
        """Store the analysis (tables, checks) and mark the run completed, in one transaction."""
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
            con.execute("UPDATE runs SET status = 'completed', finished = ?, reason = '' "
                        "WHERE id = ?", (_now(), run_id))

    def end_run(self, run_id: str, status: str, reason: str) -> None:
        """Mark a run ``failed`` or ``interrupted`` with a reason; its finished tasks stay."""
        if status not in ("failed", "interrupted"):
            raise WidenetError(f"end_run takes status 'failed' or 'interrupted', got {status!r}")
        with self._transaction() as con:
            con.execute("UPDATE runs SET status = ?, reason = ?, finished = ? WHERE id = ?",
                        (status, reason, _now(), run_id))

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
        """One row per stored run (newest last): id, study, status, seed, device, times, ..."""
        columns = ["id", "study", "status", "seed", "device", "created", "finished",
                   "tasks_done", "reason", "sweep", "config"]
        if not self.db_path.exists():
            return pd.DataFrame(columns=columns)
        query = _RUNS_QUERY + (" WHERE study = ?" if study else "") + " ORDER BY created, id"
        with self._connect() as con:
            rows = con.execute(query, (study,) if study else ()).fetchall()
        records = [{**{c: row[c] for c in columns if c != "status"},
                    "status": _effective_status(row)} for row in rows]
        return pd.DataFrame(records, columns=columns)

    def resumable_run(self, study: str, config: dict[str, Any]) -> str | None:
        """The newest run of ``study`` with exactly this config that did not complete and whose
        process is no longer alive; None when there is none."""
        if not self.db_path.exists():
            return None
        with self._connect() as con:
            rows = con.execute(_RUNS_QUERY + " WHERE study = ? AND config = ? "
                               "AND status != 'completed' ORDER BY created DESC, id DESC",
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
        if not self.db_path.exists():
            raise WidenetError(f"there is no run store at {self.root} (no runs.db); run a study "
                               "first or pass the folder that holds runs.db with --out")
        with self._connect() as con:
            rows = con.execute(_RUNS_QUERY + " WHERE id = ? OR id LIKE ? ESCAPE '\\' "
                               "ORDER BY id", (run_id, _like_prefix(run_id))).fetchall()
        exact = [row for row in rows if row["id"] == run_id]
        if exact or len(rows) == 1:
            return (exact or rows)[0]
        if not rows:
            raise WidenetError(f"no run {run_id!r} in {self.db_path}; `widenet runs` lists them")
        examples = ", ".join(row["id"] for row in rows[:3])
        raise WidenetError(f"{run_id!r} matches {len(rows)} runs ({examples}, ...); give more "
                           "of the id")

    def _ensure_store(self) -> None:
        """Create the folder and, in one transaction, the schema of a new database."""
        self._make_folder(self.root)
        with self._transaction() as con:
            if self._check_schema(con) == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        with self._connect() as con:
            con.execute("PRAGMA journal_mode = WAL")

    def _check_schema(self, con: sqlite3.Connection) -> int:
        """The schema version (0 for an empty database); raises for foreign or newer files."""
        version = con.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master")}
        if version == 0 and not tables:
            return 0
        if version > SCHEMA_VERSION:
            raise WidenetError(f"{self.db_path} was written by a newer widenet (schema "
                               f"{version}); upgrade widenet to read it")
        if version != SCHEMA_VERSION or "runs" not in tables:
            raise WidenetError(f"{self.db_path} is not a widenet run store; move it aside or "
                               "pass another folder with --out")
        return version

    def _make_folder(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WidenetError(f"cannot create the folder {path}: {error.strerror or error}; "
                               "choose a writable folder with --out") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that turns SQLite's errors into one-line WidenetErrors."""
        try:
            con = sqlite3.connect(self.db_path, timeout=60.0)
        except sqlite3.Error as error:
            raise self._store_error(error) from None
        con.row_factory = sqlite3.Row
        try:
            yield con
        except sqlite3.DatabaseError as error:
            raise self._store_error(error) from None
        finally:
            con.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction: committed on success, rolled back otherwise."""
        with self._connect() as con:
            con.isolation_level = None
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _store_error(self, error: sqlite3.Error) -> WidenetError:
        if isinstance(error, sqlite3.OperationalError) and "readonly" in str(error):
            return WidenetError(f"the run store {self.db_path} is read-only; choose a writable "
                                "folder with --out")
        return WidenetError(f"cannot use the run store {self.db_path}: {error} (the file may be "
                            "corrupt or not a widenet store; move it aside or pass --out)")


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


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, so equal configs give equal strings."""
    return json.dumps(value, sort_keys=True, default=_plain)


def frame_to_json(frame: pd.DataFrame, name: str) -> str:
    """A DataFrame as exact JSON (``orient="split"``, floats written with ``repr``)."""
    if not isinstance(frame, pd.DataFrame):
        raise WidenetError(f"table {name!r} must be a pandas DataFrame, got "
                           f"{type(frame).__name__}")
    data = frame.reset_index(drop=True).to_dict(orient="split")
    data["dtypes"] = [str(dtype) for dtype in frame.dtypes]
    try:
        return json.dumps(data, default=_plain)
    except TypeError as error:
        raise WidenetError(f"table {name!r} holds a value that is not a plain number, string "
                           f"or bool: {error}") from None


def frame_from_json(text: str) -> pd.DataFrame:
    """The DataFrame that :func:`frame_to_json` wrote, with its column dtypes."""
    data = json.loads(text)
    frame = pd.DataFrame(data["data"], columns=data["columns"])
    for column, dtype in zip(data["columns"], data["dtypes"], strict=True):
        if dtype != "object" and frame[column].dtype.name != dtype:
            frame[column] = frame[column].astype(dtype)
    return frame


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (for json.dumps)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r}")


def load_runs(root: str | Path = DEFAULT_ROOT, study: str | None = None) -> pd.DataFrame:
    """The runs in the store at ``root`` as a DataFrame (see :meth:`RunStore.runs`)."""
    return RunStore(root).runs(study)


def load_table(run_id: str, name: str, root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """One table of a stored run (see :meth:`RunStore.table`)."""
    return RunStore(root).table(run_id, name)


def load_checks(run_id: str, root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """The checks of a stored run (see :meth:`RunStore.checks`)."""
    return RunStore(root).checks(run_id)
