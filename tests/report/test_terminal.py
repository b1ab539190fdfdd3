"""The terminal summary: run id, the checks with coloured verdicts, counts and the report path."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from tests.report.helpers import RUN_ID, make_checks, make_record
from widenet.checks import check_interval
from widenet.report.terminal import SUMMARY_COLUMNS, print_summary, shown_verdict, verdict_line
from widenet.store import RunRecord


def summary_text(record: RunRecord | None = None, checks: pd.DataFrame | None = None,
                 report_path: Path | None = None, *, width: int = 120,
                 claims: bool = False) -> tuple[str, Console]:
    """The summary printed on a recording console: its plain text and the console."""
    console = Console(record=True, width=width, color_system="standard", file=io.StringIO())
    print_summary(console, record or make_record(), make_checks() if checks is None else checks,
                  report_path, claims=claims)
    return console.export_text(clear=False), console


def long_checks() -> pd.DataFrame:
    """Checks with long names, claims and notes, like those of the real studies."""
    checks = [
        check_interval(f"progressive sharpening (mse lr=0.9*2/S0) abs/constant/L={depth}",
                       "S rises from S_0 = 0.9 * 2/lr to the edge: the peak of S / (2/lr) "
                       "reaches 0.95 " * 2, measured=1.0551234, low=0.95, stderr=0.0036114,
                       note="S_0 = 0.1716, edge 2/lr = 0.1906; halfway (step 80) S/S_0 = 0.906")
        for depth in (2, 30)]
    checks.append(check_interval("no explosions with scaling", "never jumps", measured=3.0,
                                 low=0.0, high=0.0, note="finding: see the study's page"))
    return pd.DataFrame([check.as_row() for check in checks])


def test_summary_names_run_checks_counts_and_report() -> None:
    text, _ = summary_text(report_path=Path("runs") / RUN_ID / "report.html")
    lines = text.splitlines()
    assert "toy" in lines[0]
    assert RUN_ID in lines[0]
    assert "completed" in lines[0]
    for name in ("slope", "gap", "ratio", "[-0.6, -0.4]", "-0.48 ± 0.01"):
        assert name in text
    assert "far off" not in text  # notes and claims only with --claims
    assert f"widenet show {RUN_ID} --claims" in text
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


def test_checks_show_verdict_and_numbers_first_and_one_line_per_check() -> None:
    text, _ = summary_text()
    header = next(line for line in text.splitlines() if line.startswith("verdict"))
    assert [word.strip() for word in header.split("  ") if word] == list(SUMMARY_COLUMNS)
    (slope,) = [line for line in text.splitlines() if line.rstrip().endswith("slope")]
    assert slope.split()[0] == "pass"
    assert slope.index("-0.48 ± 0.01") < slope.index("[-0.6, -0.4]") < slope.index("slope")


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("claims", [False, True])
def test_the_summary_fits_the_width_and_splits_no_word(width: int, claims: bool) -> None:
    checks = long_checks()
    text, _ = summary_text(checks=checks, width=width, claims=claims)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width
    words = {word for row in checks.itertuples() for word in (
        row.name + (f" {row.claim} {row.note}" if claims else "")).split()}
    printed = set(text.split())
    assert words <= printed, words - printed  # every word whole, on one line
    assert ("S rises" in text) == claims
    # one line per check (and the header) without claims at 120 columns
    if width == 120 and not claims:
        assert sum(line.startswith(("pass", "fail", "finding")) for line in lines) == 3


def test_a_documented_finding_is_shown_as_such() -> None:
    text, _ = summary_text(checks=long_checks())
    (line,) = [line for line in text.splitlines() if "no explosions" in line]
    assert line.startswith("finding")
    assert "2 pass · 1 fail (1 a documented finding) · 0 inconclusive" in text
    assert shown_verdict("fail", "Finding: x") == "finding"
    assert shown_verdict("fail", "a finding") == "fail"
    assert shown_verdict("pass", "finding: x") == "pass"


def test_verdict_line_dims_zero_counts() -> None:
    line = verdict_line(make_checks().iloc[:1])
    assert line.plain == "1 pass · 0 fail · 0 inconclusive"
    assert {span.style for span in line.spans} == {"bold green", "dim"}
