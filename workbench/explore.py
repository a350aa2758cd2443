"""The dataset explorer's engine: search, filter and page a dataset without rendering all of it.

``Explorer`` precomputes what every query needs once (a lower-cased search column and
character lengths as Arrow arrays, labels as categories), so a search, a filter or a page
flip over a million rows is a few vectorised operations, not a Python loop. Duplicates and
personal data are found on demand (``findings``), because they cost seconds on large data.
The ``DatasetPanel`` only renders what this returns.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import plots
from .data.clean import find_duplicates, input_output
from .data.dataset import LoadedDataset
from .data.pii import scan_pii

#: Problem filters offered besides personal-data kinds.
FINDING_FILTERS = ("duplicate", "conflicting", "personal data")


@dataclass(frozen=True)
class Query:
    """What the user asked to see."""

    text: str = ""
    """Case-insensitive substring searched in the input and output of each row (the text alone for
    classification, whose label has its own filter)."""
    label: str | None = None
    """Keep rows whose label (or ``label_column``) equals this."""
    length_field: str = "input"
    """``input`` or ``output``: which text the length bounds apply to."""
    min_chars: int | None = None
    max_chars: int | None = None
    finding: str | None = None
    """``duplicate``, ``conflicting``, ``personal data`` or a personal-data kind (needs ``findings``)."""
    page: int = 0
    page_size: int = 20


@dataclass(frozen=True)
class Page:
    """One page of matching rows."""

    rows: pd.DataFrame
    """Display columns, texts shortened; the index is the row position in the dataset."""
    matches: int
    page: int
    pages: int
    query: Query


@dataclass(frozen=True)
class Findings:
    """Rows with duplicates or personal data, by kind."""

    by_kind: dict[str, np.ndarray]
    duplicate_groups: int
    conflicting_groups: int
    pii_counts: dict[str, int]


def _arrow_input_output(ds: LoadedDataset) -> tuple[pa.Array, pa.Array]:
    """Input and output text of every row (as its format renders them) as Arrow strings."""
    inputs, outputs = input_output(ds)
    return pa.array(inputs, type=pa.large_string()), pa.array(outputs, type=pa.large_string())


class Explorer:
    """Fast queries over one dataset (see the module docstring)."""

    def __init__(self, ds: LoadedDataset, label_column: str | None = None, shorten: int = 160):
        self.ds = ds
        self.shorten = shorten
        inputs, outputs = _arrow_input_output(ds)
        self._inputs, self._outputs = inputs, outputs
        # Search the text a person wrote: for classification the label has its own filter.
        self._search = (pc.binary_join_element_wise(inputs, outputs, pa.scalar("\n", pa.large_string()))
                        if ds.spec.target == "text" else inputs)
        self.lengths = {
            "input": pc.utf8_length(inputs).to_numpy(zero_copy_only=False),
            "output": pc.utf8_length(outputs).to_numpy(zero_copy_only=False),
        }
        self.label_column = label_column or ds.spec.label_field or next(
            (c for c in ("category", "label") if c in ds.frame.columns), None)
        self.labels = (pd.Categorical(ds.frame[self.label_column].astype(str))
                       if self.label_column else None)
        self._findings: Findings | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ds)

    # ------------------------------------------------------------------ queries

    def mask(self, q: Query) -> np.ndarray:
        """Boolean mask of rows matching ``q`` (paging ignored)."""
        m = np.ones(len(self.ds), dtype=bool)
        if q.text.strip():
            hit = pc.match_substring(self._search, q.text.strip(), ignore_case=True)
            m &= hit.to_numpy(zero_copy_only=False)
        if q.label is not None and self.labels is not None:
            codes = self.labels.categories.get_indexer([q.label])
            m &= np.asarray(self.labels.codes) == codes[0]
        lengths = self.lengths[q.length_field]
        if q.min_chars is not None:
            m &= lengths >= q.min_chars
        if q.max_chars is not None:
            m &= lengths <= q.max_chars
        if q.finding:
            f = self.findings()
            rows = f.by_kind.get(q.finding, np.array([], dtype=np.int64))
            sel = np.zeros(len(self.ds), dtype=bool)
            sel[rows] = True
            m &= sel
        return m

    def page(self, q: Query) -> Page:
        """The rows of page ``q.page`` among those matching ``q``."""
        positions = np.flatnonzero(self.mask(q))
        pages = max(1, -(-len(positions) // q.page_size))
        page = min(max(q.page, 0), pages - 1)
        chosen = positions[page * q.page_size:(page + 1) * q.page_size]
        return Page(self._display(chosen), int(len(positions)), page, pages, replace(q, page=page))

    def _short(self, text) -> str:
        text = str(text)
        return text if len(text) <= self.shorten else text[: self.shorten - 1] + "…"

    def _display(self, positions: np.ndarray) -> pd.DataFrame:
        ds = self.ds
        data: dict[str, list] = {"where": [ds.where(int(i)) for i in positions]}
        if not ds.spec.tabular:  # structured fields (a message list) show as transcript and answer
            data["conversation"] = [self._short(self._inputs[int(i)].as_py()) for i in positions]
            data["answer"] = [self._short(self._outputs[int(i)].as_py()) for i in positions]
        else:
            for f in ds.fields:
                data[f] = [self._short(ds.frame[f].iat[int(i)]) for i in positions]
        for col in ds.metadata_columns[:4]:
            data[col] = [self._short(ds.frame[col].iat[int(i)]) for i in positions]
        return pd.DataFrame(data, index=pd.Index(positions, name="row"))

    # ------------------------------------------------------------------ summaries

    def label_counts(self, top: int | None = None) -> pd.Series:
        if self.labels is None:
            return pd.Series(dtype=int)
        counts = pd.Series(np.bincount(self.labels.codes, minlength=len(self.labels.categories)),
                           index=self.labels.categories).sort_values(ascending=False)
        return counts.head(top) if top else counts

    def length_sample(self, field: str = "input", sample: int = 100_000, seed: int = 0) -> np.ndarray:
        """Character lengths of ``field``, sampled for plotting when the dataset is large."""
        a = self.lengths[field]
        if len(a) <= sample:
            return a
        return a[np.random.default_rng(seed).choice(len(a), sample, replace=False)]

    def findings(self, pii_allow: tuple[str, ...] = ()) -> Findings:
        """Duplicates and personal data (computed once, then cached; thread-safe)."""
        with self._lock:
            if self._findings is None:
                dups = find_duplicates(self.ds)
                pii = scan_pii(self.ds, allow=pii_allow)
                by_kind: dict[str, np.ndarray] = {}
                dup_rows = sorted({r for g in dups.groups if g.kind in ("exact", "normalized") for r in g.rows})
                by_kind["duplicate"] = np.asarray(dup_rows, dtype=np.int64)
                by_kind["conflicting"] = np.asarray(
                    sorted({r for g in dups.of_kind("conflicting") for r in g.rows}), dtype=np.int64)
                by_kind["personal data"] = np.asarray(pii.rows, dtype=np.int64)
                for kind in pii.counts:
                    by_kind[kind] = np.asarray(sorted({f.row for f in pii.findings if f.kind == kind}), dtype=np.int64)
                self._findings = Findings(by_kind, len([g for g in dups.groups if g.kind != "conflicting"]),
                                          len(dups.of_kind("conflicting")), pii.counts)
            return self._findings


@dataclass(frozen=True)
class Distributions:
    """What the Distributions tab and the explore notebook draw (``distribution_data``)."""

    label_column: str | None
    """The column the labels come from; None when the data has none."""
    label_counts: pd.Series
    """Rows per label, most frequent first: the ``top`` most frequent only (empty without labels)."""
    labels: int
    """How many distinct labels there are in all (more than ``len(label_counts)`` when cut to the top)."""
    lengths: dict[str, np.ndarray]
    """Character lengths of ``input`` and, for data with answers, ``output`` (sampled on large data)."""


def distribution_data(ex: Explorer, top: int = 30) -> Distributions:
    """The dataset's distributions as data: rows per label (the ``top`` most frequent, and how many labels in all)
    when the data has a label column, and character lengths of the inputs and, for data with answers, the outputs.
    """
    counts = ex.label_counts()
    lengths = {"input": ex.length_sample("input")}
    if ex.ds.spec.target == "text":  # an answer to measure, not a label or nothing
        lengths["output"] = ex.length_sample("output")
    return Distributions(ex.label_column if ex.labels is not None else None, counts.head(top), len(counts), lengths)


def distribution_plots(ex: Explorer) -> list[bytes]:
    """The dataset's distributions (``distribution_data``) as PNGs, for the explore notebook run headless.

    Rows per label when the data has a label column, then character lengths of the inputs and,
    for data with answers, of the outputs.
    """
    d = distribution_data(ex)
    images = []
    if len(d.label_counts):
        images.append(plots.to_png(plots.label_bar(d.label_counts, f"rows per {d.label_column}", of=d.labels)))
    images.append(plots.to_png(plots.length_histogram(d.lengths, "length in characters", "characters")))
    return images


def problems_table(ds: LoadedDataset, limit: int | None = None) -> pd.DataFrame:
    """The problems found while loading, one row each: where, kind, severity, message (the first ``limit``)."""
    return pd.DataFrame([{"where": p.where, "kind": p.kind, "severity": p.severity, "message": p.message}
                         for p in ds.report.problems[:limit]])


def table_html(frame: pd.DataFrame, max_cell: int = 400) -> str:
    """An escaped HTML table of ``frame`` (index shown), cells cut at ``max_cell`` characters."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or ""] + list(frame.columns))
    body = []
    for idx, row in frame.iterrows():
        cells = "".join(f"<td>{html.escape(str(v)[:max_cell])}</td>" for v in row.tolist())
        body.append(f'<tr data-row="{idx}"><th>{html.escape(str(idx))}</th>{cells}</tr>')
    return (f'<table class="wb-table" style="border-collapse:collapse;font-size:12px"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')
