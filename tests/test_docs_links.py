"""Every relative link in README.md and docs/ points at a file that exists, and every #anchor at a
heading (or an explicit <a id="..."> / <a name="...">) of the page it names.

Anchors follow GitHub's rule for headings: the heading's text as rendered (inline code, emphasis
markers and link targets dropped), lower-cased, every character other than letters, digits,
'_', '-' and spaces removed, spaces turned into '-'; a repeated heading gets -1, -2, ...
Links inside fenced code blocks and inline code spans are not links and are not checked; links
with a scheme (https:, mailto:) are not relative and are not checked either.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def doc_pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[0] * len(marker.group(1))
            elif stripped.startswith(fence):
                fence = None
            continue
        if fence is None:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's Markdown text (see the module docstring)."""
    text = CODE_SPAN.sub(lambda match: match.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text)                       # inline HTML tags
    text = text.replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a page defines: its headings' slugs (numbered when repeated) and HTML ids."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition in prose."""
    found = []
    for number, line in _prose_lines(page.read_text(encoding="utf-8")):
        prose = CODE_SPAN.sub("", line)
        definition = REFERENCE_DEFINITION.match(prose)
        if definition:
            found.append((number, definition.group(1)))
            continue
        found.extend((number, target) for target in INLINE_LINK.findall(prose))
    return found


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when it lies inside, else as it is."""
    return str(path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path)


def dead_links(pages: list[Path], root: Path = ROOT) -> list[str]:
    """One line 'page:line: target (why)' for every relative link that leads nowhere."""
    problems = []
    cache: dict[Path, set[str]] = {}
    for page in pages:
        for number, target in links(page):
            if SCHEME.match(target) or target.startswith("//"):
                continue
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / path_part).resolve() if path_part else page.resolve()
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not destination.exists():
                problems.append(f"{where} (no file {_shown(destination, root)})")
                continue
            if not anchor:
                continue
            if destination.is_dir() or destination.suffix != ".md":
                problems.append(f"{where} (an anchor into a file that is not a Markdown page)")
                continue
            if destination not in cache:
                cache[destination] = anchors(destination)
            if anchor not in cache[destination]:
                problems.append(f"{where} (no heading or id '{anchor}' in that page)")
    return problems


def test_the_pages_have_links() -> None:
    pages = doc_pages()
    assert (ROOT / "docs" / "index.md") in pages
    assert sum(len(links(page)) for page in pages) >= 40


def test_no_dead_relative_links() -> None:
    problems = dead_links(doc_pages())
    assert not problems, "dead links:\n" + "\n".join(problems)


def test_the_docs_index_lists_every_page() -> None:
    index = ROOT / "docs" / "index.md"
    listed = {(index.parent / target.partition("#")[0]).resolve()
              for _, target in links(index) if not SCHEME.match(target)}
    missing = [str(page.relative_to(ROOT)) for page in doc_pages()[1:]
               if page != index and page.resolve() not in listed]
    assert not missing, f"docs/index.md does not list {missing}"


@pytest.mark.parametrize(("heading", "expected"), [
    ("Sweeps and blocked kernels (`widenet sweep`, `widenet kernel`)",
     "sweeps-and-blocked-kernels-widenet-sweep-widenet-kernel"),
    ("Sharpness: cold vs warm (`widenet.diagnostics.sharpness`)",
     "sharpness-cold-vs-warm-widenetdiagnosticssharpness"),
    ("Studies of your own (`WIDENET_STUDIES`)", "studies-of-your-own-widenet_studies"),
    ("2. The activation family a s + b|s|", "2-the-activation-family-a-s--bs"),
    ("A [linked](other.md) **bold** heading", "a-linked-bold-heading"),
])
def test_slug_follows_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\nSee [docs](docs/page.md#real-section), [gone](docs/missing.md) and "
        "[web](https://example.org/x.md).\n", encoding="utf-8")
    (docs / "page.md").write_text(
        "# Page\n\n## Real section\n\n## Real section\n\n<a id=\"custom\"></a>\n\n"
        "Back to [top](../README.md#top), [again](#real-section-1), [custom](#custom),\n"
        "[bad anchor](#no-such-section), `[in code](nowhere.md)`, and\n"
        "[a file anchor](../README.md#missing).\n\n```\n[in a block](nowhere.md)\n```\n\n"
        "[ref]: ../nowhere/else.md\n", encoding="utf-8")
    problems = dead_links(doc_pages(tmp_path), root=tmp_path)
    assert len(problems) == 4, problems
    assert problems[0].startswith("README.md:3: docs/missing.md (no file docs/missing.md)")
    assert problems[1].startswith("docs/page.md:10: #no-such-section (no heading")
    assert problems[2].startswith("docs/page.md:11: ../README.md#missing (no heading")
    assert problems[3].startswith("docs/page.md:17: ../nowhere/else.md (no file")
