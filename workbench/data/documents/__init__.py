"""Documents to datasets: PDFs, web pages, Markdown, Word files and text into a corpus.

>>> from workbench.data.documents import DocumentConfig, ingest_documents, instruction_pairs
>>> ingest = ingest_documents("datasets/it_support/kb", DocumentConfig(chunk_size=256))  # doctest: +SKIP
>>> ingest.results_frame()          # one row per file: status, pages, chunks, message, fix  # doctest: +SKIP
>>> ingest.stats                    # ChunkStats(count=..., min=..., median=..., p95=..., max=...)  # doctest: +SKIP
>>> ingest.corpus                   # LoadedDataset, format "corpus": one row per chunk  # doctest: +SKIP
>>> pairs = instruction_pairs(ingest, template="question")   # review before training  # doctest: +SKIP

What comes out:

- ``corpus``: chunks of at most ``chunk_size`` tokens of the chosen tokenizer, cut at
  heading, paragraph, sentence or word boundaries in that order of preference, with
  ``overlap`` tokens shared by neighbours; columns ``text``, ``path``, ``title``,
  ``section`` (heading path), ``page`` (PDF), ``chunk``, ``tokens`` and ``_file``/``_line``.
  It is an ordinary dataset: ``find_duplicates``, ``scan_pii``, ``split_dataset`` apply,
  and ``ingest_documents`` runs the first two and counts findings per file.
- ``instruction_pairs``: one templated prompt per section, answered by the section's own
  text (``instruction`` or ``prompt_completion`` format), with its document and section.
- one ``FileResult`` per file: ``ok``, ``warning``, ``error`` or ``skipped``, with a
  message and a fix: encrypted PDF, scanned PDF (OCR needed), truncated or corrupt file,
  wrong extension, empty document, binary under a text name, undeclared HTML charset
  (what was assumed and why). One bad file never stops a folder.

Limits, against hostile or broken files (``DocumentConfig`` settings, each named in the fix):

- ``max_unpacked_mb`` (200) and ``max_compression_ratio`` (100): a DOCX is a ZIP package; one
  that declares more, or unpacks to more while it is counted, is refused as ``too_large``
  before python-docx parses it (a 300 KB file can hold gigabytes of XML).
- ``max_seconds_per_file`` (60): each file is extracted in a worker thread; one still going
  is stopped and reported as ``timed_out`` (``budget``).
- a symbolic link in the folder whose target lies outside it is not followed: ``outside_source``.
- HTML extraction is linear in the page's size and depth: facts about each element are
  computed bottom-up once, and nesting is walked with a stack, not recursion (``html_text``).

Libraries, and why each:

- **pypdf** (PDF): pure Python, BSD-licensed, actively maintained (the PyPDF2 line's
  successor), reads page by page from an open file, reports encryption and decrypts
  owner-password-only files (AES through **cryptography**, pypdf's own optional
  dependency, which we install). Its ``visitor_text`` hook gives position and font size,
  from which paragraphs and headings are recovered. PyMuPDF extracts faster but is AGPL
  (or commercial); pdfminer.six does finer layout analysis at a higher cost per page.
- **beautifulsoup4** with Python's ``html.parser`` (HTML): tolerant of broken markup,
  keeps source line numbers, and lets the main-content rule be short and explicit (see
  ``html_text``); it is already in the environment through nbconvert. trafilatura extracts
  main content well but brings courlan, htmldate (and dateparser), justext and urllib3 for
  work this module does not need, and its output would have to be parsed again to recover
  heading levels and source lines.
- **charset-normalizer** (HTML, text with no declared charset): the guesser requests
  uses; consulted only after byte-order mark, declaration and UTF-8 have failed.
- **markdown-it-py** (Markdown): a CommonMark-compliant token stream with source line
  maps, plus GitHub tables; already in the environment through rich.
- **python-docx** (DOCX): the standard reader of Word's OOXML; paragraph styles give
  headings (``Title``, ``Heading N``) and list items, tables come in document order.
- **tqdm** (progress): already installed with datasets; the plain text bar, so the core
  imports no IPython.

Very large Markdown and text files are read in 1 MB blocks and parsed in units cut before a
heading (or at a blank line); PDFs are read a page at a time from an open file. HTML and
DOCX are parsed whole (their parsers need the full tree).
"""

from . import html_text, office, pdf_text, plain  # noqa: F401 - importing registers the extractors
from .base import DOCUMENT_PROBLEM_KINDS, Block, ChunkStats, DocumentConfig, FileResult
from .chunks import Section, TokenCounter, chunk_stats, chunk_text, sections, token_counter
from .extractors import DOCUMENT_SUFFIXES, EXTRACTORS, FileContext, extractor
from .ingest import (
    CORPUS_COLUMNS,
    SECTION_COLUMNS,
    DocumentIngest,
    extract_blocks,
    ingest_documents,
    is_document_source,
    save_jsonl,
)
from .pairs import PAIR_TEMPLATES, SKIP_HEADINGS, SectionRef, instruction_pairs, pair_template

__all__ = [
    "CORPUS_COLUMNS", "DOCUMENT_PROBLEM_KINDS", "DOCUMENT_SUFFIXES", "EXTRACTORS", "PAIR_TEMPLATES",
    "SECTION_COLUMNS", "SKIP_HEADINGS",
    "Block", "ChunkStats", "DocumentConfig", "DocumentIngest", "FileContext", "FileResult", "Section", "SectionRef",
    "TokenCounter",
    "chunk_stats", "chunk_text", "extract_blocks", "extractor", "ingest_documents", "instruction_pairs",
    "is_document_source", "pair_template", "save_jsonl", "sections", "token_counter",
]
