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

_DROP = {"script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed", "nav", "aside",
         "dialog", "button", "select", "textarea", "input", "menu"}
_ROLES = ["navigation", "banner", "contentinfo", "complementary", "search", "menubar", "dialog", "alert"]
_BOILERPLATE = re.compile(r"(^|[-_\s])(cookies?|consent|gdpr|breadcrumbs?|navbar|navigation|nav|menu|sidebar|"
                          r"site-?header|site-?footer|masthead|footer|social|share|sharing|advert|ads|promo|newsletter|"
                          r"skip-?link|banner|popup|modal)([-_\s]|$)", re.I)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_PARAGRAPHS = {"p", "dt", "dd", "figcaption", "caption", "address", "summary", "legend"}
_CONTAINERS = {"html", "body", "div", "section", "article", "main", "header", "footer", "ul", "ol", "dl", "blockquote",
               "figure", "details", "fieldset", "form", "center", "hgroup", "search"}
_LISTS = {"ul", "ol", "dl"}


_BLOCKS = _HEADINGS | _PARAGRAPHS | _CONTAINERS | {"li", "table", "pre", "tr"}
#: What a paragraph may not hold and still be read as one paragraph.
_NESTED = {"ul", "ol", "table", "pre", "div"}
_CONTENT = ("article", "main")


def _take_out(doomed) -> None:
    """Take ``doomed`` elements (none inside another) out of the tree, in time linear in the page.

    ``Tag.decompose`` finds an element among its parent's children by scanning them, which
    is quadratic for thousands of siblings; here each outermost doomed element is taken out
    at an index found in one scan of its parent.
    """
    parents: dict[int, tuple] = {}
    for tag in doomed:
        if tag.parent is not None:
            parents.setdefault(id(tag.parent), (tag.parent, set()))[1].add(id(tag))
    for parent, mine in parents.values():
        for i in reversed([i for i, child in enumerate(parent.contents) if id(child) in mine]):
            parent.contents[i].extract(_self_index=i)


def _reasons(tag, in_content: set[int]) -> int:
    """How many of the boilerplate rules ``tag`` meets (0: it stays)."""
    attrs = tag.attrs
    n = (tag.name in _DROP) + (tag.name in ("header", "footer") and id(tag) not in in_content)
    n += (attrs.get("role") in _ROLES) + ("hidden" in attrs) + (attrs.get("aria-hidden") == "true")
    n += bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))
    if tag.name not in ("html", "body", "main", "article"):
        names = " ".join(attrs.get("class") or []) + " " + (attrs.get("id") or "")
        n += bool(names.strip() and _BOILERPLATE.search(names))
    return n


def _strip_boilerplate(soup) -> int:
    """Remove boilerplate elements in place; returns how many rule matches removed them.

    One pass over the elements in document order (a parent before its children) decides;
    then only the outermost doomed elements are taken out, the others going with them.
    """
    in_content: set[int] = set()  # inside an <article> or <main>: its header and footer are content
    doomed: dict[int, object] = {}  # by id: a Tag's hash renders its whole subtree
    under: set[int] = set()  # inside a doomed element
    removed = 0
    for tag in soup.find_all(True):
        parent = id(tag.parent)
        if parent in in_content or tag.parent.name in _CONTENT:
            in_content.add(id(tag))
        if parent in doomed or parent in under:
            under.add(id(tag))
        if (n := _reasons(tag, in_content)):
            removed += n
            doomed[id(tag)] = tag
    _take_out([t for k, t in doomed.items() if k not in under])
    return removed


class _Tree:
    """What extraction asks of each element, computed bottom-up in one pass over the page.

    Asking BeautifulSoup instead (``tag.get_text()``, ``tag.find(...)`` at every level) costs
    the size of the subtree at each level: quadratic in the nesting depth.

    Attributes:
        weight: Visible characters that are not link text (navigation is mostly links), by ``id``.
        has_blocks: ``id`` of elements with a heading, paragraph, container, list item, table,
            code or row below them.
        has_nested: ``id`` of elements with a list, table, code block or div below them.
    """

    def __init__(self, root):
        from bs4 import CData, NavigableString, Tag

        total: dict[int, int] = {}
        links: dict[int, int] = {}
        self.has_blocks: set[int] = set()
        self.has_nested: set[int] = set()
        for node in reversed(list(root.descendants)):  # children before their parents
            parent = node.parent
            if parent is None:
                continue
            if isinstance(node, Tag):
                chars = total.get(id(node), 0)
                link = chars if node.name == "a" else links.get(id(node), 0)
                if node.name in _BLOCKS or id(node) in self.has_blocks:
                    self.has_blocks.add(id(parent))
                if node.name in _NESTED or id(node) in self.has_nested:
                    self.has_nested.add(id(parent))
            elif type(node) in (NavigableString, CData):  # not comments, doctypes
                chars, link = len(node) - sum(map(str.isspace, node)), 0
            else:
                continue
            total[id(parent)] = total.get(id(parent), 0) + chars
            links[id(parent)] = links.get(id(parent), 0) + link
        self.weight = {k: v - links.get(k, 0) for k, v in total.items()}

    def text_weight(self, tag) -> int:
        return self.weight.get(id(tag), 0)


def _main_content(soup, tree: _Tree):
    """The element holding the page's main content."""
    for found in (soup.find_all("main"), soup.find_all(attrs={"role": "main"})):
        if found:
            return max(found, key=tree.text_weight)
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    node = soup.body or soup
    if len(articles) > 1:
        return node  # a listing of several articles: keep them all
    while True:
        weight = tree.text_weight(node)
        children = node.find_all(["div", "section"], recursive=False)
        if not children or weight == 0:
            return node
        best = max(children, key=tree.text_weight)
        if tree.text_weight(best) < 0.8 * weight:
            return node
        node = best


def _cell_text(cell) -> str:
    """A table cell's text, less any table nested in it (whose rows are rows of their own)."""
    from bs4 import CData, NavigableString

    parts: list[str] = []
    stack = list(reversed(cell.contents))
    while stack:
        node = stack.pop()
        if type(node) in (NavigableString, CData):
            parts.append(str(node))
        elif getattr(node, "name", None) and node.name != "table":
            stack.extend(reversed(node.contents))
    return clean(" ".join(parts))


def _table(tag) -> str:
    rows = []
    for tr in tag.find_all("tr"):
        cells = [_cell_text(c) for c in tr.find_all(["td", "th"], recursive=False)]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def html_blocks(root, tree: _Tree | None = None) -> Iterator[Block]:
    """Blocks of ``root`` in document order.

    Nested elements are walked with a stack of generators rather than by recursion, so that
    thousands of nested divs neither overflow Python's stack nor cost more than their size.
    """
    tree = tree or _Tree(root)
    stack = [_blocks(root, tree)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, Block):
            yield item
        else:  # an element to walk before going on
            stack.append(item)


def _blocks(root, tree: _Tree) -> Iterator:
    """The blocks of ``root``'s children, and the generators of the elements to walk into, in order."""
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
            yield _list_item(child, "- " if child.parent is not None and child.parent.name != "ol" else "", tree)
        elif name in _PARAGRAPHS and id(child) not in tree.has_nested:
            yield from flush()
            text = clean(child.get_text(""))
            if text:
                yield Block(text, "paragraph", line=line)
        elif name in _CONTAINERS or name in _PARAGRAPHS or id(child) in tree.has_blocks:
            yield from flush()
            yield _blocks(child, tree)
        else:  # inline markup: part of the running paragraph
            text = child.get_text("")
            if inline_line[0] is None and text.strip():
                inline_line[0] = line
            inline.append(text)
    yield from flush()


def _list_item(li, marker: str, tree: _Tree) -> Iterator:
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
            yield _blocks(child, tree)


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
        br.append("\n")  # a line break in the text; replace_with would scan the siblings of each <br>
    page_title = clean(soup.title.get_text(" ")) if soup.title else ""
    removed = _strip_boilerplate(soup)
    tree = _Tree(soup)
    blocks = list(html_blocks(_main_content(soup, tree), tree))
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
