"""Reports of runs: figure helpers, the self-contained HTML report and the terminal summary."""

from widenet.report.figures import (
    THEORY_STYLE,
    horizontal_reference,
    label,
    new_figure,
    png_bytes,
    power_law_reference,
)
from widenet.report.html import (
    CHECK_HEADERS,
    FINDING_PREFIX,
    MAX_TABLE_ROWS,
    atomic_write,
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
    "THEORY_STYLE",
    "atomic_write",
    "check_rows",
    "checks_table",
    "format_value",
    "horizontal_reference",
    "is_finding",
    "label",
    "new_figure",
    "png_bytes",
    "power_law_reference",
    "print_summary",
    "render_report",
    "shown_verdict",
    "verdict_counts",
    "verdict_line",
    "write_report",
]
