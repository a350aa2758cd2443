"""Word documents (.docx) through python-docx: headings from paragraph styles, lists, tables.

A .docx file is a ZIP package holding ``word/document.xml``; before python-docx sees a
file, the ZIP is checked so that a truncated download, a spreadsheet or an OpenDocument
file under a .docx name, and a password-protected document (an OLE container holding
``EncryptedPackage``) each get their own message, and so that a ZIP bomb (a small file that
unpacks to gigabytes of XML) is refused before anything unpacks it: ``check_unpacked``.
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
_MB = 1_000_000
#: Parts smaller than this, unpacked, are not held to ``max_compression_ratio``: a few kilobytes of
#: repeated markup compress very well without being a bomb (Apache POI's ZipSecureFile does the same).
RATIO_GRACE_BYTES = 100_000
_READ = 1 << 20


def _mb(n: int) -> str:
    return f"{n / _MB:,.1f} MB"


def check_unpacked(ctx: FileContext, z: zipfile.ZipFile, what: str = "DOCX") -> None:
    """Refuse a ZIP package that unpacks past ``max_unpacked_mb`` or ``max_compression_ratio``.

    The sizes its directory declares are checked first, before anything is unpacked; then every
    part is unpacked once, a block at a time, counting the bytes that actually come out (declared
    sizes can lie) and stopping as soon as a limit is passed. This read also checks each part's
    CRC. python-docx then reads the parts through ``zipfile``, which stops at the declared sizes
    checked here (a part that holds more fails its CRC, here, as corrupt).

    Raises:
        FileError: ``too_large``, naming the sizes and the setting to raise.
    """
    config = ctx.config
    limit, ratio = config.max_unpacked_mb * _MB, config.max_compression_ratio

    def too_large(how: str, setting: str, needed: int) -> Exception:
        return ctx.fail("too_large", f"the {what} {how}; it was not read, as a precaution against ZIP bombs "
                                     "(small files that unpack to gigabytes).",
                        f"If the document is genuine, raise DocumentConfig.{setting} (to {needed} or more); "
                        "otherwise take the file out of the folder.")

    def check(name: str, unpacked: int, packed: int, total: int, declared: bool) -> None:
        source = "as its ZIP directory declares" if declared else "counted while unpacking"
        if total > limit:
            raise too_large(f"unpacks to {'more than ' * (not declared)}{_mb(total)} ({source}) from {_mb(ctx.size)} "
                            f"on disk, over max_unpacked_mb={config.max_unpacked_mb}",
                            "max_unpacked_mb", -(-total // _MB))
        if unpacked > RATIO_GRACE_BYTES and unpacked > ratio * max(packed, 1):
            found = unpacked // max(packed, 1)
            raise too_large(f"part {name} unpacks to {'more than ' * (not declared)}{_mb(unpacked)} from "
                            f"{_mb(packed)} ({source}), {found} times its packed size, over "
                            f"max_compression_ratio={ratio}", "max_compression_ratio", found + 1)

    parts = [info for info in z.infolist() if not info.is_dir()]
    declared_total = sum(info.file_size for info in parts)
    for info in parts:
        check(info.filename, info.file_size, info.compress_size, declared_total, True)
    total = 0
    for info in parts:
        unpacked = 0
        with z.open(info) as part:
            while block := part.read(_READ):
                unpacked += len(block)
                total += len(block)
                check(info.filename, unpacked, info.compress_size, total, False)


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
            check_unpacked(ctx, z)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise ctx.fail("corrupt", f"the DOCX is corrupt: its parts cannot be unpacked ({str(e)[:120]}).",
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
