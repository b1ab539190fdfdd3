"""The run store: an embedded SQLite database of runs, their tables and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunRecord:
    """One stored run: what was run, with which config, where, and how it ended.

    ``status`` is ``running``, ``completed``, ``failed`` or ``interrupted`` (a run whose process
    died or was stopped; resumable with ``--resume``). Times are ISO-8601 UTC strings.
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
