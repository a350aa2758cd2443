"""Readers: files on disk (and in-memory frames) to a raw table with provenance.

A reader turns one file into a ``RawTable``: a DataFrame of the records as written, the
1-based line each record starts on (for text formats), and the problems met while parsing
(malformed JSON on line 7, a CSV row with too many fields, non-UTF-8 bytes at offset
1234). Readers never raise for bad content; they report, so that lenient loading can skip
the bad records and strict loading can list every problem at once.

Readers are registered by name in ``READERS`` with the ``@reader`` decorator, and chosen
by file suffix through ``SUFFIXES`` unless the caller names one.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import json
import re
import statistics
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .problems import DatasetError, Problem, display_path

PROVENANCE = ("_file", "_line")
#: Names of columns known only by position (a headerless CSV, JSON rows written as arrays).
POSITIONAL = "column_{}"
#: Split names and the other names they go by (``val`` in a JSON of splits, ``dev`` in a folder).
SPLIT_ALIASES = (("train", "training"), ("validation", "valid", "val", "dev", "eval"), ("test", "testing"))


def positional_names(n: int) -> list[str]:
    """``column_1`` ... ``column_n``: the names of columns that have only a position."""
    return [POSITIONAL.format(i + 1) for i in range(n)]


def resolve_split(names, split: str) -> str | None:
    """``split`` if ``names`` has it, else the one of ``names`` it is another name for (``val`` for ``validation``)."""
    if split in names:
        return split
    group = next((g for g in SPLIT_ALIASES if split.lower() in g), ())
    return next((n for n in names if n.lower() in group), None)


@dataclass
class RawTable:
    """Records as read from one source, before format detection.

    Attributes:
        frame: One row per record, columns as found in the file.
        file: Display path of the source file, or None for in-memory data.
        lines: Start line of each record (1-based), or None where lines do not apply.
        problems: Parse problems; records that failed to parse are not in ``frame``.
        bad_lines: Lines holding undecodable bytes; records touching them are suspect.
        end_lines: Last line of each record, for multi-line CSV records.
        notes: What the reader decided for the user to know (which line was the header, which split was read).
        splits: The splits the source holds (a JSON object of splits), whichever one was read.
        header_line: The line of the header row, for a delimited file that has one.
    """

    frame: pd.DataFrame
    file: str | None = None
    lines: list[int | None] | None = None
    problems: list[Problem] = field(default_factory=list)
    bad_lines: dict[int, Problem] = field(default_factory=dict)
    end_lines: list[int | None] | None = None
    notes: list[str] = field(default_factory=list)
    splits: tuple[str, ...] = ()
    header_line: int | None = None


ReaderFn = Callable[..., RawTable]
READERS: dict[str, ReaderFn] = {}

#: File suffix to reader name. Documents (PDF, HTML, DOCX) are handled by the documents module.
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".psv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}


def reader(name: str) -> Callable[[ReaderFn], ReaderFn]:
    """Register a reader function under ``name``."""

    def register(fn: ReaderFn) -> ReaderFn:
        READERS[name] = fn
        return fn

    return register


# --------------------------------------------------------------------------- decoding


_ENCODING_FIX = ("Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`), "
                 "or pass encoding='latin-1' (or the file's real encoding) when loading.")


class _Undecodable:
    """Collects the undecodable byte ranges of one ``bytes.decode`` call (a ``codecs`` error handler)."""

    def __init__(self, limit: int = 1000):
        self.spans: list[tuple[int, int]] = []
        self.limit = limit

    def __call__(self, error: UnicodeDecodeError):
        if len(self.spans) < self.limit:
            self.spans.append((error.start, error.end))
        return "\ufffd", error.end


_UNDECODABLE = threading.local()  # the collector of the decode running in this thread
codecs.register_error("workbench.undecodable", lambda error: _UNDECODABLE.current(error))


def decode_bytes(raw: bytes, file: str, encoding: str = "utf-8") -> tuple[str, dict[int, Problem]]:
    """Decode ``raw``, reporting every undecodable byte with its offset and line.

    Returns the text (bad bytes replaced by U+FFFD) and a map from line number to the
    first encoding problem on that line (the first 1,000 bad spans are placed; the rest are
    replaced all the same). Linear in the size of ``raw``, however many bytes are bad.
    """
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        encoding = "utf-8"
    try:
        return raw.decode(encoding), {}
    except UnicodeDecodeError:
        pass
    except LookupError:
        raise DatasetError(Problem(
            kind="encoding", file=file, message=f"unknown encoding {encoding!r}.",
            fix="Pass encoding= a codec Python knows, such as 'utf-8', 'latin-1', 'cp1252' or 'utf-16'.",
        )) from None
    handler = _UNDECODABLE.current = _Undecodable()
    text = raw.decode(encoding, errors="workbench.undecodable")
    bad: dict[int, Problem] = {}
    single_byte_lines = codecs.lookup(encoding).name not in ("utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                                             "utf-32-le", "utf-32-be")
    line, counted = 1, 0
    for start, end in handler.spans:
        if single_byte_lines:
            line += raw.count(b"\n", counted, start)
            counted = start
            column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        else:  # a wide encoding: count the line breaks of the text decoded before the bad bytes
            line = raw[:start].decode(encoding, errors="replace").count("\n") + 1
            column = None
        if line not in bad:
            at = f"line {line}, column {column}" if column is not None else f"line {line}"
            bad[line] = Problem(
                kind="encoding", file=file, line=line,
                message=f"bytes that are not valid {encoding.upper()} at byte offset {start} ({at}): "
                        f"{raw[start:end]!r}.",
                fix=_ENCODING_FIX,
            )
    return text, bad


#: Leading bytes of files that are not text, what they are, and what to do, for a binary file under a text suffix.
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed data",
     "Decompress it first (`gzip -dc {file} > plain.csv`, with the suffix of what is inside) and load the result."),
    (b"\xfd7zXZ\x00", "xz-compressed data", "Decompress it first (`xz -dc {file} > plain.csv`) and load the result."),
    (b"(\xb5/\xfd", "zstd-compressed data", "Decompress it first (`zstd -dc {file} > plain.csv`) and load the result."),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "Extract it and load the data file inside."),
    (b"Rar!\x1a\x07", "a RAR archive", "Extract it and load the data file inside."),
    (b"PAR1", "a Parquet file", "Rename it to .parquet, or pass reader='parquet' (--reader parquet)."),
    (b"ARROW1", "an Arrow IPC file", "Convert it to Parquet (`pyarrow.feather.read_table(...)` then "
                                     "`pyarrow.parquet.write_table(...)`) and load that."),
    (b"%PDF-", "a PDF document", "Give it the .pdf suffix: load_dataset reads PDF documents into a corpus."),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (an .xls workbook or a .doc document)",
     "Open it and save it as 'CSV UTF-8', then load that."),
    (b"SQLite format 3\x00", "an SQLite database",
     "Export the table you need (`sqlite3 -header -csv {file} 'select * from t' > out.csv`) and load that."),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "Point at the data file, not an image."),
    (b"\xff\xd8\xff", "a JPEG image", "Point at the data file, not an image."),
    (b"GIF8", "a GIF image", "Point at the data file, not an image."),
)


def _zip_kind(path: Path) -> tuple[str, str]:
    """What a ZIP file under a text suffix is (an Excel workbook, a Word document, an archive), and the fix."""
    file = display_path(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "a ZIP archive (damaged)", "Check the download; a ZIP archive is not a data file."
    if any(n.startswith("xl/") for n in names):
        return ("an Excel workbook (.xlsx)",
                f"Save it as 'CSV UTF-8' from Excel or LibreOffice, or run "
                f"`pandas.read_excel('{file}').to_csv('data.csv', index=False)`, and load the CSV.")
    if any(n.startswith("word/") for n in names):
        return "a Word document (.docx)", "Give it the .docx suffix: load_dataset reads DOCX documents into a corpus."
    if any(n.startswith("ppt/") for n in names):
        return "a PowerPoint presentation (.pptx)", "Export its text, or save it as PDF, and load that."
    if "mimetype" in names:
        return "an OpenDocument file", "Save it as CSV (spreadsheet) or DOCX/PDF (text document) and load that."
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (f"a ZIP archive of {len(names)} file(s) ({shown})",
            "Unzip it (`unzip " + file + "`) and load the data file inside.")


def binary_kind(path: Path, head: bytes) -> tuple[str, str] | None:
    """What the file starting with ``head`` is, and the fix, when its leading bytes say it is not text; else None."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(path)
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "bzip2-compressed data", f"Decompress it first (`bzip2 -dc {display_path(path)} > plain.csv`)."
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            return what, fix.replace("{file}", display_path(path))
    return None


def _wide_encoding(head: bytes) -> str | None:
    """``utf-16``/``utf-32`` (byte order mark) or ``utf-16-le``/``-be`` (mostly ASCII text without one); else None."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    sample = head[: len(head) - len(head) % 2]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd >= 0.6 * pairs and even <= 0.05 * pairs:
        return "utf-16-le"
    if even >= 0.6 * pairs and odd <= 0.05 * pairs:
        return "utf-16-be"
    return None


#: Above this share of NUL characters a file is binary data, not text with a few stray NUL bytes.
_NUL_SHARE = 0.01
#: Control codes (other than tab, line breaks and form feed) and undecodable bytes; above this share of the
#: first 64 KiB, a file is binary data, not text with a few bad bytes.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
_GARBAGE_SHARE = 0.10


@dataclass
class _Text:
    text: str
    bad: dict[int, Problem]
    notes: list[str]


def _read_text_file(path: Path, encoding: str, what: str = "text") -> _Text | RawTable:
    """The decoded text of ``path``, or (for content that is not text) a ``RawTable`` holding the problem.

    With the default UTF-8, a UTF-16/32 file (with a byte order mark, or mostly-ASCII text
    without one) is decoded as what it is, and a note says so. Leading bytes of another file type
    (an Excel workbook, gzip, Parquet) make a ``binary`` problem naming it. NUL bytes in text are
    ``binary`` problems on their lines (so lenient loading drops those records), or one for the
    whole file when there are many.
    """
    file = display_path(path)
    raw = path.read_bytes()
    notes: list[str] = []
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8") and (wide := _wide_encoding(raw[:4096])):
        encoding = wide
        notes.append(f"{file} is {wide.upper()} text, not UTF-8; it was decoded as {wide.upper()} "
                     "(pass encoding= to say otherwise)")
    elif (kind := binary_kind(path, raw[:64])):
        name, fix = kind
        return RawTable(pd.DataFrame(), file, [], [Problem(
            kind="binary", file=file, line=1,
            message=f"this is {name}, not {what} (found by its first bytes, whatever its name says).", fix=fix,
        )])
    text, bad = decode_bytes(raw, file, encoding)
    nul = text.count("\x00")
    head = text[:65536]
    garbage = len(_NOT_TEXT.findall(head))
    if nul > max(8, _NUL_SHARE * len(text)) or (len(head) >= 64 and garbage > _GARBAGE_SHARE * len(head)):
        return RawTable(pd.DataFrame(), file, [], [Problem(
            kind="binary", file=file, line=1,
            message=f"this is binary data, not {what}: {nul} NUL bytes in all, and {garbage} of the first "
                    f"{len(head)} characters are control codes or undecodable bytes.",
            fix=f"Check what the file is (`file {file}`), and export the data as CSV or JSON Lines text.",
        )], bad)
    if nul:
        pos, line, counted = text.find("\x00"), 1, 0
        while pos != -1:
            line += text.count("\n", counted, pos)
            counted = pos
            column = pos - (text.rfind("\n", 0, pos) + 1) + 1
            bad.setdefault(line, Problem(
                kind="binary", file=file, line=line,
                message=f"a NUL byte (\\x00) at line {line}, column {column}: text holds no NUL bytes, so the "
                        "record is damaged.",
                fix=f"Remove the NUL bytes (`tr -d '\\000' < {file} > clean{path.suffix}`) or re-export the file.",
            ))
            pos = text.find("\x00", pos + 1)
        text = text.replace("\x00", "\ufffd")
    return _Text(text, bad, notes)


def _empty_file_problem(file: str, what: str = "file") -> Problem:
    return Problem(
        kind="empty_file",
        message=f"the {what} is empty: no records to load.",
        fix="Check that the export finished and that you pointed at the right file.",
        file=file,
    )


# --------------------------------------------------------------------------- CSV / TSV


#: Delimiters tried when none is given, in order of preference for a file with no telling suffix.
_DELIMITERS = ("\t", ",", ";", "|")
_NUMBER = re.compile(r"^[+-]?(\d+[.,]?\d*|[.,]\d+)([eE][+-]?\d+)?%?$")


def _detect_delimiter(sample: str, prefer: tuple[str, ...]) -> str | None:
    """The delimiter that splits the first records of ``sample`` into the same number (2 or more) of fields."""
    complete = sample[: sample.rfind("\n") + 1] or sample  # the last line of a cut sample may be partial
    best, best_score = None, (0.0, 0)
    for rank, delim in enumerate(prefer):
        counts = []
        try:
            for row in csv.reader(io.StringIO(complete, newline=""), delimiter=delim):
                if row and any(c.strip() for c in row):
                    counts.append(len(row))
                if len(counts) >= 50:
                    break
        except csv.Error:
            continue
        if not counts:
            continue
        width, agree = Counter(counts).most_common(1)[0]
        score = (agree / len(counts), -rank)
        if width >= 2 and score[0] >= 0.8 and score > best_score:
            best, best_score = delim, score
    return best


def _sniff_delimiter(path: Path, text: str, delimiter: str | None) -> str:
    if delimiter:
        return delimiter
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    prefer = (",", "\t", ";", "|") if path.suffix.lower() == ".csv" else _DELIMITERS
    return _detect_delimiter(text[:65536], prefer) or ","


def sniff_reader(path: Path) -> str | None:
    """The reader for a file whose name has no extension, from its first bytes; None for a binary file."""
    with path.open("rb") as f:
        head = f.read(65536)
    if b"\x00" in head:
        return None
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text[:1] in ("[", "{"):
        lines = [ln for ln in text.splitlines()[:3] if ln.strip()]
        return "jsonl" if len(lines) > 1 and _parses(lines[0]) else "json"
    return "csv" if _detect_delimiter(text, _DELIMITERS) else "text"


def header_option(header) -> bool | str:
    """``header`` as True, False or ``"auto"`` (the strings ``"true"`` and ``"false"`` are read as such)."""
    value = {"true": True, "false": False, "auto": "auto"}.get(str(header).strip().lower())
    if value is None:
        raise DatasetError(Problem(kind="malformed_csv", message=f"header={header!r} is not a header setting.",
                                   fix="Pass header=True, header=False or header='auto'."))
    return value


@reader("csv")
def read_csv(path: Path, encoding: str = "utf-8", delimiter: str | None = None, header: bool | str = "auto",
             quotechar: str | None = None, columns: dict[str, str] | None = None, **_) -> RawTable:
    """CSV or TSV; quoted fields may span lines.

    Args:
        delimiter: The field separator; sniffed from the first records when None.
        header: True (the first row names the columns), False (it is a record; columns are
            ``column_1``, ...), or ``"auto"``: a header unless the first row reads as a record
            (a number or a sentence like the values below it, or a value repeated below it).
        quotechar: The quote character (default ``"``).
        columns: The caller's column map: a first row holding its source names is the header,
            and one naming only ``column_N`` columns says the file has none.
    """
    file = display_path(path)
    read = _read_text_file(path, encoding, "delimited text (CSV/TSV)")
    if isinstance(read, RawTable):
        return read
    text, bad = read.text, read.bad
    if not text.strip():
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)], bad, notes=read.notes)
    delim = _sniff_delimiter(path, text, delimiter)
    options = {"quotechar": quotechar or '"', "header": header_option(header), "columns": columns or {}}
    table = _parse_csv(text, file, delim, bad, quoting=csv.QUOTE_MINIMAL, **options)
    if delim == "\t" and any(p.kind == "malformed_csv" and "cannot be parsed" in p.message for p in table.problems):
        # Tab-separated exports often leave quotes unescaped; read them literally if that parses cleanly.
        literal = _parse_csv(text, file, delim, bad, quoting=csv.QUOTE_NONE, **options)
        if not any(p.severity == "error" for p in literal.problems):
            table = literal
    table.notes[:0] = read.notes
    return table


@reader("tsv")
def read_tsv(path: Path, **options) -> RawTable:
    """Tab-separated values: the CSV reader with a tab as the delimiter."""
    return read_csv(path, **{**options, "delimiter": "\t"})


_HEADER_COLUMNS = 1000


def _first_row_is_data(first: list[str], rest: list[list[str]]) -> str | None:
    """Why the first row reads as a record rather than column names, or None when it reads as a header.

    The first ``_HEADER_COLUMNS`` columns decide: enough to tell, and a 100,000-column file stays fast.
    """
    for i, cell in enumerate(c.strip() for c in first[:_HEADER_COLUMNS]):
        values = [v for v in (r[i].strip() for r in rest if i < len(r)) if v]
        if not cell or not values:
            continue
        shown = cell if len(cell) <= 40 else cell[:37] + "..."
        distinct = set(values)
        if cell in distinct and len(distinct) * 2 <= len(values):  # a repeated value of a label-like column
            return f"'{shown}' in column {i + 1} appears again below it as a value"
        if _NUMBER.match(cell) and sum(bool(_NUMBER.match(v)) for v in values) >= 0.9 * len(values):
            return f"'{shown}' in column {i + 1} is a number, like the values below it"
        if (len(cell.split()) >= 5 or len(cell) > 40) and statistics.median(len(v.split()) for v in values[:500]) >= 3:
            return f"'{shown}' in column {i + 1} is a sentence, like the values below it"
    return None


def _has_header(records: list[list[str]], header: bool | str, columns: dict[str, str]) -> tuple[bool, str | None]:
    """Whether the first record is the header, and why it looks like data (when it does)."""
    reason = _first_row_is_data(records[0], records[1:]) if len(records) > 1 and header is not False else None
    if header != "auto":
        return header, reason
    names = {str(v) for v in columns.values()}
    if names and names <= {c.strip() for c in records[0]}:
        return True, reason  # the caller's column map names cells of the first row
    if names and all(re.fullmatch(POSITIONAL.format(r"\d+"), n) for n in names):
        return False, reason
    return reason is None, reason


def _parse_csv(text: str, file: str, delim: str, bad, quoting: int, quotechar: str = '"',
               header: bool | str = True, columns: dict[str, str] | None = None) -> RawTable:
    rdr = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quotechar=quotechar, strict=True,
                     quoting=quoting)
    problems: list[Problem] = []
    records: list[list[str]] = []
    starts: list[int] = []
    ends: list[int] = []
    last = 0
    # The csv module stops at a field over 131,072 characters by default; a long document in one cell is
    # data, so the limit is lifted while this file is parsed (it is process-wide, hence restored after).
    previous = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        while True:
            try:
                row = next(rdr)
            except StopIteration:
                break
            except csv.Error as e:
                unread = text.count("\n", 0) + 1 - last
                problems.append(_csv_problem(file, last + 1, str(e), max(unread - 1, 0)))
                break  # the csv module cannot resynchronise after a broken quote
            start, last = last + 1, rdr.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            records.append(row)
            starts.append(start)
            ends.append(last)
    finally:
        csv.field_size_limit(previous)
    if not records:
        return RawTable(pd.DataFrame(), file, [], problems or [_empty_file_problem(file)], bad)
    notes: list[str] = []
    first_line = starts[0]
    has_header, reason = _has_header(records, header, columns or {})
    if has_header:
        head_line = starts[0]
        names, head_problems = _header_names(records[0], head_line, file)
        problems.extend(head_problems)
        records, starts, ends = records[1:], starts[1:], ends[1:]
        if header == "auto":
            notes.append(f"line {head_line} of {file} is the header ({_listed(names, 8)}); "
                         "pass header=False if it is a record")
        if reason:
            because = "columns= names its cells" if header == "auto" else "header=True"
            problems.append(Problem(
                kind="malformed_csv", severity="warning", file=file, line=head_line,
                message=f"line {head_line} is read as the header because {because}, but it looks like a record "
                        f"({reason}).",
                fix="If it is a record, pass header=False and name the columns column_1, column_2, ... in columns=.",
            ))
        what = "the header has"
    else:
        width = Counter(map(len, records)).most_common(1)[0][0]
        names = positional_names(width)
        what = "most rows have"
        if header == "auto":
            problems.append(Problem(
                kind="malformed_csv", severity="warning", file=file, line=starts[0],
                message=f"line {starts[0]} looks like a record, not column names ({reason}), so the file is read "
                        f"without a header row; its {width} columns are column_1, column_2, ...",
                fix="If that line is the header, pass header=True (--header true; header: true in a spec).",
            ))
        else:
            notes.append(f"{file} has no header row: columns {_listed(names, 8)}")
    names, dropped = _drop_trailing_unnamed(names, records)
    if dropped:
        notes.append(f"{file}: {len(dropped)} trailing column(s) with neither a name nor a value were left out")
        problems = [p for p in problems if not (p.severity == "warning" and p.field in dropped)]
    ncol = len(names)
    rows: list[list[str]] = []
    row_starts: list[int | None] = []
    row_ends: list[int | None] = []
    for row, start, end in zip(records, starts, ends):
        if len(row) > ncol and not any(c.strip() for c in row[ncol:]):
            row = row[:ncol]  # trailing separators with nothing after them
        if len(row) != ncol:
            sep = "tab" if delim == "\t" else repr(delim)
            problems.append(Problem(
                kind="malformed_csv", file=file, line=start,
                message=f"this row has {len(row)} fields but {what} {ncol}.",
                fix=(f"Quote fields that contain the delimiter {sep} or a line break with double quotes, "
                     "or fix the missing/extra separators."),
            ))
            continue
        rows.append(row)
        row_starts.append(start)
        row_ends.append(end)
    if not rows and not any(p.severity == "error" for p in problems):
        problems.append(Problem(
            kind="header_only", file=file, line=1,
            message=f"the file has a header ({_listed(names, 6)}) but no data rows.",
            fix="Check that the export wrote the rows, or point at the right file.",
        ))
    # One 2-D block: a frame built column by column takes seconds on a 100,000-column file.
    # Column names as plain objects too: an Arrow-backed index is slow to walk name by name.
    frame = pd.DataFrame(np.array(rows, dtype=object), columns=pd.Index(names, dtype=object), dtype=object) \
        if rows else pd.DataFrame(columns=names)
    return RawTable(frame, file, row_starts, problems, bad, row_ends, notes,
                    header_line=first_line if has_header else None)


def _listed(names: list[str], n: int, width: int = 40) -> str:
    """The first ``n`` of ``names``, each cut to ``width`` characters, and how many more (for messages)."""
    shown = [x if len(x) <= width else x[: width - 3] + "..." for x in map(str, names[:n])]
    more = f", ... ({len(names)} in all)" if len(names) > n else ""
    return ", ".join(shown) + more


def _header_names(row: list[str], line: int, file: str) -> tuple[list[str], list[Problem]]:
    """Column names from a header row: an empty name becomes ``column_N``, a repeated one is an error."""
    names = [h.strip() for h in row]
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            names[i] = POSITIONAL.format(i + 1)
            problems.append(Problem(
                kind="malformed_csv", severity="warning", file=file, line=line, field=names[i],
                message=f"header column {i + 1} has no name; it is called '{names[i]}' here.",
                fix="Give every column a name in the header row.",
            ))
        elif name in seen:
            problems.append(Problem(
                kind="malformed_csv", file=file, line=line, field=name,
                message=f"duplicate column name '{name}' in the header (columns {seen[name] + 1} and {i + 1}).",
                fix="Rename one of the two columns.",
            ))
            names[i] = f"{name}.{i + 1}"
        seen.setdefault(name, i)
    return names, problems


def _drop_trailing_unnamed(names: list[str], records: list[list[str]]) -> tuple[list[str], list[str]]:
    """``names`` without the trailing ``column_N`` columns that are empty in every record (``a,b,,`` exports),
    and the names left out."""
    keep = len(names)
    while keep > 1 and names[keep - 1] == POSITIONAL.format(keep) and \
            not any(len(r) >= keep and r[keep - 1].strip() for r in records):
        keep -= 1
    return names[:keep], names[keep:]


#: The longest CSV field read (characters); Python's default of 131,072 stops at one long document.
CSV_FIELD_LIMIT = 2**31 - 1


def _csv_problem(file: str, line: int, detail: str, unread: int) -> Problem:
    if "field larger than field limit" in detail:
        fix = (f"A field on line {line} is longer than {CSV_FIELD_LIMIT:,} characters: split that text into "
               "several records, or store it as a text file and load the folder.")
    else:
        fix = ("Look for an opening double quote that is never closed; quotes inside a field are written twice "
               "(\"\"), or pass quotechar= if the file quotes with another character.")
    return Problem(
        kind="malformed_csv", file=file, line=line,
        message=f"the CSV cannot be parsed from here on ({detail}); the {unread} line(s) after line {line} were "
                "not read, so their records are missing.",
        fix=fix,
    )


# --------------------------------------------------------------------------- JSON


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


def _iter_array(text: str, pos: int):
    """Yield ``(start, end, value)`` for each element of the JSON array starting at ``pos``."""
    pos = _skip_ws(text, pos + 1)
    if text[pos] == "]":
        return
    while True:
        value, end = _DECODER.raw_decode(text, pos)
        yield pos, end, value
        pos = _skip_ws(text, end)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        else:
            return


def _value_pos(text: str, pos: int, key: str) -> int:
    """Where the value of ``key`` starts in the object at ``pos``; the last one wins, as in ``json.loads``."""
    return [p for k, p, _ in _iter_object(text, pos) if k == key][-1]


def _iter_object(text: str, pos: int):
    """Yield ``(key, value_start, value)`` for each member of the JSON object at ``pos``."""
    pos = _skip_ws(text, pos + 1)
    if text[pos] == "}":
        return
    while True:
        key, end = _DECODER.raw_decode(text, pos)
        pos = _skip_ws(text, _skip_ws(text, end) + 1)  # past ':'
        value, end = _DECODER.raw_decode(text, pos)
        yield key, pos, value
        pos = _skip_ws(text, end)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        else:
            return


class _LineIndex:
    def __init__(self, text: str):
        self.newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1


#: Brackets deeper than this are reported as too deep (Python's parser gives up near 1,000 levels).
MAX_JSON_DEPTH = 500


def json_depth_line(text: str, limit: int = MAX_JSON_DEPTH) -> int | None:
    """The 1-based line where brackets in the JSON ``text`` first nest deeper than ``limit``; None if they never do.

    A linear scan that skips strings; it exists to say where a document too deep for ``json.loads``
    (a ``RecursionError``) goes wrong.
    """
    depth, line, in_string, escaped = 0, 1, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth -= 1
        if ch == "\n":
            line += 1
    return None


def too_deep_message(limit: int = MAX_JSON_DEPTH) -> tuple[str, str]:
    """The message and fix for JSON nested too deeply to read."""
    return (f"JSON nested more than {limit} levels deep (arrays or objects inside one another); no data "
            "has that shape, and Python's parser cannot read it.",
            "Flatten the structure (records are objects of fields; chat messages a list of {role, content}), "
            "or remove the value if it is damaged or hostile.")


def _too_deep(file: str, text: str, first_line: int = 1) -> Problem:
    """The problem for JSON ``text`` (from ``first_line`` of ``file``) too deep to parse, at the line it gets so."""
    message, fix = too_deep_message()
    return Problem(kind="malformed_json", file=file, line=first_line - 1 + (json_depth_line(text) or 1),
                   message=message, fix=fix)


def _json_error(file: str, e: json.JSONDecodeError, line_offset: int = 0) -> Problem:
    return Problem(
        kind="malformed_json", file=file, line=e.lineno + line_offset,
        message=f"not valid JSON: {e.msg} (column {e.colno}).",
        fix="Fix the JSON syntax there (a missing comma, quote or bracket is the usual cause).",
    )


_MISSING = object()


def _dig(value, keys: list[str]):
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _is_row(value) -> bool:
    """An array of plain values: one row of a table written as arrays (``["how do i x", "intent_a"]``)."""
    return isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value)


def _to_records(values: list, inner: str | None = None) -> tuple[list[dict | None], dict[str, list[int]], str, str]:
    """Each JSON value as a record (None where it is not one), the others' indices by what they are, what was
    expected, and the fix.

    An object is a record and a string is ``{"text": ...}``; when most values are arrays, the arrays of the
    most common length are rows with columns ``column_1``, ``column_2``, ... (``[[text, label], ...]``).
    ``inner`` (dotted) names the key of each value that holds its record.
    """
    dug = [_dig(v, inner.split(".")) for v in values] if inner else values
    arrays = [v for v in dug if isinstance(v, list)]
    as_rows = len(arrays) * 2 > len(dug)
    width = Counter(map(len, arrays)).most_common(1)[0][0] if as_rows else 0
    records: list[dict | None] = []
    bad: dict[str, list[int]] = {}
    for i, (original, value) in enumerate(zip(values, dug)):
        if as_rows and _is_row(value) and len(value) == width:
            records.append(dict(zip(positional_names(width), value)))
        elif not as_rows and isinstance(value, (dict, str)):
            records.append(value if isinstance(value, dict) else {"text": value})
        else:
            records.append(None)
            what = (f"{_json_type(original)} without '{inner}'" if value is _MISSING else
                    f"an array of {len(value)} values" if as_rows and _is_row(value) else _json_type(value))
            bad.setdefault(what, []).append(i)
    if inner:
        fix = f"Check field=: every record must hold '{inner}' (dotted for nested keys)."
    elif as_rows:
        fix = f"Write every row as an array of {width} plain values, like the others ([text, label])."
    else:
        fix = "Make each record an object of fields, such as {\"prompt\": ..., \"completion\": ...}."
    return records, bad, f"an array of {width} values" if as_rows else "an object of fields", fix


def _grouped_problems(bad: dict[str, list[int]], file: str, lines: list, message, listing, fix: str) -> list[Problem]:
    """One ``not_records`` problem per kind of bad value, placed at the first, with the count and the next few."""
    problems = []
    for what, idx in bad.items():
        more = ""
        if len(idx) > 1:
            more = (f" ({len(idx)} in all: {', '.join(listing(i) for i in idx[:5])}"
                    f"{', ...' if len(idx) > 5 else ''})")
        problems.append(Problem(kind="not_records", file=file, line=lines[idx[0]],
                                message=f"{message(idx[0], what)}{more}.", fix=fix))
    return problems


def _records_from_items(items, file: str, index: _LineIndex, what: str,
                        inner: str | None = None) -> tuple[list, list, list, list[Problem]]:
    items = list(items)
    records, bad, expected, fix = _to_records([value for _, _, value in items], inner)
    starts = [index.line(start) for start, _, _ in items]
    problems = _grouped_problems(bad, file, starts,
                                 lambda i, kind: f"item {i} of {what} is {kind}, expected {expected}",
                                 lambda i: f"item {i} (line {starts[i]})", fix)
    keep = [i for i, record in enumerate(records) if record is not None]
    return ([records[i] for i in keep], [starts[i] for i in keep], [index.line(items[i][1] - 1) for i in keep],
            problems)


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


@reader("json")
def read_json(path: Path, encoding: str = "utf-8", field: str | None = None, split: str | None = None,
              **_) -> RawTable:
    """A JSON array of records (objects, or rows written as arrays), a columnar object, an object of splits
    (``{"train": [...], "test": [...]}``; ``split`` picks one, train by default), or records nested under a
    key (``field``, dotted)."""
    file = display_path(path)
    read = _read_text_file(path, encoding, "JSON text")
    if isinstance(read, RawTable):
        return read
    text, bad = read.text, read.bad
    if not text.strip():
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)], bad)
    try:
        data = json.loads(text)
    except RecursionError:
        return RawTable(pd.DataFrame(), file, [], [_too_deep(file, text)], bad)
    except json.JSONDecodeError as e:
        problem = _json_error(file, e)
        if path.suffix.lower() == ".json" and _looks_like_jsonl(text):
            problem = Problem(
                kind="malformed_json", file=file, line=e.lineno,
                message="this file holds one JSON object per line (JSON Lines), not one JSON document.",
                fix="Rename it to .jsonl or pass reader='jsonl'.",
            )
        return RawTable(pd.DataFrame(), file, [], [problem], bad)
    index = _LineIndex(text)
    start = _skip_ws(text, 0)
    notes: list[str] = []
    splits: tuple[str, ...] = ()
    if isinstance(data, list):
        records, lines, ends, problems = _records_from_items(_iter_array(text, start), file, index,
                                                             "the top-level array", field)
    elif isinstance(data, dict) and not data:
        records, lines, ends, problems = [], [], [], [_empty_file_problem(file, "JSON object")]
    elif isinstance(data, dict):
        (records, lines, ends, problems), notes, splits = _records_from_object(text, start, data, file, index,
                                                                               field, split)
    else:
        records, lines, ends = [], [], []
        problems = [Problem(
            kind="not_records", file=file, line=1,
            message=f"the top level is {_json_type(data)}, not records.",
            fix="Use an array of objects, or an object holding such an array under a key.",
        )]
    if not records and not problems:
        problems.append(_empty_file_problem(file, "JSON array"))
    frame = pd.DataFrame(records, dtype=object) if records else pd.DataFrame()  # object: no string inference
    return RawTable(frame.astype(object) if len(frame) else frame, file, lines, problems, bad, ends,
                    read.notes + notes, splits)


def _looks_like_jsonl(text: str) -> bool:
    lines = [ln for ln in text.splitlines()[:5] if ln.strip()]
    try:
        return len(lines) > 1 and all(isinstance(json.loads(ln), dict) for ln in lines)
    except json.JSONDecodeError:
        return False


def _tables_in(node: dict) -> dict[str, list]:
    """The keys of ``node`` that hold an array of records (objects, or rows written as arrays)."""
    return {k: v for k, v in node.items()
            if isinstance(v, list) and v and sum(isinstance(x, dict) or _is_row(x) for x in v[:50]) * 2 > len(v[:50])}


def _records_from_object(text, start, data: dict, file, index, field, split):
    """Records of the JSON object ``data`` (at ``start``), with the notes and the split names it holds."""
    seen: dict[str, int] = {}
    for key, pos, _ in _iter_object(text, start):
        if key in seen:
            return ([], [], [], [Problem(
                kind="malformed_json", file=file, line=index.line(pos), field=key,
                message=f"duplicate key '{key}' at the top level (first on line {seen[key]}); "
                        "JSON readers keep only the last one, so data would be lost silently.",
                fix="Rename or merge the two keys.",
            )]), [], ()
        seen[key] = index.line(pos)
    node, pos = data, start
    if field:
        keys = field.split(".")
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                available = sorted(node) if isinstance(node, dict) else []
                return ([], [], [], [Problem(
                    kind="not_records", file=file, field=".".join(keys[: depth + 1]),
                    message=f"no key '{key}' here; keys found: {', '.join(map(str, available[:10]))}.",
                    fix="Pass field= with the key (dotted for nested keys) that holds the records.",
                )]), [], ()
            pos = _value_pos(text, pos, key)
            node = node[key]
        if isinstance(node, list):
            return _records_from_items(_iter_array(text, pos), file, index, f"'{field}'"), [], ()
        if not isinstance(node, dict) or not _tables_in(node):
            return ([], [], [], [Problem(
                kind="not_records", file=file, field=field,
                message=f"'{field}' holds {_json_type(node)}, not an array of records.",
                fix="Point field= at the array of records.",
            )]), [], ()
    tables = _tables_in(node)
    inside = f" under '{field}'" if field else ""
    if len(tables) == 1:
        (key,) = tables
        return _records_from_items(_iter_array(text, _value_pos(text, pos, key)), file, index, f"'{key}'"), [], ()
    if tables:  # an object of splits: {"train": [...], "validation": [...], "test": [...]}
        names = list(tables)
        chosen = resolve_split(names, split or "train")
        if chosen is None:
            asked = f"no split '{split}'" if split else "no 'train' split"
            return ([], [], [], [Problem(
                kind="not_found" if split else "not_records", file=file,
                message=f"{asked}{inside}; several keys hold arrays of records: {', '.join(names)}.",
                fix=f"Choose one with split= (or field=), e.g. split='{names[0]}'.",
            )]), [], tuple(names)
        notes = [] if split else [f"loaded split '{chosen}' of {', '.join(names)}{inside} in {file}; "
                                  "pass split= for another"]
        rows = _records_from_items(_iter_array(text, _value_pos(text, pos, chosen)), file, index, f"'{chosen}'")
        return rows, notes, tuple(names)
    return _columns_of_object(text, start, data, file, index), [], ()


def _columns_of_object(text, start, data: dict, file, index):
    """Records of an object that holds no array of records: pandas' ``to_json``, columns, or one record."""
    if all(isinstance(v, dict) for v in data.values()) and len({tuple(v) for v in data.values()}) == 1 \
            and len(data) > 1:
        # pandas' default DataFrame.to_json(): {"column": {"0": value, "1": value}, ...}
        keys = list(next(iter(data.values())))
        records = [{col: data[col][k] for col in data} for k in keys]
        return records, [None] * len(records), [None] * len(records), []
    columns = {k: v for k, v in data.items() if isinstance(v, list)}
    if columns and len(columns) == len(data):
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            return [], [], [], [Problem(
                kind="not_records", file=file, line=1,
                message="the columns have different lengths ("
                        + ", ".join(f"{k}: {n}" for k, n in lengths.items()) + "), so rows cannot be formed.",
                fix="Give every column one value per row, or write the data as an array of objects.",
            )]
        n = next(iter(lengths.values()))  # columnar: {"text": [...], "label": [...]}
        records = [{k: v[i] for k, v in columns.items()} for i in range(n)]
        return records, [None] * n, [None] * n, []
    if data and not any(isinstance(v, (list, dict)) and k not in _CHAT_KEYS for k, v in data.items()):
        return [data], [index.line(start)], [index.line(len(text.rstrip()) - 1)], []  # a single record
    return [], [], [], [Problem(
        kind="not_records", file=file, line=1,
        message=f"no array of records found under the keys {', '.join(map(str, list(data)[:8]))}.",
        fix="Use an array of objects, or pass field= naming the key that holds it.",
    )]


_CHAT_KEYS = {"messages", "conversations", "conversation"}


def _parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False


@reader("jsonl")
def read_jsonl(path: Path, encoding: str = "utf-8", field: str | None = None, **_) -> RawTable:
    """JSON Lines: one object (or one row written as an array) per line; blank lines are skipped.

    ``field`` (dotted) names the key of each line that holds its record (``{"id": 7, "data": {...}}``).
    """
    file = display_path(path)
    read = _read_text_file(path, encoding, "JSON Lines text")
    if isinstance(read, RawTable):
        return read
    text, bad = read.text, read.bad
    if not text.strip():
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)], bad)
    stripped = text.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and "\n" in stripped.rstrip()):
        try:
            whole = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            whole = None
        first = stripped.split("\n", 1)[0]
        if (isinstance(whole, list) and not _is_row(whole)) or (isinstance(whole, dict) and not _parses(first)):
            return RawTable(pd.DataFrame(), file, [], [Problem(
                kind="malformed_json", file=file, line=1,
                message="this file holds one JSON document, not one JSON object per line.",
                fix="Rename it to .json or pass reader='json'.",
            )], bad)
    values, lines, problems = [], [], []
    loads = json.loads
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            values.append(loads(line))
        except RecursionError:
            problems.append(_too_deep(file, line, n))
            continue
        except json.JSONDecodeError as e:
            problems.append(Problem(
                kind="malformed_json", file=file, line=n,
                message=f"not valid JSON: {e.msg} (column {e.colno}).",
                fix="Each line must be one complete JSON object; fix the syntax or remove the line.",
            ))
            continue
        lines.append(n)
    records, bad_values, expected, fix = _to_records(values, field)
    problems += _grouped_problems(bad_values, file, lines,
                                  lambda i, kind: f"the line holds {kind}, expected {expected}",
                                  lambda i: f"line {lines[i]}", fix)
    keep = [i for i, record in enumerate(records) if record is not None]
    records = [records[i] for i in keep]
    frame = pd.DataFrame(records, dtype=object) if records else pd.DataFrame()  # object: no string inference
    return RawTable(frame, file, [lines[i] for i in keep], problems, bad, notes=read.notes)


# --------------------------------------------------------------------------- Parquet, text


@reader("parquet")
def read_parquet(path: Path, **_) -> RawTable:
    """Parquet via pyarrow; nested columns (chat messages) come back as lists of dicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = display_path(path)
    if path.stat().st_size == 0:
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)])
    try:
        table = pq.read_table(path)
    except PermissionError:
        raise  # the loader reports it as unreadable, like any file
    except (pa.ArrowInvalid, OSError) as e:
        return RawTable(pd.DataFrame(), file, [], [Problem(
            kind="malformed_parquet", file=file,
            message=f"not a readable Parquet file ({str(e).splitlines()[0]}).",
            fix="Check the file is complete (a truncated download is common) and really Parquet.",
        )])
    if table.num_rows == 0:
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file, "Parquet file")])
    frame = pd.DataFrame({name: table.column(name).to_pylist() for name in table.column_names}, dtype=object)
    return RawTable(frame, file, None, [])


@reader("text")
def read_text(path: Path, encoding: str = "utf-8", text_unit: str = "line", **_) -> RawTable:
    """Plain text: one record per non-blank line, per paragraph, or the whole file."""
    file = display_path(path)
    read = _read_text_file(path, encoding)
    if isinstance(read, RawTable):
        return read
    text, bad = read.text, read.bad
    if not text.strip():
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)], bad)
    records: list[str] = []
    lines: list[int | None] = []
    if text_unit == "file":
        records, lines = [text.strip()], [1]
    elif text_unit == "paragraph":
        start, buf = None, []
        for n, line in enumerate(text.split("\n") + [""], start=1):
            if line.strip():
                start = start or n
                buf.append(line.strip())
            elif buf:
                records.append(" ".join(buf))
                lines.append(start)
                start, buf = None, []
    elif text_unit == "line":
        for n, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                records.append(line.rstrip("\r"))
                lines.append(n)
    else:
        raise ValueError(f"text_unit must be 'line', 'paragraph' or 'file', not {text_unit!r}")
    problems = []
    tabs = Counter(r.count("\t") for r in records[:50])
    if text_unit == "line" and len(records) > 1 and (common := tabs.most_common(1)[0])[0] and \
            common[1] >= 0.9 * min(len(records), 50):
        problems.append(Problem(
            kind="ambiguous_format", severity="warning", file=file, line=lines[0],
            message=f"every line holds {common[0]} tab(s): this looks like tab-separated columns, read here as "
                    "one text per line.",
            fix="Pass reader='tsv' (--reader tsv) to read the columns.",
        ))
    return RawTable(pd.DataFrame({"text": records}, dtype=object), file, lines, problems, bad, notes=read.notes)


def reader_for(path: Path, name: str | None = None) -> ReaderFn | None:
    """The reader for ``path``: the named one, else by suffix, else (no suffix) by its first bytes; None when
    unsupported.

    Raises:
        DatasetError: ``name`` is no registered reader.
    """
    if name:
        if name not in READERS:
            raise DatasetError(Problem(
                kind="unsupported_file", file=display_path(path),
                message=f"unknown reader {name!r}.",
                fix=f"Pass reader= one of {', '.join(sorted(READERS))} (tsv is csv with a tab delimiter).",
            ))
        return READERS[name]
    key = sniff_reader(path) if not path.suffix else SUFFIXES.get(path.suffix.lower())
    return READERS.get(key) if key else None
