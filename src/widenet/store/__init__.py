"""The run store: an embedded SQLite database of runs, their tables and checks (see runs.py),
and of sweeps of runs (see sweeps.py); both write through one :class:`Database`.

The names below are imported on first use (:func:`widenet.deferred.lazy_names`): the command
line reads :data:`DEFAULT_ROOT` and checks sweep names without importing pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from widenet.deferred import lazy_names

_WHERE = {
    "RunBundle": "widenet.store.bundles",
    "export_run": "widenet.store.bundles",
    "import_run": "widenet.store.bundles",
    "DEFAULT_ROOT": "widenet.store.database",
    "Database": "widenet.store.database",
    "canonical_json": "widenet.store.frames",
    "frame_from_json": "widenet.store.frames",
    "frame_to_json": "widenet.store.frames",
    "check_run_id": "widenet.store.names",
    "check_sweep_name": "widenet.store.names",
    "CHECK_COLUMNS": "widenet.store.records",
    "FINISHED_STATUSES": "widenet.store.records",
    "RUN_STATUSES": "widenet.store.records",
    "RunRecord": "widenet.store.records",
    "RunStore": "widenet.store.runs",
    "load_checks": "widenet.store.runs",
    "load_runs": "widenet.store.runs",
    "load_table": "widenet.store.runs",
    "SweepStore": "widenet.store.sweeps",
}
"""Each public name and the module that defines it."""

if TYPE_CHECKING:
    from widenet.store.bundles import RunBundle, export_run, import_run
    from widenet.store.database import DEFAULT_ROOT, Database
    from widenet.store.frames import canonical_json, frame_from_json, frame_to_json
    from widenet.store.names import check_run_id, check_sweep_name
    from widenet.store.records import CHECK_COLUMNS, FINISHED_STATUSES, RUN_STATUSES, RunRecord
    from widenet.store.runs import RunStore, load_checks, load_runs, load_table
    from widenet.store.sweeps import SweepStore

__getattr__, __dir__ = lazy_names(__name__, _WHERE)

__all__ = ["CHECK_COLUMNS", "DEFAULT_ROOT", "FINISHED_STATUSES", "RUN_STATUSES", "Database",
           "RunBundle", "RunRecord", "RunStore", "SweepStore", "canonical_json",
           "check_run_id", "check_sweep_name", "export_run", "frame_from_json", "frame_to_json",
           "import_run", "load_checks", "load_runs", "load_table"]
