"""The SQLite file under a run store: schema, connections, transactions, and refusing bad files.

:class:`Database` is the one place that opens ``runs.db``. The run store
(:class:`widenet.store.runs.RunStore`) and the sweep store
(:class:`widenet.store.sweeps.SweepStore`) both read through :meth:`Database.connect` and write
through :meth:`Database.transaction`, so every write is one SQLite transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from widenet.errors import WidenetError
from widenet.store.names import RUN_FOLDER

DEFAULT_ROOT = Path("widenet-runs")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, study TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
    seed INTEGER NOT NULL, device TEXT NOT NULL, versions TEXT NOT NULL, sweep TEXT,
    created TEXT NOT NULL, finished TEXT, reason TEXT NOT NULL DEFAULT '',
    point TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL);
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
CREATE TABLE sweeps (
    name TEXT PRIMARY KEY, study TEXT NOT NULL, spec TEXT NOT NULL, created TEXT NOT NULL);
"""


def _schema_columns() -> dict[str, set[str]]:
    """Every table of the schema and the names of its columns."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(_SCHEMA)
        return _table_columns(con)
    finally:
        con.close()


def _table_columns(con: sqlite3.Connection) -> dict[str, set[str]]:
    """The tables of the database behind ``con`` and the names of their columns."""
    tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master "
                                              "WHERE type = 'table'")]
    return {table: {row[1] for row in con.execute("SELECT * FROM pragma_table_info(?)",
                                                  (table,))}
            for table in tables}


SCHEMA_COLUMNS = _schema_columns()
"""The columns a store of :data:`SCHEMA_VERSION` must have, by table."""


class Database:
    """The store folder ``root`` and its ``runs.db`` (made on the first write, not before).

    Opening an existing file checks that it is a widenet store of a known schema version;
    a corrupt or foreign file is refused with a WidenetError and never modified.
    """

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.db_path = self.root / "runs.db"
        if self.db_path.exists():
            self.has_schema()

    def has_schema(self) -> bool:
        """Whether the store holds its schema yet: False before the first write, and while
        another process is creating the database (readers then see an empty store). Raises
        if the database is missing or empty but run folders are there (see
        :meth:`_refuse_lost_database`)."""
        version = 0
        if self.db_path.exists():
            with self.connect() as con:
                version = self._check_schema(con)
        if version == 0:
            self._refuse_lost_database()
        return version != 0

    def ensure_schema(self) -> None:
        """Create the folder and, in one transaction, the schema of a new database."""
        if self.has_schema():
            return
        self.make_folder(self.root)
        with self.transaction() as con:
            if self._check_schema(con) == 0:
                self._refuse_lost_database()
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        with self.connect() as con:
            con.execute("PRAGMA journal_mode = WAL")

    def make_folder(self, path: Path) -> None:
        """Create ``path`` and its parents; a folder that cannot be made is a WidenetError."""
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WidenetError(f"cannot create the folder {path}: {error.strerror or error}; "
                               "choose a writable folder with --out") from None

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading (rows as :class:`sqlite3.Row`) that turns SQLite's errors
        into one-line WidenetErrors."""
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
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction (``BEGIN IMMEDIATE``: it holds the write
        lock from its first statement, so a read-check-write inside it is atomic against every
        other writer): committed on success, rolled back on any exception."""
        with self.connect() as con:
            con.isolation_level = None
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _refuse_lost_database(self) -> None:
        """Raise if the store has no schema but holds run folders: its ``runs.db`` was deleted
        or truncated (e.g. to 0 bytes), and a new one would silently hide those runs."""
        if not self.root.is_dir():
            return
        folders = sorted(path.name for path in self.root.iterdir()
                         if path.is_dir() and RUN_FOLDER.fullmatch(path.name))
        if folders:
            state = "is empty" if self.db_path.exists() else "is missing"
            raise WidenetError(
                f"{self.db_path} {state} but {self.root} holds {len(folders)} run folder(s) "
                f"({folders[0]}{', ...' if len(folders) > 1 else ''}): the database was lost "
                "and a new one would hide those runs; restore runs.db from a backup, or move "
                "the run folders aside, or pass another --out")

    def _check_schema(self, con: sqlite3.Connection) -> int:
        """The schema version (0 for an empty database); raises for foreign or newer files,
        checking every table and column of the schema, so that nothing is ever written to a
        file that merely looks like a store."""
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and not con.execute("SELECT 1 FROM sqlite_master").fetchone():
            return 0
        if version > SCHEMA_VERSION:
            raise WidenetError(f"{self.db_path} was written by a newer widenet (schema "
                               f"{version}); upgrade widenet to read it")
        columns = _table_columns(con)
        if version != SCHEMA_VERSION or any(not expected <= columns.get(table, set())
                                            for table, expected in SCHEMA_COLUMNS.items()):
            raise WidenetError(f"{self.db_path} is not a widenet run store; move it aside or "
                               "pass another folder with --out")
        return version

    def _store_error(self, error: sqlite3.Error) -> WidenetError:
        unwritable = not os.access(self.db_path.parent, os.W_OK) or (
            self.db_path.exists() and not os.access(self.db_path, os.W_OK))
        if isinstance(error, sqlite3.OperationalError) and ("readonly" in str(error)
                                                            or unwritable):
            return WidenetError(f"the run store {self.db_path} is read-only, and SQLite needs "
                                "write access even to read it (its WAL index); copy the folder "
                                "somewhere writable and pass that with --out")
        return WidenetError(f"cannot use the run store {self.db_path}: {error} (the file may be "
                            "corrupt or not a widenet store; move it aside or pass --out)")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
