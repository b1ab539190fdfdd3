"""The terminal summary of a run, printed after every ``widenet run`` and by ``widenet show``.

It fits 80 columns, like a ``pytest`` summary: the study, run id and status, then one line per
check with the verdict and the numbers first (measured ± stderr, the accepted interval) and the
check's name last, wrapped at spaces in the width left over. The claim and the note of each check
follow on their own indented lines with ``claims=True`` (``widenet show --claims``). A failing
check that its study marks as a documented finding (:func:`widenet.report.html.is_finding`)
shows the verdict ``finding``. Then the verdict counts and where the report is. Every string
from the run is printed as plain text, never read as rich markup.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from widenet.report.html import check_rows, is_finding, verdict_counts
from widenet.store import RunRecord

VERDICT_STYLES = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow",
                  "finding": "bold magenta"}
"""The rich style of each verdict (amber is yellow on a terminal); ``finding`` is a failing
check that its study documents as a finding."""

STATUS_STYLES = {"completed": "green", "failed": "red", "interrupted": "yellow",
                 "running": "cyan"}
"""The rich style of each run status."""

SUMMARY_COLUMNS = ("verdict", "measured ± stderr", "accepted", "check")
"""The columns of the terminal's checks table, in order: the numbers first, the name last."""

_CLAIM_INDENT = 4


def shown_verdict(verdict: str, note: str) -> str:
    """The verdict as the terminal shows it: ``finding`` for a failing check whose note marks
    it as a documented finding, else the verdict itself."""
    return "finding" if verdict == "fail" and is_finding(note) else verdict


def checks_table(checks: pd.DataFrame, *, claims: bool = False) -> RenderableType:
    """The checks of a run (columns of :meth:`widenet.checks.Check.as_row`) as rows of
    :data:`SUMMARY_COLUMNS`, verdicts coloured; the number columns never wrap, the name wraps
    at spaces. With ``claims``, each check's claim and note follow on indented lines."""
    rows = check_rows(checks)
    verdicts = [shown_verdict(row["verdict"], row["note"]) for row in rows]
    cells = [(verdict, row["measured ± stderr"], row["tolerance"], row["check"])
             for verdict, row in zip(verdicts, rows, strict=True)]
    widths = [max(len(header), *(len(row[i]) for row in cells))
              for i, header in enumerate(SUMMARY_COLUMNS[:-1])]

    def line(values: tuple[str, ...], styles: tuple[str, ...]) -> Table:
        grid = Table.grid(padding=(0, 2))
        for i, width in enumerate(widths):
            grid.add_column(width=width, no_wrap=True, justify="left" if i == 0 else "right")
        grid.add_column(ratio=1, overflow="fold")
        grid.add_row(*(Text(value, style=style) for value, style in zip(values, styles,
                                                                          strict=True)))
        return grid

    parts: list[RenderableType] = [line(SUMMARY_COLUMNS, ("bold",) * 4)]
    for row, values in zip(rows, cells, strict=True):
        parts.append(line(values, (VERDICT_STYLES.get(values[0], ""), "", "", "")))
        if claims:
            detail = Text(row["claim"])
            if row["note"]:
                detail.append(f"\nnote: {row['note']}", style="dim")
            parts.append(Padding(detail, (0, 0, 0, _CLAIM_INDENT)))
    return Group(*parts)


def verdict_line(checks: pd.DataFrame) -> Text:
    """The coloured verdict counts of ``checks``: ``"7 pass · 1 fail · 0 inconclusive"``, and
    how many of the failures are documented findings: ``"1 fail (1 a finding)"``."""
    counts = verdict_counts(checks)
    findings = sum(shown_verdict(v, n) == "finding"
                   for v, n in zip(checks.get("verdict", []), checks.get("note", []),
                                   strict=True))
    parts = []
    for verdict, count in counts.items():
        text = f"{count} {verdict}"
        if verdict == "fail" and findings:
            text += f" ({findings} a documented finding)" if findings == 1 else \
                f" ({findings} documented findings)"
        parts.append(Text(text, style=VERDICT_STYLES[verdict] if count else "dim"))
    return Text(" · ").join(parts)


def print_summary(console: Console, record: RunRecord, checks: pd.DataFrame,
                  report_path: Path | None, *, claims: bool = False) -> None:
    """Print the run's summary on ``console``: study, run id and status (with the reason of a
    run that did not complete), the checks (with their claims if ``claims``), the verdict
    counts and the report's path (or how to write it when ``report_path`` is None)."""
    console.print(Text.assemble((record.study, "bold"), "  ", record.id, "  ",
                                (record.status, STATUS_STYLES.get(record.status, ""))))
    if record.reason:
        console.print(Text(record.reason, style="red"))
    if checks.empty:
        console.print(Text("no checks", style="dim"))
    else:
        console.print(checks_table(checks, claims=claims))
    console.print(verdict_line(checks))
    if not claims and not checks.empty:
        console.print(Text(f"claims and notes: `widenet show {record.id} --claims`",
                           style="dim"))
    if report_path is None:
        console.print(Text(f"no report yet: `widenet report {record.id}` writes it"))
    else:
        console.print(Text(f"report: {report_path}"))
