"""The registry of studies: each compares a theorem with measurements on real networks.

Study modules are imported on first use, so that ``widenet --help`` stays fast. Studies of your
own join the registry through the environment: ``WIDENET_STUDIES="mine=my_package.my_study"``
(comma-separated ``name=module`` pairs; each module defines ``STUDY``). A name that is taken,
by a built-in study or earlier in the variable, is refused. The variable also reaches sweep
workers, local or on Ray.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import import_module

from widenet.errors import WidenetError
from widenet.studies.common.base import Analysis, Study, StudyConfig, StudyContext, Tables, Task
from widenet.studies.common.config import build_config, quote

_MODULES = {
    "ntk-concentration": "widenet.studies.ntk_concentration",
    "ntk-spectrum": "widenet.studies.ntk_spectrum",
    "gd-convergence": "widenet.studies.gd_convergence",
    "lazy-training": "widenet.studies.lazy_training",
    "edge-of-stability": "widenet.studies.edge_of_stability",
    "implicit-bias": "widenet.studies.implicit_bias",
    "lr-transfer": "widenet.studies.lr_transfer",
    "mean-field": "widenet.studies.mean_field",
    "info-nuisance": "widenet.studies.info_nuisance",
    "cnn-kernels": "widenet.studies.cnn_kernels",
}


_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _registry() -> dict[str, str]:
    """The built-in studies, then those named in ``WIDENET_STUDIES``."""
    registry = dict(_MODULES)
    for entry in filter(None, os.environ.get("WIDENET_STUDIES", "").split(",")):
        name, sep, module = entry.partition("=")
        name = name.strip()
        if not sep or not name or not module.strip():
            raise WidenetError(f"WIDENET_STUDIES holds {entry!r}; write name=module pairs "
                               "separated by commas")
        if not _STUDY_NAME.fullmatch(name):
            raise WidenetError(f"WIDENET_STUDIES names a study {name!r}; a study name starts "
                               "with a letter or digit and holds only letters, digits, '.', "
                               "'_' and '-' (it becomes part of run ids and folder names)")
        if name in registry:
            owner = ("a built-in study" if name in _MODULES else
                     f"module {registry[name]!r}, named earlier in WIDENET_STUDIES")
            raise WidenetError(f"WIDENET_STUDIES names a study {name!r}, but that name is taken "
                               f"by {owner}; give the study another name")
        registry[name] = module.strip()
    return registry


def study_names() -> list[str]:
    """The names of all registered studies, in the order of the docs."""
    return list(_registry())


def study_source(name: str) -> str:
    """Where the study called ``name`` comes from: ``"built-in"``, or, for a study of
    ``WIDENET_STUDIES``, its module and the file that module was loaded from."""
    if name in _MODULES:
        return "built-in"
    get_study(name)  # imports the module; raises for an unknown name or a broken module
    module = _registry()[name]
    file = getattr(sys.modules[module], "__file__", None)
    return f"{module} ({file})" if file else module


def get_study(name: str) -> Study:
    """The study called ``name`` (see :func:`study_names`)."""
    registry = _registry()
    if name not in registry:
        raise WidenetError(f"unknown study {name!r}; choose one of: {', '.join(registry)} "
                           "(`widenet studies` lists them)")
    try:
        module = import_module(registry[name])
    except TypeError:  # a relative name such as ".mine"
        raise WidenetError(f"study {name!r}: cannot import its module {registry[name]!r}; "
                           "write its full name (my_package.my_study) in WIDENET_STUDIES"
                           ) from None
    except ImportError as error:
        raise WidenetError(f"study {name!r}: cannot import its module {registry[name]!r} "
                           f"({error})") from None
    except Exception as error:  # the module's own code raised (a syntax error, a bug)
        raise WidenetError(f"study {name!r}: cannot import its module {registry[name]!r} "
                           f"({type(error).__name__}: {error})") from None
    study = getattr(module, "STUDY", None)
    if study is None:
        raise WidenetError(f"study {name!r}: module {registry[name]!r} defines no STUDY")
    if not isinstance(study, Study):
        raise WidenetError(f"study {name!r}: module {registry[name]!r} defines STUDY = "
                           f"{quote(study)}, not a widenet Study")
    return study


__all__ = ["Analysis", "Study", "StudyConfig", "StudyContext", "Tables", "Task", "build_config",
           "get_study", "study_names", "study_source"]
