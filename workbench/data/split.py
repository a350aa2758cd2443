"""Reproducible splits: seeded, stratified, grouped by prompt, fingerprinted.

The assignment of a row to a split depends only on the rows' content, the seed and the
ratios, not on the order the rows were read in: rows are ordered by content hash before the
seeded shuffle, and each split lists its rows in content-hash order. Rows that ask the same
question (equal ``prompt_keys``: the format's input, normalised) go to one split together, so
no prompt is both trained on and evaluated; data without repeated prompts splits exactly as a
row-by-row shuffle would. Each split gets a fingerprint (a hash of its rows' content hashes),
written with the split so a later run can check it trains on exactly the same data.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..files import atomic_write_json, atomic_write_jsonl
from .clean import prompt_keys
from .dataset import LoadedDataset, fingerprint_hashes, label_column, rare_label_problems
from .load import load_table
from .problems import DatasetError, Problem

SPLITS_MANIFEST = "splits.json"
SPLIT_ORDER = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """Named splits of one dataset and how they were made."""

    parts: dict[str, LoadedDataset]
    fingerprints: dict[str, str]
    seed: int
    ratios: dict[str, float]
    stratify: str | None
    source_fingerprint: str
    dropped_rare: tuple[str, ...] = field(default=())
    repeated_prompts: int = 0
    """Prompts asked by more than one row of the generated splits (each kept within one split)."""
    provided: dict[str, str] = field(default_factory=dict)
    """Splits the source provided, used as they were (cleaned, not re-split): role to the split name loaded."""

    def __getitem__(self, name: str) -> LoadedDataset:
        return self.parts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.parts

    @property
    def names(self) -> list[str]:
        return list(self.parts)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.parts.items()}

    def manifest(self) -> dict:
        first = next(iter(self.parts.values()))
        out = {
            "format": first.format,
            "source": first.source,
            "source_fingerprint": self.source_fingerprint,
            "seed": self.seed,
            "ratios": self.ratios,
            "stratify": self.stratify,
            "dropped_rare_labels": list(self.dropped_rare),
            "repeated_prompts": self.repeated_prompts,
            "provided": dict(self.provided),
            "splits": {k: {"rows": len(v), "fingerprint": self.fingerprints[k], "file": f"{k}.jsonl"}
                       for k, v in self.parts.items()},
        }
        if self.stratify:
            out["label_counts"] = {k: dict(Counter(map(str, v.frame[self.stratify]))) for k, v in self.parts.items()
                                   if self.stratify in v.frame}
        return out

    def with_provided(self, parts: dict[str, tuple[str, LoadedDataset]]) -> "Splits":
        """These splits with ``role: (source split name, dataset)`` added as they are (no ratio, source order)."""
        merged = {**self.parts, **{role: ds for role, (_, ds) in parts.items()}}
        order = [n for n in SPLIT_ORDER if n in merged] + [n for n in merged if n not in SPLIT_ORDER]
        return replace(self, parts={n: merged[n] for n in order},
                       fingerprints={n: self.fingerprints[n] if n in self.parts and n not in parts
                                     else merged[n].fingerprint() for n in order},
                       ratios={**self.ratios, **{role: None for role in parts}},
                       provided={**self.provided, **{role: name for role, (name, _) in parts.items()}})

    def write(self, out_dir: str | Path) -> Path:
        """Write ``<split>.jsonl`` files and ``splits.json`` (last, so its presence means complete)."""
        out = Path(out_dir)
        for name, part in self.parts.items():
            atomic_write_jsonl(out / f"{name}.jsonl", part.records())
        atomic_write_json(out / SPLITS_MANIFEST, self.manifest())
        return out


def split_dataset(
    ds: LoadedDataset,
    test: float = 0.1,
    validation: float = 0.1,
    seed: int = 42,
    stratify: str | None = "auto",
    rare: Literal["error", "drop", "train"] = "error",
) -> Splits:
    """Split ``ds`` into train / validation / test.

    Rows with the same prompt (``prompt_keys``) are shuffled as one unit, so they land in one
    split; when stratifying, a prompt whose rows carry different labels (a conflict) goes whole
    to the split that most of its rows drew (train on a tie). Shares are then met to within the
    size of a group.

    Args:
        ds: The dataset.
        test: Share of rows for the test split (0 for none).
        validation: Share of rows for the validation split (0 for none).
        seed: Seed of the shuffle; the same seed and data give the same splits.
        stratify: ``"auto"`` (by label for classification), a column name (e.g. ``category``),
            or None.
        rare: What to do with labels too rare to stratify (fewer than 2 rows): ``error``
            (raise naming them and their lines), ``drop`` them, or put them all in ``train``.

    Returns:
        The splits, each with its fingerprint.
    """
    if not (0 <= test < 1 and 0 <= validation < 1 and test + validation < 1):
        raise ValueError(f"test ({test}) and validation ({validation}) must be in [0, 1) and sum below 1")
    col = label_column(ds, stratify)
    hashes = ds.row_hashes()
    dropped: list[str] = []
    groups: dict[object, list[int]] = defaultdict(list)
    labels = ds.frame[col].tolist() if col else [None] * len(ds)
    for i, lab in enumerate(labels):
        groups[lab].append(i)
    to_train: list[int] = []
    if col:
        problems = rare_label_problems(ds, col, minimum=2, severity="error")
        if problems and rare == "error" and (test > 0 or validation > 0):
            raise DatasetError(problems)
        for p in problems:
            lab = next(k for k in groups if f"label '{k}' has" in p.message)
            dropped.append(str(lab))
            if rare == "train":
                to_train.extend(groups[lab])
            del groups[lab]
    codes = pd.factorize(pd.Series(prompt_keys(ds), dtype=object))[0]  # one code per prompt
    rng = np.random.default_rng(seed)
    side = np.full(len(ds), -1)  # a position in SPLIT_ORDER; -1 for a dropped row
    side[to_train] = 0
    for lab in sorted(groups, key=lambda x: (str(type(x)), str(x))):
        idx = _content_order(np.asarray(groups[lab]), hashes)
        unit, firsts = pd.factorize(codes[idx])  # one unit per prompt, in order of its first row
        n_units = len(firsts)
        drawn = rng.permutation(n_units)
        n = len(idx)
        n_test = int(round(n * test))
        n_val = int(round(n * validation))
        if col and n >= 2:  # keep at least one row of each label in train
            while n_test + n_val >= n:
                if n_val >= n_test and n_val > 0:
                    n_val -= 1
                else:
                    n_test -= 1
        # Units in drawn order fill test, then validation, each until its share is reached.
        sizes = np.bincount(unit, minlength=n_units)[drawn]
        before = np.cumsum(sizes) - sizes
        in_test = before < n_test
        in_val = ~in_test & (before - sizes[in_test].sum() < n_val)
        goes = np.where(in_test, 2, np.where(in_val, 1, 0))
        if col:  # a group can overshoot a share: the last unit drawn stays in train
            goes[-1] = 0
        place = np.empty(n_units, dtype=np.int64)
        place[drawn] = np.arange(n_units)
        side[idx] = goes[place[unit]]
    kept = np.flatnonzero(side >= 0)
    table = pd.DataFrame({"key": codes[kept], "side": side[kept], "row": kept})
    per_key = table.groupby("key")["side"]
    repeated = int((per_key.size() > 1).sum())
    for _, rows in table[per_key.transform("nunique") > 1].groupby("key"):
        # A prompt with several labels: whole to the split most of its rows drew (train on a tie).
        side[rows["row"].to_numpy()] = np.bincount(rows["side"], minlength=len(SPLIT_ORDER)).argmax()
    parts, prints = {}, {}
    ratios = {"train": round(1 - test - validation, 6), "validation": validation, "test": test}
    for name in SPLIT_ORDER:
        if name != "train" and ratios[name] == 0:
            continue
        # Rows in content-hash order: the same data read in any order gives identical split files.
        rows = _content_order(np.flatnonzero(side == SPLIT_ORDER.index(name)), hashes)
        parts[name] = ds.with_frame(ds.frame.iloc[rows])
        prints[name] = fingerprint_hashes(hashes[rows], ds.format)
    if rare == "drop":
        pass
    elif rare == "train":
        dropped = []
    return Splits(parts, prints, seed, ratios, col, ds.fingerprint(), tuple(dropped), repeated)


def _content_order(rows: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """``rows`` sorted by content hash, then position."""
    return rows[np.lexsort((rows, hashes[rows]))]


def verify_splits(out_dir: str | Path) -> dict[str, str]:
    """Check the split files in ``out_dir`` against the fingerprints in ``splits.json``.

    Returns the fingerprints. Raises ``DatasetError`` naming each split whose content changed.
    """
    out = Path(out_dir)
    manifest_path = out / SPLITS_MANIFEST
    if not manifest_path.exists():
        raise DatasetError(Problem(kind="not_found", file=str(manifest_path),
                                   message="no splits manifest here.", fix="Write splits with Splits.write()."))
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for name, info in manifest["splits"].items():
        ds = load_table(out / info["file"], format=manifest["format"])
        got = ds.fingerprint()
        if got != info["fingerprint"]:
            problems.append(Problem(
                kind="fingerprint_mismatch", file=str(out / info["file"]),
                message=f"split '{name}' changed since it was written (fingerprint {got}, expected {info['fingerprint']}).",
                fix="Recreate the splits, or restore the original data to reproduce the run.",
            ))
    if problems:
        raise DatasetError(problems)
    return {k: v["fingerprint"] for k, v in manifest["splits"].items()}
