"""The data report: load, validate, find duplicates and personal data, split, in one call.

``data_report`` is what ``workbench data report`` and ``make demo`` print, what the dataset
panel summarises, and how an experiment gets its splits (``workbench.pipeline``). It returns a
``DataReport``; ``to_text`` renders it for a terminal and ``to_dict`` for a run folder (no
personal data in either: examples are masked, or shown after redaction).

A validation or test split the source provides (a folder's ``validation.*``/``test.*`` files, a
saved ``DatasetDict``'s splits, a JSON object of splits, under any name the loader knows for them,
such as ``val`` or ``dev``; or the split ``eval_split`` names) is kept as that split rather
than carved from train: it is cleaned the way train is, and its rows whose prompt is also in
train (or, for test, in validation) are reported and, unless ``keep_overlap``, dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .clean import DuplicateReport, SplitOverlap, drop_duplicates, find_duplicates, find_overlap, input_output
from .dataset import LoadedDataset
from .formats import LABEL_RULE
from .pii import MIN_CONFIDENCE, PiiReport, kinds_for, redact_pii, scan_pii
from .problems import DatasetError, Problem
from .sources import load_dataset
from .split import Splits, split_dataset

#: Largest over smallest label count above which the report warns of imbalance (as ``metrics.IMBALANCE_RATIO``).
IMBALANCE_WARN = 3.0
#: The evaluation splits a source may provide; the loader also finds them under their other names (``val``, ``dev``).
EVAL_SPLITS = ("validation", "test")


def joined_labels(counts: dict) -> tuple[str, list[str]] | None:
    """``(separator, labels)`` when labels look like several labels joined (``billing;refund`` beside ``billing``
    and ``refund``): a multi-label dataset read as single-label classes. None otherwise."""
    names = [str(k) for k in counts]
    known = set(names)
    for sep in (";", "|", ",", "+", "/"):
        joined = [n for n in names if sep in n and sum(part.strip() in known for part in n.split(sep)) >= 2]
        if joined:
            return sep, joined
    return None


@dataclass(frozen=True)
class ProvidedSplit:
    """A validation or test split the source provides, and what cleaning and the overlap checks found.

    Attributes:
        role: ``validation`` or ``test``.
        name: The split name it was loaded with (``eval_split``, or its role).
        dataset: The split as loaded.
        duplicates: Duplicates within it.
        pii: Personal data in it.
        overlaps: Rows (positions in the split after deduplication and redaction, before overlaps are
            dropped) whose prompt is also in train (and, for test, in validation).
        cleaned: The split as evaluated: deduplicated, redacted, overlaps dropped (unless kept).
        kept_repeats: Duplicates and overlaps were kept (``keep_overlap``).
        redacted: Personal data was replaced with tags.
        examples: Lines saying where repeats are, a few of each kind: under ``duplicates``, and under the
            name of each split checked against (the repeated text shown after redaction).
    """

    role: str
    name: str
    dataset: LoadedDataset
    duplicates: DuplicateReport
    pii: PiiReport
    overlaps: tuple[SplitOverlap, ...]
    cleaned: LoadedDataset
    kept_repeats: bool
    redacted: bool
    examples: dict[str, tuple[str, ...]]

    def to_dict(self) -> dict:
        return {"split": self.name, "rows_loaded": len(self.dataset), "rows_after_cleaning": len(self.cleaned),
                "duplicates": self.duplicates.summary(), "pii": {"counts": self.pii.counts, "rows": len(self.pii.rows),
                                                                "scanned_for": list(self.pii.kinds)},
                "overlap": {o.other: o.summary() for o in self.overlaps}, "repeats_kept": self.kept_repeats}


@dataclass(frozen=True)
class DataReport:
    """Everything the data layer found about one dataset."""

    dataset: LoadedDataset
    duplicates: DuplicateReport
    pii: PiiReport
    splits: Splits | None
    split_dir: Path | None
    cleaned_rows: int
    provided: tuple[ProvidedSplit, ...] = ()
    pii_action: str | None = "tags"
    """What redaction did (``tags``, ``pseudonyms``, ``drop``); None when personal data was kept."""

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.dataset.report.problems

    def label_counts(self) -> dict[str, int]:
        """Rows per label after cleaning (over the splits made from the source, not those it provides), most first."""
        col = self.splits.stratify if self.splits and self.splits.stratify else (
            self.dataset.spec.label_field)
        if not col:
            return {}
        frames = ([p.frame for k, p in self.splits.parts.items() if k not in self.splits.provided] if self.splits
                  else [self.dataset.frame])
        return dict(Counter(str(v) for f in frames for v in f[col]).most_common())

    def label_imbalance(self) -> float:
        """Rows of the largest label over rows of the smallest, after cleaning (1.0 without labels)."""
        vals = list(self.label_counts().values())
        return max(vals) / min(vals) if vals else 1.0

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
            "pii": {"counts": self.pii.counts, "rows": len(self.pii.rows), "scanned_for": list(self.pii.kinds),
                    "min_confidence": self.pii.min_confidence, "region": self.pii.region, "action": self.pii_action},
            "labels": len(self.label_counts()),
            "splits": self.splits.manifest()["splits"] if self.splits else None,
            "provided_splits": {p.role: p.to_dict() for p in self.provided},
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
        done = {"tags": "replaced by tags", "pseudonyms": "replaced by pseudonyms", "drop": "rows dropped"}
        if self.pii.counts:
            lines.append(f"personal data {', '.join(f'{n} {k}' for k, n in self.pii.counts.items())} "
                         f"in {len(self.pii.rows)} rows"
                         + (f" ({done[self.pii_action]} in the splits)" if self.pii_action else " (kept: redact off)"))
            for kind, found in self.pii.examples(1).items():
                f = found[0]
                lines.append(f"                {kind}: {f.masked} at {ds.where(f.row)} ({f.field})")
        else:
            lines.append("personal data none found")
        lines.append(f"                {self.pii.scanned}")
        for p in self.provided:
            lines.extend(_provided_lines(p, examples))
        labels = self.label_counts()
        if labels:
            vals = list(labels.values())
            removed = len(ds) - self.cleaned_rows
            lines.append(f"labels        {len(labels)} (rows per label after cleaning: min {min(vals)}, "
                         f"max {max(vals)}" + (f"; {removed} rows removed by cleaning" if removed else "") + ")")
            lines.append(f"                label rule: {LABEL_RULE}")
            if len(labels) == 1:
                lines.append(f"WARNING       one class only ('{next(iter(labels))}'): a classifier needs at least two; "
                             "it would score accuracy 1.0 by always answering it. Check the label column.")
            if joined := joined_labels(labels):
                sep, names = joined
                lines.append(f"WARNING       {len(names)} labels join others with '{sep}' (e.g. '{names[0]}'): several "
                             "labels per text? The workbench trains single-label classifiers, so each combination is "
                             "a class of its own. Keep one label per text (the main one), or accept the combinations "
                             "as classes.")
            if self.label_imbalance() > IMBALANCE_WARN:
                small, large = min(labels, key=labels.get), max(labels, key=labels.get)
                lines.append(f"WARNING       imbalanced labels: '{large}' has {labels[large]} rows, '{small}' "
                             f"{labels[small]} ({self.label_imbalance():.1f}x). Accuracy mostly reflects the large "
                             "classes: judge models by macro-F1 (compare.verdict_metric: macro_f1).")
        if self.splits:
            sizes = ", ".join(f"{k} {n}" for k, n in self.splits.sizes().items())
            lines.append(f"splits        {sizes} (seed {self.splits.seed}"
                         + (f", stratified by {self.splits.stratify}" if self.splits.stratify else "")
                         + "".join(f", {k} as provided" for k in self.splits.provided) + ")")
            if self.splits.repeated_prompts:
                lines.append(f"                {self.splits.repeated_prompts} prompts asked in several rows, "
                             "each prompt's rows kept in one split")
            lines.append("fingerprints  " + ", ".join(f"{k} {v}" for k, v in self.splits.fingerprints.items()))
        if self.split_dir:
            lines.append(f"written to    {self.split_dir}")
        return "\n".join(lines)


def _provided_lines(p: ProvidedSplit, examples: int) -> list[str]:
    d = p.duplicates.summary()
    action = " (kept: keep_overlap)" if p.kept_repeats else " (dropped)"
    repeats = d["exact_duplicate_rows"] + d["normalized_duplicate_rows"]
    lines = [f"{p.role + ' split':<13} '{p.name}' as provided: {len(p.dataset)} loaded, {len(p.cleaned)} after cleaning",
             f"                duplicates within it: {d['exact_duplicate_rows']} exact, "
             f"{d['normalized_duplicate_rows']} normalised" + (action if repeats else "")
             + f"; {d['conflicting_groups']} conflicting groups"]
    lines.extend(f"                  {e}" for e in p.examples["duplicates"][:examples])
    for o in p.overlaps:
        lines.append(f"                prompts also in {o.other}: {len(o.exact)} exact, {len(o.normalized)} normalised"
                     + (action if o.rows else ""))
        lines.extend(f"                  {e}" for e in p.examples[o.other][:examples])
    if p.pii.counts:
        lines.append(f"                personal data {', '.join(f'{n} {k}' for k, n in p.pii.counts.items())} "
                     f"in {len(p.pii.rows)} rows" + (" (redacted)" if p.redacted else ""))
    return lines


def _clean(ds: LoadedDataset, dups: DuplicateReport, pii: PiiReport, dedupe: bool, redact: bool,
           pii_allow: tuple[str, ...], pii_action: str = "tags") -> LoadedDataset:
    if dedupe:
        ds, _ = drop_duplicates(ds, report=dups)
    if redact and pii.findings:
        ds, _ = redact_pii(ds, pii.kinds, pii_allow, action=pii_action, region=pii.region,
                           min_confidence=pii.min_confidence)
    return ds


def _provided_splits(source, train: LoadedDataset, split: str | None, eval_split: str | None,
                     load) -> dict[str, tuple[str, LoadedDataset]]:
    """``role: (name, dataset)`` for the evaluation splits the source holds besides the training one.

    A source holds splits when loading it chose one of several (its note says so), or when it is a
    folder and ``split`` was named. A split that loads the same rows as train or as another split
    found is not a separate one (a source that ignores split names, or one split asked by two names).
    """
    found = {"test": (eval_split, load(eval_split))} if eval_split else {}
    folder = isinstance(source, (str, Path)) and Path(source).expanduser().is_dir()
    if not (any(n.startswith("loaded split ") for n in train.report.notes) or (split and folder)):
        return found
    for role in EVAL_SPLITS:
        if role in found or role in (split or "train", eval_split):
            continue
        try:
            part = load(role)
        except DatasetError as e:
            if all(p.kind == "not_found" for p in e.problems):
                continue
            raise
        if part.fingerprint() not in {d.fingerprint() for d in [train] + [d for _, d in found.values()]}:
            found[role] = (role, part)
    return {role: found[role] for role in EVAL_SPLITS if role in found}


def _examples(raw: LoadedDataset, dups: DuplicateReport, checked: LoadedDataset, overlaps: list[SplitOverlap],
              others: dict[str, LoadedDataset], limit: int = 5) -> dict[str, tuple[str, ...]]:
    """A few repeats of each kind: duplicates by where they are, overlaps with their text after cleaning."""
    kinds = {"exact": "exact", "normalized": "normalised"}
    out = {"duplicates": tuple(f"{kinds[g.kind]} duplicates at {', '.join(raw.where(r) for r in g.rows[:3])}"
                               for g in dups.groups if g.kind in kinds)[:limit]}
    inputs, _ = input_output(checked)
    for o in overlaps:
        out[o.other] = tuple(f"{inputs[i][:60]!r} at {checked.where(i)}, in {o.other} at {others[o.other].where(j)}"
                             for i, j in o.matches[:limit])
    return out


def data_report(
    source,
    format: str = "auto",
    columns: dict[str, str] | None = None,
    *,
    split: str | None = None,
    eval_split: str | None = None,
    strict: bool = False,
    dedupe: bool = True,
    redact: bool = True,
    keep_overlap: bool = False,
    test: float = 0.1,
    validation: float = 0.1,
    seed: int = 42,
    stratify: str | None = "auto",
    out_dir: str | Path | None = None,
    pii_allow: tuple[str, ...] = (),
    pii_action: str = "tags",
    pii_region: str = "US",
    pii_min_confidence: float = MIN_CONFIDENCE,
    pii_ner: bool = False,
    **load_options,
) -> DataReport:
    """Load, validate, find duplicates and personal data, clean, split, and optionally write the splits.

    Cleaning drops exact and normalised duplicates (``dedupe``) and redacts personal data
    (``redact``; ``pii_allow`` lists values that are not personal, such as role mailboxes)
    before splitting: ``pii_action`` ``tags``, ``pseudonyms`` or ``drop`` (the rows); ``pii_region``
    reads national phone numbers, ``pii_min_confidence`` drops less certain findings, ``pii_ner``
    adds names and street addresses to the kinds scanned for. Rare labels go to train (they
    cannot be stratified).

    Validation and test splits the source provides (see the module docstring; ``eval_split``
    names the test split) are used as they are instead of ``validation``/``test`` shares of
    train, after the same cleaning. Their rows that repeat (duplicates within the split, prompts
    also in train or, for test, in validation, exactly or after normalisation) are reported and
    dropped, unless ``keep_overlap``.
    """
    ds = load_dataset(source, format, columns, split=split, strict=strict, **load_options)
    dups = find_duplicates(ds)
    pii_scan = {"kinds": kinds_for(pii_ner), "allow": pii_allow, "region": pii_region,
                "min_confidence": pii_min_confidence}
    pii = scan_pii(ds, **pii_scan)
    cleaned = _clean(ds, dups, pii, dedupe, redact, pii_allow, pii_action)

    def load(name: str) -> LoadedDataset:
        return load_dataset(source, ds.format, columns, split=name, strict=strict, **load_options)

    checked: dict[str, LoadedDataset] = {"train": cleaned}
    provided = []
    for role, (name, raw) in _provided_splits(source, ds, split, eval_split, load).items():
        raw_dups, raw_pii = find_duplicates(raw), scan_pii(raw, **pii_scan)
        part = _clean(raw, raw_dups, raw_pii, not keep_overlap, redact, pii_allow, pii_action)
        overlaps = [find_overlap(part, other, role, other_name) for other_name, other in checked.items()]
        repeats = {r for o in overlaps for r in o.rows}
        kept = part if keep_overlap else part.with_frame(part.frame.drop(index=sorted(repeats)))
        examples = _examples(raw, raw_dups, part, overlaps, checked)
        provided.append(ProvidedSplit(role, name, raw, raw_dups, raw_pii, tuple(overlaps), kept, keep_overlap,
                                      redact and bool(raw_pii.findings), examples))
        checked[role] = kept
    roles = {p.role for p in provided}
    splits = split_dataset(cleaned, test=0.0 if "test" in roles else test,
                           validation=0.0 if "validation" in roles else validation,
                           seed=seed, stratify=stratify, rare="train")
    splits = splits.with_provided({p.role: (p.name, p.cleaned) for p in provided})
    written = splits.write(out_dir) if out_dir is not None else None
    return DataReport(ds, dups, pii, splits, written, len(cleaned), tuple(provided), pii_action if redact else None)
