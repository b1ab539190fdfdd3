"""The sweep store: sweeps are written through the run store's database, names stay inside
the store, an empty sweep can be dropped, and points come back as runs of the sweep."""

from __future__ import annotations

from pathlib import Path

import pytest

from widenet.errors import WidenetError
from widenet.store import RunStore, SweepStore
from widenet.store.names import MAX_SWEEP_NAME


@pytest.mark.parametrize("name", ["", ".", "..", "../../escaped", "/tmp/victim", "a b/c",
                                  "a\\b", "é", "x" * (MAX_SWEEP_NAME + 1)])
def test_names_that_are_not_plain_are_refused_before_anything_is_written(
        tmp_path: Path, name: str) -> None:
    sweeps = SweepStore(RunStore(tmp_path / "store"))
    for attempt in (lambda: sweeps.create(name, "toy", {}),
                    lambda: sweeps.find(study="toy", spec={}, name=name),
                    lambda: sweeps.folder(name)):
        with pytest.raises(WidenetError, match="bad sweep name"):
            attempt()
    assert not (tmp_path / "store").exists()


def test_an_empty_sweep_is_dropped_and_its_name_is_free_again(tmp_path: Path) -> None:
    sweeps = SweepStore(RunStore(tmp_path))
    sweeps.create("s", "toy", {})
    assert sweeps.drop_if_empty("s")
    assert sweeps.find(study="toy", spec={}, name="s") is None
    sweeps.create("s", "toy", {})
    sweeps.add_lost_point("s", "p", study="toy", config={}, seed=0, status="lost",
                          reason="worker died")
    assert not sweeps.drop_if_empty("s")
    assert sweeps.find(study="toy", spec={}, name="s") == "s"


def test_a_name_in_use_is_refused(tmp_path: Path) -> None:
    sweeps = SweepStore(RunStore(tmp_path))
    sweeps.create("s", "toy", {"grid": {}})
    with pytest.raises(WidenetError, match="exists already"):
        sweeps.create("s", "toy", {"grid": {}})


def test_points_are_runs_of_the_sweep_and_the_newest_run_of_a_point_counts(tmp_path: Path
                                                                           ) -> None:
    runs = RunStore(tmp_path)
    sweeps = SweepStore(runs)
    sweeps.create("s", "toy", {})
    first = sweeps.add_lost_point("s", "a=1", study="toy", config={"a": 1}, seed=0,
                                  status="lost", reason="worker died")
    sweeps.add_lost_point("s", "a=2", study="toy", config={"a": 2}, seed=0, status="failed",
                          reason="raised")
    assert runs.run(first).sweep == "s"
    assert runs.run_folder(first).is_dir()  # every stored run has its folder
    points = sweeps.points("s")
    assert points.set_index("point")["status"].to_dict() == {"a=1": "lost", "a=2": "failed"}
    assert sweeps.finished_points("s") == set()
    assert sweeps.record("s")["spec"] == {}


def test_a_damaged_sweep_spec_is_one_clear_error(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    sweeps = SweepStore(runs)
    sweeps.create("s", "toy", {})
    with runs.database.transaction() as con:
        con.execute("UPDATE sweeps SET spec = '{broken'")
    with pytest.raises(WidenetError, match=r"sweep 's' .* is damaged: its spec is not a JSON"):
        sweeps.record("s")


def test_the_sweep_module_reaches_no_private_part_of_the_run_store() -> None:
    source = (Path(__file__).resolve().parents[2] / "src/widenet/store/sweeps.py").read_text()
    assert "._" not in source.replace("._frames", "")
