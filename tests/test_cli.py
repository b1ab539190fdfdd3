"""The widenet command: in-process with a toy study, and end to end in a subprocess."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import widenet.studies
from widenet.cli import main
from widenet.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the toy study of tests/studies under the name 'toy'."""
    monkeypatch.setenv("WIDENET_STUDIES", "toy=tests.studies.toy_study")


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("widenet: error:")
    assert "Traceback" not in err
    return err


def test_run_runs_show_and_report(toy: None, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "toy", "--quick", "--out", str(tmp_path), "--set", "seed=4"]) == 0
    out = capsys.readouterr().out
    (run_id,) = RunStore(tmp_path).runs()["id"]
    assert run_id in out
    assert "mean draw" in out
    assert RunStore(tmp_path).run(run_id).config["values"] == [1, 2]
    assert main(["runs", "--out", str(tmp_path)]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["show", run_id[:8], "--out", str(tmp_path)]) == 0
    assert "mean draw" in capsys.readouterr().out
    report = tmp_path / run_id / "report.html"
    report.unlink()
    assert main(["report", run_id, "--out", str(tmp_path)]) == 0
    assert report.exists()


def test_config_shows_the_resolved_values(toy: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "toy", "--quick", "--set", "fail_at=7"]) == 0
    out = capsys.readouterr().out
    assert "[1, 2]" in out
    assert "7" in out
    assert "one task per value" in out


def test_studies_lists_every_study(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["studies"]) == 0
    out = capsys.readouterr().out
    for name in widenet.studies.study_names():
        assert name in out
    assert "built-in" in out


def test_studies_says_where_a_study_of_widenet_studies_comes_from(toy: None, capsys) -> None:
    assert main(["studies"]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.strip().startswith("toy ")]
    assert "tests.studies.toy_study (" in line
    assert "toy_study.py)" in out  # the file it was loaded from (long paths may wrap)
    assert widenet.studies.study_source("ntk-spectrum") == "built-in"


@pytest.mark.parametrize(("variable", "message"), [
    ("ntk-spectrum=tests.studies.toy_study", "taken by a built-in study"),
    ("toy=tests.studies.toy_study,toy=a.b",
     "taken by module 'tests.studies.toy_study', named earlier in WIDENET_STUDIES"),
])
def test_a_study_name_that_is_taken_is_refused(variable: str, message: str, monkeypatch,
                                               capsys) -> None:
    monkeypatch.setenv("WIDENET_STUDIES", variable)
    assert main(["studies"]) == 2
    assert message in _error_line(capsys)


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "nope"], "unknown study 'nope'"),
    (["run", "toy", "--set", "valuez=1"], "unknown config key 'valuez' (from --set)"),
    (["run", "toy", "--set", "values=a,b"], "config key 'values' (from --set)"),
    (["run", "toy", "--set", "values"], "--set expects key=value"),
    (["run", "toy", "--config", "missing.yaml"], "config file missing.yaml does not exist"),
    (["run", "toy", "--device", "quantum"], "unknown device"),
    (["show", "nope"], "no run store"),
    (["run"], "Missing argument"),
    (["run", "toy", "--set", f"seed={2**64}"], "less than or equal to 9223372036854775807"),
    (["kernel", "k.npy", "--points", "3", "--seed", str(10**23)], "Invalid value for '--seed'"),
    (["kernel", "k.npy", "--points", "3", "--workers", "0"], "Invalid value for '--workers'"),
    (["kernel", "k.npy", "--points", "3", "--data", "x.csv"], "pass --label-column=<name"),
    (["kernel", "k.npy", "--points", "3", "--data", "digits", "--dim", "10"],
     "'digits' has 64 features, not --dim=10; leave out --dim for a fixed set"),
    (["kernel", "k.npy", "--points", "3", "--data", "teacher"],
     "--dim is required for the synthetic set 'teacher': pass the input dimension, e.g. --dim="),
    (["sweep", "toy", "--workers", "0"], "Invalid value for '--workers'"),
    (["sweep", "toy", "--workers", "-2"], "Invalid value for '--workers'"),
    (["sweep", "toy", "--engine", "ray", "--gpus-per-run", "-1"],
     "Invalid value for '--gpus-per-run'"),
    (["sweep", "toy", "--engine", "ray", "--address", "127.0.0.1:1"],
     "cannot reach a Ray cluster at 127.0.0.1:1"),
    (["sweep", "toy", "--device", "cuda:99"], "device 'cuda:99'"),
    (["sweep", "toy", "--resume", "--name", "typo"], "no sweep named 'typo' to resume"),
    (["show", ""], "the run id is empty"),
    (["show", "\udcff"], "the argument b'\\xff' is not valid UTF-8"),
    (["runs", "--study", "\udcff"], "is not valid UTF-8"),
    (["runs", "--study", "nosuch"], "unknown study 'nosuch'; the known studies: "),
])
def test_user_errors_print_one_line_and_exit_2(toy: None, argv: list[str], message: str,
                                               tmp_path: Path, capsys) -> None:
    os.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("a,y\n1,0\n2,1\n3,0\n")
    assert main(argv) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "widenet-runs").exists()


@pytest.mark.parametrize("name", ["VICTIM", "../../escaped", "a b/c", ".."])
def test_a_sweep_name_that_is_not_plain_writes_nothing(toy: None, tmp_path: Path, name: str,
                                                       capsys) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "results.csv").write_text("mine")
    store = tmp_path / "deep" / "store"
    assert main(["sweep", "toy", "--quick", "--out", str(store), "--name",
                 name.replace("VICTIM", str(victim))]) == 2
    assert "bad sweep name" in _error_line(capsys)
    assert (victim / "results.csv").read_text() == "mine"
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["results.csv", "victim"]


def test_a_study_module_with_a_relative_name_is_one_line(tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    monkeypatch.setenv("WIDENET_STUDIES", "x=.rel")
    assert main(["run", "x", "--out", str(tmp_path)]) == 2
    assert "cannot import its module '.rel'" in _error_line(capsys)


@pytest.mark.parametrize(("source", "message"), [
    ("def (", r"study 'x': cannot import its module 'broken_\w+' \(SyntaxError: invalid syntax"),
    ("raise RuntimeError('boom')", r"cannot import its module 'broken_\w+' \(RuntimeError: "
                                   r"boom\)"),
    ("STUDY = 3", r"module 'broken_\w+' defines STUDY = 3, not a widenet Study")])
def test_a_study_module_that_raises_or_is_no_study_is_one_line(
        source: str, message: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """A module that cannot be imported stops the command with one line (docs/studies.md):
    one that raised was a traceback, and a STUDY that is not a Study was said to be missing."""
    module = f"broken_{abs(hash(source))}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WIDENET_STUDIES", f"x={module}")
    assert main(["run", "x", "--out", str(tmp_path / "runs")]) == 2
    assert re.search(message, _error_line(capsys))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "sp ace"])
def test_a_study_name_that_could_leave_the_store_is_refused(name: str, tmp_path: Path,
                                                            monkeypatch, capsys) -> None:
    monkeypatch.setenv("WIDENET_STUDIES", f"{name}=tests.studies.toy_study")
    assert main(["run", name, "--out", str(tmp_path / "runs")]) == 2
    assert "a study name starts with a letter or digit" in _error_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_no_arguments_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    captured = capsys.readouterr()
    assert "Usage: widenet" in captured.out
    assert captured.err == ""


def test_bad_yaml_names_the_file(toy: None, tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.yaml").write_text("values: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert main(["run", "toy", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "is not valid YAML" in _error_line(capsys)
    assert main(["run", "toy", "--config", str(tmp_path / "list.yaml")]) == 2
    assert "must hold a mapping" in _error_line(capsys)


def test_a_failed_run_keeps_the_store(toy: None, tmp_path: Path, capsys) -> None:
    assert main(["run", "toy", "--out", str(tmp_path)]) == 0
    db = tmp_path / "runs.db"
    with pytest.raises(RuntimeError):
        main(["run", "toy", "--out", str(tmp_path), "--set", "fail_at=2"])
    assert RunStore(tmp_path).runs()["status"].tolist() == ["completed", "failed"]
    capsys.readouterr()
    db.write_bytes(b"garbage" * 1000)
    before = db.read_bytes()
    assert main(["runs", "--out", str(tmp_path)]) == 2
    assert "runs.db" in _error_line(capsys)
    assert main(["run", "toy", "--out", str(tmp_path)]) == 2
    assert "move it aside" in _error_line(capsys)
    assert db.read_bytes() == before


def test_an_unusable_output_folder_is_refused(toy: None, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", "toy", "--out", str(blocker / "runs")]) == 2
    assert "cannot create the folder" in _error_line(capsys)


def test_the_quick_kernel_study_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    widenet_command = shutil.which("widenet", path=str(Path(sys.executable).parent))
    assert widenet_command is not None
    run = subprocess.run([widenet_command, "run", "ntk-concentration", "--quick", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "fail" not in run.stdout.split("pass")[-1] or "0 fail" in run.stdout
    listing = subprocess.run([widenet_command, "runs", "--out", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert "ntk-concentration" in listing.stdout
    help_text = subprocess.run([widenet_command, "run", "--help"], capture_output=True,
                               text=True, timeout=60)
    assert help_text.returncode == 0
    assert "--resume" in help_text.stdout
    bad = subprocess.run([widenet_command, "run", "no-such-study"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("widenet: error: unknown study")
    assert "Traceback" not in bad.stderr


def test_sweep_and_kernel_commands(toy: None, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "toy", "--quick", "--grid", "fail_at=null,2", "--seeds", "2",
                 "--workers", "2", "--out", str(tmp_path), "--name", "s"]) == 0
    out = capsys.readouterr().out
    assert "sweep s: 2 completed, 2 failed (4 run now)" in out
    assert (tmp_path / "sweeps" / "s" / "report.html").exists()
    assert main(["sweep", "toy", "--quick", "--grid", "fail_at=null,2", "--seeds", "2",
                 "--out", str(tmp_path), "--name", "s", "--resume"]) == 0
    assert "(2 run now)" in capsys.readouterr().out
    assert main(["runs", "--out", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "sweep" in listing.splitlines()[0]
    assert "fail_at=None,seed=1" in listing
    assert main(["sweep", "toy", "--grid", "fail_at=1,2", "--seeds", "3", "--dry-run",
                 "--out", str(tmp_path / "dry")]) == 0
    assert "6 point(s) of toy, all valid; nothing was run" in capsys.readouterr().out
    assert not (tmp_path / "dry").exists()
    for options, message in [(["--address", "auto"], "need --engine ray"),
                             (["--device", "quantum"], "unknown device")]:
        assert main(["sweep", "toy", "--dry-run", *options, "--out", str(tmp_path)]) == 2
        assert message in _error_line(capsys)
    assert main(["sweep", "toy", "--grid", "values=x", "--out", str(tmp_path)]) == 2
    assert "sweep point values=x" in _error_line(capsys)
    assert main(["sweep", "toy", "--address", "auto", "--out", str(tmp_path)]) == 2
    assert "need --engine ray" in _error_line(capsys)
    path = tmp_path / "k.npy"
    assert main(["kernel", str(path), "--points", "9", "--dim", "4", "--depth", "2",
                 "--block", "5", "--dtype", "float32", "--workers", "2"]) == 0
    assert "shape (9, 9), float32" in capsys.readouterr().out
    data = tmp_path / "x.csv"
    data.write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n")
    assert main(["kernel", str(tmp_path / "c.npy"), "--points", "3", "--data", str(data),
                 "--label-column", "y", "--depth", "1", "--width", "8", "--workers", "1"]) == 0
    assert "shape (3, 3)" in capsys.readouterr().out


def test_the_cli_seed_limit_is_the_configs() -> None:
    from widenet.cli.kernel import kernel_command
    from widenet.studies.common.base import StudyConfig

    (seed,) = [option for option in kernel_command.params if option.name == "seed"]
    limit = [meta.le for meta in StudyConfig.model_fields["seed"].metadata if hasattr(meta, "le")]
    assert seed.type.max == limit[0] == 2**63 - 1


LABEL = "activations=[abs] [/oops] [bold]x :fire:"
"""A sweep point label with what rich would read as markup, a stray closing tag and an emoji."""


def test_runs_prints_sweep_point_labels_literally(toy: None, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "toy", "--quick", "--out", str(tmp_path)]) == 0
    with RunStore(tmp_path).database.transaction() as con:
        con.execute("UPDATE runs SET sweep = 'sweep-1', point = ?", (LABEL,))
    capsys.readouterr()
    assert main(["runs", "--out", str(tmp_path)]) == 0
    assert LABEL in capsys.readouterr().out


def test_the_progress_bar_prints_labels_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from widenet.cli import common as cli

    terminal = io.StringIO()
    monkeypatch.setattr(cli, "err_console", Console(file=terminal, force_terminal=True,
                                                    width=200, markup=False, emoji=False))
    with cli.progress_bar() as progress:
        progress.add_task(LABEL, total=2)
        progress.refresh()
    assert LABEL in terminal.getvalue()


def _store_run(root: Path, measured: float, note: str = "") -> str:
    """A completed run of 'toy' in the store at ``root`` with one check (passing if
    ``measured`` is in [-1, 1], else failing), as the runner would store it."""
    from widenet.checks import check_interval

    store = RunStore(root)
    run_id = store.create_run(study="toy", config={}, seed=0, device="cpu", versions={})
    check = check_interval("mean draw", "the mean is 0", measured=measured, low=-1.0, high=1.0,
                           note=note)
    store.finish_run(run_id, tables={}, checks=[check])
    return run_id


@pytest.mark.parametrize(("measured", "note", "shown", "strict_status"), [
    (0.5, "", "pass", 0), (3.0, "", "fail", 1), (3.0, "finding: documented", "finding", 1)])
def test_strict_exits_1_on_any_failing_check(toy: None, tmp_path: Path, measured: float,
                                             note: str, shown: str, strict_status: int,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run_id = _store_run(tmp_path, measured, note)
    assert main(["show", run_id, "--out", str(tmp_path)]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "mean draw" in line]
    assert line.split()[0] == shown
    assert main(["show", run_id, "--out", str(tmp_path), "--strict"]) == strict_status
    assert main(["show", run_id, "--out", str(tmp_path), "--claims"]) == 0
    assert "the mean is 0" in capsys.readouterr().out


def test_runs_count_the_verdicts(toy: None, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_id = _store_run(tmp_path, 3.0)
    assert main(["runs", "--out", str(tmp_path)]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:5] == ["id", "status", "pass", "fail", "inc."]
    assert row.split()[:5] == [run_id, "completed", "0", "1", "0"]


def test_a_random_dry_run_lists_the_drawn_values(toy: None, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from widenet.sweeps import SweepSpec, parse_random

    assert main(["sweep", "toy", "--random", "seed=0:1000", "--samples", "3", "--dry-run",
                 "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[:3]
    drawn = [overrides["seed"] for _, overrides in
             SweepSpec(random=parse_random(("seed=0:1000",)), samples=3).points()]
    assert lines == [f"sample={i}  seed={seed}" for i, seed in enumerate(drawn)]


def test_ctrl_c_says_how_to_resume_and_resume_of_a_finished_run_says_new(
        toy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import widenet.runner

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    argv = ["run", "toy", "--quick", "--out", str(tmp_path)]
    with monkeypatch.context() as patch:
        patch.setattr(widenet.runner, "run_study", interrupted)
        assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"Continue with: widenet {' '.join(argv)} --resume" in err
    assert main([*argv, "--resume"]) == 0
    assert "this is a new run" in capsys.readouterr().out


def test_ctrl_c_of_a_kernel_says_to_run_the_same_command_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import widenet.sweeps.kernel

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(widenet.sweeps.kernel, "kernel_to_disk", interrupted)
    argv = ["kernel", str(tmp_path / "k.npy"), "--points", "4", "--dim", "3"]
    assert main(argv) == 130
    assert f"Continue with: widenet {' '.join(argv)}\n" in capsys.readouterr().err


HEAVY = ("torch", "matplotlib", "pandas")
"""Modules that take most of a second or more to import."""


def test_the_cli_loads_without_torch() -> None:
    """`widenet --version`, `--help` and the store commands import torch only when a command
    needs it (it takes seconds to import)."""
    code = ("import sys, widenet.cli, widenet.studies.common.base\n"
            f"heavy = [name for name in {HEAVY} if name in sys.modules]\n"
            "assert not heavy, f'imported {heavy}'")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_commands_that_only_validate_import_no_torch(tmp_path: Path) -> None:
    """`widenet studies`, `config` and `sweep --dry-run` read configs only and import neither
    torch, matplotlib nor pandas, for every study but lazy-training, whose config computes the
    edge of chaos of its activations (run last: it shows that the check sees torch)."""
    studies = sorted(widenet.studies.study_names(), key=lambda name: name == "lazy-training")
    commands = [["studies"], ["config", "ntk-spectrum"],
                *(["sweep", name, "--grid", "seed=0,1", "--dry-run", "--out", str(tmp_path)]
                  for name in studies)]
    code = ("import contextlib, io, json, sys\n"
            "from widenet.cli import main\n"
            "for args in json.loads(sys.argv[1]):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        assert main(args) == 0, args\n"
            f"    heavy = [name for name in {HEAVY} if name in sys.modules]\n"
            "    print(' '.join(args[:2]) + ': ' + ' '.join(heavy))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(commands)], check=True,
                          env=env, timeout=300, capture_output=True, text=True)
    imported = dict(line.split(": ") for line in done.stdout.splitlines())
    assert "torch" in imported.pop("sweep lazy-training")
    assert imported == {" ".join(args[:2]): "" for args in commands[:-1]}


def test_the_kernel_command_builds_cnns_on_images(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`widenet kernel --architecture cnn-gap` on digits images is the limit of widenet.nn.cnn
    on the same images; an architecture that cannot take the data is refused in one line."""
    import numpy as np
    import torch

    from widenet.data import load_dataset
    from widenet.kernels.infinite import infinite_kernels
    from widenet.nn import cnn

    path = tmp_path / "cnn.npy"
    assert main(["kernel", str(path), "--architecture", "cnn-gap", "--data", "digits-images",
                 "--points", "12", "--depth", "2", "--width", "4", "--block", "5",
                 "--workers", "1"]) == 0
    assert "shape (12, 12), float64" in capsys.readouterr().out
    x = load_dataset("digits-images", n=12, seed=0).x.to(torch.float64)
    expected = infinite_kernels(cnn(1, (8, 8), 4, 2, readout="gap"), x).ntk
    np.testing.assert_allclose(np.load(path), expected.numpy(), rtol=1e-12, atol=0)
    for options, message in [(["--architecture", "cnn", "--dim", "4"], "takes images"),
                             (["--data", "digits-images"], "takes vectors"),
                             (["--architecture", "myrtle5", "--data", "digits-images"],
                              "32x32 images"),
                             (["--architecture", "cnn", "--data", "digits-images", "--depth",
                               "0"], "--depth of at least 1")]:
        assert main(["kernel", str(tmp_path / "bad.npy"), "--points", "4", *options]) == 2
        assert message in _error_line(capsys)
    assert not (tmp_path / "bad.npy").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """stdout on a full disk (or any read or write the system refuses) ends in one line
    saying so, not an OSError traceback."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "widenet.cli", "studies"], stdout=full,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "widenet: error: cannot read or write a file: No space left on device"]


def test_an_error_message_of_several_lines_is_printed_as_one(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Messages that quote another library's (pandas, torch: often several lines, or ending in
    a newline) still print as one line."""
    from widenet.errors import WidenetError

    def damaged(_name: str) -> None:
        raise WidenetError("cannot parse it (Error tokenizing data.\n  line 3\n)")

    monkeypatch.setattr(widenet.studies, "get_study", damaged)
    assert main(["config", "anything"]) == 2
    assert _error_line(capsys) == "widenet: error: cannot parse it (Error tokenizing data. line 3 )"
