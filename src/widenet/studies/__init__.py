"""The registry of studies: each compares a theorem with measurements on real networks.

Study modules are imported on first use, so that ``widenet --help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module

from widenet.errors import WidenetError
from widenet.studies.base import Analysis, Study, StudyConfig, StudyContext, Tables, Task
from widenet.studies.config import build_config

_MODULES = {
    "ntk-concentration": "widenet.studies.ntk_concentration",
    "ntk-spectrum": "widenet.studies.ntk_spectrum",
    "gd-convergence": "widenet.studies.gd_convergence",
    "lazy-training": "widenet.studies.lazy_training",
}


def study_names() -> list[str]:
    """The names of all registered studies, in the order of the docs."""
    return list(_MODULES)


def get_study(name: str) -> Study:
    """The study called ``name`` (see :func:`study_names`)."""
    if name not in _MODULES:
        raise WidenetError(f"unknown study {name!r}; choose one of: {', '.join(_MODULES)} "
                           "(`widenet studies` lists them)")
    return import_module(_MODULES[name]).STUDY


__all__ = ["Analysis", "Study", "StudyConfig", "StudyContext", "Tables", "Task", "build_config",
           "get_study", "study_names"]
