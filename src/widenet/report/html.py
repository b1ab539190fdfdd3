"""The HTML report of a run: one self-contained page, checks first.

The page holds, in this order: a header (study, run id, status, times, verdict counts), the
checks table, the figures (embedded as PNG data URIs, each with its caption), the tables
(collapsed: each opens to its first :data:`MAX_TABLE_ROWS` rows, with the whole table as an
embedded CSV download), the config and the environment (device, seed, package
versions, sweep). It loads nothing from anywhere: the CSS is inline and every figure is embedded,
so the file can be mailed or archived on its own. Every string that comes from a run (names,
claims, notes, config values, table cells) is HTML-escaped.

:func:`check_rows`, :func:`verdict_counts` and :func:`format_value` are the text of the checks
shared with the terminal summary (:mod:`widenet.report.terminal`).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable, Mapping
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from widenet.checks import VERDICTS, interval_text
from widenet.errors import WidenetError
from widenet.files import atomic_write
from widenet.store import CHECK_COLUMNS, RunRecord, canonical_json

MAX_TABLE_ROWS = 200
"""Tables longer than this show their first rows only; the store keeps them whole."""

CHECK_HEADERS = ("check", "claim", "predicted", "measured ± stderr", "tolerance", "verdict",
                 "note")
"""The columns of a rendered checks table (HTML and terminal), in order."""

FINDING_PREFIX = "finding:"
"""A check's note that starts with this (any case) marks a failure the study expects and
documents on its docs page (a finding, not a bug): reports show its verdict as ``fail
(finding)``; ``widenet run --strict`` still counts it as a failure."""

_CHECK_NUMBERS = ("predicted", "measured", "stderr", "low", "high")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; margin-top: 2.2rem; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 0.92em; }
.meta { color: #57606a; margin: 0.2rem 0; }
.summary { font-size: 1.15rem; font-weight: 600; margin: 0.6rem 0; }
.reason { color: #cf222e; }
.empty, .omitted { color: #57606a; font-style: italic; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.55rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.verdict { font-weight: 700; }
.verdict-pass { color: #1a7f37; }
td.verdict-pass { background: #dafbe1; }
.verdict-fail { color: #cf222e; }
td.verdict-fail { background: #ffebe9; }
.verdict-inconclusive { color: #9a6700; }
td.verdict-inconclusive { background: #fff8c5; }
details { margin: 0.4rem 0; }
summary { cursor: pointer; }
figure { display: inline-block; margin: 0 1rem 1.2rem 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 0.9rem; max-width: 34rem; }
"""


def format_value(value: object) -> str:
    """A table cell as text: floats to 4 significant digits, missing values (None, NaN) as
    ``"—"``, anything else (ints, bools, strings) as ``str`` gives it."""
    if value is None or value is pd.NA:
        return "—"
    if isinstance(value, (float, np.floating)):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def check_rows(checks: pd.DataFrame) -> list[dict[str, str]]:
    """The display text of each check (a row of ``checks``, which has the columns of
    :meth:`widenet.checks.Check.as_row`), keyed by :data:`CHECK_HEADERS`, in order."""
    if checks.empty:
        return []
    missing = [column for column in CHECK_COLUMNS if column not in checks.columns]
    if missing:
        raise WidenetError(f"the checks table lacks the column(s) {', '.join(missing)}; it "
                           f"needs {', '.join(CHECK_COLUMNS)}")
    numbers = checks.astype({column: float for column in _CHECK_NUMBERS})
    rows = []
    for check in numbers.to_dict(orient="records"):
        measured = format_value(check["measured"])
        if check["stderr"] != 0.0:
            measured += f" ± {format_value(check['stderr'])}"
        cells = (check["name"], check["claim"], format_value(check["predicted"]), measured,
                 interval_text(check["low"], check["high"]), check["verdict"], check["note"])
        rows.append({header: str(cell) for header, cell in zip(CHECK_HEADERS, cells,
                                                               strict=True)})
    return rows


def is_finding(note: object) -> bool:
    """Whether a check's ``note`` marks it as a documented finding (:data:`FINDING_PREFIX`)."""
    return str(note).strip().lower().startswith(FINDING_PREFIX)


def verdict_counts(checks: pd.DataFrame) -> dict[str, int]:
    """How many checks have each verdict: ``{"pass": n, "fail": n, "inconclusive": n}``."""
    verdicts = list(checks["verdict"]) if not checks.empty else []
    return {verdict: verdicts.count(verdict) for verdict in VERDICTS}


def render_report(record: RunRecord, checks: pd.DataFrame, tables: dict[str, pd.DataFrame],
                  figures: dict[str, bytes], *, doc_path: str | None = None) -> str:
    """The run's report as one self-contained HTML page (the order is in the module doc).

    ``checks`` has the columns of :meth:`widenet.checks.Check.as_row`; ``figures`` maps file
    stems to PNG bytes; ``doc_path``, when given, is named in the header as the page that
    explains the study.
    """
    sections = [
        _header(record, checks, doc_path),
        _section("checks", "Checks", _checks_table(checks), "This run made no checks."),
        _section("figures", "Figures", _figures(figures), "This run made no figures."),
        _section("tables", "Tables", _tables(
            tables, lambda name: f"widenet.load_table({record.id!r}, {name!r})"),
            "This run stored no tables."),
        _section("config", "Config", _key_value_table(
            ("key", "value"), ((key, canonical_json(value)) for key, value in
                               record.config.items())), "The config is empty."),
        _section("environment", "Environment", _environment(record), ""),
    ]
    return _page(f"{record.study} · {record.id} · widenet report", sections)


def render_sweep_report(sweep: Mapping[str, object], points: pd.DataFrame,
                        results: pd.DataFrame, figures: dict[str, bytes]) -> str:
    """A sweep's aggregate report: header with status counts, the points (status, reason, run
    id), figures of each check across the points, then the results table and the spec.

    ``sweep`` has the keys name, study, spec and created (see ``store.sweeps.sweep_record``).
    """
    counts = " · ".join(f"{count} {status}" for status, count in
                        points["status"].value_counts().items()) if not points.empty else ""
    header = (f"<header>\n<h1>{escape(str(sweep['study']))} sweep</h1>\n"
              f'<p class="meta">sweep <code>{escape(str(sweep["name"]))}</code> · created '
              f"{escape(str(sweep['created']))} · {len(points)} points</p>\n"
              f'<p class="summary">{escape(counts)}</p>\n</header>')
    point_rows = [[_cell(str(row.point)), _cell(str(row.status), f"status-{row.status}"),
                   _cell(str(row.reason)), _cell(str(row.run_id))]
                  for row in points.itertuples()]
    sections = [
        header,
        _section("points", "Points", _table(("point", "status", "reason", "run id"),
                                            point_rows) if point_rows else "",
                 "This sweep has no points yet."),
        _section("figures", "Checks across the points", _figures(figures),
                 "No numeric swept key with two or more values, or no checks: nothing to plot."),
        _section("tables", "Results", _tables(
            {"results": results}, lambda name: "results.csv beside this page"),
                 ""),
        _section("spec", "Spec", _key_value_table(
            ("key", "value"), ((str(k), canonical_json(v)) for k, v in
                               dict(sweep["spec"]).items())), ""),
    ]
    return _page(f"{sweep['study']} · sweep {sweep['name']} · widenet report", sections)


def _page(title: str, sections: list[str]) -> str:
    """A complete, self-contained HTML page of ``sections`` with the inline stylesheet."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")


def write_report(path: Path, html_text: str) -> Path:
    """Write the page ``html_text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`);
    returns ``path``."""
    return atomic_write(Path(path), html_text.encode("utf-8"))


# -- sections ------------------------------------------------------------------------------


def _header(record: RunRecord, checks: pd.DataFrame, doc_path: str | None) -> str:
    counts = " · ".join(f'<span class="verdict-{verdict}">{count} {verdict}</span>'
                        for verdict, count in verdict_counts(checks).items())
    lines = [
        f"<h1>{escape(record.study)}</h1>",
        f'<p class="meta">run <code>{escape(record.id)}</code> · status '
        f"<strong>{escape(record.status)}</strong> · {record.tasks_done} task(s) done</p>",
        f'<p class="meta">created {escape(record.created)} · finished '
        f"{escape(record.finished or '—')}</p>",
        f'<p class="summary">{counts}</p>',
    ]
    if record.reason:
        lines.append(f'<p class="reason">{escape(record.reason)}</p>')
    if doc_path:
        lines.append(f'<p class="meta">What the study tests, and why its tolerances: '
                     f"{_doc_link(doc_path)}</p>")
    return "<header>\n" + "\n".join(lines) + "\n</header>"


def _doc_link(doc_path: str) -> str:
    """``doc_path`` (relative to the repository root) as a link to the page in this checkout
    when it is there (an editable install), else as the path in the repository."""
    page = Path(__file__).resolve().parents[3] / doc_path
    text = f"<code>{escape(doc_path)}</code>"
    return f'<a href="{escape(page.as_uri())}">{text}</a>' if page.is_file() else text


def _section(anchor: str, title: str, body: str, empty_text: str) -> str:
    """A titled section; ``empty_text`` stands in for an empty ``body``."""
    content = body or f'<p class="empty">{escape(empty_text)}</p>'
    return f'<section id="{anchor}">\n<h2>{escape(title)}</h2>\n{content}\n</section>'


def _checks_table(checks: pd.DataFrame) -> str:
    rows = []
    for cells in check_rows(checks):
        verdict = cells["verdict"]
        classes = {"predicted": "num", "measured ± stderr": "num", "tolerance": "num",
                   "verdict": f"verdict verdict-{verdict}" if verdict in VERDICTS else "verdict"}
        if verdict == "fail" and is_finding(cells["note"]):
            cells = {**cells, "verdict": "fail (finding)"}
        rows.append([_cell(cells[header], classes.get(header, "")) for header in CHECK_HEADERS])
    return _table(CHECK_HEADERS, rows) if rows else ""


def _figures(figures: Mapping[str, bytes]) -> str:
    """Each figure with its caption (:func:`widenet.figures.png_caption`; the file's
    stem when it has none)."""
    from widenet.figures import png_caption  # matplotlib: only when there are figures

    items = []
    for stem, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        text = png_caption(png)
        items.append(f'<figure><img src="data:image/png;base64,{data}" alt="{escape(stem)}">'
                     f"<figcaption>{escape(text or stem)}</figcaption></figure>")
    return "\n".join(items)


def _tables(tables: Mapping[str, pd.DataFrame], whole: Callable[[str], str]) -> str:
    """Each table collapsed (``<details>``): its size, a link that downloads the whole table as
    CSV (embedded, like the figures), then its first rows; ``whole(name)`` also says where the
    full table is kept."""
    parts = []
    for name, frame in tables.items():
        csv = base64.b64encode(frame.to_csv(index=False).encode("utf-8")).decode("ascii")
        parts.append(f"<details><summary><strong>{escape(name)}</strong> · {len(frame)} rows "
                     f"· {len(frame.columns)} columns</summary>\n"
                     f'<p><a download="{escape(name)}.csv" href="data:text/csv;base64,{csv}">'
                     f"the whole table as CSV</a></p>")
        numeric = [pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
                   for dtype in frame.dtypes]
        rows = [[_cell(format_value(value), "num" if is_number else "")
                 for value, is_number in zip(row, numeric, strict=True)]
                for row in frame.head(MAX_TABLE_ROWS).itertuples(index=False, name=None)]
        parts.append(_table([str(column) for column in frame.columns], rows))
        omitted = len(frame) - MAX_TABLE_ROWS
        if omitted > 0:
            parts.append(f'<p class="omitted">Showing the first {MAX_TABLE_ROWS} of '
                         f"{len(frame)} rows; {omitted} rows omitted. The full table: "
                         f"<code>{escape(whole(name))}</code></p>")
        parts.append("</details>")
    return "\n".join(parts)


def _environment(record: RunRecord) -> str:
    facts = [("device", record.device), ("seed", str(record.seed))]
    if record.sweep:
        facts.append(("sweep", record.sweep))
    versions = _key_value_table(("package", "version"), record.versions.items())
    return (_key_value_table(("setting", "value"), facts)
            + ("\n<h3>Versions</h3>\n" + versions if versions else ""))


# -- HTML building blocks ------------------------------------------------------------------


def _key_value_table(headers: tuple[str, str], items: Iterable[tuple[str, str]]) -> str:
    """A two-column table of ``items``; empty text when there are none."""
    rows = [[_cell(key), _cell(value)] for key, value in items]
    return _table(headers, rows) if rows else ""


def _cell(text: str, css_class: str = "") -> str:
    attribute = f' class="{escape(css_class.strip())}"' if css_class.strip() else ""
    return f"<td{attribute}>{escape(text)}</td>"


def _table(headers: Iterable[str], rows: list[list[str]]) -> str:
    """A table of ``headers`` (escaped here) over rows of ready ``<td>`` cells."""
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n'
            "</tbody>\n</table></div>")
