"""PDF text layer through pypdf, page by page, with paragraphs and headings recovered.

pypdf's ``extract_text`` gives lines; its ``visitor_text`` callback gives each piece of
text with its position and font size. From those: a paragraph break is a vertical gap
clearly larger than the page's usual line gap (or a bullet); a heading is a line set
clearly larger than the body text, or a line that matches an entry of the PDF's outline
(bookmarks), which also gives its level. Lines that are only a page number, at the top
or bottom of a page, are dropped.

The file is opened as a stream and pages are read one at a time, so a large PDF is not
held in memory; progress advances per page.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .base import Block, FileError
from .charsets import describe, sniff
from .extractors import FileContext, clean, extractor

_PAGE_NUMBER = re.compile(r"^\s*(page\s+)?\d{1,4}(\s*(/|of)\s*\d{1,4})?\s*$|^\s*[-\u2013]\s*\d{1,4}\s*[-\u2013]\s*$",
                          re.I)
_BULLET = re.compile(r"^\s*([\u2022\u25cf\u25aa\u25e6\u2023\u2043\u00b7*\-\u2013]\s|\(?\d{1,3}[.)]\s|\(?[a-z][.)]\s)")
_SENTENCE_END = re.compile(r"[.!?:;][\"'\u201d\u2019)]*$")
#: A line at least this much larger than the body text is a heading.
HEADING_RATIO = 1.15
#: A vertical gap this much larger than the usual line gap starts a new paragraph.
PARAGRAPH_GAP = 1.3


@dataclass
class _Line:
    text: str = ""
    x: float | None = None
    y: float | None = None
    size: float = 0.0


def _mult(m: list[float], n: list[float]) -> list[float]:
    """Product of two PDF affine matrices ``[a b c d e f]``."""
    return [m[0] * n[0] + m[1] * n[2], m[0] * n[1] + m[1] * n[3],
            m[2] * n[0] + m[3] * n[2], m[2] * n[1] + m[3] * n[3],
            m[4] * n[0] + m[5] * n[2] + n[4], m[4] * n[1] + m[5] * n[3] + n[5]]


def page_lines(page) -> list[_Line]:
    """The lines of text on ``page``, in pypdf's reading order, with position and font size."""
    lines: list[_Line] = []
    cur = _Line()

    def visit(text, cm, tm, font, size):
        nonlocal cur
        parts = text.split("\n")
        for k, part in enumerate(parts):
            if k:
                lines.append(cur)
                cur = _Line()
            if not part:
                continue
            cur.text += part
            if part.strip():
                m = _mult(tm, cm)
                if cur.y is None:
                    cur.x, cur.y = m[4], m[5]
                cur.size = max(cur.size, (size or 0) * math.hypot(m[2], m[3]))

    page.extract_text(visitor_text=visit)
    lines.append(cur)
    return [ln for ln in lines if ln.text.strip()]


def _has_images(page) -> bool:
    """Whether the page draws an image (directly or in a form XObject): a scan, usually."""
    def images_in(resources, depth: int) -> bool:
        xobjects = (resources or {}).get("/XObject") if resources is not None else None
        if xobjects is None:
            return False
        for ref in xobjects.get_object().values():
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Image":
                return True
            if obj.get("/Subtype") == "/Form" and depth < 3 and images_in(obj.get("/Resources"), depth + 1):
                return True
        return False

    try:
        resources = page.get("/Resources")
        return images_in(resources.get_object() if resources is not None else None, 0)
    except Exception:  # noqa: BLE001 - a damaged resource dictionary is simply not evidence
        return False


def _outline(reader) -> dict[str, int]:
    """Outline (bookmark) titles, normalised, to heading level.

    Titles are matched anywhere in the document, not only on the page the bookmark
    points to: writers often bookmark a heading just before a page break moves it over.
    """
    out: dict[str, int] = {}

    def walk(items, level):
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
            elif getattr(item, "title", None):
                out.setdefault(_norm(item.title), min(level, 6))

    try:
        walk(reader.outline, 1)
    except Exception:  # noqa: BLE001 - a broken outline is not worth failing the file for
        return {}
    return out


def _norm(text: str) -> str:
    return clean(text).casefold()


class _Layout:
    """Running statistics across pages: the body font size, and heading sizes with their levels."""

    def __init__(self):
        self.chars_by_size: Counter = Counter()
        self.heading_sizes: set[float] = set()
        self.learned: dict[float, int] = {}  # size -> level, from headings the outline named

    def body_size(self) -> float:
        return self.chars_by_size.most_common(1)[0][0] if self.chars_by_size else 0.0

    def level(self, size: float, known: int | None = None) -> int:
        """The level of a heading set in ``size``: as the outline says, as learned, or by size rank."""
        size = round(size * 2) / 2
        self.heading_sizes.add(size)
        if known:
            self.learned.setdefault(size, known)
            return known
        if size in self.learned:
            return self.learned[size]
        return min(6, 1 + sum(1 for s in self.heading_sizes if s > size))


def _join(lines: list[str]) -> str:
    """Join the lines of one paragraph; a word hyphenated at a line end keeps its hyphen."""
    text = ""
    for line in lines:
        line = line.strip()
        if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and line[:1].islower():
            text += line
        else:
            text = f"{text} {line}" if text else line
    return clean(text)


def page_blocks(lines: list[_Line], page_no: int, layout: _Layout, outline: dict[str, int]) -> list[Block]:
    """Group one page's lines into heading, list item and paragraph blocks."""
    if lines and _PAGE_NUMBER.match(lines[-1].text):
        lines = lines[:-1]
    if lines and _PAGE_NUMBER.match(lines[0].text):
        lines = lines[1:]
    if not lines:
        return []
    for ln in lines:
        layout.chars_by_size[round(ln.size * 2) / 2] += len(ln.text)
    body = layout.body_size()
    heading = [(ln.size >= body * HEADING_RATIO and len(ln.text.split()) <= 25 and any(c.isalpha() for c in ln.text))
               or _norm(ln.text) in outline for ln in lines]
    gaps = [a.y - b.y for a, b, ha, hb in zip(lines, lines[1:], heading, heading[1:])
            if not ha and not hb and a.y is not None and b.y is not None and 0 < a.y - b.y < 3 * max(b.size, 1)]
    usual = statistics.median(gaps) if gaps else 1.2 * max(body, 1)

    blocks: list[Block] = []
    group: list[_Line] = []
    group_heading = False

    def flush():
        if not group:
            return
        texts = [ln.text for ln in group]
        if group_heading:
            text = clean(" ".join(texts))
            level = layout.level(max(ln.size for ln in group), outline.get(_norm(text)))
            blocks.append(Block(text, "heading", level, page=page_no))
        else:
            text = _join(texts)
            kind = "list_item" if _BULLET.match(texts[0]) else "paragraph"
            blocks.append(Block(text, kind, page=page_no))
        group.clear()

    for ln, is_heading in zip(lines, heading):
        if group:
            prev = group[-1]
            gap = (prev.y - ln.y) if prev.y is not None and ln.y is not None else usual
            if is_heading != group_heading:
                new = True
            elif is_heading:
                new = abs(ln.size - prev.size) > 0.5 or gap > 1.6 * max(ln.size, 1) or gap < 0 \
                    or _norm(ln.text) in outline
            else:
                new = gap > usual * PARAGRAPH_GAP + 0.5 or gap < -1 or bool(_BULLET.match(ln.text))
            if new:
                flush()
        group_heading = is_heading
        group.append(ln)
    flush()
    return blocks


@contextmanager
def _captured_pypdf_logs():
    """Keep pypdf's repair warnings ("EOF marker not found") for the file's notes, off the console."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("pypdf")
    handler, propagate = Keep(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _decrypt(reader, ctx: FileContext) -> None:
    from pypdf import PasswordType
    from pypdf.errors import DependencyError

    try:
        result = reader.decrypt("")
    except DependencyError:
        raise ctx.fail("encrypted", "the PDF is encrypted with AES and the 'cryptography' package is missing, "
                                    "so it cannot be opened even without a password.",
                       "Install the project's dependencies (`make venv`), which include cryptography.") from None
    if result == PasswordType.NOT_DECRYPTED:
        raise ctx.fail("encrypted", "the PDF is encrypted: it needs a password to open, so its text cannot be read.",
                       "Remove the password (e.g. `qpdf --password=PASSWORD --decrypt in.pdf out.pdf`) "
                       "and ingest the decrypted copy.")
    ctx.note("encrypted with an owner password only (copy or print restrictions); "
             "no password is needed to read it, so the text was extracted")


def _damaged(ctx: FileContext, error: Exception, truncated: bool):
    detail = f"{type(error).__name__}: {str(error)[:120]}"
    if truncated:
        return ctx.fail("truncated", f"the PDF is truncated: it has no %%EOF marker at the end, so the download or "
                                     f"copy was cut short, and pypdf cannot read it ({detail}).",
                        "Download or copy the file again, completely.")
    return ctx.fail("corrupt", f"the PDF is corrupt: pypdf cannot read its structure ({detail}).",
                    "Open it in a PDF viewer; if it opens, print it to a new PDF and ingest that.")


@extractor("pdf", ".pdf")
def extract_pdf(ctx: FileContext) -> Iterator[Block]:
    """PDF: the text layer, page by page; says so when a password or OCR is needed."""
    from pypdf import PdfReader

    with open(ctx.path, "rb") as fh, _captured_pypdf_logs() as logs:
        head = fh.read(1024)
        if b"%PDF-" not in head:
            raise ctx.fail("corrupt",
                           f"not a PDF: it does not start with %PDF- (it holds {describe(sniff(head))}).",
                           "Check that this is the file you meant; export or download the PDF again.")
        fh.seek(max(0, ctx.size - 2048))
        truncated = b"%%EOF" not in fh.read()
        fh.seek(0)
        try:
            reader = PdfReader(fh)
            if reader.is_encrypted:
                _decrypt(reader, ctx)
            n = len(reader.pages)
        except FileError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to open is a per-file result
            raise _damaged(ctx, e, truncated) from None
        ctx.pages = n
        if truncated:
            ctx.warn("truncated", "the PDF has no %%EOF marker at the end (it may have been cut short); "
                                  f"pypdf recovered {n} page{'s' if n != 1 else ''}.",
                     "Check the last pages against the original, or download the file again.")
        try:
            meta_title = clean((reader.metadata or {}).get("/Title") or "")
        except Exception:  # noqa: BLE001 - unreadable metadata only costs the title
            meta_title = ""
        meta_title = re.sub(r"^Microsoft (Word|PowerPoint) - ", "", meta_title)
        if meta_title and not re.fullmatch(r"(untitled|document\d*)(\.\w+)?", meta_title, re.I):
            ctx.title = meta_title
        outline = _outline(reader)
        layout = _Layout()
        image_pages: list[int] = []
        text_pages = 0
        held: Block | None = None  # the last paragraph of a page, which may continue overleaf
        for i in range(n):
            try:
                lines = page_lines(reader.pages[i])
            except Exception as e:  # noqa: BLE001 - one bad page does not lose the others
                ctx.warn("unreadable_page", f"page {i + 1} could not be read ({type(e).__name__}: {str(e)[:100]}); "
                                            "it is left out.",
                         "Open the PDF in a viewer to check that page; print it to a new PDF if it is damaged.")
                lines = []
            ctx.advance(ctx.size * (i + 1) // n - ctx.size * i // n)
            if not lines:
                if _has_images(reader.pages[i]):
                    image_pages.append(i + 1)
                continue
            text_pages += 1
            blocks = page_blocks(lines, i + 1, layout, outline)
            if held is not None:
                if blocks and blocks[0].kind == "paragraph" and not _SENTENCE_END.search(held.text) \
                        and blocks[0].text[:1].islower():
                    blocks[0] = Block(_join([held.text, blocks[0].text]), "paragraph", page=held.page)
                else:
                    yield held
                held = None
            if blocks and blocks[-1].kind == "paragraph":
                held = blocks.pop()
            for block in blocks:
                if block.kind == "heading" and ctx.title is None:
                    ctx.title = block.text
                yield block
        if held is not None:
            yield held
        for message in dict.fromkeys(logs):
            ctx.note(f"pypdf: {message}")
    if text_pages == 0:
        if image_pages:
            raise ctx.fail("needs_ocr",
                           f"scanned PDF: {len(image_pages)} of {n} page{'s' if n != 1 else ''} hold images but no "
                           "text layer, so there is no text to extract; OCR is needed.",
                           "Run OCR to add a text layer (e.g. `ocrmypdf in.pdf out.pdf`) and ingest the result.")
        raise ctx.fail("no_text", f"the PDF has {n} page{'s' if n != 1 else ''} but no text on any of them.",
                       "Check that this is the right file; a PDF exported from a drawing tool may hold only shapes.")
    if image_pages:
        shown = ", ".join(map(str, image_pages[:10])) + (" ..." if len(image_pages) > 10 else "")
        ctx.warn("needs_ocr", f"page{'s' if len(image_pages) > 1 else ''} {shown} hold images but no text layer "
                              "(scanned?); their content is missing.",
                 "Run OCR on the PDF (e.g. `ocrmypdf --skip-text in.pdf out.pdf`) and ingest the result.")
