"""Sweeps in the run store: a sweep is a named set of runs of one study.

The ``sweeps`` table holds each sweep's name and spec; each point is an ordinary run whose
``sweep`` and ``point`` columns say where it belongs. :class:`SweepStore` reads and writes
them through the run store's database (one transaction per write), and adds the points that
come back from workers as bundles (see :mod:`widenet.store.bundles`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from widenet.errors import WidenetError
from widenet.store._frames import canonical_json, mapping_from_json
from widenet.store.bundles import RunBundle, import_run
from widenet.store.database import now
from widenet.store.names import check_sweep_name
from widenet.store.records import FINISHED_STATUSES
from widenet.store.runs import RunStore


class SweepStore:
    """The sweeps of the run store ``runs`` (which also holds their points' runs)."""

    def __init__(self, runs: RunStore):
        self.runs = runs
        self.database = runs.database

    # -- writing ---------------------------------------------------------------------------

    def create(self, name: str, study: str, spec: dict[str, Any]) -> None:
        """Register a new sweep; its name must be plain (see :func:`check_sweep_name`) and new
        to the store."""
        check_sweep_name(name)
        self.database.ensure_schema()
        with self.database.transaction() as con:
            if con.execute("SELECT 1 FROM sweeps WHERE name = ?", (name,)).fetchone():
                raise WidenetError(f"a sweep named {name!r} exists already in "
                                   f"{self.database.db_path}; choose another --name or "
                                   "continue it with --resume")
            con.execute("INSERT INTO sweeps (name, study, spec, created) VALUES (?, ?, ?, ?)",
                        (name, study, canonical_json(spec), now()))

    def drop_if_empty(self, name: str) -> bool:
        """Remove the record of sweep ``name`` if it has no runs yet (so the name can be used
        again); returns whether it was removed. A sweep with runs is never touched."""
        with self.database.transaction() as con:
            if con.execute("SELECT 1 FROM runs WHERE sweep = ? LIMIT 1", (name,)).fetchone():
                return False
            return con.execute("DELETE FROM sweeps WHERE name = ?", (name,)).rowcount > 0

    def add_point(self, name: str, point: str, bundle: RunBundle) -> str:
        """Store the run ``bundle`` as point ``point`` of sweep ``name``; returns its id."""
        return import_run(self.runs, bundle, sweep=name, point=point)

    def add_lost_point(self, name: str, point: str, *, study: str, config: dict[str, Any],
                       seed: int, status: str, reason: str) -> str:
        """Store a point that left no bundle (its worker died or raised first) as a run with
        ``status`` and ``reason``; returns its id."""
        bundle = RunBundle(study=study, config=config, seed=seed, device="", versions={},
                           status=status, reason=reason, created=now(), finished=now())
        return self.add_point(name, point, bundle)

    # -- reading ---------------------------------------------------------------------------

    def find(self, *, study: str, spec: dict[str, Any], name: str | None = None) -> str | None:
        """The sweep called ``name`` (checked to match study and spec), or else the newest
        sweep of ``study`` with exactly this spec; None when there is none."""
        if name is not None:
            check_sweep_name(name)
        if not self.database.has_schema():
            return None
        with self.database.connect() as con:
            if name is not None:
                row = con.execute("SELECT study, spec FROM sweeps WHERE name = ?",
                                  (name,)).fetchone()
                if row is None:
                    return None
                if row["study"] != study or row["spec"] != canonical_json(spec):
                    raise WidenetError(f"sweep {name!r} was made with another study or spec; "
                                       "resume it with the same arguments, or choose a new "
                                       "--name")
                return name
            row = con.execute("SELECT name FROM sweeps WHERE study = ? AND spec = ? "
                              "ORDER BY created DESC, rowid DESC LIMIT 1",
                              (study, canonical_json(spec))).fetchone()
        return None if row is None else check_sweep_name(row["name"])

    def points(self, name: str) -> pd.DataFrame:
        """The newest run of every point of the sweep: point, run id, status, reason."""
        with self.database.connect() as con:
            rows = con.execute(
                "SELECT point, id, status, reason FROM runs WHERE sweep = ? "
                "ORDER BY created, rowid", (name,)).fetchall()
        newest: dict[str, tuple[str, str, str]] = {}
        for point, run_id, status, reason in rows:
            newest[point] = (run_id, status, reason)
        return pd.DataFrame([(point, *values) for point, values in newest.items()],
                            columns=["point", "run_id", "status", "reason"])

    def finished_points(self, name: str) -> set[str]:
        """The points of the sweep whose newest run completed (or completed as diverged)."""
        points = self.points(name)
        return set(points.loc[points["status"].isin(FINISHED_STATUSES), "point"])

    def folder(self, name: str) -> Path:
        """The folder of a sweep's aggregate report: ``<store>/sweeps/<name>``."""
        return self.database.root / "sweeps" / check_sweep_name(name)

    def record(self, name: str) -> dict[str, Any]:
        """The sweep's name, study, spec and creation time."""
        if not self.database.has_schema():
            raise WidenetError(f"there is no run store at {self.database.root}")
        with self.database.connect() as con:
            row = con.execute("SELECT study, spec, created FROM sweeps WHERE name = ?",
                              (name,)).fetchone()
        if row is None:
            raise WidenetError(f"no sweep {name!r} in {self.database.db_path}")
        try:
            spec = mapping_from_json(row["spec"])
        except WidenetError as error:
            raise WidenetError(f"sweep {name!r} in {self.database.db_path} is damaged: its spec "
                               f"is not a JSON object ({error})") from None
        return {"name": name, "study": row["study"], "spec": spec, "created": row["created"]}
