"""Benchmark: token statistics over banking77's 10,003 training rows (bound: under 2 s).

Baseline in the same run: a bare ``tokenizers`` ``encode_batch`` over the same texts (no
formatting, offsets, masks or statistics). Cold = first call (formatting, datasets.map);
warm = a repeat, served from the fingerprint cache.

    .venv/bin/python benchmarks/token_stats.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.config import TokenConfig  # noqa: E402
from workbench.data import load_dataset  # noqa: E402
from workbench.presets import minilm_path  # noqa: E402
from workbench import tokens  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    ds = load_dataset(ROOT / "datasets" / "banking77")
    tok = tokens.load_tokenizer(minilm_path())
    texts = ds.frame["text"].tolist()
    cfg = TokenConfig(max_length=64, batch_size=32, sample=None)
    tokens.length_stats(ds, tok, cfg)  # warm imports once

    bare, cold, warm = [], [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        tok.backend_tokenizer.encode_batch(texts)
        bare.append(time.perf_counter() - t)
        tokens._CACHE.clear()
        ds._fingerprint.clear()
        t = time.perf_counter()
        stats = tokens.length_stats(ds, tok, cfg)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        tokens.length_stats(ds, tok, cfg)
        warm.append(time.perf_counter() - t)
    b, c, w = (statistics.median(x) for x in (bare, cold, warm))
    print(f"rows {len(ds):,}, tokenizer all-MiniLM-L6-v2 (WordPiece), median of {args.runs} runs")
    print(f"bare encode_batch            {b * 1000:7.0f} ms   {len(texts) / b:9,.0f} rows/s")
    print(f"length_stats, cold           {c * 1000:7.0f} ms   {len(texts) / c:9,.0f} rows/s   ratio {c / b:.2f}x")
    print(f"length_stats, warm (cached)  {w * 1000:7.0f} ms")
    print(f"median {stats.fields['example'].median} tokens, p95 {stats.fields['example'].p95}, "
          f"truncated at 64: {stats.truncated_share:.2%}")
    print(f"acceptance (< 2 s cold)      {'PASS' if c < 2 else 'FAIL'}")


if __name__ == "__main__":
    main()
