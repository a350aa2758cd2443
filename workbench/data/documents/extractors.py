"""The extractor registry, and the context an extractor reports into.

An extractor reads one file and yields ``Block``s in reading order. It never raises for bad
content except through ``FileContext.fail`` (the file gives nothing usable: encrypted,
corrupt, no text); everything milder is a warning or a note on the context. Extractors
are registered with ``@extractor(name, *suffixes)`` in the module that defines them.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Callable, Iterator

from ..problems import Problem
from .base import Block, DocumentConfig, FileError
from .charsets import EncodingChoice, choose_encoding

Extractor = Callable[["FileContext"], Iterator[Block]]
#: Extractor name to function.
EXTRACTORS: dict[str, Extractor] = {}
#: File suffix (lower case, with the dot) to extractor name.
DOCUMENT_SUFFIXES: dict[str, str] = {}
#: Suffixes of document types that are recognised but not read, with what to do instead.
NOT_READ = {
    ".doc": "Word 97-2003 (.doc) files are not read; open it in Word or LibreOffice and save as .docx.",
    ".rtf": "RTF files are not read; save it as .docx.",
    ".odt": "OpenDocument text is not read; save it as .docx (LibreOffice: File > Save As).",
    ".pages": "Apple Pages files are not read; export it as .docx or PDF.",
    ".pptx": "PowerPoint files are not read; export the slides as PDF.",
    ".ppt": "PowerPoint files are not read; export the slides as PDF.",
    ".xlsx": "spreadsheets are data, not documents: load it with workbench.data.load_dataset after saving as CSV.",
    ".xls": "spreadsheets are data, not documents: save it as CSV and use workbench.data.load_dataset.",
    ".epub": "EPUB is not read; convert it to HTML or PDF.",
}


def extractor(name: str, *suffixes: str) -> Callable[[Extractor], Extractor]:
    """Register an extractor under ``name`` for the given file suffixes."""

    def register(fn: Extractor) -> Extractor:
        EXTRACTORS[name] = fn
        for suffix in suffixes:
            DOCUMENT_SUFFIXES[suffix.lower()] = name
        return fn

    return register


class FileContext:
    """What an extractor knows and reports about the file it is reading.

    Attributes:
        path: The file.
        file: Its display path, for problems.
        size: Its size in bytes.
        encoding: Text encoding to force (``ingest_documents(encoding=...)``), or None.
        config: The ingest's settings (the limits on unpacked size, for one).
        title, pages, encoding_used: Set by the extractor when known.
        problems, notes: Reported findings.
    """

    def __init__(self, path: Path, file: str, size: int, encoding: str | None = None,
                 advance: Callable[[int], None] | None = None, config: DocumentConfig | None = None):
        self.path = path
        self.file = file
        self.size = size
        self.encoding = encoding
        self.config = config or DocumentConfig()
        self.title: str | None = None
        self.pages: int | None = None
        self.encoding_used: str | None = None
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self._advance = advance or (lambda n: None)
        self.advanced = 0

    def advance(self, nbytes: int) -> None:
        """Report progress through the file, in bytes."""
        nbytes = max(0, min(nbytes, self.size - self.advanced))
        if nbytes:
            self.advanced += nbytes
            self._advance(nbytes)

    def warn(self, kind: str, message: str, fix: str = "", line: int | None = None) -> None:
        self.problems.append(Problem(kind=kind, message=message, fix=fix, file=self.file, line=line,
                                     severity="warning"))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def fail(self, kind: str, message: str, fix: str = "") -> FileError:
        """The error to raise when the file gives nothing usable."""
        return FileError(Problem(kind=kind, message=message, fix=fix, file=self.file))

    def use_encoding(self, choice: EncodingChoice) -> None:
        self.encoding_used = choice.codec.replace("-sig", "")
        if choice.warning:
            self.warn("encoding", choice.warning,
                      "If the text looks wrong, declare the charset (<meta charset=\"...\">) or pass "
                      "encoding= with the file's real encoding.")
        else:
            self.note(choice.note)


_SPACE = re.compile(r"\s+")


def clean(text: str) -> str:
    """Collapse runs of whitespace (line breaks included) to one space and strip."""
    return _SPACE.sub(" ", text).strip()


# --------------------------------------------------------------------------- streamed text

#: Bytes read at a time from Markdown and text files.
READ_BYTES = 1 << 20
#: A Markdown or text file is parsed in units of about this many characters, cut only
#: before a top-level construct (an ATX heading, or a blank line for text), so a large
#: file never has to be parsed in one piece.
UNIT_CHARS = 256 * 1024
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^#{1,6}(\s|$)")


def text_units(ctx: FileContext, boundary: str) -> Iterator[tuple[int, str]]:
    """Stream a text file as ``(first line number, text)`` units of about ``UNIT_CHARS``.

    Args:
        ctx: The file; its encoding is chosen from the first block read, undecodable
            bytes are replaced and reported with their offset and line.
        boundary: ``heading`` (Markdown: cut before an ATX heading outside code fences)
            or ``blank`` (text: cut at a blank line).
    """
    with open(ctx.path, "rb") as fh:
        first = fh.read(READ_BYTES)
        choice = choose_encoding(first, html=False, given=ctx.encoding, complete=len(first) < READ_BYTES)
        ctx.use_encoding(choice)
        decoder = codecs.getincrementaldecoder(choice.codec)()
        consumed = 0          # bytes decoded before the current block
        line_no = 1           # number of the next line to come out
        pending = ""          # a partial line carried to the next block
        unit: list[str] = []
        unit_start, unit_chars, in_fence = 1, 0, False
        block = first
        while True:
            final = len(block) == 0
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as e:
                bad = consumed + e.start
                lines_before = line_no + (pending + block[: e.start].decode(choice.codec, errors="replace")).count("\n")
                ctx.warn("encoding",
                         f"bytes that are not valid {choice.codec} at byte offset {bad} (line {lines_before}); "
                         "they were replaced with U+FFFD, here and wherever else they occur.",
                         "Re-save the file as UTF-8, or pass encoding= with the file's real encoding.",
                         line=lines_before)
                state = decoder.getstate()
                decoder = codecs.getincrementaldecoder(choice.codec)(errors="replace")
                decoder.setstate(state)
                text = decoder.decode(block, final=final)
            consumed += len(block)
            ctx.advance(len(block))
            pieces = (pending + text).split("\n")
            pending = pieces.pop() if not final else ""
            if final and pieces == [""]:
                pieces = []  # the file ended with a line break
            for line in pieces:
                cut = False
                if unit_chars >= UNIT_CHARS:
                    if boundary == "heading":
                        cut = not in_fence and bool(_ATX.match(line))
                    else:
                        cut = not line.strip()
                if cut:
                    yield unit_start, "\n".join(unit)
                    unit, unit_start, unit_chars = [], line_no, 0
                if boundary == "heading" and _FENCE.match(line):
                    in_fence = not in_fence
                unit.append(line)
                unit_chars += len(line) + 1
                line_no += 1
            if final:
                break
            block = fh.read(READ_BYTES)
        if unit:
            yield unit_start, "\n".join(unit)
