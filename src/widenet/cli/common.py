"""What the commands of ``widenet`` share: the consoles, options, the progress bar, the resume
hint after Ctrl-C, the ``--strict`` exit status and the cells of run tables."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from widenet.errors import WidenetError
from widenet.store import DEFAULT_ROOT

if TYPE_CHECKING:
    import pandas as pd

    from widenet.store import RunStore

# Piped output is not cut to 80 columns: run ids and study names stay whole for grep and logs.
# Every string printed is plain text: labels, ids and paths are user text, never rich markup
# ("activations=[abs]") or emoji codes (":fire:").
out_console = Console(width=None if sys.stdout.isatty() else 200, markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


def path_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """``value`` as a Path; an empty one (``--out ""``, which Path would read as the current
    folder) is refused."""
    if value is None:
        return None
    if not value:
        raise click.BadParameter("is empty; give a path", ctx=ctx, param=param)
    return Path(value)


store_option = click.option(
    "--out", type=click.Path(), callback=path_option, default=str(DEFAULT_ROOT),
    envvar="WIDENET_RUNS", show_default=True,
    help="The run store's folder (runs.db and one folder per run).")
quick_option = click.option("--quick", is_flag=True, help="Use the study's quick preset.")
config_option = click.option("--config", "-c", type=click.Path(), callback=path_option,
                             help="A YAML file of config values (over the defaults).")
set_option = click.option("--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Set one config value (over the YAML file); repeatable. "
                               "Lists: widths=64,128.")
run_argument = click.argument("run", metavar="RUN")
claims_option = click.option("--claims", is_flag=True,
                             help="Print each check's claim and note under it.")
strict_option = click.option("--strict", is_flag=True,
                             help="Exit with status 1 if any check fails (documented findings "
                                  "included), for CI.")
workers_option_type = click.IntRange(min=1)


def progress_bar() -> Progress:
    """A progress bar with a count, the elapsed time and an ETA, on stderr, shown only on a
    terminal."""
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)




def resume_command(study: str | None = None) -> str:
    """The command line that continues this interrupted command: the arguments as given to
    :func:`main` (the context's ``obj``), with ``--resume`` added for ``run`` and ``sweep``
    (``study`` given) and as they were for ``kernel``, which resumes by itself."""
    given = click.get_current_context().obj or ["run", study]
    args = [arg for arg in given if arg != "--resume"]
    return " ".join(["widenet", *map(shlex.quote, args), *(["--resume"] if study else [])])


@contextmanager
def resume_hint(command: str) -> Iterator[None]:
    """On Ctrl-C inside the block, print how to continue: ``command`` (with ``--resume``)
    skips what was finished; then let the interruption go on."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print(f"interrupted; the finished work is stored. Continue with: {command}",
                          markup=False, highlight=False, soft_wrap=True)
        raise


def strict_status(checks: pd.DataFrame, strict: bool) -> int:
    """The exit status of ``run`` or ``show``: 1 under ``--strict`` if any check failed."""
    return 1 if strict and "verdict" in checks and (checks["verdict"] == "fail").any() else 0


def check_counts(store: RunStore, run_id: str) -> list[str]:
    """The pass / fail / inconclusive counts of a run's checks, as table cells; ``?`` for a
    run whose stored checks are damaged (``widenet show RUN`` says what is wrong), so that a
    listing still shows every other run."""
    from widenet.report import verdict_counts

    try:
        checks = store.checks(run_id)
    except WidenetError:
        return ["?"] * 3
    return [str(count) for count in verdict_counts(checks).values()]


def cell_text(value: object) -> str:
    """A cell of ``widenet runs``: missing values (None, NaN) as an empty string."""
    return "" if value is None or value != value else str(value)

