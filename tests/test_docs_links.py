"""Every relative link in README.md and docs/ points at a file that exists, and every #anchor at a
heading (or an explicit <a id="..."> / <a name="...">) of the page it names. Source paths the
pages name in code spans (`widenet/kernels/infinite.py`, `widenet/studies/common/`) exist too,
so that docs/theory.md's "implemented by" notes follow the code when it moves.

Pages are parsed with markdown-it (CommonMark plus tables; it comes with rich), so a link is
exactly what a renderer shows as one: text in code blocks and code spans is not, a reference
link [text][label] is checked at its definition's target. Links with a scheme (https:, mailto:)
are not relative and are not checked. Anchors follow GitHub's rule for headings: the heading's
rendered text, lower-cased, every character other than letters, digits, '_', '-' and spaces
removed, spaces turned into '-'; a repeated heading gets -1, -2, ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = MarkdownIt("commonmark").enable("table")
HTML_ANCHOR = re.compile(r"<a\s+[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
SOURCE_PATH = re.compile(r"(?:src/)?(widenet/[\w/]*?(?:\.py|/))")


def doc_pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _tokens(page: Path) -> list[Token]:
    return MARKDOWN.parse(page.read_text(encoding="utf-8"))


def slug(text: str) -> str:
    """GitHub's anchor for a heading whose rendered text is ``text``."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _rendered_text(inline: Token) -> str:
    """The text a heading shows: its text and code pieces, without markup or link targets."""
    return "".join(child.content for child in inline.children or []
                   if child.type in ("text", "code_inline"))


def anchors(page: Path) -> set[str]:
    """The anchors a page defines: its headings' slugs (numbered when repeated) and HTML ids."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    tokens = _tokens(page)
    for previous, token in zip([None, *tokens], tokens, strict=False):
        if token.type == "inline" and previous is not None and previous.type == "heading_open":
            base = slug(_rendered_text(token))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        pieces = [token, *(token.children or [])]
        for piece in pieces:
            if piece.type in ("html_block", "html_inline"):
                found.update(HTML_ANCHOR.findall(piece.content))
    return found


def _inline(page: Path) -> Iterator[tuple[int, Token]]:
    """(line number, token) of every inline child the page renders (links, images, code)."""
    for token in _tokens(page):
        if token.type != "inline" or token.map is None:
            continue
        line = token.map[0] + 1
        for child in token.children or []:
            if child.type in ("softbreak", "hardbreak"):
                line += 1
            else:
                yield line, child


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image the page renders."""
    attribute = {"link_open": "href", "image": "src"}
    return [(line, unquote(str(child.attrGet(attribute[child.type]))))
            for line, child in _inline(page) if child.type in attribute]


def source_paths(page: Path) -> list[tuple[int, str]]:
    """(line number, path) of every code span that is a source path such as
    `widenet/kernels/infinite.py` or `src/widenet/studies/common/` (relative to src/)."""
    return [(line, match.group(1)) for line, child in _inline(page)
            if child.type == "code_inline" and (match := SOURCE_PATH.fullmatch(child.content))]


def missing_sources(pages: list[Path], root: Path = ROOT) -> list[str]:
    """One line 'page:line: path' for every source path named in the pages that is not in src/."""
    return [f"{page.relative_to(root)}:{number}: {path}" for page in pages
            for number, path in source_paths(page) if not (root / "src" / path).exists()]


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


def test_named_source_paths_exist() -> None:
    assert len(source_paths(ROOT / "docs" / "theory.md")) >= 30
    problems = missing_sources(doc_pages())
    assert not problems, "source paths that do not exist:\n" + "\n".join(problems)


def test_the_docs_index_lists_every_page() -> None:
    index = ROOT / "docs" / "index.md"
    listed = {(index.parent / target.partition("#")[0]).resolve()
              for _, target in links(index) if not SCHEME.match(target)}
    missing = [str(page.relative_to(ROOT)) for page in doc_pages()[1:]
               if page != index and page.resolve() not in listed]
    assert not missing, f"docs/index.md does not list {missing}"


@pytest.mark.parametrize(("heading", "expected"), [
    ("## Sweeps and blocked kernels (`widenet sweep`, `widenet kernel`)",
     "sweeps-and-blocked-kernels-widenet-sweep-widenet-kernel"),
    ("## Sharpness: cold vs warm (`widenet.diagnostics.sharpness`)",
     "sharpness-cold-vs-warm-widenetdiagnosticssharpness"),
    ("### Studies of your own (`WIDENET_STUDIES`)", "studies-of-your-own-widenet_studies"),
    ("## 2. The activation family phi(s) = a s + b |s|", "2-the-activation-family-phis--a-s--b-s"),
    ("# A [linked](other.md) **bold** heading", "a-linked-bold-heading"),
])
def test_slug_follows_github(tmp_path: Path, heading: str, expected: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"{heading}\n", encoding="utf-8")
    assert anchors(page) == {expected}


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
        "[a file anchor](../README.md#missing), [a reference][ref].\n\n"
        "```\n[in a block](nowhere.md)\n```\n\n    [indented code](nowhere.md)\n\n"
        "[ref]: ../nowhere/else.md\n", encoding="utf-8")
    problems = dead_links(doc_pages(tmp_path), root=tmp_path)
    assert problems == [
        "README.md:3: docs/missing.md (no file docs/missing.md)",
        "docs/page.md:10: #no-such-section (no heading or id 'no-such-section' in that page)",
        "docs/page.md:11: ../README.md#missing (no heading or id 'missing' in that page)",
        "docs/page.md:11: ../nowhere/else.md (no file nowhere/else.md)",
    ]


def test_a_missing_source_path_is_reported(tmp_path: Path) -> None:
    (tmp_path / "src" / "widenet" / "kernels").mkdir(parents=True)
    (tmp_path / "src" / "widenet" / "kernels" / "infinite.py").write_text("", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\nSee `widenet/kernels/infinite.py`, `src/widenet/kernels/`,\n"
        "`widenet/kernels/gone.py` and `widenet/nowhere/`; `widenet.kernels` is a module name.\n",
        encoding="utf-8")
    assert missing_sources(doc_pages(tmp_path), root=tmp_path) == [
        "README.md:4: widenet/kernels/gone.py", "README.md:4: widenet/nowhere/"]
