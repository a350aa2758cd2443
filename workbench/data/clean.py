"""Cleaning: duplicates (exact, normalised, conflicting) and length filters.

Each format has an *input* (what the model sees) and an *output* (what it should produce),
as its descriptor renders them (``Format.input_output``): classification text/label,
prompt/completion, the instruction's user turn/output, the chat turns before the last
assistant message/that message, and for a corpus the text alone.

- exact duplicates: every canonical field identical;
- normalised duplicates: identical after Unicode NFKC, case folding, punctuation removal
  and whitespace collapsing, but not exact;
- conflicting duplicates: the same normalised input with different outputs (a label
  noise signal: the model is asked to learn two answers to one question).

The normalised input is also a row's *prompt key*: splits keep rows with one key on one side
(``split_dataset``), and ``find_overlap`` checks an evaluation split's keys against another split's.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from .dataset import LoadedDataset

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Fold case, width and punctuation so trivially different texts compare equal."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def input_output(ds: LoadedDataset) -> tuple[list[str], list[str]]:
    """The input text and output text of each row, as its format renders them (output empty for a corpus)."""
    return ds.spec.input_output_columns(ds.frame)


def _keys(inputs: list[str]) -> list[str]:
    # An input that normalises to nothing (only punctuation) is its own key.
    return [normalize_text(x) or x for x in inputs]


def prompt_keys(ds: LoadedDataset) -> list[str]:
    """Each row's input, normalised: rows with equal keys ask the same question."""
    return _keys(input_output(ds)[0])


@dataclass(frozen=True)
class DuplicateGroup:
    """Rows (positions in the dataset) that repeat one another."""

    kind: Literal["exact", "normalized", "conflicting"]
    rows: tuple[int, ...]
    preview: str


@dataclass(frozen=True)
class DuplicateReport:
    """Duplicate groups; the first row of a group is the one kept when dropping."""

    groups: tuple[DuplicateGroup, ...]
    rows: int

    def of_kind(self, kind: str) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.kind == kind]

    def extra_rows(self, kind: str) -> int:
        """Rows beyond the first of each group of ``kind``."""
        return sum(len(g.rows) - 1 for g in self.of_kind(kind))

    def rows_to_drop(self, normalized: bool = True, conflicting: bool = False) -> list[int]:
        """Rows to drop: repeats of exact (and normalised) groups, and every row of a conflict if asked."""
        drop: set[int] = set()
        for g in self.groups:
            if g.kind == "exact" or (normalized and g.kind == "normalized"):
                drop.update(g.rows[1:])
            elif conflicting and g.kind == "conflicting":
                drop.update(g.rows)
        return sorted(drop)

    def summary(self) -> dict[str, int]:
        return {
            "exact_duplicate_rows": self.extra_rows("exact"),
            "normalized_duplicate_rows": self.extra_rows("normalized"),
            "conflicting_groups": len(self.of_kind("conflicting")),
            "conflicting_rows": sum(len(g.rows) for g in self.of_kind("conflicting")),
        }


def find_duplicates(ds: LoadedDataset) -> DuplicateReport:
    """Find exact, normalised and conflicting duplicates.

    A normalised group lists rows that are equal after normalisation but were not all
    caught as exact duplicates; its first row is the first occurrence in the dataset.
    """
    inputs, outputs = input_output(ds)
    exact: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(inputs, outputs)):
        exact[key].append(i)
    norm_in = [normalize_text(x) for x in inputs]
    norm_pair: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_input: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (ni, out) in enumerate(zip(norm_in, outputs)):
        no = normalize_text(out)
        norm_pair[(ni, no)].append(i)
        by_input[ni][no].append(i)
    groups: list[DuplicateGroup] = []
    for rows in exact.values():
        if len(rows) > 1:
            groups.append(DuplicateGroup("exact", tuple(rows), inputs[rows[0]][:120]))
    for rows in norm_pair.values():
        distinct_exact = {(inputs[r], outputs[r]) for r in rows}
        if len(rows) > 1 and len(distinct_exact) > 1:
            groups.append(DuplicateGroup("normalized", tuple(rows), inputs[rows[0]][:120]))
    if not ds.spec.raw_text:  # running text has no answers to disagree
        for ni, outs in by_input.items():
            if len(outs) > 1 and ni:
                rows = tuple(sorted(r for rs in outs.values() for r in rs))
                groups.append(DuplicateGroup("conflicting", rows, inputs[rows[0]][:120]))
    groups.sort(key=lambda g: (g.kind, g.rows[0]))
    return DuplicateReport(tuple(groups), len(ds))


def drop_duplicates(ds: LoadedDataset, normalized: bool = True, conflicting: bool = False,
                    report: DuplicateReport | None = None) -> tuple[LoadedDataset, DuplicateReport]:
    """Drop repeated rows, keeping the first of each group; optionally drop conflicting rows."""
    report = report or find_duplicates(ds)
    drop = set(report.rows_to_drop(normalized, conflicting))
    keep = [i for i in range(len(ds)) if i not in drop]
    return ds.with_frame(ds.frame.iloc[keep]), report


@dataclass(frozen=True)
class SplitOverlap:
    """Rows of one split whose input is also an input of another split (a leak when the first evaluates).

    Attributes:
        split: The split checked (``validation`` or ``test``).
        other: The split it was checked against.
        exact: Rows whose input is identical to one in ``other``.
        normalized: Rows whose input equals one in ``other`` only after normalisation.
        matches: ``(row, row in other)`` for each overlapping row, in row order.
    """

    split: str
    other: str
    exact: tuple[int, ...]
    normalized: tuple[int, ...]
    matches: tuple[tuple[int, int], ...]

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(r for r, _ in self.matches)

    def summary(self) -> dict[str, int]:
        return {"exact": len(self.exact), "normalized": len(self.normalized)}


def find_overlap(ds: LoadedDataset, other: LoadedDataset, split: str = "test",
                 other_name: str = "train") -> SplitOverlap:
    """Rows of ``ds`` whose input is also in ``other``, exactly or after normalisation (``normalize_text``)."""
    inputs, _ = input_output(ds)
    other_inputs, _ = input_output(other)
    first_exact: dict[str, int] = {}
    first_key: dict[str, int] = {}
    for j, (x, k) in enumerate(zip(other_inputs, _keys(other_inputs))):
        first_exact.setdefault(x, j)
        first_key.setdefault(k, j)
    exact, normalized, matches = [], [], []
    for i, (x, k) in enumerate(zip(inputs, _keys(inputs))):
        if x in first_exact:
            exact.append(i)
            matches.append((i, first_exact[x]))
        elif k in first_key:
            normalized.append(i)
            matches.append((i, first_key[k]))
    return SplitOverlap(split, other_name, tuple(exact), tuple(normalized), tuple(matches))


def filter_length(ds: LoadedDataset, min_chars: int = 1, max_chars: int | None = None,
                  field: Literal["input", "output", "both"] = "both") -> tuple[LoadedDataset, int]:
    """Keep rows whose input/output lengths in characters lie in ``[min_chars, max_chars]``.

    Returns the filtered dataset and the number of rows removed. Token-based limits live
    in ``workbench.tokens``.
    """
    inputs, outputs = input_output(ds)

    def ok(text: str) -> bool:
        return len(text) >= min_chars and (max_chars is None or len(text) <= max_chars)

    keep = []
    for i, (a, b) in enumerate(zip(inputs, outputs)):
        checks = {"input": [a], "output": [b], "both": [a] + ([b] if not ds.spec.raw_text else [])}[field]
        if all(ok(t) for t in checks):
            keep.append(i)
    return ds.with_frame(ds.frame.iloc[keep]), len(ds) - len(keep)
