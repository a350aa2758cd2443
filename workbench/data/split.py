"""Reproducible splits: seeded, stratified, fingerprinted.

The assignment of a row to a split depends only on the rows' content, the seed and the
ratios, not on the order the rows were read in: rows are ordered by content hash before the
seeded shuffle, and each split lists its rows in content-hash order. Each split gets a fingerprint (a hash of its rows' content hashes), written
with the split so a later run can check it trains on exactly the same data.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..files import atomic_write_json, atomic_write_jsonl
from .dataset import LoadedDataset, fingerprint_hashes, label_column, rare_label_problems
from .load import load_table
from .problems import DatasetError, Problem

SPLITS_MANIFEST = "splits.json"


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
            "splits": {k: {"rows": len(v), "fingerprint": self.fingerprints[k], "file": f"{k}.jsonl"}
                       for k, v in self.parts.items()},
        }
        if self.stratify:
            out["label_counts"] = {k: dict(Counter(map(str, v.frame[self.stratify]))) for k, v in self.parts.items()}
        return out

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
    rng = np.random.default_rng(seed)
    assign: dict[str, list[int]] = {"train": list(to_train), "validation": [], "test": []}
    for lab in sorted(groups, key=lambda x: (str(type(x)), str(x))):
        idx = sorted(groups[lab], key=lambda i: (hashes[i], i))
        idx = [idx[j] for j in rng.permutation(len(idx))]
        n = len(idx)
        n_test = int(round(n * test))
        n_val = int(round(n * validation))
        if col and n >= 2:  # keep at least one row of each label in train
            while n_test + n_val >= n:
                if n_val >= n_test and n_val > 0:
                    n_val -= 1
                else:
                    n_test -= 1
        assign["test"].extend(idx[:n_test])
        assign["validation"].extend(idx[n_test:n_test + n_val])
        assign["train"].extend(idx[n_test + n_val:])
    parts, prints = {}, {}
    ratios = {"train": round(1 - test - validation, 6), "validation": validation, "test": test}
    for name in ("train", "validation", "test"):
        if name != "train" and ratios[name] == 0:
            continue
        # Rows in content-hash order: the same data read in any order gives identical split files.
        rows = sorted(assign[name], key=lambda i: (hashes[i], i))
        parts[name] = ds.with_frame(ds.frame.iloc[rows])
        prints[name] = fingerprint_hashes(hashes[rows], ds.format)
    if rare == "drop":
        pass
    elif rare == "train":
        dropped = []
    return Splits(parts, prints, seed, ratios, col, ds.fingerprint(), tuple(dropped))


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
