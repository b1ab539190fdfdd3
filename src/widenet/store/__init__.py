"""The run store: an embedded SQLite database of runs, their tables and checks (see runs.py)."""

from widenet.store._database import DEFAULT_ROOT
from widenet.store._frames import canonical_json, frame_from_json, frame_to_json
from widenet.store.runs import (
    CHECK_COLUMNS,
    FINISHED_STATUSES,
    RUN_STATUSES,
    RunRecord,
    RunStore,
    load_checks,
    load_runs,
    load_table,
)

__all__ = ["CHECK_COLUMNS", "DEFAULT_ROOT", "FINISHED_STATUSES", "RUN_STATUSES", "RunRecord",
           "RunStore", "canonical_json", "frame_from_json", "frame_to_json", "load_checks",
           "load_runs", "load_table"]
