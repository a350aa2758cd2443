"""``load_table``: a table source to one validated, canonical dataset.

Sources: a file (CSV/TSV, JSON, JSONL, Parquet, text; one without an extension is sniffed), a
folder of such files, a ``datasets`` ``save_to_disk`` folder, a pandas DataFrame, or a Hugging
Face Hub dataset name; ``split_names`` lists the splits a source provides. The result is a
``LoadedDataset``: a DataFrame in the canonical schema of its format (see ``formats``), with
``_file`` and ``_line`` columns saying where each record came from, and a ``ValidationReport``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd

from .dataset import LoadedDataset, ValidationReport, rare_label_problems, single_class_problems
from .formats import Detection, canonicalize, detect_format, relabelled
from .problems import DatasetError, Problem, display_path, outside_link_problem, unreadable_problem
from .readers import (SUFFIXES, RawTable, binary_kind, header_option, positional_names, reader_for,
                      resolve_split, too_deep_message)

SPLIT_NAMES = ("train", "validation", "valid", "dev", "test", "eval")
#: Files in a data folder that are documentation, not data.
_SKIP_IN_FOLDERS = {"readme", "license", "licence", "notice", "citation", "changelog"}


# --------------------------------------------------------------------------- sources


def _hub_problem(name: str, detail: str = "") -> DatasetError:
    return DatasetError(Problem(
        kind="hub_unreachable",
        message=(f"'{name}' is not a local file or folder, and the Hugging Face Hub cannot be reached"
                 + (f" ({detail})" if detail else " (HF_HUB_OFFLINE is set)") + "."),
        fix=(f"On a machine with network, run `datasets.load_dataset('{name}').save_to_disk('{name.split('/')[-1]}')` "
             "and copy that folder here, then load the folder; or point at a local CSV/JSONL/Parquet file."),
    ))


def _looks_like_path(source: str) -> bool:
    return (source.startswith((".", "/", "~")) or os.sep in source.strip("/").split("/", 1)[-1]
            or Path(source).suffix.lower() in SUFFIXES or source.count("/") > 1)


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or \
        (path / "state.json").exists()


def _choose_split(names: list[str], split: str | None, where: Path, what: str, notes: list[str]) -> str:
    """``split``, or ``train`` (else the first) when none is asked for, noting the choice when there were others."""
    if split is None:
        split = "train" if "train" in names else names[0]
        if len(names) > 1:
            notes.append(f"loaded split '{split}' of {', '.join(names)}; pass split= for another")
    split = resolve_split(names, split) or split
    if split not in names:
        message = (f"no split '{split}' {what}; it has {', '.join(names)}." if what.startswith("in ") else
                   f"no {what} split '{split}'; the folder has {', '.join(names)}.")
        raise DatasetError(Problem(kind="not_found", file=display_path(where), message=message,
                                   fix=f"Pass split= one of {', '.join(names)}."))
    return split


def _read_saved(path: Path, split: str | None) -> tuple[list[RawTable], list[str]]:
    import datasets

    obj = datasets.load_from_disk(str(path))
    notes = []
    if isinstance(obj, datasets.DatasetDict):
        split = _choose_split(list(obj.keys()), split, path, "in this saved dataset", notes)
        obj = obj[split]
    frame = pd.DataFrame(obj.to_dict(), dtype=object) if len(obj) else pd.DataFrame(columns=obj.column_names)
    problems = [] if len(obj) else [Problem(kind="empty_file", file=display_path(path),
                                            message="the saved dataset has no rows.", fix="Check the export.")]
    return [RawTable(frame, display_path(path), None, problems)], notes


def _data_files(folder: Path, forced_reader: str | None = None,
                refused: list[Problem] | None = None) -> list[Path]:
    """Data files in ``folder``; with a forced reader (``reader='text'`` on Markdown), every file but docs.

    A symbolic link whose target lies outside the folder is not followed, and a subfolder that
    cannot be listed is not skipped in silence: each is a problem appended to ``refused``.
    """
    refused = [] if refused is None else refused
    root = folder.resolve()

    def cannot_list(error: OSError) -> None:
        refused.append(unreadable_problem(error.filename or folder, error))

    found: list[Path] = []
    for top, dirs, names in os.walk(folder, onerror=cannot_list):  # links to folders are not walked
        base = Path(top)
        for d in [d for d in dirs if (base / d).is_symlink()]:
            if not d.startswith(".") and (problem := outside_link_problem(base / d, root)):
                refused.append(problem)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(base / n for n in names)
    files = []
    for p in sorted(found):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.stem.lower() in _SKIP_IN_FOLDERS or p.suffix.lower() == ".lock":
            continue
        if not (forced_reader or (p.suffix.lower() in SUFFIXES and p.suffix.lower() != ".md")):
            continue
        if (problem := outside_link_problem(p, root)):
            refused.append(problem)
        elif p.is_file():
            files.append(p)
    return files


def _split_of(path: Path) -> str | None:
    stem = path.stem.lower()
    for name in SPLIT_NAMES:
        if stem == name or stem.startswith(name + "-") or stem.startswith(name + "_") or stem.startswith(name + "."):
            return name
    return None


def _read_folder(folder: Path, split: str | None, opts: dict) -> tuple[list[RawTable], list[str]]:
    refused: list[Problem] = []
    files = _data_files(folder, opts.get("reader"), refused)
    notes = []
    by_split = {}
    for f in files:
        if (s := _split_of(f)):
            by_split.setdefault(s, []).append(f)
    if by_split:
        files = by_split[_choose_split(sorted(by_split), split, folder, "files for", notes)]
    elif split is not None:
        raise DatasetError(Problem(
            kind="not_found", file=display_path(folder),
            message=f"split='{split}' was asked for, but no file in the folder is named after a split.",
            fix="Name files train.*, validation.*, test.*, or drop split=.",
        ))
    if not files and refused:
        raise DatasetError(refused)
    if not files:
        bare = [p.name for p in sorted(folder.iterdir()) if p.is_file() and not p.suffix
                and p.stem.lower() not in _SKIP_IN_FOLDERS and not p.name.startswith(".")]
        raise DatasetError(Problem(
            kind="not_found", file=display_path(folder),
            message="the folder holds no data files"
                    + (f" with an extension (without one: {', '.join(bare[:5])})" if bare else "") + ".",
            fix=(f"Point at the file itself (e.g. {display_path(folder / bare[0])}); its format is sniffed. "
                 if bare else "") + f"Supported: {', '.join(sorted(SUFFIXES))} "
                                    "(documents go through workbench.data.documents).",
        ))
    tables = [_read_file(f, opts) for f in files]
    if refused:  # the links and folders left out: their problems travel as one more (empty) table
        tables.append(RawTable(pd.DataFrame(), display_path(folder), [], refused))
    return tables, notes


def _read_file(path: Path, opts: dict) -> RawTable:
    """One file as a ``RawTable``; a file that cannot be read, or is nested too deep to parse, becomes its problem."""
    try:
        read = reader_for(path, opts.get("reader"))
        if read is None and not path.suffix and (kind := binary_kind(path, _head(path))):
            return RawTable(pd.DataFrame(), display_path(path), [], [Problem(
                kind="binary", file=display_path(path), line=1,
                message=f"this is {kind[0]}, not a data file (found by its first bytes).", fix=kind[1])])
        if read is None:
            return RawTable(pd.DataFrame(), display_path(path), [], [Problem(
                kind="unsupported_file", file=display_path(path),
                message=f"the file type '{path.suffix or '(none)'}' is not a supported data format.",
                fix=f"Use one of {', '.join(sorted(SUFFIXES))}, or pass reader= to say how to read it.",
            )])
        return read(path, **{k: v for k, v in opts.items() if k != "reader" and v is not None})
    except OSError as e:  # permissions, an I/O error, a file gone between listing and reading
        return RawTable(pd.DataFrame(), display_path(path), [], [unreadable_problem(path, e)])
    except RecursionError:  # a structure deeper than a reader's own depth checks
        message, fix = too_deep_message()
        return RawTable(pd.DataFrame(), display_path(path), [], [Problem(
            kind="malformed_json", file=display_path(path), line=1, message=message, fix=fix)])


def _head(path: Path, n: int = 64) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


def _read_source(source, split, opts) -> tuple[list[RawTable], str, list[str]]:
    if isinstance(source, pd.DataFrame):
        return [RawTable(source.astype(object).reset_index(drop=True), None, None, [])], "DataFrame", []
    name = str(source)
    path = Path(name).expanduser()
    if path.is_dir():
        if _is_saved_dataset(path):
            tables, notes = _read_saved(path, split)
        else:
            tables, notes = _read_folder(path, split, opts)
        return tables, display_path(path), notes
    if path.is_file():
        table = _read_file(path, {**opts, "split": split})
        if split is not None and len(table.frame) and not table.splits and resolve_split(["train"], split) is None:
            raise DatasetError(Problem(
                kind="not_found", file=table.file,
                message=f"split='{split}' was asked for, but the file holds one table, not splits.",
                fix=f"Point at the {split} file itself, or drop split= (eval_split= in a spec).",
            ))
        return [table], display_path(path), []
    if isinstance(source, Path) or _looks_like_path(name):
        parent = path.parent if str(path.parent) not in ("", ".") else Path(".")
        near = sorted(p.name for p in parent.iterdir())[:8] if parent.is_dir() else []
        raise DatasetError(Problem(
            kind="not_found", file=name,
            message="no such file or folder.",
            fix="Check the path" + (f"; {parent} holds: {', '.join(near)}" if near else "") + ".",
        ))
    return _read_hub(name, split), name, []


def _read_hub(name: str, split: str | None) -> list[RawTable]:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or \
            os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise _hub_problem(name)
    import datasets

    try:
        obj = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
        raise _hub_problem(name, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    return [RawTable(pd.DataFrame(obj.to_dict(), dtype=object), name, None, [])]


def split_names(source, *, reader: str | None = None, encoding: str = "utf-8",
                field: str | None = None) -> tuple[str, ...]:
    """The splits ``source`` provides, by the names ``split=`` takes; () for a single table or a hub name.

    The split files of a folder (``train.csv``, ``test.csv``), the splits of a saved ``DatasetDict``,
    or the keys of a JSON object of splits (``{"train": [...], "val": [...], "oos_test": [...]}``).
    Load one with ``load_table(source, split=name)``.
    """
    if isinstance(source, pd.DataFrame):
        return ()
    path = Path(str(source)).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            return tuple(json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", ()))
        if _is_saved_dataset(path):
            return ()
        return tuple(sorted({s for f in _data_files(path, reader) if (s := _split_of(f))}))
    if path.is_file():
        read = reader_for(path, reader)
        return read(path, encoding=encoding, field=field).splits if read else ()
    return ()


# --------------------------------------------------------------------------- main entry


def load_table(
    source,
    format: str = "auto",
    columns: dict[str, str] | None = None,
    *,
    split: str | None = None,
    strict: bool = True,
    reader: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    header: bool | str = "auto",
    quotechar: str | None = None,
    field: str | None = None,
    text_unit: str = "line",
) -> LoadedDataset:
    """Load a table ``source`` into a validated dataset in the canonical schema of its format.

    ``workbench.data.load_dataset`` routes documents (PDF, HTML, Markdown, DOCX) to the
    documents module and every other source here; the documents module validates its chunk
    tables here too.

    Args:
        source: A file, a folder (of data files, or a ``save_to_disk`` folder), a pandas
            DataFrame, or a Hub dataset name.
        format: ``"auto"`` (detect) or one of ``prompt_completion``, ``instruction``,
            ``chat``, ``classification``, ``corpus``.
        columns: Canonical field to source column, e.g. ``{"text": "utterance", "label": "intent"}``.
        split: Which split of a folder with ``train``/``test``/... files, of a saved ``DatasetDict``,
            or of a JSON object of splits (``{"train": [...], "val": [...]}``); defaults to ``train``.
            Other names of a split work too (``val`` for ``validation``). ``split_names`` lists them.
        strict: Raise one ``DatasetError`` listing every error (True), or drop bad rows
            and keep the problems in ``report`` (False).
        reader: Force a reader (``csv``, ``tsv``, ``json``, ``jsonl``, ``parquet``, ``text``) when the
            file extension is wrong; a file without one is sniffed.
        encoding: Text encoding of the files.
        delimiter: CSV delimiter (``"\\t"`` or ``"tab"`` for a tab); sniffed from the first records when
            not given.
        header: Whether delimited files start with a header row: True, False, or ``"auto"``, which
            reads a first row that looks like a record (a sentence or a number like the values
            below it, or a value repeated below it) as one, and says so in ``report``. Columns
            without a header are ``column_1``, ``column_2``, ...; without ``columns`` they are
            named ``text`` and ``label`` when their contents say which is which.
        quotechar: CSV quote character (default ``"``).
        field: For JSON and JSON Lines: the key (dotted for nested keys) that holds the records, in
            the document or in each line.
        text_unit: For text files: one record per ``line``, ``paragraph`` or ``file``.

    Returns:
        The dataset, with problems and counts in ``.report``.

    Raises:
        DatasetError: in strict mode for any error; in any mode when nothing usable is left
            or the source cannot be found or read.
    """
    opts = {"reader": reader, "encoding": encoding, "delimiter": _delimiter(delimiter),
            "header": header_option(header), "quotechar": quotechar, "columns": columns, "field": field,
            "text_unit": text_unit}
    tables, label, notes = _read_source(source, split, opts)
    problems: list[Problem] = []
    frames: list[pd.DataFrame] = []
    detection: Detection | None = None
    per_file: list[tuple[str, str]] = []
    rows_read = 0
    fatal: list[Problem] = []
    for table in tables:
        problems.extend(table.problems)
        notes.extend(table.notes)
        if len(table.frame) == 0:
            fatal.extend(p for p in table.problems if p.severity == "error")
            continue
        rows_read += len(table.frame)
        if not columns and _positional(table.frame) and (named := _name_by_contents(table.frame)):
            table.frame = table.frame.rename(columns=named)
            notes.append(f"{table.file or 'the data'}: columns without names read by their contents as "
                         + ", ".join(f"{v} ({k})" for k, v in named.items())
                         + "; pass columns= to name them yourself")
        try:
            det = detect_format(table.frame, format, columns, table.file)
        except DatasetError as e:
            hinted = [_with_hint(p, table.frame) for p in e.problems]
            first = table.header_line or next((n for n in (table.lines or []) if n is not None), None)
            hinted = [replace(p, line=first) if p.kind == "duplicate_column" and p.line is None else p
                      for p in hinted]  # two names for one field: the header (or first record) has both
            fatal.extend(hinted + [p for p in table.problems if p.severity == "warning"])
            problems.extend(hinted)
            continue
        per_file.append((table.file or "DataFrame", det.format))
        if detection is None:
            detection = det
        elif det.format != detection.format:
            problem = Problem(
                kind="ambiguous_format", file=table.file,
                message=f"this file holds {det.format} data but earlier files hold {detection.format}.",
                fix="Load the files separately, or keep one format per folder.",
            )
            fatal.append(problem)
            problems.append(problem)
            continue
        frame, issues = canonicalize(table.frame, det)
        if (rewritten := relabelled(table.frame, frame, det)):
            notes.append(f"{table.file or 'the data'}: {rewritten}")
        lines = table.lines if table.lines is not None else [None] * len(frame)
        frame["_file"] = table.file
        frame["_line"] = lines
        bad_rows: set[int] = set()
        offset = rows_read - len(table.frame)
        for row, fld, kind, message, fix in issues:
            problems.append(Problem(kind=kind, message=message, fix=fix, file=table.file,
                                    line=lines[row], row=offset + row, field=fld))
            bad_rows.add(row)
        if table.bad_lines:
            ends = table.end_lines or lines
            for i, (start, end) in enumerate(zip(lines, ends)):
                if start is None:
                    continue
                hit = [ln for ln in range(start, (end or start) + 1) if ln in table.bad_lines]
                if hit:
                    bad_rows.add(i)
            problems.extend(table.bad_lines.values())
        frame["_bad"] = [i in bad_rows for i in range(len(frame))]
        frames.append(frame)
    problems = _sorted(problems)
    if detection is None or not frames:
        raise DatasetError(fatal or problems or [Problem(kind="empty_file", file=label,
                                                         message="no records found.", fix="Check the source.")])
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    errors = [p for p in problems if p.severity == "error"]
    if strict and errors:
        raise DatasetError(errors)
    kept = frame[~frame["_bad"]].drop(columns="_bad").reset_index(drop=True)
    if len(kept) == 0:
        raise DatasetError(errors or [Problem(kind="empty_file", file=label, message="no valid records left.",
                                              fix="Fix the problems listed.")])
    if len(per_file) > 1:
        notes.append(f"{len(per_file)} files, all {detection.format}")
    if (lost := _dropped_note(problems, rows_read, len(kept))):
        notes.append(lost)
    ds = LoadedDataset(kept, detection.format, detection.columns, label,
                       ValidationReport(tuple(problems), rows_read, len(kept), tuple(notes)))
    rare = rare_label_problems(ds) + single_class_problems(ds)
    if rare:
        ds = replace(ds, report=replace(ds.report, problems=ds.report.problems + tuple(rare)))
    return ds


def _dropped_note(problems: list[Problem], rows_read: int, rows_kept: int) -> str | None:
    """One line saying what lenient loading left out and why, by problem kind; None when nothing was.

    Records dropped after parsing are ``rows_read - rows_kept``; what a reader could not parse at
    all (a broken CSV row, a line of bad JSON, a file refused) never reached ``rows_read`` and is
    counted by its problems, which have no row. Every one is also a problem in the report, with
    its file and line.
    """
    errors = [p for p in problems if p.severity == "error"]
    if not errors and rows_read == rows_kept:
        return None
    unparsed = sum(p.row is None for p in errors)
    reasons = ", ".join(f"{n} {kind}" for kind, n in Counter(p.kind for p in errors).most_common())
    return (f"left out in lenient loading: {rows_read - rows_kept} of {rows_read} records read"
            + (f", and what {unparsed} problem(s) kept from being read at all" if unparsed else "")
            + f" (errors by kind: {reasons}; each is listed with its file and line; strict=True refuses the "
              "data instead)")


def _delimiter(delimiter: str | None) -> str | None:
    """``delimiter`` as one character; a tab may be written ``\\t`` or ``tab`` (as a command line passes it)."""
    if delimiter is None or delimiter == "":
        return None
    delimiter = {"\\t": "\t", "tab": "\t", "\\u0009": "\t"}.get(delimiter.lower(), delimiter)
    if len(delimiter) != 1:
        raise DatasetError(Problem(kind="malformed_csv", message=f"delimiter={delimiter!r} is not one character.",
                                   fix="Pass one character, such as ',', ';', '|' or '\\t' (tab)."))
    return delimiter


def _positional(frame: pd.DataFrame) -> bool:
    """Whether the columns are known by position only (``column_1``, ... of a headerless file or JSON arrays)."""
    return list(frame.columns) == positional_names(len(frame.columns))


def _name_by_contents(frame: pd.DataFrame) -> dict[str, str]:
    """``text`` and ``label`` for the positional columns whose contents say so, or {} when they do not.

    A lone column is the text. Of several, the label is a column of short values (three words at
    most) with the fewest distinct ones, repeated on at least half the rows of a larger table; the
    text is the column with the longest values, longer on average than the label's.
    """
    stats = {}
    for col in frame.columns:
        values = [str(v).strip() for v in frame[col].head(5000) if v is not None and str(v).strip()]
        if not values:
            continue
        words = [len(v.split()) for v in values]
        stats[col] = (len(set(values)), sum(map(len, values)) / len(values), max(words), len(values))
    if len(frame.columns) == 1:
        return {frame.columns[0]: "text"} if stats else {}
    labels = [c for c, (distinct, _, most_words, n) in stats.items()
              if most_words <= 3 and (n < 10 or distinct <= n / 2)]
    if not labels:
        return {}
    label = min(labels, key=lambda c: (stats[c][0], stats[c][1]))
    others = [c for c in stats if c != label]
    text = max(others, key=lambda c: stats[c][1], default=None)
    if text is None or stats[text][1] <= stats[label][1]:
        return {}
    named = {label: "label", text: "text"}
    return {c: named[c] for c in frame.columns if c in named}


def _with_hint(problem: Problem, frame: pd.DataFrame) -> Problem:
    """A format problem with the one-line fix the raw columns suggest: ``field=`` for a column of objects,
    ``columns=`` over ``column_N`` names."""
    if problem.kind not in ("unknown_format", "ambiguous_format"):
        return problem
    objects = [c for c in frame.columns if len(frame) and all(isinstance(v, dict) for v in frame[c].head(50))]
    if objects:
        return replace(problem, fix=f"The column '{objects[0]}' holds objects: pass field='{objects[0]}' "
                                    f"(--field {objects[0]}) to read the records inside them. " + problem.fix)
    if _positional(frame):
        example = ", ".join(f"'{name}': '{col}'" for name, col in zip(("text", "label"), frame.columns))
        return replace(problem, fix=f"The columns have no names: pass columns={{{example}}} (or the fields of "
                                    "your format), or header=True if the first line names them. " + problem.fix)
    return problem


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file or "", p.line if p.line is not None else -1,
                                           p.row if p.row is not None else -1))


