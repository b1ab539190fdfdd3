"""Helpers for study tests: run a study in memory, without the run store."""

from __future__ import annotations

from pathlib import Path

import torch

from widenet.studies import Analysis, Study, StudyConfig, StudyContext
from widenet.studies.common.base import merge_tables
from widenet.studies.common.config import validate_config


def run_in_memory(study: Study, folder: Path, *, quick: bool = True, **overrides: object
                  ) -> tuple[StudyConfig, Analysis]:
    """Plan, compute every task on the CPU and analyze; returns the config and the analysis."""
    values = {**(study.config.QUICK if quick else {}), **overrides}
    config = validate_config(study.config, values)
    context = StudyContext(device=torch.device("cpu"), folder=folder)
    parts = [task.compute(context) for task in study.plan(config)]
    return config, study.analyze(config, merge_tables(parts))
