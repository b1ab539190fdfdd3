"""The widenet command."""

import re

import pytest

from widenet.cli import main


def test_demo_prints_the_limit_and_errors_by_width(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--widths", "16", "256", "--seeds", "2", "--points", "3"]) == 0
    out = capsys.readouterr().out
    assert "infinite-width NTK" in out
    errors = [float(line.split(":")[1]) for line in out.splitlines() if "m = " in line]
    assert len(errors) == 2
    assert errors[1] < errors[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["demo", "--activation", "swish"], "unknown activation"),
    (["demo", "--seeds", "0"], "--seeds must be a positive integer"),
    (["demo", "--points", "0"], "--points must be a positive integer"),
    (["demo", "--widths", "0"], r"hidden\[0\] must be a positive integer")])
def test_user_errors_print_one_line_and_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("widenet: error:")
    assert len(err.splitlines()) == 1
    assert re.search(message, err)


def test_negative_depth_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--depth", "-2"]) == 2
    assert "--depth must be a non-negative integer" in capsys.readouterr().err
