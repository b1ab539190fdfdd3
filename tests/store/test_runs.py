"""The run store: round trips, transactions, resumable runs and bad stores."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from widenet.checks import check_close, check_interval
from widenet.errors import WidenetError
from widenet.store import RunStore, load_checks, load_runs, load_table


def _new_run(store: RunStore, study: str = "toy", config: dict | None = None) -> str:
    return store.create_run(study=study, config=config or {"widths": [1, 2], "lr": 0.1}, seed=3,
                            device="cpu", versions={"torch": "x"})


def test_nothing_is_created_before_the_first_write(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    assert store.runs().empty
    assert not (tmp_path / "runs").exists()
    with pytest.raises(WidenetError, match="no run store"):
        store.run("anything")


def test_tables_round_trip_exactly(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = _new_run(store)
    values = np.random.default_rng(0).standard_normal(5)
    first = pd.DataFrame({"m": [1, 2, 3, 4, 5], "error": values, "act": list("abcde"),
                          "ok": [True, False, True, True, False]})
    first.loc[2, "error"] = np.nan
    second = pd.DataFrame({"m": [6], "error": [np.inf], "act": ["f"], "ok": [True]})
    store.save_task(run_id, "a", {"errors": first}, 0.1)
    store.save_task(run_id, "b", {"errors": second}, 0.1)
    back = store.task_tables(run_id)["errors"]
    expected = pd.concat([first, second], ignore_index=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["m"].dtype.kind == "i"
    assert back["ok"].dtype == bool
    assert np.array_equal(back["error"].to_numpy(), expected["error"].to_numpy(), equal_nan=True)


def test_finish_stores_tables_checks_and_status(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = _new_run(store)
    store.save_task(run_id, "a", {"raw": pd.DataFrame({"x": [1.0]})}, 0.2)
    checks = [check_close("slope", "slope = -1/2", predicted=-0.5, measured=-0.48,
                          tolerance=0.1, stderr=0.01),
              check_interval("order", "abs below relu", measured=0.3, high=0.0, stderr=0.01)]
    store.finish_run(run_id, tables={"fit": pd.DataFrame({"slope": [-0.48]})}, checks=checks)
    record = store.run(run_id)
    assert (record.status, record.tasks_done, record.seed) == ("completed", 1, 3)
    assert record.config == {"widths": [1, 2], "lr": 0.1}
    assert record.finished is not None
    frame = store.checks(run_id)
    assert list(frame["verdict"]) == ["pass", "fail"]
    assert frame["low"].iloc[1] == -np.inf
    assert set(store.tables(run_id)) == {"fit", "raw"}
    assert load_table(run_id, "fit", root=tmp_path)["slope"].iloc[0] == -0.48
    assert list(load_runs(tmp_path)["id"]) == [run_id]
    assert len(load_checks(run_id, root=tmp_path)) == 2
    with pytest.raises(WidenetError, match="no table 'nope'; its tables: fit, raw"):
        store.table(run_id, "nope")


def test_a_failing_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = _new_run(store)
    good = pd.DataFrame({"x": [1.0]})
    bad = pd.DataFrame({"x": [object()]})
    with pytest.raises(WidenetError, match="table 'bad'"):
        store.save_task(run_id, "a", {"good": good, "bad": bad}, 0.1)
    assert store.finished_tasks(run_id) == set()
    assert "good" not in store.task_tables(run_id)
    store.save_task(run_id, "a", {"good": good}, 0.1)
    assert store.finished_tasks(run_id) == {"a"}


def test_ids_resolve_by_unique_prefix(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    one = _new_run(store, study="alpha")
    _new_run(store, study="beta")
    assert store.run("alp").id == one
    with pytest.raises(WidenetError, match="no run 'gamma'"):
        store.run("gamma")
    _new_run(store, study="alpha")
    with pytest.raises(WidenetError, match=r"matches 2 runs \(alpha-[^,]+, alpha-[^,.]+\);"):
        store.run("alpha")


def test_an_empty_id_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _new_run(store)
    with pytest.raises(WidenetError, match="the run id is empty"):
        store.run("")


def test_id_prefixes_match_case_and_characters_exactly(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    one = _new_run(store, study="a_b.c")  # '_' would be a wildcard of SQL's LIKE
    _new_run(store, study="aXb")
    assert store.run("a_b.").id == one
    for other in ("A_B.", "a%", "a?", "ax"):
        with pytest.raises(WidenetError, match=f"no run {re.escape(repr(other))}"):
            store.run(other)


def test_an_ambiguous_id_names_three_matches_and_then_dots(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for _ in range(4):
        _new_run(store)
    with pytest.raises(WidenetError, match=r"matches 4 runs \((toy-[^,]+, ){3}\.\.\.\);"):
        store.run("toy")


def test_claim_run_takes_the_newest_dead_unfinished_run_with_that_config(tmp_path: Path
                                                                          ) -> None:
    store = RunStore(tmp_path)
    assert store.claim_run("toy", {"lr": 0.1}, device="cpu") is None  # no store yet
    run_id = _new_run(store)
    with pytest.raises(WidenetError, match=f"run {run_id} is being resumed by another process"):
        store.claim_run("toy", {"lr": 0.1, "widths": [1, 2]}, device="cpu")  # still alive
    assert store.end_run(run_id, "interrupted", "stopped")
    assert store.claim_run("toy", {"lr": 0.2, "widths": [1, 2]}, device="cpu") is None
    assert store.claim_run("other", {"lr": 0.1, "widths": [1, 2]}, device="cpu") is None
    assert store.claim_run("toy", {"lr": 0.1, "widths": [1, 2]}, device="cuda:0") == run_id
    record = store.run(run_id)
    assert (record.status, record.device, record.reason) == ("running", "cuda:0", "")


def test_runs_created_in_the_same_second_list_in_the_order_written(tmp_path: Path,
                                                                    monkeypatch) -> None:
    monkeypatch.setattr("widenet.store.runs.now", lambda: "2026-01-01T00:00:00+00:00")
    store = RunStore(tmp_path)
    ids = [_new_run(store) for _ in range(8)]
    assert store.runs()["id"].tolist() == ids
    for run_id in ids:
        store.end_run(run_id, "interrupted", "stopped")
    assert store.claim_run("toy", {"lr": 0.1, "widths": [1, 2]}, device="cpu") == ids[-1]


def test_a_run_whose_process_died_reads_as_interrupted(tmp_path: Path) -> None:
    code = ("import sys; from widenet.store import RunStore; "
            "print(RunStore(sys.argv[1]).create_run(study='toy', config={}, seed=0, "
            "device='cpu', versions={}))")
    run_id = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True,
                            capture_output=True, text=True).stdout.strip()
    store = RunStore(tmp_path)
    assert store.run(run_id).status == "interrupted"
    assert store.runs()["status"].tolist() == ["interrupted"]
    assert store.claim_run("toy", {}, device="cpu") == run_id


def test_a_corrupt_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    db.write_bytes(b"this is not sqlite" * 100)
    before = db.read_bytes()
    with pytest.raises(WidenetError, match=r"not a database|corrupt"):
        RunStore(tmp_path)
    assert db.read_bytes() == before


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "runs.db")
    con.execute("CREATE TABLE mine (x)")
    con.commit()
    con.close()
    with pytest.raises(WidenetError, match="is not a widenet run store"):
        RunStore(tmp_path)


def test_a_foreign_file_with_a_runs_table_is_refused_and_left_untouched(tmp_path: Path
                                                                         ) -> None:
    con = sqlite3.connect(tmp_path / "runs.db")
    con.execute("CREATE TABLE runs (a)")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    before = (tmp_path / "runs.db").read_bytes()
    with pytest.raises(WidenetError, match="is not a widenet run store"):
        RunStore(tmp_path)
    (tmp_path / "runs.db").rename(tmp_path / "aside.db")
    store = RunStore(tmp_path)  # as if the file appeared after the store was opened
    (tmp_path / "aside.db").rename(tmp_path / "runs.db")
    with pytest.raises(WidenetError, match="is not a widenet run store"):
        _new_run(store)
    assert (tmp_path / "runs.db").read_bytes() == before
    con = sqlite3.connect(tmp_path / "runs.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_an_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the store's folder should go")
    with pytest.raises(WidenetError, match=r"cannot create the folder .* --out"):
        _new_run(RunStore(blocker / "store"))
    assert blocker.read_text().startswith("a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(WidenetError, match=r"cannot create the folder .* --out"):
            _new_run(RunStore(tmp_path / "store"))
    finally:
        tmp_path.chmod(0o700)


def test_a_store_in_a_read_only_folder_is_named_read_only_not_corrupt(tmp_path: Path,
                                                                       monkeypatch) -> None:
    store = RunStore(tmp_path)
    _new_run(store)
    monkeypatch.setattr("widenet.store.database.os.access", lambda path, mode: False)
    error = store.database._store_error(sqlite3.OperationalError("unable to open database file"))
    assert "is read-only" in str(error)
    assert "corrupt" not in str(error)


def test_concurrent_claims_of_one_run_have_exactly_one_winner(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = _new_run(store)
    store.end_run(run_id, "interrupted", "stopped")
    claimants = 8
    barrier = threading.Barrier(claimants)
    outcomes: list[str] = []

    def claim() -> None:
        mine = RunStore(tmp_path)  # one store object (and connection) per claimant
        barrier.wait()
        try:
            outcomes.append(str(mine.claim_run("toy", {"lr": 0.1, "widths": [1, 2]},
                                               device="cpu")))
        except WidenetError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=claim) for _ in range(claimants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(run_id) == 1
    losers = [outcome for outcome in outcomes if outcome != run_id]
    assert len(losers) == claimants - 1
    assert all(f"run {run_id} is being resumed by another process" in text for text in losers)
    assert store.run(run_id).status == "running"


def _hand_to_another_process(store: RunStore, run_id: str) -> None:
    """Make ``run_id`` running and owned by another live process (this one's parent)."""
    with store.database.transaction() as con:
        con.execute("UPDATE runs SET status = 'running', pid = ? WHERE id = ?",
                    (os.getppid(), run_id))


def test_a_process_never_writes_or_ends_a_run_it_does_not_own(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = _new_run(store)
    store.save_task(run_id, "a", {"raw": pd.DataFrame({"x": [1.0]})}, 0.1)
    _hand_to_another_process(store, run_id)
    assert not store.end_run(run_id, "failed", "I lost the race")
    assert (store.run(run_id).status, store.run(run_id).reason) == ("running", "")
    for write in (lambda: store.save_task(run_id, "b", {}, 0.1),
                  lambda: store.finish_run(run_id, tables={}, checks=[])):
        with pytest.raises(WidenetError, match=f"run {run_id} is no longer this process's"):
            write()
    assert store.finished_tasks(run_id) == {"a"}
    with store.database.transaction() as con:  # the other process completes it
        con.execute("UPDATE runs SET status = 'completed' WHERE id = ?", (run_id,))
    assert not store.end_run(run_id, "failed", "late")
    assert store.run(run_id).status == "completed"


def test_a_task_stored_twice_is_a_clear_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = _new_run(store)
    store.save_task(run_id, "a", {}, 0.1)
    with pytest.raises(WidenetError, match="holds task 'a' already"):
        store.save_task(run_id, "a", {}, 0.1)
