"""What a store holds, as Python values: run records, check tables, data tables.

Rows of ``runs.db`` are decoded here, and every value that does not decode (broken JSON in a
config or table, a dtype pandas does not know, a check value that is not a number, a status
that is not one of :data:`RUN_STATUSES`) raises one WidenetError that names the run and what is
damaged. The other runs of the store stay readable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from widenet.errors import WidenetError
from widenet.store._frames import frame_from_json, mapping_from_json

RUN_STATUSES = ("running", "completed", "diverged", "failed", "interrupted", "lost")
FINISHED_STATUSES = ("completed", "diverged")
CHECK_COLUMNS = ["name", "claim", "predicted", "measured", "stderr", "low", "high", "verdict",
                 "note"]
CHECK_NUMBERS = ("predicted", "measured", "stderr", "low", "high")
"""The check columns that hold a number or nothing (NULL)."""


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


def damaged(run_id: str, what: str, problem: str, db_path: Path) -> WidenetError:
    """The error for a damaged value of a run: one line naming the run, the value and what is
    wrong with it, and saying that the other runs are not affected."""
    return WidenetError(f"run {run_id} in {db_path} is damaged: its {what} {problem}; the "
                        "store's other runs are readable (`widenet runs` lists them)")


def record_from_row(row: sqlite3.Row, status: str, db_path: Path) -> RunRecord:
    """The record of the ``runs`` row ``row`` (with ``tasks_done``), whose status reads as
    ``status``; raises :func:`damaged` for a value of the wrong kind."""
    run_id = row["id"]
    values: dict[str, Any] = {}
    for column in ("config", "versions"):
        try:
            values[column] = mapping_from_json(row[column])
        except WidenetError as error:
            raise damaged(run_id, column, f"is not a JSON object ({error})", db_path) from None
    for column, kind in (("study", str), ("seed", int), ("device", str), ("created", str),
                         ("reason", str), ("finished", str | None), ("sweep", str | None)):
        if not isinstance(row[column], kind) or isinstance(row[column], bool):
            raise damaged(run_id, column, f"is {_cut(row[column])}, not a {_kind(kind)}", db_path)
    if status not in RUN_STATUSES:
        raise damaged(run_id, "status", f"is {_cut(status)}, not one of "
                      f"{', '.join(RUN_STATUSES)}", db_path)
    return RunRecord(id=run_id, study=row["study"], config=values["config"], status=status,
                     seed=row["seed"], device=row["device"], created=row["created"],
                     finished=row["finished"], reason=row["reason"],
                     tasks_done=row["tasks_done"], versions=values["versions"],
                     sweep=row["sweep"])


def checks_frame(rows: Sequence[sqlite3.Row], run_id: str, db_path: Path) -> pd.DataFrame:
    """The checks of run ``run_id`` (rows of :data:`CHECK_COLUMNS`) as a DataFrame with float
    number columns; raises :func:`damaged` for a number that is text or a text that is not."""
    for position, row in enumerate(rows):
        for column in CHECK_COLUMNS:
            value = row[column]
            if column in CHECK_NUMBERS:
                bad = value is not None and (isinstance(value, bool)
                                             or not isinstance(value, int | float))
                expected = "number"
            else:
                bad, expected = not isinstance(value, str), "text"
            if bad:
                raise damaged(run_id, f"check {position} ({_cut(row['name'])})",
                              f"has {column} = {_cut(value)}, not a {expected}", db_path)
    frame = pd.DataFrame([tuple(row) for row in rows], columns=CHECK_COLUMNS)
    for column in CHECK_NUMBERS:
        frame[column] = frame[column].astype(float)
    return frame


def table_from_row(data: str, run_id: str, what: str, db_path: Path) -> pd.DataFrame:
    """The table stored as ``data`` for run ``run_id`` (``what`` names it, e.g. ``table
    'fit'``); raises :func:`damaged` if it does not decode."""
    try:
        return frame_from_json(data)
    except WidenetError as error:
        raise damaged(run_id, what, f"does not decode ({error})", db_path) from None


def _kind(kind: Any) -> str:
    return {str: "text", int: "whole number"}.get(kind, "text or nothing")


def _cut(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
