"""The data report: load, validate, find duplicates and personal data, split, in one call.

``data_report`` is what ``workbench data report`` and ``make demo`` print, and what the
dataset panel summarises. It returns a ``DataReport``; ``to_text`` renders it for a
terminal and ``to_dict`` for a run folder (no personal data in either: examples are masked).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .clean import DuplicateReport, drop_duplicates, find_duplicates
from .dataset import LoadedDataset
from .pii import PiiReport, redact_pii, scan_pii
from .problems import Problem
from .sources import load_dataset
from .split import Splits, split_dataset


@dataclass(frozen=True)
class DataReport:
    """Everything the data layer found about one dataset."""

    dataset: LoadedDataset
    duplicates: DuplicateReport
    pii: PiiReport
    splits: Splits | None
    split_dir: Path | None
    cleaned_rows: int

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.dataset.report.problems

    def label_counts(self) -> dict[str, int]:
        col = self.splits.stratify if self.splits and self.splits.stratify else (
            self.dataset.spec.label_field)
        if not col:
            return {}
        return dict(Counter(map(str, self.dataset.frame[col])).most_common())

    def to_dict(self) -> dict:
        ds = self.dataset
        return {
            "source": ds.source,
            "format": ds.format,
            "columns": ds.columns,
            "rows_read": ds.report.rows_read,
            "rows_loaded": len(ds),
            "rows_after_cleaning": self.cleaned_rows,
            "fingerprint": ds.fingerprint(),
            "problems": ds.report.counts(),
            "duplicates": self.duplicates.summary(),
            "pii": {"counts": self.pii.counts, "rows": len(self.pii.rows)},
            "labels": len(self.label_counts()),
            "splits": self.splits.manifest()["splits"] if self.splits else None,
            "split_dir": str(self.split_dir) if self.split_dir else None,
        }

    def to_text(self, examples: int = 3) -> str:
        ds = self.dataset
        lines = [f"== {ds.source}", f"format        {ds.format}  ({', '.join(f'{k}<-{v}' for k, v in ds.columns.items())})"]
        lines.append(f"rows          {ds.report.rows_read} read, {len(ds)} loaded, {self.cleaned_rows} after cleaning")
        for note in ds.report.notes:
            lines.append(f"note          {note}")
        if ds.report.problems:
            counts = ", ".join(f"{n} {k}" for k, n in Counter(p.kind for p in ds.report.problems).most_common())
            lines.append(f"problems      {counts}")
            for p in ds.report.problems[:examples]:
                lines.append(f"                {p}")
        else:
            lines.append("problems      none")
        d = self.duplicates.summary()
        lines.append(f"duplicates    {d['exact_duplicate_rows']} exact, {d['normalized_duplicate_rows']} normalised; "
                     f"{d['conflicting_groups']} conflicting groups ({d['conflicting_rows']} rows)")
        for g in self.duplicates.of_kind("conflicting")[:examples]:
            where = ", ".join(ds.where(r) for r in g.rows[:3])
            lines.append(f"                conflict: {g.preview[:60]!r} at {where}")
        if self.pii.counts:
            lines.append(f"personal data {', '.join(f'{n} {k}' for k, n in self.pii.counts.items())} "
                         f"in {len(self.pii.rows)} rows (redacted in the splits)")
            for kind, found in self.pii.examples(1).items():
                f = found[0]
                lines.append(f"                {kind}: {f.masked} at {ds.where(f.row)} ({f.field})")
        else:
            lines.append("personal data none found")
        labels = self.label_counts()
        if labels:
            vals = list(labels.values())
            lines.append(f"labels        {len(labels)} (rows per label: min {min(vals)}, max {max(vals)})")
        if self.splits:
            sizes = ", ".join(f"{k} {n}" for k, n in self.splits.sizes().items())
            lines.append(f"splits        {sizes} (seed {self.splits.seed}"
                         + (f", stratified by {self.splits.stratify}" if self.splits.stratify else "") + ")")
            lines.append("fingerprints  " + ", ".join(f"{k} {v}" for k, v in self.splits.fingerprints.items()))
        if self.split_dir:
            lines.append(f"written to    {self.split_dir}")
        return "\n".join(lines)


def data_report(
    source,
    format: str = "auto",
    columns: dict[str, str] | None = None,
    *,
    split: str | None = None,
    strict: bool = False,
    dedupe: bool = True,
    redact: bool = True,
    test: float = 0.1,
    validation: float = 0.1,
    seed: int = 42,
    stratify: str | None = "auto",
    out_dir: str | Path | None = None,
    pii_allow: tuple[str, ...] = (),
    **load_options,
) -> DataReport:
    """Load, validate, find duplicates and personal data, clean, split, and optionally write the splits.

    Cleaning drops exact and normalised duplicates (``dedupe``) and redacts personal data
    (``redact``; ``pii_allow`` lists values that are not personal, such as role mailboxes)
    before splitting. Rare labels go to train (they cannot be stratified).
    """
    ds = load_dataset(source, format, columns, split=split, strict=strict, **load_options)
    dups = find_duplicates(ds)
    pii = scan_pii(ds, allow=pii_allow)
    cleaned = ds
    if dedupe:
        cleaned, _ = drop_duplicates(cleaned, report=dups)
    if redact and pii.findings:
        cleaned, _ = redact_pii(cleaned, allow=pii_allow)
    written = None
    splits = split_dataset(cleaned, test=test, validation=validation, seed=seed, stratify=stratify, rare="train")
    if out_dir is not None:
        written = splits.write(out_dir)
    return DataReport(ds, dups, pii, splits, written, len(cleaned))
