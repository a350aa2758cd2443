"""Markdown (through markdown-it-py's token stream) and plain text, both streamed."""

from __future__ import annotations

import re
from typing import Iterator

from .base import Block
from .extractors import FileContext, clean, extractor, text_units

_TAG = re.compile(r"<[^>]+>")
_FRONT_TITLE = re.compile(r"^title:\s*[\"']?(.*?)[\"']?\s*$", re.M)


def _parser():
    from markdown_it import MarkdownIt

    # CommonMark plus the two GitHub extensions that carry text (tables, strikethrough).
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _inline(token) -> str:
    """Plain text of an inline token: markup dropped, link text and image alt text kept."""
    out = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif child.type == "image":
            out.append(child.content)
    return clean("".join(out))


def markdown_blocks(tokens, line_offset: int = 0) -> Iterator[Block]:
    """Blocks from markdown-it tokens; ``line_offset`` is added to each token's 0-based line."""
    lists: list[list] = []      # per open list: [marker, next number]
    item_first = False          # the next paragraph is the first one of a list item
    row: list[str] | None = None
    rows: list[str] = []
    table_line = None

    def line(tok) -> int | None:
        return tok.map[0] + 1 + line_offset if tok.map else None

    for i, tok in enumerate(tokens):
        kind = tok.type
        if kind == "heading_open":
            text = _inline(tokens[i + 1])
            if text:
                yield Block(text, "heading", int(tok.tag[1]), line=line(tok))
        elif kind == "paragraph_open":
            text = _inline(tokens[i + 1])
            if not text:
                continue
            if lists:
                marker = "-" if lists[-1][0] == "-" else f"{lists[-1][1]}."
                if item_first:
                    text = f"{marker} {text}"
                    if lists[-1][0] != "-":
                        lists[-1][1] += 1
                item_first = False
                yield Block(text, "list_item", line=line(tok))
            else:
                yield Block(text, "paragraph", line=line(tok))
        elif kind == "bullet_list_open":
            lists.append(["-", 0])
        elif kind == "ordered_list_open":
            lists.append(["1", int(tok.attrs.get("start", 1) or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            item_first = True
        elif kind in ("fence", "code_block"):
            if tok.content.strip():
                yield Block(tok.content.rstrip("\n"), "code", line=line(tok))
        elif kind == "table_open":
            rows, table_line = [], line(tok)
        elif kind == "tr_open":
            row = []
        elif kind == "inline" and row is not None:
            row.append(_inline(tok))
        elif kind == "tr_close":
            if row and any(row):
                rows.append(" | ".join(row))
            row = None
        elif kind == "table_close":
            if rows:
                yield Block("\n".join(rows), "table", line=table_line)
        elif kind == "html_block":
            text = clean(_TAG.sub(" ", tok.content))
            if text:
                yield Block(text, "paragraph", line=line(tok))


def _front_matter(text: str) -> tuple[str, int, str | None]:
    """Strip YAML front matter; returns the rest, the lines removed, and its title if any."""
    if not text.startswith("---\n"):
        return text, 0, None
    lines = text.split("\n")
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            meta = "\n".join(lines[1:end])
            m = _FRONT_TITLE.search(meta)
            return "\n".join(lines[end + 1:]), end + 1, (m.group(1).strip() or None) if m else None
    return text, 0, None


@extractor("markdown", ".md", ".markdown")
def extract_markdown(ctx: FileContext) -> Iterator[Block]:
    """Markdown: headings, paragraphs, list items, tables and code, with their source lines."""
    md = _parser()
    first = True
    for start, text in text_units(ctx, boundary="heading"):
        if first:
            text, skipped, title = _front_matter(text)
            start += skipped
            ctx.title = ctx.title or title
            first = False
        for block in markdown_blocks(md.parse(text), start - 1):
            if block.kind == "heading" and block.level == 1 and ctx.title is None:
                ctx.title = block.text
            yield block


@extractor("text", ".txt", ".text")
def extract_text(ctx: FileContext) -> Iterator[Block]:
    """Plain text: paragraphs are separated by blank lines; line breaks inside one are spaces."""
    for start, text in text_units(ctx, boundary="blank"):
        para: list[str] = []
        para_line = start
        for offset, line in enumerate(text.split("\n") + [""]):
            if line.strip():
                if not para:
                    para_line = start + offset
                para.append(line)
            elif para:
                yield Block(clean(" ".join(para)), "paragraph", line=para_line)
                para = []
