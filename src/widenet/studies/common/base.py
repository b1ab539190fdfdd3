"""What a study is: a validated config, a plan of independent tasks, and an analysis.

A study turns its config into a list of :class:`Task` s, each a unit of work with a stable key
(``"abs/constant/L=3/m=256/seed=1"``) that returns tidy tables (pandas DataFrames whose columns
include the task's parameters). The runner stores every finished task at once, so a killed run
resumes by skipping the keys already stored. When all tasks are done, the study's ``analyze``
turns the concatenated tables into derived tables, figures (matplotlib ``Figure`` objects) and
:class:`~widenet.checks.Check` s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from widenet.checks import Check
from widenet.memory import FLOAT64_BYTES, mlp_parameters
from widenet.seeds import MAX_SEED

if TYPE_CHECKING:  # the studies make tables, figures and tensors; this module only names types
    import pandas as pd
    import torch
    from matplotlib.figure import Figure

Tables = dict[str, "pd.DataFrame"]


class StudyConfig(BaseModel):
    """Base of every study's config: typed fields with documented defaults.

    Subclasses declare their fields (with ``Field(description=...)``) and a ``QUICK`` preset,
    the overrides that make the study finish in seconds. Unknown keys are rejected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    QUICK: ClassVar[dict[str, Any]] = {}

    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="base seed: every task "
                      "derives its seeds from it and its own parameters")

    def memory_bytes(self) -> int:
        """A lower bound on the bytes of the study's largest task, from the sizes in its
        config: its float64 inputs, n x d (n the largest of ``points``, ``n``,
        ``test_points``, ``n_test``; d = ``dim``, 1 without one), or the float64 parameters of
        its widest net, d -> m -> ... -> m -> 1 with L hidden layers (m the largest of the
        width fields, L of the depth fields), whichever is larger. A config beyond the free
        memory cannot run; studies that need more (an n x n kernel) add it."""
        n = _largest(self, ("points", "n", "test_points", "n_test"))
        d = _largest(self, ("dim",)) or 1
        m = _largest(self, ("width", "widths", "base_widths", "beyond_width", "particle_width"))
        depth = _largest(self, ("depth", "depths", "beyond_depth")) or 1
        net = mlp_parameters(d, [m] * depth, 1) if m else 0
        return FLOAT64_BYTES * max(n * d, net)


def _largest(config: StudyConfig, names: tuple[str, ...]) -> int:
    """The largest integer among the fields ``names`` of ``config`` (single values or lists;
    absent fields count 0)."""
    values = [getattr(config, name, None) for name in names]
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    return max((v for v in flat if isinstance(v, int) and not isinstance(v, bool)), default=0)


@dataclass(frozen=True)
class StudyContext:
    """Where a task runs: the torch device, and a folder of its own for checkpoints."""

    device: torch.device
    folder: Path


@dataclass(frozen=True)
class Task:
    """One independent unit of a study: ``compute(context)`` returns named tidy tables."""

    key: str
    compute: Callable[[StudyContext], Tables]


@dataclass
class Analysis:
    """What a study concludes: derived tables, figures keyed by file stem, and checks.

    ``diverged`` is empty, or says which training the study needed diverged (the run is then
    stored with status ``diverged``). Studies that sweep into divergence on purpose record it
    as a data point in their tables instead.
    """

    tables: Tables = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    diverged: str = ""


@dataclass(frozen=True)
class Study:
    """A registered study: its name, a one-line summary, its config type and its two steps.

    The built-in studies name their steps as :class:`~widenet.deferred.Deferred` functions,
    so that :func:`~widenet.studies.get_study` imports only a study's config (validating one
    needs neither torch nor matplotlib); any callable will do.
    """

    name: str
    summary: str
    config: type[StudyConfig]
    plan: Callable[[Any], list[Task]]
    analyze: Callable[[Any, Tables], Analysis]


def merge_tables(parts: list[Tables]) -> Tables:
    """Concatenate the tables of many tasks by name, in task order, with a fresh index."""
    import pandas as pd

    names: dict[str, list[pd.DataFrame]] = {}
    for part in parts:
        for name, frame in part.items():
            names.setdefault(name, []).append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in names.items()}
