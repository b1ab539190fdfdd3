"""Running a sweep: expand the spec, hand the points to an engine, store what comes back.

Only this process writes the store. Each point that comes back is imported as a run of the
sweep the moment it arrives, and its report is written right after, so an interrupted sweep
keeps every finished point; ``resume=True`` first writes the report of any finished point that
has none (the sweep died between storing it and writing its report), then runs only the points
whose newest run did not complete.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from widenet.errors import WidenetError
from widenet.runner import write_run_report
from widenet.store import FINISHED_STATUSES, RunBundle, RunStore, SweepStore, check_sweep_name
from widenet.sweeps.engines import Engine, Job, Outcome
from widenet.sweeps.report import write_sweep_report
from widenet.sweeps.spec import SweepSpec, plan_sweep
from widenet.sweeps.worker import execute_point

PointCallback = Callable[[int, int, str, str], None]
"""Called as ``on_point(done, total, label, status)`` before the first point and after each."""


@dataclass(frozen=True)
class SweepOutcome:
    """A finished sweep: its name, the newest run of every point, its report, and how many
    points ran this time (the rest were finished before)."""

    name: str
    points: pd.DataFrame
    report: Path
    ran: int


def run_sweep(study: str, spec: SweepSpec, *, store: RunStore, engine: Engine,
              base: dict[str, Any] | None = None, device: str = "cpu", name: str | None = None,
              resume: bool = False, on_point: PointCallback | None = None) -> SweepOutcome:
    """Run every point of ``spec`` (config = study defaults < ``base`` < the point's values).

    Every point's config, the sweep's name and the device are checked before anything is
    stored. With ``resume``, the sweep called ``name`` (which must exist) or else the newest
    sweep of this study with the same spec is continued. If the engine fails before any point
    is stored, a sweep this call made is removed again, so that its name stays free.
    """
    base = dict(base or {})
    if name is not None:
        check_sweep_name(name)
    engine.check(device)
    jobs = [Job(label, execute_point, (study, values, device))
            for label, values in plan_sweep(study, spec, base)]
    record = {"base": base, "device": device, **spec.as_dict()}
    sweeps = SweepStore(store)
    sweep, created = _open_sweep(sweeps, study, record, name, resume)
    if not created:
        _write_missing_reports(store, sweeps.points(sweep))
    done = sweeps.finished_points(sweep)
    todo = [job for job in jobs if job.label not in done]
    progress = {"done": len(jobs) - len(todo)}
    if on_point is not None:
        on_point(progress["done"], len(jobs), "", "")

    def store_point(job: Job, outcome: Outcome) -> None:
        if outcome.status == "done":
            bundle: RunBundle = outcome.result
            status = bundle.status
            write_run_report(store, sweeps.add_point(sweep, job.label, bundle))
        else:
            _, values, _ = job.args
            status = outcome.status
            sweeps.add_lost_point(sweep, job.label, study=study, config=values,
                                  seed=int(values.get("seed", 0)), status=status,
                                  reason=outcome.reason)
        progress["done"] += 1
        if on_point is not None:
            on_point(progress["done"], len(jobs), job.label, status)

    try:
        engine.run(todo, store_point)
    except BaseException:
        if created:  # a sweep that stored no point leaves no trace: its name stays free
            sweeps.drop_if_empty(sweep)
        raise
    return SweepOutcome(name=sweep, points=sweeps.points(sweep),
                        report=write_sweep_report(store, sweep), ran=len(todo))


def _open_sweep(sweeps: SweepStore, study: str, record: dict[str, Any], name: str | None,
                resume: bool) -> tuple[str, bool]:
    """The sweep to run into and whether this call created it (see :func:`run_sweep`)."""
    sweep = sweeps.find(study=study, spec=record, name=name) if resume else None
    if sweep is not None:
        return sweep, False
    if resume and name is not None:
        raise WidenetError(f"no sweep named {name!r} to resume in {sweeps.database.db_path}; "
                           "check the name, or leave out --resume to start it")
    sweep = name or _default_name(study)
    sweeps.create(sweep, study, record)
    return sweep, True


def _write_missing_reports(store: RunStore, points: pd.DataFrame) -> None:
    """Write the report of every finished point that has none: a point is stored first and
    its report written next, so a sweep that died in between left the point without one."""
    for point in points.itertuples():
        if (point.status in FINISHED_STATUSES
                and not (store.run_folder(point.run_id) / "report.html").exists()):
            write_run_report(store, point.run_id)


def _default_name(study: str) -> str:
    """``<study>-sweep-<UTC date>-<time>-<4 hex digits>`` (study names are plain already; a
    long one is cut so that the name stays within the sweep-name limit)."""
    return (f"{study[:60]}-sweep-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-"
            f"{secrets.token_hex(2)}")
