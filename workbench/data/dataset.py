"""Value types of the data layer: a loaded dataset, its validation report, fingerprints.

A leaf module: everything that loads, cleans, splits or measures data speaks these types, and
they import nothing of the workbench but the format registry and problems.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from .formats import FORMATS, Format
from .problems import DatasetError, Problem


@dataclass(frozen=True)
class ValidationReport:
    """What loading found.

    Attributes:
        problems: Every problem, errors and warnings, with file/line/row/field.
        rows_read: Records parsed from the source (before dropping bad rows).
        rows_kept: Records in the dataset.
        notes: Informational lines (which split of a folder was loaded, column mapping).
    """

    problems: tuple[Problem, ...] = ()
    rows_read: int = 0
    rows_kept: int = 0
    notes: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def counts(self) -> dict[str, int]:
        """Problem counts by kind."""
        return dict(Counter(p.kind for p in self.problems))


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset in canonical form.

    Attributes:
        frame: Canonical columns of ``format``, then metadata columns, then ``_file``/``_line``.
        format: One of ``FORMATS``.
        columns: Canonical field to the source column it came from.
        source: What was loaded, as given.
        report: Problems and counts from loading.
    """

    frame: pd.DataFrame
    format: str
    columns: dict[str, str]
    source: str
    report: ValidationReport = field(default_factory=ValidationReport)
    _fingerprint: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def spec(self) -> Format:
        """The descriptor of this dataset's format: ask it, rather than comparing format names."""
        return FORMATS[self.format]

    @property
    def fields(self) -> tuple[str, ...]:
        """The canonical fields of this dataset's format."""
        return self.spec.fields

    @property
    def metadata_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in self.fields and not str(c).startswith("_")]

    def where(self, row: int) -> str:
        """``file:line`` (or ``row N``) of the record at position ``row``."""
        f, line = self.frame["_file"].iat[row], self.frame["_line"].iat[row]
        if isinstance(f, str) and line is not None and not pd.isna(line):
            return f"{f}:{int(line)}"
        return f"{f}, row {row}" if isinstance(f, str) else f"row {row}"

    def with_frame(self, frame: pd.DataFrame, **changes) -> "LoadedDataset":
        """A copy holding ``frame`` (index reset), other attributes kept unless changed."""
        return replace(self, frame=frame.reset_index(drop=True), **changes)

    def records(self, provenance: bool = False) -> list[dict]:
        """Rows as dicts with the canonical fields and metadata (and provenance if asked)."""
        cols = list(self.fields) + self.metadata_columns + (["_file", "_line"] if provenance else [])
        return self.frame[cols].to_dict("records")

    def row_hashes(self) -> np.ndarray:
        """A 64-bit content hash per row over canonical fields and metadata (not provenance).

        Vectorised (pandas' stable SipHash); values that are not text (labels as numbers,
        message lists) are hashed through their JSON text, so ``1`` and ``"1"`` differ.
        """
        cols = list(self.fields) + self.metadata_columns
        if not cols or not len(self.frame):
            return np.zeros(len(self.frame), dtype=np.uint64)
        parts = {}
        for c in cols:
            values = self.frame[c].tolist()
            if all(isinstance(v, str) for v in values):
                parts[c] = values
            else:
                parts[c] = [v if isinstance(v, str) else "\x00" + json.dumps(v, sort_keys=True, default=str,
                                                                              ensure_ascii=False) for v in values]
        # categorize=False: factorising first is slower than hashing when most values are distinct.
        return pd.util.hash_pandas_object(pd.DataFrame(parts, dtype=object), index=False, categorize=False).to_numpy()

    def fingerprint(self) -> str:
        """Content hash of the dataset (rows in order); equal data gives an equal fingerprint."""
        if "value" not in self._fingerprint:  # frames are not modified in place, so one hash per object
            self._fingerprint["value"] = fingerprint_hashes(self.row_hashes(), self.format)
        return self._fingerprint["value"]

    def to_hf(self, provenance: bool = False):
        """The dataset as a ``datasets.Dataset`` (for ``map``, Trainer)."""
        import datasets

        return datasets.Dataset.from_list(self.records(provenance))


def fingerprint_hashes(hashes: np.ndarray, format: str = "") -> str:
    """One hex digest over row hashes in order."""
    h = hashlib.sha256(format.encode())
    h.update(np.ascontiguousarray(hashes, dtype="<u8").tobytes())
    return h.hexdigest()[:16]



def label_column(ds: LoadedDataset, stratify: str | None = "auto") -> str | None:
    """The column to stratify by: ``label`` for classification, a named column, or None."""
    if stratify is None or stratify is False:
        return None
    if stratify == "auto":
        return ds.spec.label_field
    if stratify not in ds.frame.columns:
        raise DatasetError(Problem(
            kind="unknown_column", field=stratify, file=ds.source,
            message=f"cannot stratify by '{stratify}': no such column.",
            fix=f"Columns: {', '.join(c for c in ds.frame.columns if not str(c).startswith('_'))}.",
        ))
    return stratify


def rare_label_problems(ds: LoadedDataset, column: str | None = "auto", minimum: int = 2,
                        severity: Literal["error", "warning"] = "warning") -> list[Problem]:
    """A problem for each label with fewer than ``minimum`` examples (too few to stratify)."""
    col = label_column(ds, column)
    if col is None:
        return []
    counts = Counter(ds.frame[col].tolist())
    out = []
    for label, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        if n < minimum:
            rows = [i for i, v in enumerate(ds.frame[col].tolist()) if v == label][:3]
            first = rows[0]
            line = ds.frame["_line"].iat[first]
            out.append(Problem(
                kind="rare_label", severity=severity, field=col,
                file=ds.frame["_file"].iat[first],
                line=None if line is None or pd.isna(line) else int(line),
                row=first,
                message=(f"label '{label}' has {n} example{'s' if n != 1 else ''} "
                         f"({', '.join(ds.where(r) for r in rows)}); a stratified split needs at least {minimum}."),
                fix="Add examples of it, merge it into a related label, or drop it (split_dataset(..., rare='drop')).",
            ))
    return out


def single_class_problems(ds: LoadedDataset) -> list[Problem]:
    """A warning when every record of a labelled dataset has the same label: a classifier learns nothing from it.

    Such a set scores accuracy 1.0 by always answering that one label; it usually means the label
    column is the wrong one, or a filter kept one class.
    """
    col = ds.spec.label_field
    if col is None or not len(ds.frame):
        return []
    labels = Counter(ds.frame[col].tolist())
    if len(labels) != 1:
        return []
    (only, n), = labels.items()
    line = ds.frame["_line"].iat[0]
    source_column = ds.columns.get(col, col)
    return [Problem(
        kind="single_class", severity="warning", field=col, file=ds.frame["_file"].iat[0],
        line=None if line is None or pd.isna(line) else int(line), row=0,
        message=(f"every one of the {n} records has the label {only!r}: a classifier needs at least two classes, "
                 f"and this one would score accuracy 1.0 by always answering {only!r}."),
        fix=(f"Add records of the other classes, or check that the label column is right (it is "
             f"'{source_column}'; columns= chooses another)."),
    )]
