"""Every `widenet run` and `widenet sweep` command shown in the README and docs is valid."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from widenet.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_ONLY_OPTIONS = {"--device": 1, "--out": 1, "--resume": 0, "--threads": 1}


def _commands(page: Path) -> list[list[str]]:
    """The `widenet ...` lines of the page's code blocks, continuations joined, comments cut."""
    commands, inside, pending = [], False, ""
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside or not (pending or line.startswith("widenet ")):
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        words = shlex.split(pending, comments=True)
        pending = ""
        if len(words) > 2 and words[0] == "widenet" and words[1] in ("run", "sweep"):
            commands.append(words[1:])
    return commands


def _as_check(command: list[str]) -> list[str] | None:
    """`run` becomes `config` (validates the same values), `sweep` gets --dry-run; None for a
    command that needs a file of the reader's own."""
    if "--config" in command or "-c" in command:
        return None
    if command[0] == "sweep":
        return [*command, "--dry-run"]
    check, words = ["config"], iter(command[1:])
    for word in words:
        if word in RUN_ONLY_OPTIONS:
            for _ in range(RUN_ONLY_OPTIONS[word]):
                next(words)
        else:
            check.append(word)
    return check


COMMANDS = [(f"{page.relative_to(ROOT)}: {shlex.join(command)}", command)
            for page in PAGES for command in _commands(page)]


def test_the_docs_show_commands() -> None:
    assert sum(command[0] == "sweep" for _, command in COMMANDS) >= 4
    assert sum(command[0] == "run" for _, command in COMMANDS) >= 10


@pytest.mark.parametrize("command", [c for _, c in COMMANDS], ids=[i for i, _ in COMMANDS])
def test_a_documented_command_is_valid(command: list[str], capsys) -> None:
    check = _as_check(command)
    if check is None:
        pytest.skip("needs a config file of the reader's own")
    assert main(check) == 0, capsys.readouterr().err


def test_the_readme_tour_runs(capsys) -> None:
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A 10-line tour", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert len(tour.strip().splitlines()) <= 12
    exec(compile(tour, "README.md (tour)", "exec"), {})
    error, condition, header = capsys.readouterr().out.splitlines()[:3]
    assert error.startswith("tensor(")
    assert "nan" not in error
    assert 1.0 < float(condition) < float("inf")
    assert header.split() == ["step", "loss", "weight_movement", "ntk_movement"]
