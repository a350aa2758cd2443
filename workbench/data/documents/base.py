"""The shapes shared by the documents subpackage: blocks, per-file results, statistics, config."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ...errors import ConfigError
from ..problems import Problem


@dataclass(frozen=True)
class DocumentConfig:
    """How documents are cut into corpus chunks (the notebook's parameters, less the paths)."""

    tokenizer: str = "whitespace"
    """``whitespace`` to count words, or a local folder holding a Hugging Face tokenizer; a
    tokenizer object (a preset: ``workbench.presets.resolve_tokenizer("kb-bpe")``) can be handed
    to ``ingest_documents(tokenizer=...)`` instead."""
    chunk_size: int | None = 256
    """Most tokens in a chunk; None keeps each section whole."""
    overlap: int = 32
    """Tokens repeated from the end of one chunk at the start of the next chunk of the same
    section, so that text cut at a boundary is seen whole once; less than half of ``chunk_size``."""
    max_unpacked_mb: int = 200
    """Most megabytes a Word (.docx, a ZIP package) file may unpack to, all its parts together; a larger
    one is refused unread, as a possible ZIP bomb. Checked against the sizes the ZIP declares and
    again while unpacking. Raise it for a genuine document that is larger."""
    max_compression_ratio: int = 100
    """Most times a part of a Word file (one of over 100 KB unpacked) may be larger unpacked than packed;
    a higher ratio is refused as a possible ZIP bomb (real documents compress 5 to 20 times)."""
    max_seconds_per_file: float | None = 60.0
    """Seconds one file may take to extract and chunk; a file still going is stopped, reported as
    ``timed_out`` and left out, and the rest of the folder goes on. None (or 0) for no limit."""

    def __post_init__(self):
        if not isinstance(self.tokenizer, str) or not self.tokenizer:
            raise ConfigError("tokenizer must be 'whitespace' or the path of a local tokenizer folder; "
                              "pass a tokenizer object as ingest_documents(tokenizer=...).")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 8):
            raise ConfigError(f"chunk_size must be an integer of at least 8 tokens, or None; got {self.chunk_size!r}.")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise ConfigError(f"overlap must be a non-negative integer; got {self.overlap!r}.")
        if self.chunk_size is not None and self.overlap * 2 >= self.chunk_size:
            raise ConfigError(f"overlap ({self.overlap}) must be less than half of chunk_size ({self.chunk_size}), "
                              f"so that every chunk moves forward; try overlap={self.chunk_size // 8}.")
        for name in ("max_unpacked_mb", "max_compression_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
        seconds = self.max_seconds_per_file
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not seconds > 0):
            raise ConfigError(f"max_seconds_per_file must be a positive number of seconds, or None for no limit; "
                              f"got {seconds!r}.")


#: Problem kinds that documents add to ``workbench.data.problems.PROBLEM_KINDS``.
DOCUMENT_PROBLEM_KINDS = (
    "not_found",         # a path that does not exist
    "unsupported_file",  # a suffix no extractor reads (.doc, .pptx, .png ...)
    "empty_file",        # zero bytes
    "no_text",           # a well-formed document with no text in it
    "needs_ocr",         # a PDF whose pages are images with no text layer
    "encrypted",         # a PDF (or Office file) that needs a password
    "truncated",         # a file cut short (no %%EOF, no ZIP directory)
    "corrupt",           # a file its library cannot parse
    "wrong_extension",   # content of one type under the suffix of another
    "encoding",          # HTML/Markdown/text bytes: charset guessed or undecodable
    "binary",            # a text suffix on binary content
    "unreadable_page",   # one PDF page failed; the others were read
    "too_large",         # a DOCX that unpacks past max_unpacked_mb or max_compression_ratio (ZIP bomb?)
    "timed_out",         # extraction ran past max_seconds_per_file
    "outside_source",    # a symbolic link in the folder to a file or folder outside it
)

BlockKind = Literal["heading", "paragraph", "list_item", "table", "code"]
Status = Literal["ok", "warning", "error", "skipped"]


@dataclass(frozen=True)
class Block:
    """One structural unit of a document, in reading order.

    Attributes:
        text: The block's text, whitespace collapsed (code keeps its lines).
        kind: ``heading``, ``paragraph``, ``list_item``, ``table`` (rows joined by newlines) or ``code``.
        level: Heading level (0 for a document title, 1-6 as in HTML); 0 for other kinds.
        page: 1-based page it starts on (PDF), else None.
        line: 1-based source line it starts on (Markdown, HTML, text), else None.
    """

    text: str
    kind: BlockKind = "paragraph"
    level: int = 0
    page: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class FileResult:
    """What happened to one file.

    Attributes:
        file: Display path of the file.
        status: ``ok``; ``warning`` (read, with problems worth a look); ``error`` (nothing
            usable came out); ``skipped`` (a file type that is not a document).
        kind: The extractor that read it (``pdf``, ``html``, ``markdown``, ``docx``, ``text``),
            which may differ from the suffix when the extension is wrong.
        title: Document title (metadata, first top-level heading, or the file name).
        pages: Page count for PDFs.
        sections: Sections (heading plus its body) found.
        chunks: Corpus rows made from it.
        words: Whitespace-separated words extracted.
        encoding: Text encoding used, for HTML, Markdown and text files.
        problems: Errors and warnings, each with a fix.
        notes: Informational lines (encoding declared by ``<meta charset>``, owner-only
            PDF encryption, library repairs).
        duplicate_chunks: Chunks of this file that repeat an earlier chunk (any file).
        pii_findings: Personal-data findings in this file's chunks.
    """

    file: str
    status: Status
    kind: str | None = None
    title: str = ""
    pages: int | None = None
    sections: int = 0
    chunks: int = 0
    words: int = 0
    encoding: str | None = None
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    duplicate_chunks: int = 0
    pii_findings: int = 0

    @property
    def message(self) -> str:
        """The problems (or notes, when there are none) as one line."""
        if self.problems:
            return " ".join(p.message[:1].upper() + p.message[1:] for p in self.problems)
        return " ".join(n[:1].upper() + n[1:] for n in self.notes)

    @property
    def fix(self) -> str:
        return " ".join(dict.fromkeys(p.fix for p in self.problems if p.fix))


def status_of(problems: tuple[Problem, ...] | list[Problem], skipped: bool = False) -> Status:
    """``error`` if any problem is an error, ``warning`` if any is a warning, else ``ok``."""
    if skipped:
        return "skipped"
    if any(p.severity == "error" for p in problems):
        return "error"
    return "warning" if problems else "ok"


@dataclass(frozen=True)
class ChunkStats:
    """Chunk counts and token lengths: what the dataset explorer shows about a corpus.

    Attributes:
        count: Chunks.
        min: Shortest chunk, in tokens.
        median: Median chunk length.
        p95: 95th percentile of chunk length.
        max: Longest chunk.
        mean: Mean chunk length.
        total: Tokens over all chunks (overlap counted twice).
        tokenizer: ``whitespace`` or the tokenizer's name or path.
        chunk_size: The limit chunks were cut to, None when sections were kept whole.
        over_limit: Chunks longer than ``chunk_size`` (0 unless one word or token run
            cannot be split).
    """

    count: int
    min: int
    median: float
    p95: float
    max: int
    mean: float
    total: int
    tokenizer: str
    chunk_size: int | None
    over_limit: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class FileError(Exception):
    """Raised inside an extractor when a file cannot give any text; ``ingest`` turns it into a result."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))
