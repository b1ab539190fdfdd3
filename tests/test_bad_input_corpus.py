"""A corpus of bad input: command lines, config files and API calls a hostile or careless user
might give (issue 12).

Every command line runs in a folder that holds a run store with one completed run and the
config files below, and asserts: exit status 2, exactly one line ``widenet: error: ...``
without a traceback, the expected words in it, no user value quoted whole (the line stays
short), and not one byte of that folder changed (no store, run, kernel file or folder was made
or touched). Every API call raises a WidenetError and changes nothing either. Grow the corpus
with every bad input found; the count is recorded in docs/reliability.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from widenet.cli import main
from widenet.errors import WidenetError

HUGE = "1000000000000"  # 10^12: any memory estimate of it is beyond every machine
DEEP = "[" * 5000 + "]" * 5000
FLOW_BOMB = ("[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
             "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
             "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]]")

FILES = {
    # 9 levels of ten aliases: 330 bytes that expand to 10^9 widths
    "bomb.yaml": "widths:\n" + "".join(
        f"  - &{chr(97 + i)} [{','.join([f'*{chr(96 + i)}' if i else '1'] * 10)}]\n"
        for i in range(9)),
    "cycle.yaml": "widths: &a [1, *a]\n",
    "deep.yaml": f"widths: {DEEP}\n",
    "big.yaml": "# " + "x" * 1_100_000 + "\nseed: 1\n",
    "list.yaml": "- 1\n- 2\n",
    "twice.yaml": "seed: 1\nseed: 2\n",
    "code.yaml": "seed: !!python/object/apply:os.system ['echo pwned']\n",
    "broken.yaml": "widths: [1,\n",
    "a_file": "not a folder\n",
    "bad.npz": "PK not a zip\n",
}

ARRAYS = {"kernel.npy": np.eye(2), "labels.npy": np.array([0, 1]), "empty.npy": np.zeros((2, 0)),
          "unfinished.npy": np.eye(2), "unfinished.npy.blocks.npy": np.zeros((1, 1), dtype=bool)}
"""Small .npy inputs of ``widenet fit`` (and an interrupted ``widenet kernel``'s file)."""

FIT = ["fit", "kernel.npy", "--labels", "labels.npy"]

CLI_CASES: dict[str, tuple[list[str], str]] = {
    # item 7: oversized requests, refused before anything is made
    "run with 10^12 points": (["run", "gd-convergence", "--set", f"points={HUGE}", "--out",
                               "store"], "needs"),
    "run with 10^12 points into a new store": (
        ["run", "gd-convergence", "--set", f"points={HUGE}", "--out", "fresh"], "needs"),
    "run whose n x n kernel is too large": (["run", "gd-convergence", "--set",
                                             "points=100000000", "--out", "store"], "needs"),
    "run with 10^12 widths": (["run", "gd-convergence", "--set",
                               f"widths={HUGE},2{HUGE}", "--out", "store"], "needs"),
    "kernel of 200000 x 200000 inputs": (["kernel", "k.npy", "--points", "200000", "--dim",
                                          "200000"], "needs"),
    "empirical kernel of width 10^11": (["kernel", "k.npy", "--kind", "empirical", "--width",
                                         "100000000000", "--points", "10", "--dim", "3"],
                                        "needs"),
    # item 13: small ones
    "kernel depth -1": (["kernel", "k.npy", "--depth", "-1", "--points", "4", "--dim", "3"],
                        "'--depth'"),
    "kernel points 0": (["kernel", "k.npy", "--points", "0", "--dim", "3"], "'--points'"),
    "kernel points -5": (["kernel", "k.npy", "--points", "-5", "--dim", "3"], "'--points'"),
    "kernel dim 0": (["kernel", "k.npy", "--points", "3", "--dim", "0"], "'--dim'"),
    "kernel width 0": (["kernel", "k.npy", "--points", "3", "--dim", "2", "--width", "0"],
                       "'--width'"),
    "kernel block 0": (["kernel", "k.npy", "--points", "3", "--dim", "2", "--block", "0"],
                       "'--block'"),
    "kernel empty path": (["kernel", "", "--points", "3", "--dim", "2"], "'PATH': is empty"),
    "kernel path not .npy": (["kernel", "k.txt", "--points", "3", "--dim", "2"], ".npy"),
    "kernel path under a file": (["kernel", "a_file/k.npy", "--points", "3", "--dim", "2"],
                                 "is a file"),
    "kernel bias-std nan": (["kernel", "k.npy", "--points", "3", "--dim", "2", "--bias-std",
                             "nan"], "finite"),
    "kernel unknown activation": (["kernel", "k.npy", "--points", "3", "--dim", "2",
                                   "--activation", "nosuch"], "unknown activation"),
    "kernel unknown data": (["kernel", "k.npy", "--points", "3", "--data", "nosuch"],
                            "unknown dataset"),
    "run out empty": (["run", "gd-convergence", "--quick", "--out", ""], "'--out': is empty"),
    "runs out empty": (["runs", "--out", ""], "'--out': is empty"),
    "show out empty": (["show", "x", "--out", ""], "'--out': is empty"),
    "config file empty path": (["config", "gd-convergence", "-c", ""], "is empty"),
    "set lr_factor nan": (["config", "gd-convergence", "--set", "lr_factor=nan"],
                          "not a number"),
    "set points nan": (["config", "gd-convergence", "--set", "points=nan"], "not a number"),
    "set dataset nan": (["config", "gd-convergence", "--set", "dataset=nan"],
                        "should be 'sphere' or 'teacher', got 'nan'"),
    "run with lr_factor NaN": (["run", "gd-convergence", "--set", "lr_factor=NaN", "--out",
                                "store"], "not a number"),
    # item 10: configs too large, deep or self-referring
    "alias bomb file": (["config", "gd-convergence", "-c", "bomb.yaml"],
                        "more than 100,000 values"),
    "alias bomb run": (["run", "gd-convergence", "-c", "bomb.yaml", "--out", "store"],
                       "more than 100,000 values"),
    "alias bomb --set": (["config", "gd-convergence", "--set", f"widths={FLOW_BOMB}"],
                         "more than 100,000 values"),
    "self-referring alias": (["config", "gd-convergence", "-c", "cycle.yaml"],
                             "nested deeper"),
    "nested 5000 deep file": (["config", "gd-convergence", "-c", "deep.yaml"],
                              "nested deeper"),
    "nested 5000 deep --set": (["config", "gd-convergence", "--set", f"widths={DEEP}"],
                               "nested deeper"),
    "nested 5000 deep --grid": (["sweep", "gd-convergence", "--grid", f"widths={DEEP}",
                                 "--dry-run"], "nested deeper"),
    "config file over 1 MB": (["config", "gd-convergence", "-c", "big.yaml"], "larger than"),
    "long value": (["config", "gd-convergence", "--set", "activation=" + "x" * 500],
                   "unknown activation"),
    "long key": (["config", "gd-convergence", "--set", "k" * 500 + "=1"],
                 "unknown config key"),
    "long sweep key": (["sweep", "gd-convergence", "--grid", "k" * 500 + "=1,2",
                        "--dry-run"], "unknown config key"),
    "long repeated list": (["config", "gd-convergence", "--set",
                            "widths=" + ",".join(["7"] * 500)], "repeated widths"),
    # malformed --set values and config files
    "set without key": (["config", "gd-convergence", "--set", "=3"], "key=value"),
    "set without =": (["config", "gd-convergence", "--set", "points"], "key=value"),
    "set unknown key": (["config", "gd-convergence", "--set", "nosuch=1"],
                        "unknown config key 'nosuch'"),
    "set negative seed": (["config", "gd-convergence", "--set", "seed=-1"], "'seed'"),
    "set seed beyond the limit": (["config", "gd-convergence", "--set",
                                   "seed=99999999999999999999999"], "'seed'"),
    "set points inf": (["config", "gd-convergence", "--set", "points=1e400"], "finite"),
    "set points a fraction": (["config", "gd-convergence", "--set", "points=2.5"],
                              "fractional"),
    "set repeated widths": (["config", "gd-convergence", "--set", "widths=1,1"], "repeated"),
    "set width 0": (["config", "gd-convergence", "--set", "widths=0,1"], "'widths'"),
    "set empty dataset": (["config", "gd-convergence", "--set", "dataset="], "'dataset'"),
    "set unicode activation": (["config", "gd-convergence", "--set", "activation=rélu"],
                               "unknown activation 'rélu'"),
    "set a list as activation": (["config", "gd-convergence", "--set", "activation=[abs]"],
                                 "valid string"),
    "set an unclosed list": (["config", "gd-convergence", "--set", "widths=[1,2"], "'widths'"),
    "config file missing": (["config", "gd-convergence", "-c", "missing.yaml"],
                            "does not exist"),
    "config file a folder": (["config", "gd-convergence", "-c", "store"], "cannot read"),
    "config file under a file": (["config", "gd-convergence", "-c", "a_file/c.yaml"],
                                 "cannot read"),
    "config file a list": (["config", "gd-convergence", "-c", "list.yaml"], "a mapping"),
    "config file key twice": (["config", "gd-convergence", "-c", "twice.yaml"],
                              "is given on line 1 and again on line 2"),
    "config file python tag": (["config", "gd-convergence", "-c", "code.yaml"],
                               "not valid YAML"),
    "config file broken": (["config", "gd-convergence", "-c", "broken.yaml"],
                           "not valid YAML"),
    "kernel data not an npz": (["kernel", "k.npy", "--points", "2", "--data", "bad.npz"],
                               "not an .npz archive"),
    "kernel data a system file": (["kernel", "k.npy", "--points", "2", "--data",
                                   "/etc/passwd"], "unknown dataset"),
    "run on an empty device": (["run", "gd-convergence", "--device", "", "--out", "store"],
                               "unknown device"),
    "run on device cuda:10^19": (["run", "gd-convergence", "--device",
                                  "cuda:9999999999999999999", "--out", "store"],
                                 "unknown device"),
    "run unknown study": (["run", "nosuch", "--out", "store"], "unknown study"),
    "sweep nan in grid": (["sweep", "gd-convergence", "--grid", "lr_factor=nan,1",
                           "--dry-run"], "not a number"),
    "sweep name with ..": (["sweep", "gd-convergence", "--name", "../x", "--dry-run"],
                           "bad sweep name"),
    "sweep of 10^12 seeds": (["sweep", "gd-convergence", "--seeds", HUGE, "--dry-run"],
                             "more than 100,000"),
    "sweep of 10^12 samples": (["sweep", "gd-convergence", "--random", "lr_factor=0.1:1",
                               "--samples", HUGE, "--dry-run"], "more than 100,000"),
    "sweep grid of 10^6 points": (["sweep", "gd-convergence", "--grid",
                                   "seed=" + ",".join(map(str, range(1000))), "--grid",
                                   "depth=" + ",".join(map(str, range(1, 1001))),
                                   "--dry-run"], "1,000,000 points"),
    "run with 10^11 threads": (["run", "gd-convergence", "--threads", "100000000000",
                                "--out", "store"], "'--threads'"),
    "sweep negative seeds": (["sweep", "gd-convergence", "--seeds", "-1", "--dry-run"],
                             "--seeds"),
    # widenet fit: the predictions never replace an input, nor are computed for nowhere
    "fit out onto its kernel": ([*FIT, "--out", "kernel.npy"], "one of the input files"),
    "fit out onto its labels": ([*FIT, "--out", "./labels.npy"], "one of the input files"),
    "fit out under a file": ([*FIT, "--out", "a_file/p.npy"], "a_file is a file"),
    "fit out a folder": ([*FIT, "--out", "folder.npy"], "is a folder"),
    "fit test labels without test points": ([*FIT, "--test-labels", "labels.npy", "--out",
                                             "p.npy"], "test labels without test points"),
    "fit of an unfinished kernel file": (["fit", "unfinished.npy", "--labels", "labels.npy",
                                          "--out", "p.npy"], "is an unfinished kernel"),
    "fit of an empty kernel file": (["fit", "empty.npy", "--labels", "labels.npy", "--out",
                                     "p.npy"], "non-empty 2-D"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a run store (one completed run of the toy study) and :data:`FILES`."""
    from tests.studies.toy_study import STUDY, ToyConfig
    from widenet.runner import run_study
    from widenet.store import RunStore

    folder = tmp_path_factory.mktemp("corpus")
    run_study(STUDY, ToyConfig(values=[1]), store=RunStore(folder / "store"))
    for name, text in FILES.items():
        (folder / name).write_text(text)
    for name, array in ARRAYS.items():
        np.save(folder / name, array)
    (folder / "folder.npy").mkdir()
    return folder


@pytest.fixture
def workdir(pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the pristine folder, made the current folder."""
    folder = tmp_path / "work"
    shutil.copytree(pristine, folder)
    monkeypatch.chdir(folder)
    return folder


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` with its bytes (None for a folder); SQLite's
    transient -wal/-shm files aside."""
    return {str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
            for path in sorted(folder.rglob("*")) if not path.name.endswith(("-wal", "-shm"))}


@pytest.mark.parametrize(("argv", "expected"), CLI_CASES.values(), ids=CLI_CASES.keys())
def test_a_bad_command_line_is_refused_with_one_line_and_changes_nothing(
        argv: list[str], expected: str, workdir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(workdir)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err[:2000]
    assert lines[0].startswith("widenet: error: ")
    assert "Traceback" not in captured.err + captured.out
    assert expected in lines[0]
    assert len(lines[0]) < 600, lines[0][:2000]  # a user value is quoted cut, never whole
    assert snapshot(workdir) == before


def _huge_mlp() -> None:
    from widenet.models import MLP

    MLP(64, [10 ** 6] * 3, 10)


def _huge_run() -> None:
    from widenet.runner import run_study
    from widenet.store import RunStore
    from widenet.studies.gd_convergence.config import GDConfig

    run_study("gd-convergence", GDConfig(points=int(HUGE)), store=RunStore("store"))


def _config(*overrides: str, file: str | None = None) -> None:
    from widenet.studies import build_config
    from widenet.studies.gd_convergence.config import GDConfig

    build_config(GDConfig, overrides=overrides, file=file)


def _parse(text: str) -> None:
    from widenet.studies.common.config import parse_value

    parse_value(text)


def _train_classifier(labels: object, loss: object = "cross_entropy", outputs: int = 3) -> None:
    import torch

    from widenet.dynamics.train import train
    from widenet.models import MLP

    train(MLP(2, [4], outputs, seed=0), torch.ones(4, 2), torch.as_tensor(labels), lr=0.1,
          steps=1, loss=loss)


API_CASES = {
    "MLP with widths 10^6": (_huge_mlp, "an MLP with 2,000,074,000,000 parameters needs"),
    "run_study with 10^12 points": (_huge_run, "needs"),
    "build_config lr_factor nan": (lambda: _config("lr_factor=nan"), "not a number"),
    "build_config alias bomb file": (lambda: _config(file="bomb.yaml"), "more than"),
    "build_config alias bomb --set": (lambda: _config(f"widths={FLOW_BOMB}"), "more than"),
    "parse_value nested 5000 deep": (lambda: _parse(DEEP), "nested deeper"),
    "parse_value of 2 MB": (lambda: _parse("1" * 2_000_000), "longer than"),
    "cross_entropy on one-hot targets": (
        lambda: _train_classifier([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]]),
        r"argmax\(1\)"),
    "cross_entropy label 3 of 3 classes": (lambda: _train_classifier([0, 1, 2, 3]),
                                           r"class indices 0\.\.2"),
    "cross_entropy on real targets": (lambda: _train_classifier([0.2, 1.7, 0.0, 1.0]),
                                      r"class indices 0\.\.2"),
    "logistic on 0/1 labels": (lambda: _train_classifier([0.0, 1.0, 1.0, 0.0], "logistic", 1),
                               r"labels -1 and \+1"),
    "a loss that is not a scalar": (
        lambda: _train_classifier([0.0, 1.0, 1.0, 0.0], lambda f, y: (f[:, 0] - y) ** 2, 1),
        "must return a scalar tensor"),
}


@pytest.mark.parametrize(("call", "expected"), API_CASES.values(), ids=API_CASES.keys())
def test_a_bad_api_call_raises_a_widenet_error_and_changes_nothing(
        call: object, expected: str, workdir: Path) -> None:
    before = snapshot(workdir)
    with pytest.raises(WidenetError, match=expected) as raised:
        call()  # type: ignore[operator]
    assert "\n" not in str(raised.value)
    assert len(str(raised.value)) < 600
    assert snapshot(workdir) == before
