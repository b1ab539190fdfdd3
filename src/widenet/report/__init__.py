"""Reports of runs: the self-contained HTML report and the terminal summary."""

from widenet.report.html import (
    CHECK_HEADERS,
    FINDING_PREFIX,
    MAX_TABLE_ROWS,
    check_rows,
    format_value,
    is_finding,
    render_report,
    verdict_counts,
    write_report,
)
from widenet.report.terminal import checks_table, print_summary, shown_verdict, verdict_line

__all__ = [
    "CHECK_HEADERS",
    "FINDING_PREFIX",
    "MAX_TABLE_ROWS",
    "check_rows",
    "checks_table",
    "format_value",
    "is_finding",
    "print_summary",
    "render_report",
    "shown_verdict",
    "verdict_counts",
    "verdict_line",
    "write_report",
]
