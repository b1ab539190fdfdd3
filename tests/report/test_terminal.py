"""The terminal summary: run id, the checks with coloured verdicts, counts and the report path."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from rich.console import Console

from tests.report.helpers import RUN_ID, make_checks, make_record
from widenet.report.html import CHECK_HEADERS
from widenet.report.terminal import checks_table, print_summary, verdict_line
from widenet.store import RunRecord


def summary_text(record: RunRecord | None = None, checks: pd.DataFrame | None = None,
                 report_path: Path | None = None) -> tuple[str, Console]:
    """The summary printed on a recording console: its plain text and the console."""
    console = Console(record=True, width=120, color_system="standard", file=io.StringIO())
    print_summary(console, record or make_record(), make_checks() if checks is None else checks,
                  report_path)
    return console.export_text(clear=False), console


def test_summary_names_run_checks_counts_and_report() -> None:
    text, _ = summary_text(report_path=Path("runs") / RUN_ID / "report.html")
    lines = text.splitlines()
    assert "toy" in lines[0]
    assert RUN_ID in lines[0]
    assert "completed" in lines[0]
    for name in ("slope", "gap", "ratio", "far off", "[-0.6, -0.4]", "-0.48 ± 0.01"):
        assert name in text
    assert "1 pass · 1 fail · 1 inconclusive" in text
    assert f"report: {Path('runs') / RUN_ID / 'report.html'}" in text
    assert len(lines) <= 12


def test_summary_without_report_says_how_to_write_it() -> None:
    text, _ = summary_text()
    assert f"widenet report {RUN_ID}" in text


def test_verdicts_are_coloured() -> None:
    _, console = summary_text()
    styled = console.export_text(styles=True)
    for verdict, colour in (("pass", 32), ("fail", 31), ("inconclusive", 33)):
        assert f"\x1b[1;{colour}m{verdict}" in styled


def test_run_strings_are_not_read_as_markup() -> None:
    record = make_record(reason="[bold]boom[/bold]", status="failed")
    text, _ = summary_text(record=record, checks=pd.DataFrame())
    assert "[bold]boom[/bold]" in text
    assert "no checks" in text
    assert "0 pass · 0 fail · 0 inconclusive" in text


def test_checks_table_has_the_html_columns_and_one_row_per_check() -> None:
    table = checks_table(make_checks())
    assert [column.header for column in table.columns] == list(CHECK_HEADERS)
    assert table.row_count == 3


def test_verdict_line_dims_zero_counts() -> None:
    line = verdict_line(make_checks().iloc[:1])
    assert line.plain == "1 pass · 0 fail · 0 inconclusive"
    assert {span.style for span in line.spans} == {"bold green", "dim"}
