"""Imports deferred to first use, so that importing a package or reading a study's config
stays cheap.

``widenet``, ``widenet.store`` and ``widenet.sweeps`` re-export names from modules that import
torch, pandas or matplotlib; the command line imports these packages to reach a light module
(``widenet.store.database`` for the default store folder, ``widenet.sweeps.spec`` to plan a
sweep), so each package imports a name's module only when the name is first read
(:func:`lazy_names`, PEP 562). A built-in study names its plan and analysis by module and
attribute (:class:`Deferred`), so that validating its config (``widenet sweep --dry-run``)
imports neither torch nor matplotlib.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from typing import Any

from widenet.errors import WidenetError


def lazy_names(package: str, where: Mapping[str, str], submodules: frozenset[str] = frozenset()
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: reading the public
    ``name`` imports ``where[name]`` and takes its attribute ``name`` (or, for a name in
    ``submodules``, the module itself), which is then kept in the package's namespace so that
    later reads are plain lookups. Another name that is a submodule of ``package`` imports
    it (as an eager package's imports would have made it an attribute); any other raises
    AttributeError, as a missing attribute does."""

    def getattr_(name: str) -> Any:
        module_name = where.get(name)
        if module_name is None:  # a submodule not listed is still reached as an attribute
            if ("__path__" not in vars(sys.modules[package]) or name.startswith("__")
                    or find_spec(f"{package}.{name}") is None):
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return import_module(f"{package}.{name}")
        module = import_module(module_name)
        value = module if name in submodules else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return getattr_, dir_


@dataclass(frozen=True)
class Deferred:
    """The function ``name`` of the module ``module``, imported when first called; calling it
    calls that function. It compares, hashes and pickles by the two names."""

    module: str
    name: str

    @property
    def function(self) -> Callable[..., Any]:
        """The function itself (importing its module, if that is not done yet); a module that
        cannot be imported or lacks the name raises a one-line :class:`WidenetError`."""
        try:
            module = import_module(self.module)
        except ImportError as error:
            raise WidenetError(f"cannot import module {self.module!r} for its {self.name!r} "
                               f"({error})") from None
        function = getattr(module, self.name, None)
        if not callable(function):
            raise WidenetError(f"module {self.module!r} defines no function {self.name!r}")
        return function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


def resolved(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` itself, or for a :class:`Deferred` the function it names (imported now, so
    that a broken name fails before any work rather than after it)."""
    return function.function if isinstance(function, Deferred) else function
