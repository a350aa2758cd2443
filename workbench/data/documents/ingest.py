"""``ingest_documents``: a file or folder of documents to a chunked corpus and per-file results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from ...files import atomic_write_jsonl
from ..clean import DuplicateReport, find_duplicates
from ..dataset import LoadedDataset, ValidationReport
from ..load import load_table
from ..pii import PiiReport, scan_pii
from ..problems import DatasetError, Problem, display_path, outside_link_problem
from ..readers import SUFFIXES as DATA_SUFFIXES
from .base import Block, ChunkStats, DocumentConfig, FileError, FileResult, status_of
from .budget import TimeUp, within
from .charsets import describe, sniff
from .chunks import TokenCounter, chunk_text, sections, stats_from_counts, token_counter
from .extractors import DOCUMENT_SUFFIXES, EXTRACTORS, NOT_READ, FileContext

#: Corpus columns, in order (``_file`` and ``_line`` follow).
CORPUS_COLUMNS = ("text", "path", "title", "section", "page", "chunk", "tokens")
#: Section table columns: one row per heading with a body, for instruction pairs.
SECTION_COLUMNS = ("path", "title", "section", "heading", "level", "page", "line", "text")
_RESULT_COLUMNS = ("file", "status", "kind", "title", "pages", "sections", "chunks", "words", "encoding",
                   "duplicate_chunks", "pii_findings", "message", "fix")
#: Suffix to suggest for content ``charsets.sniff`` recognises as a document.
_PROPER_SUFFIX = {"pdf": ".pdf", "html": ".html", "zip": ".docx", "ole": ".docx"}

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DocumentIngest:
    """Documents read into a corpus.

    Attributes:
        corpus: One row per chunk, ``corpus`` format: ``text`` then ``path``, ``title``,
            ``section`` (heading path), ``page`` (PDF), ``chunk`` (index in its file),
            ``tokens``, and ``_file``/``_line`` provenance. Ready for pretraining or
            continued pretraining, and for ``find_duplicates``/``scan_pii`` like any dataset.
        sections: One row per section with a body (``SECTION_COLUMNS``), whole, not chunked:
            the material ``instruction_pairs`` works from.
        results: One ``FileResult`` per file met, in path order.
        stats: Chunk count and token lengths.
        duplicates: ``find_duplicates`` on the corpus (None when ``scan=False``).
        pii: ``scan_pii`` on the corpus (None when ``scan=False``).
    """

    corpus: LoadedDataset
    sections: pd.DataFrame
    results: tuple[FileResult, ...]
    stats: ChunkStats
    duplicates: DuplicateReport | None = None
    pii: PiiReport | None = None

    @property
    def errors(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "error"]

    def result(self, name: str) -> FileResult:
        """The result of the file whose display path, or file name, is ``name``."""
        for r in self.results:
            if r.file == name or Path(r.file).name == name:
                return r
        raise KeyError(f"no file {name!r} among {len(self.results)} results")

    def results_frame(self) -> pd.DataFrame:
        """Per-file results as a table, one row per file; ``file`` is relative to the folder ingested."""
        root = Path(self.corpus.source)
        rows = [{c: getattr(r, c) for c in _RESULT_COLUMNS} for r in self.results]
        for row in rows:
            path = Path(row["file"])
            row["file"] = str(path.relative_to(root)) if path != root and path.is_relative_to(root) else path.name
        return pd.DataFrame(rows, columns=list(_RESULT_COLUMNS))

    def counts(self) -> dict[str, int]:
        """Files by status."""
        return dict(Counter(r.status for r in self.results))


# --------------------------------------------------------------------------- files


def _files(source: Path) -> list[Path]:
    """The files under ``source``, and its symbolic links (to files or folders), in path order."""
    if source.is_file():
        return [source]
    out = []
    for p in sorted(source.rglob("*")):  # rglob does not walk into linked folders
        rel = p.relative_to(source).parts
        # Hidden files, and Office's "~$name.docx" lock files, are not documents.
        if (p.is_file() or p.is_symlink()) and not any(part.startswith(".") for part in rel) \
                and not p.name.startswith("~$"):
            out.append(p)
    return out


def _outside(path: Path, root: Path) -> FileResult | None:
    """A refusal when ``path`` is a link whose target lies outside the folder ``root`` (resolved)."""
    problem = outside_link_problem(path, root, "ingested")
    return None if problem is None else FileResult(problem.file, "error", problems=(problem,))


def is_document_source(source) -> bool:
    """Whether ``source`` is a document file, or a folder of documents and no data files.

    ``.txt`` counts as neither way on its own: a folder of only ``.txt`` files stays with
    ``load_dataset``'s text reader.
    """
    if not isinstance(source, (str, Path)):
        return False
    path = Path(source).expanduser()
    documents = {s for s, name in DOCUMENT_SUFFIXES.items() if name != "text"}
    if path.is_file():
        return path.suffix.lower() in documents
    if not path.is_dir():
        return False
    suffixes = {p.suffix.lower() for p in _files(path)}
    return bool(suffixes & documents) and not (suffixes & (set(DATA_SUFFIXES) - set(DOCUMENT_SUFFIXES)))


def _choose(path: Path, head: bytes, file: str) -> tuple[str | None, list[Problem], bool]:
    """Which extractor reads ``path``: ``(name or None, problems, skipped)``.

    The suffix names the extractor, unless the content is plainly another document type
    (a PDF, an HTML page, a Word package), which is then read as what it is, with a
    wrong-extension warning. Other mismatches are left to the named extractor, which says
    what it found instead ("not a PDF: ... it holds plain text").
    """
    suffix = path.suffix.lower()
    named = DOCUMENT_SUFFIXES.get(suffix)
    content = sniff(head)
    if named is None:
        hint = ""
        if content in _PROPER_SUFFIX:
            hint = f" It holds {describe(content)}: rename it to {_PROPER_SUFFIX[content]} to ingest it."
        if suffix in NOT_READ:
            reason = NOT_READ[suffix]
        elif suffix in DATA_SUFFIXES:
            reason = f"'{suffix}' is a data file, not a document: load it with workbench.data.load_dataset."
        else:
            reason = f"'{suffix or '(no suffix)'}' is not a document type that is read here."
        return None, [Problem(kind="unsupported_file", file=file, severity="warning", message=reason + hint,
                              fix="Supported: " + ", ".join(sorted(DOCUMENT_SUFFIXES)) + ".")], True
    actual = content if content in ("pdf", "html") else "docx" if content == "zip" and _is_word(path) else None
    if actual and actual != named:
        return actual, [Problem(
            kind="wrong_extension", file=file, severity="warning",
            message=f"the file is named {suffix} but holds {describe(content)}; it was read as {actual}.",
            fix=f"Rename it to {_PROPER_SUFFIX[content]}.",
        )], False
    if named in ("html", "markdown", "text") and content not in ("text", "html"):
        return None, [Problem(
            kind="binary", file=file,
            message=f"the file is named {suffix} but holds {describe(content)}, not text.",
            fix="Check that this is the file you meant; it may have been saved under the wrong name.",
        )], False
    return named, [], False


def _pick(path: Path, ctx: FileContext) -> tuple[str | None, bool]:
    """The extractor for ``path`` (None: not read) and whether it was skipped; problems go on ``ctx``."""
    if ctx.size == 0:
        ctx.problems.append(Problem(kind="empty_file", file=ctx.file, message="the file is empty (0 bytes).",
                                    fix="Check that the export or download finished."))
        return None, False
    with open(path, "rb") as fh:
        head = fh.read(4096)
    name, problems, skipped = _choose(path, head, ctx.file)
    ctx.problems.extend(problems)
    return name, skipped


def _is_word(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return "word/document.xml" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


# --------------------------------------------------------------------------- progress


class _Progress:
    """Bytes read over all files, to a tqdm bar (``progress=True``) or a callback."""

    def __init__(self, progress: bool | Progress, total: int):
        self.total, self.done, self.file = total, 0, ""
        self.bar = None
        self.callback: Progress | None = None
        if progress is True:
            from tqdm import tqdm  # plain tqdm: text on stderr, in a terminal, Jupyter or papermill alike

            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="documents")
        elif callable(progress):
            self.callback = progress

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if self.callback is not None:
            self.callback(self.done, self.total, self.file)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- one file


@dataclass
class _FileOutput:
    result: FileResult
    rows: list[dict]
    section_rows: list[dict]


def _ingest_file(path: Path, counter: TokenCounter, config: DocumentConfig, encoding: str | None,
                 progress: _Progress) -> _FileOutput:
    file = display_path(path)
    progress.file = file
    size = path.stat().st_size
    ctx = FileContext(path, file, size, encoding, progress.advance, config)

    def finish(skipped: bool = False, kind: str | None = None, **fields) -> _FileOutput:
        ctx.advance(size)  # whatever the extractor did not report
        problems = tuple(ctx.problems)
        return _FileOutput(FileResult(file, status_of(problems, skipped), kind, problems=problems,
                                      notes=tuple(ctx.notes), encoding=ctx.encoding_used, pages=ctx.pages, **fields),
                           [], [])

    name, skipped = _pick(path, ctx)
    if name is None:
        return finish(skipped)
    rows: list[dict] = []
    section_rows: list[dict] = []
    words = 0
    n_sections = 0

    def counted(blocks):
        nonlocal words
        for block in blocks:
            words += len(block.text.split())
            yield block

    blocks = within(lambda: EXTRACTORS[name](ctx), config.max_seconds_per_file)
    try:
        for section in sections(counted(blocks)):
            n_sections += section.heading is not None
            parts = section.lead + ([section.heading] if section.heading else []) + section.blocks
            for chunk in chunk_text(counter, parts, config.chunk_size, config.overlap):
                rows.append({"text": chunk.text, "path": file, "section": section.path, "page": chunk.page,
                             "chunk": len(rows), "tokens": chunk.tokens, "_file": file, "_line": chunk.line})
            if section.heading is not None and section.blocks:
                first = section.blocks[0]
                section_rows.append({"path": file, "section": section.path, "heading": section.heading.text,
                                     "level": section.heading.level, "page": section.heading.page or first.page,
                                     "line": section.heading.line, "text": section.body})
    except FileError as e:
        ctx.problems.append(e.problem)
        return finish(kind=name, words=words)
    except TimeUp:
        ctx.problems.append(Problem(
            kind="timed_out", file=file,
            message=f"reading the file took longer than max_seconds_per_file={config.max_seconds_per_file:g} s "
                    f"(stopped after {words:,} words); it was left out.",
            fix="If the file is genuine, raise DocumentConfig.max_seconds_per_file (None for no limit), or split "
                "it into smaller files; a small file that takes this long may be malformed or hostile."))
        return finish(kind=name, words=words)
    except Exception as e:  # noqa: BLE001 - an unexpected library failure must not stop a folder
        ctx.problems.append(Problem(kind="corrupt", file=file,
                                    message=f"the file could not be read ({type(e).__name__}: {str(e)[:160]}).",
                                    fix="Open it in the program that made it and save it again; if that works, "
                                        "report this file as a bug."))
        return finish(kind=name, words=words)
    finally:
        blocks.close()  # stops the worker thread now, whatever happened
    if not rows:
        ctx.problems.append(Problem(kind="no_text", file=file, message="the document holds no text.",
                                    fix="Check that this is the file you meant."))
        return finish(kind=name, words=words)
    title = ctx.title or path.stem
    for row in rows + section_rows:
        row["title"] = title
    out = finish(kind=name, title=title, sections=n_sections, chunks=len(rows), words=words)
    return replace(out, rows=rows, section_rows=section_rows)


# --------------------------------------------------------------------------- corpus


def _dataset(frame: pd.DataFrame, format: str, columns: dict[str, str], source: str,
             report: ValidationReport) -> LoadedDataset:
    """Validate ``frame`` through ``load_table`` like any table, keeping its own provenance."""
    provenance = frame[["_file", "_line"]].copy()
    ds = load_table(frame.drop(columns=["_file", "_line"]), format=format, columns=columns)
    out = ds.frame.copy()
    out["_file"] = provenance["_file"].tolist()
    out["_line"] = pd.Series([None if pd.isna(x) else int(x) for x in provenance["_line"].tolist()],
                             index=out.index, dtype=object)
    return ds.with_frame(out, source=source, report=replace(report, notes=ds.report.notes + report.notes))


def _empty(columns, format: str, mapping: dict[str, str], source: str, report: ValidationReport) -> LoadedDataset:
    return LoadedDataset(pd.DataFrame(columns=list(columns) + ["_file", "_line"], dtype=object), format, mapping,
                         source, report)


def ingest_documents(
    source,
    config: DocumentConfig | None = None,
    *,
    tokenizer=None,
    encoding: str | None = None,
    progress: bool | Progress = False,
    scan: bool = True,
    strict: bool = False,
) -> DocumentIngest:
    """Read a document, or a folder of them (recursively), into a chunked corpus.

    Every file gets a ``FileResult``; a file that cannot be read (encrypted, scanned,
    corrupt, empty, binary under a text name, a ZIP bomb, one that runs past
    ``config.max_seconds_per_file``) is reported there and the rest go on. A symbolic link
    in the folder to a file or folder outside it is reported, not read.

    Args:
        source: A file or folder: PDF, HTML, Markdown, DOCX, plain text.
        config: Tokenizer (by name), chunk size and overlap; ``DocumentConfig()`` if None.
        tokenizer: A tokenizer object (Hugging Face, or ``tokenizers.Tokenizer``), which
            takes the place of ``config.tokenizer``.
        encoding: Force this text encoding for HTML, Markdown and text files.
        progress: True for a tqdm progress bar in bytes; or a callable
            ``progress(done_bytes, total_bytes, file)`` called as files are read.
        scan: Run ``find_duplicates`` and ``scan_pii`` on the corpus and count the findings
            per file.
        strict: Raise a ``DatasetError`` listing the problems of every file that failed.

    Returns:
        A ``DocumentIngest``: the corpus, sections, per-file results and chunk statistics.

    Raises:
        DatasetError: ``source`` does not exist; or, with ``strict``, any file failed.
    """
    config = config or DocumentConfig()
    path = Path(source).expanduser()
    label = display_path(path)
    if not path.exists():
        raise DatasetError(Problem(kind="not_found", file=str(source), message="no such file or folder.",
                                   fix="Check the path."))
    counter = token_counter(tokenizer if tokenizer is not None else config.tokenizer)
    root = path.resolve() if path.is_dir() else None
    # A link in a folder to something outside it is refused, not followed: a folder of
    # documents must not read /etc/hostname or a home directory into the corpus.
    plan = [(f, _outside(f, root) if root is not None else None) for f in _files(path)]
    # A link to a folder inside is not walked (its files are read where they are), nor is a broken one.
    plan = [(f, refused) for f, refused in plan if refused is not None or f.is_file()]
    bar = _Progress(progress, sum(f.stat().st_size for f, refused in plan if refused is None))
    outputs: list[_FileOutput] = []
    try:
        for f, refused in plan:
            outputs.append(_FileOutput(refused, [], []) if refused is not None
                           else _ingest_file(f, counter, config, encoding, bar))
    finally:
        bar.close()

    rows = [r for o in outputs for r in o.rows]
    problems = tuple(p for o in outputs for p in o.result.problems)
    tally = Counter(o.result.status for o in outputs)
    notes = (f"{len(outputs)} file{'s' if len(outputs) != 1 else ''}: "
             + ", ".join(f"{n} {s}" for s, n in sorted(tally.items())) if outputs else "no files found",)
    report = ValidationReport(problems, len(rows), len(rows), notes)
    if rows:
        # object columns: a page number stays an int (or None), never 3.0 or NaN in saved JSON
        frame = pd.DataFrame(rows, columns=list(CORPUS_COLUMNS) + ["_file", "_line"], dtype=object)
        corpus = _dataset(frame, "corpus", {"text": "text"}, label, report)
    else:
        corpus = _empty(CORPUS_COLUMNS, "corpus", {"text": "text"}, label, report)
    section_frame = pd.DataFrame([r for o in outputs for r in o.section_rows], columns=list(SECTION_COLUMNS),
                                 dtype=object)
    stats = stats_from_counts([r["tokens"] for r in rows], counter.name, config.chunk_size)

    results = [o.result for o in outputs]
    duplicates = pii = None
    if scan:
        duplicates, pii = find_duplicates(corpus), scan_pii(corpus)
        files_of = corpus.frame["_file"].tolist()
        dup_by_file = Counter(files_of[r] for r in duplicates.rows_to_drop(normalized=True))
        pii_by_file = Counter(files_of[f.row] for f in pii.findings)
        results = [replace(r, duplicate_chunks=dup_by_file.get(r.file, 0), pii_findings=pii_by_file.get(r.file, 0))
                   for r in results]
    if strict and (failed := [p for r in results if r.status == "error" for p in r.problems if p.severity == "error"]):
        raise DatasetError(failed)
    return DocumentIngest(corpus, section_frame, tuple(results), stats, duplicates, pii)


def extract_blocks(path, encoding: str | None = None,
                   config: DocumentConfig | None = None) -> tuple[list[Block], FileResult]:
    """The blocks of one document, unchunked, with its result (for inspecting an extractor).

    ``config`` gives the limits on unpacked size (``DocumentConfig()`` if None); the time
    budget applies to ``ingest_documents`` only: here the extractor runs in the caller's thread.

    Raises:
        DatasetError: ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(Problem(kind="not_found", file=str(path), message="no such file.", fix="Check the path."))
    ctx = FileContext(path, display_path(path), path.stat().st_size, encoding, config=config)
    name, skipped = _pick(path, ctx)
    blocks: list[Block] = []
    if name is not None:
        try:
            blocks = list(EXTRACTORS[name](ctx))
        except FileError as e:
            ctx.problems.append(e.problem)
    problems = tuple(ctx.problems)
    return blocks, FileResult(ctx.file, status_of(problems, skipped), name, title=ctx.title or path.stem,
                              pages=ctx.pages, encoding=ctx.encoding_used, problems=problems,
                              notes=tuple(ctx.notes), words=sum(len(b.text.split()) for b in blocks))


def save_jsonl(ds: LoadedDataset, path) -> Path:
    """Write a dataset's rows (canonical fields and metadata, no provenance) as JSON Lines, atomically.

    ``load_dataset`` reads the file back in the same format.
    """
    return atomic_write_jsonl(path, ds.records())
