"""Sweeps in the run store, and runs moved between stores as bundles.

A sweep is a named set of runs of one study: the ``sweeps`` table holds its name and spec, and
each point is an ordinary run whose ``sweep`` and ``point`` columns say where it belongs. Sweep
workers never touch the store: each runs its point into a private scratch store and returns it
as a :class:`RunBundle`, which the driver imports in one transaction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from widenet.errors import WidenetError
from widenet.store._database import now
from widenet.store._frames import canonical_json
from widenet.store.runs import CHECK_COLUMNS, FINISHED_STATUSES, RunStore


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
    with store._connect() as con:
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
    files = {str(path.relative_to(folder)): path.read_bytes()
             for path in sorted(folder.rglob("*.png"))}
    return RunBundle(study=record.study, config=record.config, seed=record.seed,
                     device=record.device, versions=record.versions, status=record.status,
                     reason=record.reason, created=record.created, finished=record.finished,
                     tasks=[(key, seconds, by_task.get(key, {})) for key, seconds in task_rows],
                     tables={name: data for name, data in results},
                     checks=store.checks(record.id).to_dict(orient="records"), files=files)


def import_run(store: RunStore, bundle: RunBundle, *, sweep: str | None = None,
               point: str | None = None) -> str:
    """Add ``bundle`` to ``store`` as a new run (files first, then one transaction)."""
    run_id = store.new_run_id(bundle.study)
    folder = store.run_folder(run_id)
    for relative, data in bundle.files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    with store._transaction() as con:
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


def record_lost_point(store: RunStore, *, study: str, config: dict[str, Any], seed: int,
                      sweep: str, point: str, status: str, reason: str) -> str:
    """Store a point that left no bundle (its worker died) as a run with ``status``."""
    bundle = RunBundle(study=study, config=config, seed=seed, device="", versions={},
                       status=status, reason=reason, created=now(), finished=now())
    return import_run(store, bundle, sweep=sweep, point=point)


MAX_SWEEP_NAME = 100
"""The longest sweep name: it is also the name of a folder under ``<store>/sweeps``."""

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def check_sweep_name(name: str) -> str:
    """``name`` if it can name a sweep (and its folder ``<store>/sweeps/<name>``): letters,
    digits, ``.``, ``_`` and ``-`` only, at most :data:`MAX_SWEEP_NAME` characters, and not
    ``.`` or ``..``; raises otherwise, so that a report never lands outside the store."""
    if (not _PLAIN_NAME.fullmatch(name) or name in (".", "..")
            or len(name) > MAX_SWEEP_NAME):
        raise WidenetError(f"bad sweep name {name!r}: use up to {MAX_SWEEP_NAME} letters, "
                           "digits, '.', '_' or '-' (no '/', spaces or '..')")
    return name


def create_sweep(store: RunStore, name: str, study: str, spec: dict[str, Any]) -> None:
    """Register a new sweep; its name must be plain (see :func:`check_sweep_name`) and new to
    the store."""
    check_sweep_name(name)
    store.ensure_store()
    with store._transaction() as con:
        if con.execute("SELECT 1 FROM sweeps WHERE name = ?", (name,)).fetchone():
            raise WidenetError(f"a sweep named {name!r} exists already in {store.db_path}; "
                               "choose another --name or continue it with --resume")
        con.execute("INSERT INTO sweeps (name, study, spec, created) VALUES (?, ?, ?, ?)",
                    (name, study, canonical_json(spec), now()))


def drop_empty_sweep(store: RunStore, name: str) -> bool:
    """Remove the record of sweep ``name`` if it has no runs yet (so the name can be used
    again); returns whether it was removed. A sweep with runs is never touched."""
    with store._transaction() as con:
        if con.execute("SELECT 1 FROM runs WHERE sweep = ? LIMIT 1", (name,)).fetchone():
            return False
        return con.execute("DELETE FROM sweeps WHERE name = ?", (name,)).rowcount > 0


def find_sweep(store: RunStore, *, study: str, spec: dict[str, Any],
               name: str | None = None) -> str | None:
    """The sweep called ``name`` (checked to match study and spec), or else the newest sweep of
    ``study`` with exactly this spec; None when there is none."""
    if name is not None:
        check_sweep_name(name)
    if not store.has_runs_table():
        return None
    with store._connect() as con:
        if name is not None:
            row = con.execute("SELECT study, spec FROM sweeps WHERE name = ?",
                              (name,)).fetchone()
            if row is None:
                return None
            if row["study"] != study or row["spec"] != canonical_json(spec):
                raise WidenetError(f"sweep {name!r} was made with another study or spec; "
                                   "resume it with the same arguments, or choose a new --name")
            return name
        row = con.execute("SELECT name FROM sweeps WHERE study = ? AND spec = ? "
                          "ORDER BY created DESC, rowid DESC LIMIT 1",
                          (study, canonical_json(spec))).fetchone()
    return None if row is None else row["name"]


def sweep_points(store: RunStore, name: str) -> pd.DataFrame:
    """The newest run of every point of the sweep: point, run id, status, reason."""
    with store._connect() as con:
        rows = con.execute(
            "SELECT point, id, status, reason FROM runs WHERE sweep = ? "
            "ORDER BY created, rowid", (name,)).fetchall()
    newest: dict[str, tuple[str, str, str]] = {}
    for point, run_id, status, reason in rows:
        newest[point] = (run_id, status, reason)
    return pd.DataFrame([(point, *values) for point, values in newest.items()],
                        columns=["point", "run_id", "status", "reason"])


def finished_points(store: RunStore, name: str) -> set[str]:
    """The points of the sweep whose newest run completed (or completed as diverged)."""
    points = sweep_points(store, name)
    return set(points.loc[points["status"].isin(FINISHED_STATUSES), "point"])


def sweep_folder(store: RunStore, name: str) -> Path:
    """The folder of a sweep's aggregate report: ``<store>/sweeps/<name>``."""
    return store.root / "sweeps" / check_sweep_name(name)


def sweep_record(store: RunStore, name: str) -> dict[str, Any]:
    """The sweep's study, spec and creation time."""
    if not store.has_runs_table():
        raise WidenetError(f"there is no run store at {store.root}")
    with store._connect() as con:
        row = con.execute("SELECT study, spec, created FROM sweeps WHERE name = ?",
                          (name,)).fetchone()
    if row is None:
        raise WidenetError(f"no sweep {name!r} in {store.db_path}")
    return {"name": name, "study": row["study"], "spec": json.loads(row["spec"]),
            "created": row["created"]}
