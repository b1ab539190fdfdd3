"""Sweeps: one study over a grid of configs, on local processes or a Ray cluster.

The names below are imported on first use (:func:`widenet.deferred.lazy_names`): planning a
sweep (``widenet sweep --dry-run``) needs only :mod:`~widenet.sweeps.spec` and
:mod:`~widenet.sweeps.engines`, not the driver, which imports the runner and its figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from widenet.deferred import lazy_names

_WHERE = {
    "SweepOutcome": "widenet.sweeps.driver",
    "run_sweep": "widenet.sweeps.driver",
    "Engine": "widenet.sweeps.engines",
    "Job": "widenet.sweeps.engines",
    "LocalEngine": "widenet.sweeps.engines",
    "Outcome": "widenet.sweeps.engines",
    "RayEngine": "widenet.sweeps.engines",
    "SweepSpec": "widenet.sweeps.spec",
    "parse_grid": "widenet.sweeps.spec",
    "parse_random": "widenet.sweeps.spec",
    "plan_sweep": "widenet.sweeps.spec",
}
"""Each public name and the module that defines it."""

if TYPE_CHECKING:
    from widenet.sweeps.driver import SweepOutcome, run_sweep
    from widenet.sweeps.engines import Engine, Job, LocalEngine, Outcome, RayEngine
    from widenet.sweeps.spec import SweepSpec, parse_grid, parse_random, plan_sweep

__getattr__, __dir__ = lazy_names(__name__, _WHERE)

__all__ = ["Engine", "Job", "LocalEngine", "Outcome", "RayEngine", "SweepOutcome", "SweepSpec",
           "parse_grid", "parse_random", "plan_sweep", "run_sweep"]
