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
import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from .problems import Problem, display_path

PROVENANCE = ("_file", "_line")


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
    """

    frame: pd.DataFrame
    file: str | None = None
    lines: list[int | None] | None = None
    problems: list[Problem] = field(default_factory=list)
    bad_lines: dict[int, Problem] = field(default_factory=dict)
    end_lines: list[int | None] | None = None


ReaderFn = Callable[..., RawTable]
READERS: dict[str, ReaderFn] = {}

#: File suffix to reader name. Documents (PDF, HTML, DOCX) are handled by the documents module.
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
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


def decode_bytes(raw: bytes, file: str, encoding: str = "utf-8") -> tuple[str, dict[int, Problem]]:
    """Decode ``raw``, reporting every undecodable byte with its offset and line.

    Returns the text (bad bytes replaced by U+FFFD) and a map from line number to the
    first encoding problem on that line.
    """
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        encoding = "utf-8"
    try:
        return raw.decode(encoding), {}
    except UnicodeDecodeError:
        pass
    except LookupError as e:
        raise ValueError(f"unknown encoding {encoding!r}: {e}") from None
    bad: dict[int, Problem] = {}
    pieces: list[str] = []
    pos = 0
    while pos <= len(raw):
        try:
            pieces.append(raw[pos:].decode(encoding))
            break
        except UnicodeDecodeError as e:
            start, end = pos + e.start, pos + e.end
            pieces.append(raw[pos:start].decode(encoding))
            pieces.append("\ufffd")
            line = raw.count(b"\n", 0, start) + 1
            if line not in bad:
                column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
                bad[line] = Problem(
                    kind="encoding",
                    message=(
                        f"bytes that are not valid {encoding.upper()} at byte offset {start} "
                        f"(line {line}, column {column}): {raw[start:end]!r}."
                    ),
                    fix=(
                        "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`), "
                        "or pass encoding='latin-1' (or the file's real encoding) when loading."
                    ),
                    file=file,
                    line=line,
                )
            pos = end
            if len(bad) >= 1000:  # enough to report; decode the rest leniently
                pieces.append(raw[pos:].decode(encoding, errors="replace"))
                break
    return "".join(pieces), bad


def _read_text_file(path: Path, encoding: str) -> tuple[str, dict[int, Problem]]:
    return decode_bytes(path.read_bytes(), display_path(path), encoding)


def _empty_file_problem(file: str, what: str = "file") -> Problem:
    return Problem(
        kind="empty_file",
        message=f"the {what} is empty: no records to load.",
        fix="Check that the export finished and that you pointed at the right file.",
        file=file,
    )


# --------------------------------------------------------------------------- CSV / TSV


def _sniff_delimiter(path: Path, text: str, delimiter: str | None) -> str:
    if delimiter:
        return delimiter
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    head = text[:8192]
    first = head.splitlines()[0] if head else ""
    counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 and best != "," and counts[","] == 0 else ","


@reader("csv")
def read_csv(path: Path, encoding: str = "utf-8", delimiter: str | None = None, **_) -> RawTable:
    """CSV or TSV with a header row; quoted fields may span lines."""
    file = display_path(path)
    text, bad = _read_text_file(path, encoding)
    if not text.strip():
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)], bad)
    delim = _sniff_delimiter(path, text, delimiter)
    table = _parse_csv(text, file, delim, bad, quoting=csv.QUOTE_MINIMAL)
    if delim == "\t" and any(p.kind == "malformed_csv" and "cannot be parsed" in p.message for p in table.problems):
        # Tab-separated exports often leave quotes unescaped; read them literally if that parses cleanly.
        literal = _parse_csv(text, file, delim, bad, quoting=csv.QUOTE_NONE)
        if not any(p.severity == "error" for p in literal.problems):
            return literal
    return table


def _parse_csv(text: str, file: str, delim: str, bad, quoting: int) -> RawTable:
    rdr = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True, quoting=quoting)
    problems: list[Problem] = []
    try:
        header = next(rdr)
    except csv.Error as e:
        return RawTable(pd.DataFrame(), file, [], [_csv_problem(file, 1, str(e))], bad)
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if not name:
            header[i] = f"column_{i + 1}"
            problems.append(Problem(
                kind="malformed_csv", severity="warning", file=file, line=1,
                message=f"header column {i + 1} has no name; it is called '{header[i]}' here.",
                fix="Give every column a name in the header row.",
            ))
        elif name in seen:
            problems.append(Problem(
                kind="malformed_csv", file=file, line=1, field=name,
                message=f"duplicate column name '{name}' in the header (columns {seen[name] + 1} and {i + 1}).",
                fix="Rename one of the two columns.",
            ))
            header[i] = f"{name}.{i + 1}"
        seen.setdefault(name, i)
    rows: list[list[str]] = []
    starts: list[int | None] = []
    ends: list[int | None] = []
    last = rdr.line_num
    ncol = len(header)
    while True:
        try:
            row = next(rdr)
        except StopIteration:
            break
        except csv.Error as e:
            unread = text.count("\n", 0) + 1 - last
            problems.append(_csv_problem(file, last + 1, f"{e}; the {max(unread - 1, 0)} lines after it were not read"))
            break  # the csv module cannot resynchronise after a broken quote
        start, last = last + 1, rdr.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != ncol:
            sep = "tab" if delim == "\t" else repr(delim)
            problems.append(Problem(
                kind="malformed_csv", file=file, line=start,
                message=f"this row has {len(row)} fields but the header has {ncol}.",
                fix=(f"Quote fields that contain the delimiter {sep} or a line break with double quotes, "
                     "or fix the missing/extra separators."),
            ))
            continue
        rows.append(row)
        starts.append(start)
        ends.append(last)
    if not rows and not any(p.severity == "error" for p in problems):
        problems.append(Problem(
            kind="header_only", file=file, line=1,
            message=f"the file has a header ({', '.join(header[:6])}) but no data rows.",
            fix="Check that the export wrote the rows, or point at the right file.",
        ))
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header)
    return RawTable(frame, file, starts, problems, bad, ends)


def _csv_problem(file: str, line: int, detail: str) -> Problem:
    return Problem(
        kind="malformed_csv", file=file, line=line,
        message=f"the CSV cannot be parsed from here on ({detail}).",
        fix="Look for an opening double quote that is never closed; quotes inside a field are written twice (\"\").",
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


def _json_error(file: str, e: json.JSONDecodeError, line_offset: int = 0) -> Problem:
    return Problem(
        kind="malformed_json", file=file, line=e.lineno + line_offset,
        message=f"not valid JSON: {e.msg} (column {e.colno}).",
        fix="Fix the JSON syntax there (a missing comma, quote or bracket is the usual cause).",
    )


def _records_from_items(items, file: str, index: _LineIndex, what: str) -> tuple[list, list, list, list[Problem]]:
    records, lines, ends, problems = [], [], [], []
    for i, (start, end, value) in enumerate(items):
        line = index.line(start)
        if isinstance(value, (dict, str)):
            records.append(value if isinstance(value, dict) else {"text": value})
            lines.append(line)
            ends.append(index.line(end - 1))
        else:
            problems.append(Problem(
                kind="not_records", file=file, line=line,
                message=f"item {i} of {what} is {_json_type(value)}, expected an object of fields.",
                fix="Make each item an object such as {\"prompt\": ..., \"completion\": ...}.",
            ))
    return records, lines, ends, problems


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


@reader("json")
def read_json(path: Path, encoding: str = "utf-8", field: str | None = None, **_) -> RawTable:
    """A JSON array of records, a columnar object, or records nested under a key (``field``, dotted)."""
    file = display_path(path)
    text, bad = _read_text_file(path, encoding)
    if not text.strip():
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)], bad)
    try:
        data = json.loads(text)
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
    if isinstance(data, list):
        records, lines, ends, problems = _records_from_items(_iter_array(text, start), file, index,
                                                             "the top-level array")
    elif isinstance(data, dict) and not data:
        records, lines, ends, problems = [], [], [], [_empty_file_problem(file, "JSON object")]
    elif isinstance(data, dict):
        records, lines, ends, problems = _records_from_object(text, start, data, file, index, field)
    else:
        records, lines, ends = [], [], []
        problems = [Problem(
            kind="not_records", file=file, line=1,
            message=f"the top level is {_json_type(data)}, not records.",
            fix="Use an array of objects, or an object holding such an array under a key.",
        )]
    if not records and not problems:
        problems.append(_empty_file_problem(file, "JSON array"))
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    return RawTable(frame.astype(object) if len(frame) else frame, file, lines, problems, bad, ends)


def _looks_like_jsonl(text: str) -> bool:
    lines = [ln for ln in text.splitlines()[:5] if ln.strip()]
    try:
        return len(lines) > 1 and all(isinstance(json.loads(ln), dict) for ln in lines)
    except json.JSONDecodeError:
        return False


def _records_from_object(text, start, data: dict, file, index, field):
    seen: dict[str, int] = {}
    for key, pos, _ in _iter_object(text, start):
        if key in seen:
            return [], [], [], [Problem(
                kind="malformed_json", file=file, line=index.line(pos), field=key,
                message=f"duplicate key '{key}' at the top level (first on line {seen[key]}); "
                        "JSON readers keep only the last one, so data would be lost silently.",
                fix="Rename or merge the two keys.",
            )]
        seen[key] = index.line(pos)
    if field:
        keys = field.split(".")
        node, pos = data, start
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                available = sorted(node) if isinstance(node, dict) else []
                return [], [], [], [Problem(
                    kind="not_records", file=file, field=".".join(keys[: depth + 1]),
                    message=f"no key '{key}' here; keys found: {', '.join(map(str, available[:10]))}.",
                    fix="Pass field= with the key (dotted for nested keys) that holds the records.",
                )]
            pos = _value_pos(text, pos, key)
            node = node[key]
        if not isinstance(node, list):
            return [], [], [], [Problem(
                kind="not_records", file=file, field=field,
                message=f"'{field}' holds {_json_type(node)}, not an array of records.",
                fix="Point field= at the array of records.",
            )]
        return _records_from_items(_iter_array(text, pos), file, index, f"'{field}'")
    lists = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    if len(lists) == 1:
        (key,) = lists
        return _records_from_items(_iter_array(text, _value_pos(text, start, key)), file, index, f"'{key}'")
    if len(lists) > 1:
        return [], [], [], [Problem(
            kind="not_records", file=file,
            message=f"several keys hold arrays of records: {', '.join(sorted(lists))}.",
            fix=f"Choose one with field=, e.g. field='{sorted(lists)[0]}'.",
        )]
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
def read_jsonl(path: Path, encoding: str = "utf-8", **_) -> RawTable:
    """JSON Lines: one object per line; blank lines are skipped."""
    file = display_path(path)
    text, bad = _read_text_file(path, encoding)
    if not text.strip():
        return RawTable(pd.DataFrame(), file, [], [_empty_file_problem(file)], bad)
    stripped = text.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and "\n" in stripped.rstrip()):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        first = stripped.split("\n", 1)[0]
        if isinstance(whole, list) or (isinstance(whole, dict) and not _parses(first)):
            return RawTable(pd.DataFrame(), file, [], [Problem(
                kind="malformed_json", file=file, line=1,
                message="this file holds one JSON document, not one JSON object per line.",
                fix="Rename it to .json or pass reader='json'.",
            )], bad)
    records, lines, problems = [], [], []
    loads = json.loads
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(
                kind="malformed_json", file=file, line=n,
                message=f"not valid JSON: {e.msg} (column {e.colno}).",
                fix="Each line must be one complete JSON object; fix the syntax or remove the line.",
            ))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(
                kind="not_records", file=file, line=n,
                message=f"the line holds {_json_type(value)}, expected an object of fields.",
                fix="Write one object per line, e.g. {\"prompt\": \"...\", \"completion\": \"...\"}.",
            ))
            continue
        records.append(value)
        lines.append(n)
    frame = pd.DataFrame.from_records(records).astype(object) if records else pd.DataFrame()
    return RawTable(frame, file, lines, problems, bad)


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
    text, bad = _read_text_file(path, encoding)
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
    return RawTable(pd.DataFrame({"text": records}, dtype=object), file, lines, [], bad)


def reader_for(path: Path, name: str | None = None) -> ReaderFn | None:
    """The reader for ``path``: the named one, else by suffix; None when unsupported."""
    if name:
        if name not in READERS:
            raise ValueError(f"unknown reader {name!r}; choose one of {', '.join(sorted(READERS))}")
        return READERS[name]
    key = SUFFIXES.get(path.suffix.lower())
    return READERS.get(key) if key else None
