"""Imports deferred to first use: a package's names (PEP 562) and a study's steps."""

from __future__ import annotations

import math
import pickle
import sys
import types
from collections.abc import Iterator

import pytest

from widenet.deferred import Deferred, lazy_names
from widenet.errors import WidenetError


@pytest.fixture
def package() -> Iterator[types.ModuleType]:
    """A package ``lazy_test_package`` whose names ``sqrt`` (from math) and ``json`` (the
    module) are imported on first use."""
    module = types.ModuleType("lazy_test_package")
    module.__getattr__, module.__dir__ = lazy_names(  # type: ignore[method-assign]
        module.__name__, {"sqrt": "math", "json": "json"}, frozenset({"json"}))
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_a_lazy_name_is_imported_on_first_read_and_kept(package: types.ModuleType) -> None:
    import json

    assert "sqrt" not in vars(package)
    assert package.sqrt is math.sqrt
    assert vars(package)["sqrt"] is math.sqrt  # kept: later reads are plain lookups
    assert package.json is json  # a submodule is the module itself
    assert {"json", "sqrt"} <= set(dir(package))


def test_a_name_the_package_does_not_have_is_an_attribute_error(
        package: types.ModuleType) -> None:
    with pytest.raises(AttributeError, match="'lazy_test_package' has no attribute 'cos'"):
        package.cos  # noqa: B018
    assert not hasattr(package, "cos")


def test_a_deferred_function_is_called_and_pickled_by_name() -> None:
    deferred = Deferred("math", "hypot")
    assert deferred(3.0, 4.0) == 5.0
    assert deferred.function is math.hypot
    copy = pickle.loads(pickle.dumps(deferred))
    assert copy == deferred
    assert copy(6.0, 8.0) == 10.0


def test_a_submodule_not_listed_is_still_an_attribute_of_its_lazy_package() -> None:
    """``widenet.store.runs`` (a submodule that no public name lists) is reached as an
    attribute of the package, as it was when the package imported it eagerly."""
    import widenet.store
    import widenet.sweeps

    assert widenet.store.runs is sys.modules["widenet.store.runs"]
    assert widenet.sweeps.engines.LocalEngine is widenet.sweeps.LocalEngine
    with pytest.raises(AttributeError, match="has no attribute 'no_such_module'"):
        widenet.store.no_such_module  # noqa: B018


def test_a_deferred_step_that_cannot_be_imported_is_a_one_line_error() -> None:
    with pytest.raises(WidenetError, match="cannot import module 'no_such_module_here'"):
        Deferred("no_such_module_here", "plan")()
    with pytest.raises(WidenetError, match="module 'math' defines no function 'plan'"):
        Deferred("math", "plan").function  # noqa: B018
