"""Runs moved between stores as bundles: everything of one run, detached from its store.

Sweep workers never touch the real store: each runs its point into a private scratch store
and returns it as a :class:`RunBundle` (:func:`export_run`), which the driver adds to the real
store in one transaction (:func:`import_run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from widenet.errors import WidenetError
from widenet.store._frames import canonical_json
from widenet.store.records import CHECK_COLUMNS
from widenet.store.runs import RunStore


@dataclass(frozen=True)
class RunBundle:
    """Everything of one run, detached from its store: rows as stored, files as bytes.

    ``tasks`` holds ``(key, seconds, {table name: JSON})`` in the order the tasks finished;
    ``files`` maps paths relative to the run folder (``figures/x.png``) to their bytes.
    """

    study: str
    config: dict[str, Any]
    seed: int
    device: str
    versions: dict[str, str]
    status: str
    reason: str
    created: str
    finished: str | None
    tasks: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)


def export_run(store: RunStore, run_id: str) -> RunBundle:
    """The run ``run_id`` of ``store`` as a bundle (tables stay in their exact JSON form)."""
    record = store.run(run_id)
    with store.database.connect() as con:
        task_rows = con.execute("SELECT key, seconds FROM tasks WHERE run_id = ? "
                                "ORDER BY position", (record.id,)).fetchall()
        table_rows = con.execute("SELECT key, name, data FROM task_tables WHERE run_id = ?",
                                 (record.id,)).fetchall()
        results = con.execute("SELECT name, data FROM result_tables WHERE run_id = ? "
                              "ORDER BY rowid", (record.id,)).fetchall()
    by_task: dict[str, dict[str, str]] = {}
    for key, name, data in table_rows:
        by_task.setdefault(key, {})[name] = data
    folder = store.run_folder(record.id)
    files = {path.relative_to(folder).as_posix(): path.read_bytes()
             for path in sorted(folder.rglob("*.png"))}
    return RunBundle(study=record.study, config=record.config, seed=record.seed,
                     device=record.device, versions=record.versions, status=record.status,
                     reason=record.reason, created=record.created, finished=record.finished,
                     tasks=[(key, seconds, by_task.get(key, {})) for key, seconds in task_rows],
                     tables={name: data for name, data in results},
                     checks=store.checks(record.id).to_dict(orient="records"), files=files)


def import_run(store: RunStore, bundle: RunBundle, *, sweep: str | None = None,
               point: str | None = None) -> str:
    """Add ``bundle`` to ``store`` as a new run: its folder and files first (so a run in the
    store always has its folder), then its rows in one transaction. Returns the new id."""
    run_id = store.new_run_id(bundle.study)
    folder = store.run_folder(run_id)
    store.database.ensure_schema()
    store.database.make_folder(folder)
    for relative, data in bundle.files.items():
        target = folder / _relative_path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    with store.database.transaction() as con:
        con.execute(
            "INSERT INTO runs (id, study, config, status, seed, device, versions, sweep, point, "
            "created, finished, reason, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "'', 0)",
            (run_id, bundle.study, canonical_json(bundle.config), bundle.status, bundle.seed,
             bundle.device, json.dumps(bundle.versions), sweep, point, bundle.created,
             bundle.finished, bundle.reason))
        for position, (key, seconds, tables) in enumerate(bundle.tasks):
            con.execute("INSERT INTO tasks (run_id, key, position, seconds) VALUES (?, ?, ?, ?)",
                        (run_id, key, position, seconds))
            con.executemany("INSERT INTO task_tables (run_id, key, name, data) "
                            "VALUES (?, ?, ?, ?)",
                            [(run_id, key, name, data) for name, data in tables.items()])
        con.executemany("INSERT INTO result_tables (run_id, name, data) VALUES (?, ?, ?)",
                        [(run_id, name, data) for name, data in bundle.tables.items()])
        con.executemany(
            f"INSERT INTO checks (run_id, position, {', '.join(CHECK_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(CHECK_COLUMNS) + 2))})",
            [(run_id, i, *[row[c] for c in CHECK_COLUMNS]) for i, row in enumerate(bundle.checks)])
    return run_id


def _relative_path(relative: str) -> PurePosixPath:
    """``relative`` if it is a path inside a run folder (relative, no ``..``); raises
    otherwise, so that a bundle never writes outside its run's folder."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or "\\" in relative or not path.parts:
        raise WidenetError(f"a run bundle holds the file {relative[:60]!r}, which is not a "
                           "path inside its run folder; it was not imported")
    return path
