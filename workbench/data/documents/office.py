"""Word documents (.docx) through python-docx: headings from paragraph styles, lists, tables.

A .docx file is a ZIP package holding ``word/document.xml``; before python-docx sees a
file, the ZIP is checked so that a truncated download, a spreadsheet or an OpenDocument
file under a .docx name, and a password-protected document (an OLE container holding
``EncryptedPackage``) each get their own message.
"""

from __future__ import annotations

import re
import zipfile
from typing import Iterator

from .base import Block
from .charsets import describe, sniff
from .extractors import FileContext, clean, extractor

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_OTHER_PACKAGES = (
    ("xl/", "an Excel workbook"),
    ("ppt/", "a PowerPoint presentation"),
    ("content.xml", "an OpenDocument file"),
)


def _check_package(ctx: FileContext) -> None:
    """Raise a clear per-file error unless the file is a readable Word ZIP package."""
    with open(ctx.path, "rb") as fh:
        head = fh.read(8)
    kind = sniff(head)
    if kind == "ole":
        raw = ctx.path.read_bytes()
        if _ENCRYPTED_PACKAGE in raw:
            raise ctx.fail("encrypted", "the Word document is password-protected (encrypted), so its text cannot "
                                        "be read.",
                           "Open it in Word, remove the password (File > Info > Protect Document), save, "
                           "and ingest it again.")
        raise ctx.fail("unsupported_file", "this is a Word 97-2003 (.doc) file with a .docx name; .doc is not read.",
                       "Open it in Word or LibreOffice and save it as .docx.")
    if kind != "zip":
        raise ctx.fail("corrupt", f"not a Word document: a .docx file is a ZIP package, and this one holds "
                                  f"{describe(kind)}.",
                       "Check that this is the file you meant; save or export it from Word again.")
    if not zipfile.is_zipfile(ctx.path):
        raise ctx.fail("truncated", "the DOCX is truncated or corrupt: its ZIP directory is missing (the end of the "
                                    "file is gone), so Word's XML parts cannot be found.",
                       "Download or copy the file again, completely, or re-save it from Word.")
    try:
        with zipfile.ZipFile(ctx.path) as z:
            names = z.namelist()
            if "word/document.xml" not in names:
                what = next((w for prefix, w in _OTHER_PACKAGES if any(n.startswith(prefix) for n in names)),
                            "a ZIP archive")
                raise ctx.fail("corrupt", f"not a Word document: the file is {what}, with no word/document.xml.",
                               "Save it as .docx from Word, or ingest the documents inside the archive.")
            z.getinfo("word/document.xml")
            with z.open("word/document.xml") as part:
                while part.read(1 << 20):
                    pass  # reading the whole part checks its CRC and that it decompresses
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise ctx.fail("corrupt", f"the DOCX is corrupt: its document part cannot be unpacked ({str(e)[:120]}).",
                       "Re-save it from Word, or download it again.") from None


def _style(paragraph) -> str:
    try:
        return paragraph.style.name if paragraph.style is not None else ""
    except (KeyError, ValueError):
        return ""


def _is_list(paragraph, style: str) -> bool:
    if "list" in style.lower():
        return True
    ppr = paragraph._p.pPr  # python-docx has no public accessor for numbering
    return ppr is not None and ppr.numPr is not None


@extractor("docx", ".docx")
def extract_docx(ctx: FileContext) -> Iterator[Block]:
    """DOCX: body paragraphs and tables in order; ``Title`` and ``Heading N`` styles are headings."""
    _check_package(ctx)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(ctx.path))
        title = clean(document.core_properties.title or "")
        items = list(document.iter_inner_content())
    except Exception as e:  # noqa: BLE001 - any failure to open is a per-file result
        raise ctx.fail("corrupt", f"the DOCX is corrupt: python-docx cannot read it ({type(e).__name__}: "
                                  f"{str(e)[:120]}).", "Re-save it from Word, or download it again.") from None
    ctx.title = title or None
    for item in items:
        if isinstance(item, Table):
            rows = []
            for row in item.rows:
                cells = list(dict.fromkeys(clean(c.text) for c in row.cells))  # merged cells repeat
                if any(cells):
                    rows.append(" | ".join(c for c in cells if c))
            if rows:
                yield Block("\n".join(rows), "table")
            continue
        text = clean(item.text)
        if not text:
            continue
        style = _style(item)
        if style.lower() == "title":
            ctx.title = ctx.title or text
            yield Block(text, "heading", 0)
        elif (m := _HEADING_STYLE.match(style)):
            ctx.title = ctx.title or text
            yield Block(text, "heading", int(m.group(1)))
        elif _is_list(item, style):
            yield Block(f"- {text}", "list_item")
        else:
            yield Block(text, "paragraph")
    ctx.advance(ctx.size)
