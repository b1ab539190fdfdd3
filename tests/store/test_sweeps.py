"""Sweeps in the run store: names that stay inside the store, and dropping an empty sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from widenet.errors import WidenetError
from widenet.store import RunStore
from widenet.store.sweeps import (
    MAX_SWEEP_NAME,
    check_sweep_name,
    create_sweep,
    drop_empty_sweep,
    find_sweep,
    sweep_folder,
)


@pytest.mark.parametrize("name", ["s", "toy-sweep-20260101-000000-ab12", "a.b_c-D9",
                                  "x" * MAX_SWEEP_NAME])
def test_plain_names_are_accepted(name: str) -> None:
    assert check_sweep_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../../escaped", "/tmp/victim", "a b/c",
                                  "a\\b", "é", "x" * (MAX_SWEEP_NAME + 1)])
def test_names_that_are_not_plain_are_refused_before_anything_is_written(
        tmp_path: Path, name: str) -> None:
    store = RunStore(tmp_path / "store")
    for attempt in (lambda: create_sweep(store, name, "toy", {}),
                    lambda: find_sweep(store, study="toy", spec={}, name=name),
                    lambda: sweep_folder(store, name)):
        with pytest.raises(WidenetError, match="bad sweep name"):
            attempt()
    assert not (tmp_path / "store").exists()


def test_an_empty_sweep_is_dropped_and_its_name_is_free_again(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    create_sweep(store, "s", "toy", {})
    assert drop_empty_sweep(store, "s")
    assert find_sweep(store, study="toy", spec={}, name="s") is None
    create_sweep(store, "s", "toy", {})
    store.create_run(study="toy", config={}, seed=0, device="cpu", versions={})
    with store._transaction() as con:
        con.execute("UPDATE runs SET sweep = 's'")
    assert not drop_empty_sweep(store, "s")
    assert find_sweep(store, study="toy", spec={}, name="s") == "s"
