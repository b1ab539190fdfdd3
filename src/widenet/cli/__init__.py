"""The ``widenet`` command: run studies into the run store and read their results.

User mistakes (an unknown study, a bad config key or value, a missing file, an unwritable or
corrupt store) and reads or writes the system refuses (a full disk) print one line,
``widenet: error: ...``, and exit with status 2. ``run`` and
``show`` with ``--strict`` exit with status 1 when a check fails; Ctrl-C exits with 130 after
saying how to continue (``--resume``). The package imports torch and the studies only inside the
commands that need them, so ``widenet --version`` and ``--help`` stay fast. One module per
family of commands: :mod:`~widenet.cli.study_runs`, :mod:`~widenet.cli.sweep`,
:mod:`~widenet.cli.kernel`, :mod:`~widenet.cli.fit`; what they share is in
:mod:`~widenet.cli.common`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from widenet.cli.common import err_console
from widenet.cli.fit import fit_command
from widenet.cli.kernel import kernel_command
from widenet.cli.study_runs import (
    config_command,
    report_command,
    run_command,
    runs_command,
    show_command,
    studies_command,
)
from widenet.cli.sweep import sweep_command
from widenet.errors import WidenetError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="widenet")
def app() -> None:
    """The theory of wide neural networks, measured: run a study and read theory and
    measurement side by side."""



for command in (studies_command, config_command, run_command, runs_command, show_command,
                report_command, sweep_command, kernel_command, fit_command):
    app.add_command(command)


def _check_arguments(args: list[str]) -> None:
    """Refuse an argument that is not valid UTF-8 text (names, ids and paths must be)."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise WidenetError(f"the argument {_raw(arg)} is not valid UTF-8; pass names, ids "
                               "and paths as UTF-8 text") from None


def _raw(arg: str) -> str:
    """``arg`` as the bytes it came from (``b'\\xff'``), or escaped if it came from no bytes."""
    try:
        return repr(arg.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return ascii(arg)


def _one_line(message: str) -> str:
    """``message`` on one line: its lines stripped and joined by spaces (a message may quote
    another library's, which can span lines)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``widenet`` console script; returns the exit status. Without
    arguments it prints the help."""
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    try:
        _check_arguments(args)
        status = app.main(args=args, prog_name="widenet", standalone_mode=False, obj=args)
    except WidenetError as error:
        err_console.print(f"widenet: error: {_one_line(str(error))}", markup=False,
                          highlight=False, soft_wrap=True)
        return 2
    except click.UsageError as error:
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        err_console.print(f"widenet: error: {_one_line(error.format_message())}{hint}",
                          markup=False, highlight=False, soft_wrap=True)
        return 2
    except click.Abort:
        err_console.print("widenet: stopped", markup=False)
        return 130
    except OSError as error:  # the system refused a read or write: a full disk, stdout closed
        where = f" ({error.filename})" if error.filename else ""
        err_console.print(f"widenet: error: cannot read or write a file: "
                          f"{error.strerror or error}{where}", markup=False, highlight=False,
                          soft_wrap=True)
        return 2
    return status if isinstance(status, int) else 0

