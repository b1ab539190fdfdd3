"""The terminal summary of a run, printed after every ``widenet run`` and by ``widenet show``.

It is compact: the study, run id and status, the checks table (the columns of the HTML report,
verdicts coloured), the verdict counts and where the report is. Every string from the run is
printed as plain text, never read as rich markup.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from widenet.report.html import CHECK_HEADERS, check_rows, verdict_counts
from widenet.store import RunRecord

VERDICT_STYLES = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow"}
"""The rich style of each verdict (amber is yellow on a terminal)."""

STATUS_STYLES = {"completed": "green", "failed": "red", "interrupted": "yellow",
                 "running": "cyan"}
"""The rich style of each run status."""

_NUMBER_COLUMNS = ("predicted", "measured ± stderr", "tolerance")


def checks_table(checks: pd.DataFrame) -> Table:
    """A rich table of ``checks`` (columns of :meth:`widenet.checks.Check.as_row`): one row per
    check under the columns of :data:`widenet.report.html.CHECK_HEADERS`, verdicts coloured."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False,
                  pad_edge=False)
    for header in CHECK_HEADERS:
        table.add_column(header, justify="right" if header in _NUMBER_COLUMNS else "left",
                         overflow="fold")
    for cells in check_rows(checks):
        table.add_row(*[Text(cells[header], style=VERDICT_STYLES.get(cells[header], "")
                             if header == "verdict" else "") for header in CHECK_HEADERS])
    return table


def verdict_line(checks: pd.DataFrame) -> Text:
    """The coloured verdict counts of ``checks``: ``"7 pass · 1 fail · 0 inconclusive"``."""
    parts = [Text(f"{count} {verdict}", style=VERDICT_STYLES[verdict] if count else "dim")
             for verdict, count in verdict_counts(checks).items()]
    return Text(" · ").join(parts)


def print_summary(console: Console, record: RunRecord, checks: pd.DataFrame,
                  report_path: Path | None) -> None:
    """Print the run's summary on ``console``: study, run id and status (with the reason of a
    run that did not complete), the checks table, the verdict counts and the report's path
    (or how to write it when ``report_path`` is None)."""
    console.print(Text.assemble((record.study, "bold"), "  ", record.id, "  ",
                                (record.status, STATUS_STYLES.get(record.status, ""))))
    if record.reason:
        console.print(Text(record.reason, style="red"))
    if checks.empty:
        console.print(Text("no checks", style="dim"))
    else:
        console.print(checks_table(checks))
    console.print(verdict_line(checks))
    if report_path is None:
        console.print(Text(f"no report yet: `widenet report {record.id}` writes it"))
    else:
        console.print(Text(f"report: {report_path}"))
