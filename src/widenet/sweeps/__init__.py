"""Sweeps: one study over a grid of configs, on local processes or a Ray cluster."""

from widenet.sweeps.driver import SweepOutcome, plan_sweep, run_sweep
from widenet.sweeps.engines import Engine, Job, LocalEngine, Outcome, RayEngine
from widenet.sweeps.spec import SweepSpec, parse_grid, parse_random

__all__ = ["Engine", "Job", "LocalEngine", "Outcome", "RayEngine", "SweepOutcome", "SweepSpec",
           "parse_grid", "parse_random", "plan_sweep", "run_sweep"]
