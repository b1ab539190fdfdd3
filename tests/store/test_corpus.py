"""A corpus of damaged run stores, read through the ``widenet`` command.

Every case damages one run of a store that holds two completed runs (A and B) and asserts, for
``widenet report A`` (and ``widenet show A`` where ``show`` reads the damaged value; it does not
read the tables): exit status 2, one line ``widenet: error: ...`` naming the run and what is
damaged, no traceback, and not one byte of the store changed; then that run B and
``widenet runs`` still read. Grow the corpus with every damage found.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from widenet.cli import main
from widenet.store import RunStore

Damage = Callable[[RunStore, str], None]


def _sql(statement: str) -> Damage:
    """A damage made by one SQL statement on run ``?`` (the run's id is its parameter)."""
    def damage(store: RunStore, run_id: str) -> None:
        with store.database.transaction() as con:
            con.execute(statement, (run_id,))
    return damage


def _table(data: object) -> Damage:
    """A damage that replaces the run's result table 'summary' by ``data`` (as JSON text)."""
    text = data if isinstance(data, str) else json.dumps(data)
    return _sql(f"UPDATE result_tables SET data = {_literal(text)} WHERE run_id = ?")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


GOOD_TABLE = {"columns": ["mean"], "data": [[0.5]], "dtypes": ["float64"]}

CASES: dict[str, tuple[Damage, str]] = {
    "config broken JSON": (_sql("UPDATE runs SET config = '{\"values\": [1,' WHERE id = ?"),
                           "its config is not a JSON object"),
    "config a list": (_sql("UPDATE runs SET config = '[1, 2]' WHERE id = ?"),
                      "its config is not a JSON object"),
    "config nested too deep": (_sql("UPDATE runs SET config = '" + "[" * 100000 + "' "
                                    "WHERE id = ?"), "its config is not a JSON object"),
    "versions broken JSON": (_sql("UPDATE runs SET versions = 'nope' WHERE id = ?"),
                             "its versions is not a JSON object"),
    "seed not a number": (_sql("UPDATE runs SET seed = 'four' WHERE id = ?"),
                          "its seed is 'four', not a whole number"),
    "unknown status": (_sql("UPDATE runs SET status = 'exploded' WHERE id = ?"),
                       "its status is 'exploded'"),
    "created a blob": (_sql("UPDATE runs SET created = x'00' WHERE id = ?"),
                       "its created is b'\\x00', not a text"),
    "table broken JSON": (_table('{"columns": ["mean"], "data": [[0.5'),
                          "its table 'summary' does not decode (JSONDecodeError"),
    "table bad dtype": (_table({**GOOD_TABLE, "dtypes": ["no-such-dtype"]}),
                        "its table 'summary' does not decode (TypeError"),
    "table dtype of a text column": (_table({"columns": ["mean"], "data": [["x"]],
                                             "dtypes": ["float64"]}),
                                     "its table 'summary' does not decode (ValueError"),
    "table missing dtypes": (_table({"columns": ["mean"], "data": [[0.5]]}),
                             "its table 'summary' does not decode (KeyError"),
    "table dtypes too short": (_table({**GOOD_TABLE, "columns": ["a", "b"],
                                       "data": [[1, 2]]}),
                               "its table 'summary' does not decode (ValueError"),
    "table a number": (_table(5), "its table 'summary' does not decode (TypeError"),
    "task table cut": (_sql("UPDATE task_tables SET data = substr(data, 1, 10) "
                            "WHERE run_id = ?"),
                       "its table 'draws' of task 'v=1' does not decode"),
    "check measured text": (_sql("UPDATE checks SET measured = 'abc' WHERE run_id = ?"),
                            "its check 0 ('mean draw') has measured = 'abc', not a number"),
    "check low blob": (_sql("UPDATE checks SET low = x'00ff' WHERE run_id = ?"),
                       "has low = b'\\x00\\xff', not a number"),
    "check name a blob": (_sql("UPDATE checks SET name = x'01' WHERE run_id = ?"),
                          "its check 0 (b'\\x01') has name = b'\\x01', not a text"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A store with two completed runs of the toy study: (folder, id of A, id of B)."""
    from tests.studies.toy_study import STUDY, ToyConfig
    from widenet.runner import run_study

    folder = tmp_path_factory.mktemp("pristine")
    store = RunStore(folder)
    a, b = (run_study(STUDY, ToyConfig(values=[1, 2], seed=seed), store=store).record.id
            for seed in (1, 2))
    return folder, a, b


def _copy(pristine: tuple[Path, str, str], tmp_path: Path) -> tuple[Path, str, str]:
    folder, a, b = pristine
    shutil.copytree(folder, tmp_path / "store")
    return tmp_path / "store", a, b


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of the store and its bytes (SQLite's transient -wal/-shm files aside)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.name.endswith(("-wal", "-shm"))}


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``widenet argv``; assert exit 2 and one error line without a traceback."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("widenet: error: ")
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_run_is_one_clear_error_and_the_others_stay_readable(
        case: str, pristine: tuple[Path, str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder, a, b = _copy(pristine, tmp_path)
    damage, message = CASES[case]
    damage(RunStore(folder), a)
    before = _snapshot(folder)
    in_tables = "table" in case
    for command in ("report",) if in_tables else ("show", "report"):
        line = _refused([command, a, "--out", str(folder)], capsys)
        assert f"run {a} in " in line
        assert "is damaged" in line
        assert message in line
        assert _snapshot(folder) == before
    if in_tables:
        assert main(["show", a, "--out", str(folder)]) == 0
    assert main(["show", b, "--out", str(folder)]) == 0
    assert main(["runs", "--out", str(folder)]) == 0
    assert b in capsys.readouterr().out


@pytest.mark.parametrize("bad_id", ["../../elsewhere/x", "/tmp/widenet-escape", "..",
                                    "evil\\..\\x", "evil\0x", ".hidden"])
def test_a_run_id_that_is_not_a_plain_name_is_never_used_as_a_path(
        bad_id: str, pristine: tuple[Path, str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder, a, _ = _copy(pristine, tmp_path)
    store = RunStore(folder)
    with store.database.transaction() as con:
        for table in ("task_tables", "tasks", "result_tables", "checks"):
            con.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", (bad_id, a))
        con.execute("UPDATE runs SET id = ? WHERE id = ?", (bad_id, a))
    before = _snapshot(folder)
    outside = sorted(tmp_path.parent.iterdir())
    prefix = bad_id.split("\0")[0]
    for command in ("show", "report"):
        line = _refused([command, prefix, "--out", str(folder)], capsys)
        assert "is not a plain name" in line
        assert _snapshot(folder) == before
    assert sorted(tmp_path.parent.iterdir()) == outside
    assert not Path("/tmp/widenet-escape").exists()


def test_report_of_a_run_whose_folder_was_deleted_says_so(
        pristine: tuple[Path, str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder, a, b = _copy(pristine, tmp_path)
    shutil.rmtree(folder / a)
    before = _snapshot(folder)
    line = _refused(["report", a, "--out", str(folder)], capsys)
    assert f"the folder of run {a}" in line
    assert "is missing" in line
    assert _snapshot(folder) == before
    assert not (folder / a).exists()
    assert main(["report", b, "--out", str(folder)]) == 0


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_a_lost_database_beside_run_folders_is_not_reused(
        state: str, pristine: tuple[Path, str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIDENET_STUDIES", "toy=tests.studies.toy_study")
    folder, a, _ = _copy(pristine, tmp_path)
    if state == "empty":
        (folder / "runs.db").write_bytes(b"")
    else:
        (folder / "runs.db").unlink()
    before = _snapshot(folder)
    for argv in (["runs"], ["show", a], ["report", a], ["run", "toy", "--quick"]):
        line = _refused([*argv, "--out", str(folder)], capsys)
        assert f"runs.db is {state} but" in line
        assert "2 run folder(s)" in line
        assert _snapshot(folder) == before


def test_an_empty_database_in_a_folder_without_runs_is_a_new_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIDENET_STUDIES", "toy=tests.studies.toy_study")
    (tmp_path / "runs.db").write_bytes(b"")
    (tmp_path / "notes").mkdir()  # a folder that is no run's
    assert main(["run", "toy", "--quick", "--out", str(tmp_path)]) == 0
    assert len(RunStore(tmp_path).runs()) == 1


def test_runs_of_an_unknown_study_lists_the_known_ones(
        pristine: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _, _ = _copy(pristine, tmp_path)
    before = _snapshot(folder)
    line = _refused(["runs", "--study", "nosuch", "--out", str(folder)], capsys)
    assert "unknown study 'nosuch'; the known studies: " in line
    assert "toy" in line  # stored, though not registered here
    assert "ntk-concentration" in line  # registered, though not stored
    assert _snapshot(folder) == before
    assert main(["runs", "--study", "ntk-concentration", "--out", str(folder)]) == 0
    assert "no runs of ntk-concentration in" in capsys.readouterr().out
    monkeypatch.setenv("WIDENET_STUDIES", "toy=tests.studies.toy_study")
    assert main(["runs", "--study", "toy", "--out", str(folder)]) == 0
    assert capsys.readouterr().out.count("completed") == 2
