"""One sweep point, run where a worker is: into a scratch store, returned as a bundle."""

from __future__ import annotations

import tempfile
from typing import Any

from widenet.runner import run_study
from widenet.store import RunBundle, RunStore, export_run
from widenet.studies import get_study
from widenet.studies.common.config import validate_config


def execute_point(study_name: str, values: dict[str, Any], device: str) -> RunBundle:
    """Run ``study_name`` with config ``values`` on ``device`` and return the whole run.

    The run goes into a temporary store that is deleted afterwards, so workers never write the
    real store. A point whose study raises comes back as a ``failed`` run with the reason (and
    the tasks it finished). An error before the run exists (a device that is not there) is
    raised as it is, for the engine to report; the death of the worker leaves no bundle.
    """
    study = get_study(study_name)
    config = validate_config(study.config, values)
    with tempfile.TemporaryDirectory(prefix="widenet-point-") as scratch:
        store = RunStore(scratch)
        try:
            run_study(study, config, store=store, device=device)
        except Exception:
            if store.runs().empty:
                raise
            # otherwise it is recorded in the scratch store as a failed run
        (run_id,) = store.runs()["id"]
        return export_run(store, run_id)
