"""HTML pages: the main content as headings, paragraphs, list items and tables.

Boilerplate goes first: scripts and styles, ``<nav>``, ``<aside>``, page-level ``<header>``
and ``<footer>`` (those inside an ``<article>`` or ``<main>`` belong to the content),
landmark roles for navigation, banners and footers, hidden elements, and elements whose
class or id names a cookie banner, menu, sidebar, breadcrumb or share bar. Then the main
content is ``<main>`` (or ``role="main"``), else a single ``<article>``, else the block that
holds most of the remaining non-link text (descending from ``<body>`` while one child holds
at least 80% of it). The page is parsed with Python's own ``html.parser`` through
BeautifulSoup, which keeps source line numbers for provenance.
"""

from __future__ import annotations

import re
from typing import Iterator

from .base import Block
from .charsets import choose_encoding, decode
from .extractors import FileContext, clean, extractor

_DROP = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed", "nav", "aside",
         "dialog", "button", "select", "textarea", "input", "menu"]
_ROLES = ["navigation", "banner", "contentinfo", "complementary", "search", "menubar", "dialog", "alert"]
_BOILERPLATE = re.compile(r"(^|[-_\s])(cookies?|consent|gdpr|breadcrumbs?|navbar|navigation|nav|menu|sidebar|"
                          r"site-?header|site-?footer|masthead|footer|social|share|sharing|advert|ads|promo|newsletter|"
                          r"skip-?link|banner|popup|modal)([-_\s]|$)", re.I)
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_PARAGRAPHS = {"p", "dt", "dd", "figcaption", "caption", "address", "summary", "legend"}
_CONTAINERS = {"html", "body", "div", "section", "article", "main", "header", "footer", "ul", "ol", "dl", "blockquote",
               "figure", "details", "fieldset", "form", "center", "hgroup", "search"}
_LISTS = {"ul", "ol", "dl"}


def _remove(tag) -> None:
    if not getattr(tag, "decomposed", False):
        tag.decompose()


def _strip_boilerplate(soup) -> int:
    """Remove boilerplate elements in place; returns how many were removed."""
    doomed = list(soup.find_all(_DROP))
    doomed += [t for t in soup.find_all(["header", "footer"]) if t.find_parent(["article", "main"]) is None]
    doomed += soup.find_all(attrs={"role": _ROLES})
    doomed += soup.find_all(attrs={"hidden": True})
    doomed += soup.find_all(attrs={"aria-hidden": "true"})
    doomed += soup.find_all(style=re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I))
    for tag in soup.find_all(True):
        if tag.name in ("html", "body", "main", "article") or getattr(tag, "decomposed", False):
            continue
        names = " ".join(tag.get("class") or []) + " " + (tag.get("id") or "")
        if names.strip() and _BOILERPLATE.search(names):
            doomed.append(tag)
    for tag in doomed:
        _remove(tag)
    return len(doomed)


def _text_weight(tag) -> int:
    """Visible characters in ``tag`` that are not link text (navigation is mostly links)."""
    total = len("".join(tag.get_text().split()))
    links = sum(len("".join(a.get_text().split())) for a in tag.find_all("a"))
    return total - links


def _main_content(soup):
    """The element holding the page's main content."""
    for found in (soup.find_all("main"), soup.find_all(attrs={"role": "main"})):
        if found:
            return max(found, key=_text_weight)
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    node = soup.body or soup
    if len(articles) > 1:
        return node  # a listing of several articles: keep them all
    while True:
        weight = _text_weight(node)
        children = node.find_all(["div", "section"], recursive=False)
        if not children or weight == 0:
            return node
        best = max(children, key=_text_weight)
        if _text_weight(best) < 0.8 * weight:
            return node
        node = best


def _has_blocks(tag) -> bool:
    return tag.find(list(_HEADINGS | _PARAGRAPHS | _CONTAINERS | {"li", "table", "pre", "tr"})) is not None


def _table(tag) -> str:
    rows = []
    for tr in tag.find_all("tr"):
        cells = [clean(c.get_text(" ")) for c in tr.find_all(["td", "th"])]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def html_blocks(root) -> Iterator[Block]:
    """Blocks of ``root`` in document order."""
    from bs4 import NavigableString

    inline: list[str] = []
    inline_line: list[int | None] = [None]

    def flush(kind: str = "paragraph"):
        text = clean("".join(inline))
        inline.clear()
        if text:
            yield Block(text, kind, line=inline_line[0])
        inline_line[0] = None

    for child in root.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # not a comment, doctype or CDATA
                if child.strip() and inline_line[0] is None:
                    inline_line[0] = getattr(child.parent, "sourceline", None)
                inline.append(str(child))
            continue
        name = child.name
        line = getattr(child, "sourceline", None)
        if name in _HEADINGS:
            yield from flush()
            text = clean(child.get_text(""))
            if text:
                yield Block(text, "heading", int(name[1]), line=line)
        elif name == "pre":
            yield from flush()
            text = child.get_text("").strip("\n")
            if text.strip():
                yield Block(text, "code", line=line)
        elif name == "table":
            yield from flush()
            text = _table(child)
            if text:
                yield Block(text, "table", line=line)
        elif name == "li":
            yield from flush()
            yield from _list_item(child, "- " if child.parent is not None and child.parent.name != "ol" else "")
        elif name in _PARAGRAPHS and not child.find(["ul", "ol", "table", "pre", "div"]):
            yield from flush()
            text = clean(child.get_text(""))
            if text:
                yield Block(text, "paragraph", line=line)
        elif name in _CONTAINERS or name in _PARAGRAPHS or _has_blocks(child):
            yield from flush()
            yield from html_blocks(child)
        else:  # inline markup: part of the running paragraph
            if inline_line[0] is None and child.get_text().strip():
                inline_line[0] = line
            inline.append(child.get_text(""))
    yield from flush()


def _list_item(li, marker: str) -> Iterator[Block]:
    """A list item's own text, then any nested lists, tables or code as their own blocks."""
    own: list[str] = []
    nested = []
    for child in li.children:
        if getattr(child, "name", None) in (_LISTS | {"table", "pre", "div", "blockquote"}):
            nested.append(child)
        elif hasattr(child, "get_text"):
            own.append(child.get_text(""))
        else:
            own.append(str(child))
    text = clean(" ".join(own) if any(getattr(c, "name", None) == "p" for c in li.children) else "".join(own))
    if text:
        yield Block(marker + text, "list_item", line=getattr(li, "sourceline", None))
    for child in nested:
        if child.name == "table":
            table = _table(child)
            if table:
                yield Block(table, "table", line=getattr(child, "sourceline", None))
        elif child.name == "pre":
            yield Block(child.get_text("").strip("\n"), "code", line=getattr(child, "sourceline", None))
        else:
            yield from html_blocks(child)


@extractor("html", ".html", ".htm", ".xhtml")
def extract_html(ctx: FileContext) -> Iterator[Block]:
    """HTML: main content only, boilerplate dropped; says which encoding was assumed."""
    from bs4 import BeautifulSoup

    raw = ctx.path.read_bytes()
    choice = choose_encoding(raw, html=True, given=ctx.encoding)
    ctx.use_encoding(choice)
    text, bad = decode(raw, choice)
    if bad is not None:
        line = raw.count(b"\n", 0, bad) + 1
        ctx.warn("encoding", f"bytes that are not valid {choice.codec} at byte offset {bad} (line {line}); "
                             "they were replaced with U+FFFD.",
                 "Re-save the page as UTF-8, or pass encoding= with its real encoding.", line=line)
    ctx.advance(len(raw) // 2)
    soup = BeautifulSoup(text, "html.parser")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    page_title = clean(soup.title.get_text(" ")) if soup.title else ""
    removed = _strip_boilerplate(soup)
    root = _main_content(soup)
    blocks = list(html_blocks(root))
    ctx.advance(ctx.size)
    if not blocks:
        raise ctx.fail("no_text", "no main content: after dropping navigation, headers, footers and scripts "
                                  f"({removed} element{'s' if removed != 1 else ''}) the page holds no text.",
                       "Check that this is the page you meant; a page that builds its text with JavaScript "
                       "has to be saved after it renders (browser: Save Page As, complete).")
    if removed:
        ctx.note(f"boilerplate dropped: {removed} element{'s' if removed != 1 else ''} "
                 "(navigation, page header and footer, scripts)")
    first_h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    ctx.title = first_h1 or page_title or None
    yield from blocks
