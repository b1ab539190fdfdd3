"""The run store: an embedded SQLite database of runs, their tables and checks (see runs.py),
and of sweeps of runs (see sweeps.py); both write through one :class:`Database`."""

from widenet.store._frames import canonical_json, frame_from_json, frame_to_json
from widenet.store.bundles import RunBundle, export_run, import_run
from widenet.store.database import DEFAULT_ROOT, Database
from widenet.store.names import check_run_id, check_sweep_name
from widenet.store.records import CHECK_COLUMNS, FINISHED_STATUSES, RUN_STATUSES, RunRecord
from widenet.store.runs import RunStore, load_checks, load_runs, load_table
from widenet.store.sweeps import SweepStore

__all__ = ["CHECK_COLUMNS", "DEFAULT_ROOT", "FINISHED_STATUSES", "RUN_STATUSES", "Database",
           "RunBundle", "RunRecord", "RunStore", "SweepStore", "canonical_json",
           "check_run_id", "check_sweep_name", "export_run", "frame_from_json", "frame_to_json",
           "import_run", "load_checks", "load_runs", "load_table"]
