"""Static plots (matplotlib, Agg): figures for notebooks, PNG bytes for panels and reports.

No display code here; a notebook shows the figure, a report embeds it (``png_tag``). The panels draw
interactive charts from the same data (``panels.charts``).
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def to_png(fig, dpi: int = 90) -> bytes:
    """Render ``fig`` to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_tag(png: bytes, alt: str, style: str = "") -> str:
    """An ``<img>`` of ``png`` with its alt text (what the plot shows, for screen readers and failed loads)."""
    extra = f' style="{html.escape(style)}"' if style else ""
    return f'<img alt="{html.escape(alt)}"{extra} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def label_bar(counts: pd.Series, title: str = "rows per label", top: int = 30, of: int | None = None):
    """Horizontal bars of the ``top`` most frequent labels (``counts``, most frequent first); the title says when
    that is not all of them. ``of``: how many labels there are in all, when ``counts`` holds only the top ones."""
    shown, total = min(top, len(counts)), max(len(counts), of or 0)
    if total > shown:
        title = f"{title}: the {shown} most frequent of {total} labels"
    counts = counts.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.18 * len(counts) + 0.8)))
    ax.barh([str(i) for i in counts.index], counts.values, color="#4c72b0")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def length_histogram(series: dict[str, np.ndarray], title: str, xlabel: str, limit: int | None = None,
                     bins: int = 40):
    """Overlaid histograms of lengths (one per name), with a dashed line at ``limit``."""
    fig, ax = plt.subplots(figsize=(6, 2.8))
    top = max((float(np.max(v)) for v in series.values() if len(v)), default=1.0)
    edges = np.linspace(0, max(top, (limit or 0) * 1.05, 1.0), bins + 1)
    for name, values in series.items():
        ax.hist(values, bins=edges, alpha=0.55, label=name)
    return _length_axes(fig, ax, title, xlabel, limit)


def stairs_histogram(hists: dict[str, tuple], title: str, xlabel: str, limit: int | None = None):
    """Overlaid step histograms from precomputed ``(edges, counts)`` per name, with a line at ``limit``."""
    fig, ax = plt.subplots(figsize=(6, 2.8))
    for name, (edges, counts) in hists.items():
        if len(edges) > 1:
            ax.stairs(counts, edges, label=name, linewidth=1.5)
    return _length_axes(fig, ax, title, xlabel, limit)


def _length_axes(fig, ax, title: str, xlabel: str, limit: int | None):
    """The dashed ``max_length`` line, titles and legend of a length histogram."""
    if limit:
        ax.axvline(limit, color="#c00", linestyle="--", linewidth=1, label=f"max_length {limit}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("examples", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def curve_points(log: list[dict], keys: tuple[str, ...] = ("loss", "eval_loss", "eval_accuracy")) -> dict:
    """(step, value) points of each of ``keys`` in a training log (``train_log.jsonl`` entries)."""
    return {key: [(e["step"], e[key]) for e in log if key in e] for key in keys}


def training_curves(log: list[dict]):
    """Training loss (and evaluation loss and accuracy, when logged) against the step."""
    points = curve_points(log)
    train, evals, accs = points["loss"], points["eval_loss"], points["eval_accuracy"]
    fig, ax = plt.subplots(figsize=(6, 2.8))
    if train:
        ax.plot(*zip(*train), label="train loss", color="#4c72b0")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="#dd8452")
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("loss", fontsize=9)
    if accs:
        ax2 = ax.twinx()
        ax2.plot(*zip(*accs), "s--", label="eval accuracy", color="#55a868")
        ax2.set_ylabel("accuracy", fontsize=9)
        ax2.legend(fontsize=7, loc="center right")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("training", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_plot(matrix, labels: list[str], title: str = "confusion", top: int = 30):
    """The errors of a confusion matrix as a heat map (rows: true, columns: predicted).

    The diagonal (correct predictions) is left out so the confusions stand out; each cell shows
    its count. With many classes only the ``top`` classes with the most errors are shown.
    """
    m = np.asarray(matrix, dtype=float)
    errors = m.copy()
    np.fill_diagonal(errors, 0)
    shown = ""
    if len(labels) > top:
        keep = np.sort(np.argsort(-(errors.sum(0) + errors.sum(1)), kind="stable")[:top])
        errors, labels = errors[np.ix_(keep, keep)], [labels[i] for i in keep]
        shown = f", the {top} classes with most errors"
    size = min(11, 2.5 + 0.27 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    vmax = max(1.0, errors.max())
    ax.imshow(np.ma.masked_equal(errors, 0), cmap="Reds", vmin=0, vmax=vmax)
    for i, j in zip(*np.nonzero(errors)):
        ax.text(j, i, f"{errors[i, j]:.0f}", ha="center", va="center", fontsize=6,
                color="white" if errors[i, j] > 0.6 * vmax else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(f"{title}: {int(errors.sum())} errors of {int(m.sum())} (diagonal omitted{shown})", fontsize=9)
    ax.grid(False)
    fig.tight_layout()
    return fig
