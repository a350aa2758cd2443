"""Metrics computed offline with numpy, registered by name (no hub: ``evaluate.load`` would fetch).

Each metric takes references and predictions and returns a float; ``METRICS`` maps names to
them for configs and reports.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

METRICS: dict[str, Callable] = {}


def metric(name: str):
    """Register a metric function under ``name``."""

    def register(fn):
        METRICS[name] = fn
        return fn

    return register


@metric("accuracy")
def accuracy(references, predictions) -> float:
    """Share of predictions equal to the reference."""
    r, p = np.asarray(references), np.asarray(predictions)
    return float((r == p).mean()) if r.size else 0.0


def per_class(references, predictions, labels=None) -> dict:
    """Precision, recall, F1 and support per class."""
    r, p = np.asarray(references), np.asarray(predictions)
    classes = list(labels) if labels is not None else sorted(set(r.tolist()) | set(p.tolist()))
    out = {}
    for c in classes:
        tp = int(((p == c) & (r == c)).sum())
        fp = int(((p == c) & (r != c)).sum())
        fn = int(((p != c) & (r == c)).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[c] = {"precision": prec, "recall": rec, "f1": f1, "support": int((r == c).sum())}
    return out


@metric("macro_f1")
def macro_f1(references, predictions) -> float:
    """Unweighted mean of per-class F1 over the classes present in the references."""
    r = np.asarray(references)
    scores = per_class(references, predictions, sorted(set(r.tolist())))
    return float(np.mean([s["f1"] for s in scores.values()])) if scores else 0.0
