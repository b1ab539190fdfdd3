"""The HTML report: order, embedding, escaping, truncation, self-containment, atomic writes."""

from __future__ import annotations

import base64
import io
import math
import re
from html import escape
from pathlib import Path

import pandas as pd
import pytest

from tests.report.helpers import (
    RUN_ID,
    make_checks,
    make_figure_png,
    make_record,
    make_tables,
)
from widenet import files
from widenet.checks import check_interval
from widenet.errors import WidenetError
from widenet.report.html import (
    MAX_TABLE_ROWS,
    check_rows,
    format_value,
    render_report,
    verdict_counts,
    write_report,
)


@pytest.fixture(scope="module")
def png() -> bytes:
    return make_figure_png()


@pytest.fixture(scope="module")
def page(png: bytes) -> str:
    return render_report(make_record(), make_checks(), make_tables(), {"error_vs_width": png},
                         doc_path="docs/studies/toy.md")


def test_figure_is_embedded_as_base64_png_with_its_stem(page: str, png: bytes) -> None:
    data = base64.b64encode(png).decode("ascii")
    assert f'<img src="data:image/png;base64,{data}" alt="error_vs_width">' in page
    assert "<figcaption>error_vs_width</figcaption>" in page


def test_header_then_checks_then_figures_tables_config_environment(page: str) -> None:
    positions = [page.index(marker) for marker in (
        "<h1>toy</h1>", '<section id="checks">', "<img", '<section id="tables">',
        '<section id="config">', '<section id="environment">')]
    assert positions == sorted(positions)
    assert page.index("<td>slope</td>") < page.index("<img")


def test_header_names_run_status_times_counts_and_doc(page: str) -> None:
    header = page[page.index("<header>"):page.index("</header>")]
    for text in (RUN_ID, "completed", "2024-01-01T00:00:00+00:00",
                 "2024-01-01T00:01:00+00:00", "docs/studies/toy.md"):
        assert text in header
    assert re.sub(r"<[^>]+>", "", header).count("1 pass · 1 fail · 1 inconclusive") == 1


def test_verdict_cells_carry_their_colour_class(page: str) -> None:
    for verdict in ("pass", "fail", "inconclusive"):
        assert f'<td class="verdict verdict-{verdict}">{verdict}</td>' in page
    assert re.search(r"\.verdict-pass \{ color: #[0-9a-f]{6}", page)


def test_check_cells_show_measurement_stderr_and_tolerance() -> None:
    rows = check_rows(make_checks())
    assert rows[0]["measured ± stderr"] == "-0.48 ± 0.01"
    assert [row["tolerance"] for row in rows] == ["[-0.6, -0.4]", "<= 0", ">= 1"]
    assert rows[1]["note"] == "far off"


def test_exact_measurement_has_no_stderr_and_nan_shows_as_dash() -> None:
    checks = pd.DataFrame([check_interval("exact", "c", measured=2.0, low=1.0, high=3.0).as_row(),
                           check_interval("nan", "c", measured=math.nan, low=0.0).as_row()])
    rows = check_rows(checks)
    assert rows[0]["measured ± stderr"] == "2"
    assert rows[1]["measured ± stderr"] == "—"
    assert rows[1]["verdict"] == "inconclusive"


def test_checks_frame_without_a_column_is_refused() -> None:
    with pytest.raises(WidenetError, match="stderr"):
        check_rows(make_checks().drop(columns=["stderr"]))


@pytest.mark.parametrize(("value", "text"), [
    (math.pi, "3.142"), (123456.0, "1.235e+05"), (math.nan, "—"), (None, "—"),
    (123456, "123456"), (True, "True"), ("a", "a")])
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_user_strings_are_escaped(page: str) -> None:
    assert "<script>" not in page
    assert "&quot;&lt;script&gt;&quot;" in page
    assert "<b>bold</b>" not in page
    assert "gap &lt;= 0 &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_malicious_names_cannot_break_out_of_attributes(png: bytes) -> None:
    record = make_record(study="<img src=x>", device='"><script>')
    page = render_report(record, make_checks(), {"<t>": pd.DataFrame({"<c>": ["<v>"]})},
                         {'" onerror="x': png})
    assert "<img src=x>" not in page
    assert '"><script>' not in page
    assert 'alt="&quot; onerror=&quot;x"' in page
    assert "<th>&lt;c&gt;</th>" in page
    assert "<td>&lt;v&gt;</td>" in page


def test_page_loads_no_external_resource(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "http://" not in page
    assert "https://" not in page
    assert "@import" not in page
    assert "<link" not in page
    assert "<script" not in page


def test_tables_render_their_values_with_nan_as_dash(page: str) -> None:
    assert "<details><summary><strong>errors</strong> · 3 rows · 2 columns</summary>" in page
    assert '<td class="num">0.3333</td>' in page
    assert '<td class="num">—</td>' in page


def test_long_table_is_truncated_with_a_message() -> None:
    page = render_report(make_record(), make_checks(), make_tables(500), {})
    body = page[page.index('<section id="tables">'):page.index('<section id="config">')]
    assert body.count("<tr>") == MAX_TABLE_ROWS + 1
    assert f"first {MAX_TABLE_ROWS} of 500 rows; 300 rows omitted" in body
    assert f"widenet.load_table(&#x27;{RUN_ID}&#x27;, &#x27;errors&#x27;)" in body


def test_short_table_has_no_truncation_message(page: str) -> None:
    assert "rows omitted" not in page


def test_config_values_are_json_and_environment_lists_versions_and_sweep() -> None:
    page = render_report(make_record(sweep="sweep-1"), make_checks(), {}, {})
    assert "<tr><td>widths</td><td>[8, 16]</td></tr>" in page
    environment = page[page.index('<section id="environment">'):]
    for row in ("<td>device</td><td>cpu</td>", "<td>seed</td><td>7</td>",
                "<td>sweep</td><td>sweep-1</td>", "<td>torch</td><td>2.3.0</td>"):
        assert row in environment


def test_run_without_checks_figures_or_tables() -> None:
    record = make_record(status="failed", reason="task m=8 raised", finished=None, config={},
                         versions={})
    page = render_report(record, pd.DataFrame(), {}, {})
    assert "0 pass · 0 fail · 0 inconclusive" in re.sub(r"<[^>]+>", "", page)
    for text in ("This run made no checks.", "This run made no figures.",
                 "This run stored no tables.", "The config is empty.", "task m=8 raised"):
        assert text in page
    assert "<img" not in page
    assert "<h3>Versions</h3>" not in page


def test_verdict_counts() -> None:
    assert verdict_counts(make_checks()) == {"pass": 1, "fail": 1, "inconclusive": 1}
    assert verdict_counts(pd.DataFrame()) == {"pass": 0, "fail": 0, "inconclusive": 0}


def test_write_report_is_atomic_and_makes_the_folder(tmp_path: Path, page: str) -> None:
    path = tmp_path / "run" / "report.html"
    assert write_report(path, page) == path
    assert path.read_text(encoding="utf-8") == page
    assert write_report(path, "<p>new</p>") == path
    assert path.read_text(encoding="utf-8") == "<p>new</p>"
    assert [entry.name for entry in path.parent.iterdir()] == ["report.html"]


def test_failed_write_leaves_the_old_report_and_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.html"
    write_report(path, "old")

    def failing_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(path, "new")
    assert path.read_text(encoding="utf-8") == "old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.html"]


def test_a_figure_shows_its_caption_stored_in_the_png() -> None:
    from widenet.figures import caption, label, new_figure, png_bytes, png_caption

    figure, axes = new_figure(panel=(2.0, 1.5))
    axes[0, 0].plot([1, 2], [1, 2])
    label(axes[0, 0], "line", "x", "y")
    text = "Look at the slope: theory predicts 1 (\u03b1 < \u03b2 & <b>)."
    png = png_bytes(caption(figure, text), dpi=30)
    assert png_caption(png) == text
    page = render_report(make_record(), make_checks(), {}, {"slope": png})
    assert f"<figcaption>{escape(text)}</figcaption>" in page
    assert png_caption(b"not a png") == ""


def test_each_table_offers_the_whole_table_as_csv() -> None:
    tables = make_tables(500)
    page = render_report(make_record(), make_checks(), tables, {})
    (encoded,) = re.findall(r'download="errors.csv" href="data:text/csv;base64,([^"]+)"', page)
    whole = pd.read_csv(io.BytesIO(base64.b64decode(encoded)))
    pd.testing.assert_frame_equal(whole, tables["errors"])


def test_the_docs_page_is_a_link_when_it_is_in_the_checkout() -> None:
    page = render_report(make_record(study="ntk-spectrum"), make_checks(), {}, {},
                         doc_path="docs/studies/ntk-spectrum.md")
    assert re.search(r'<a href="file://[^"]*/docs/studies/ntk-spectrum.md"><code>', page)
    page = render_report(make_record(), make_checks(), {}, {}, doc_path="docs/studies/toy.md")
    assert "<code>docs/studies/toy.md</code>" in page
    assert "docs/studies/toy.md\"" not in page
