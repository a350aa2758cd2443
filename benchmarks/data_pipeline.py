"""Benchmark: load, validate, deduplicate, scan for personal data and split banking77's training rows.

Baseline, measured in the same run: ``pandas.read_csv`` of the same file (parsing only).
Prints the median of N runs of each and their ratio; the acceptance bound is 3 s.

    .venv/bin/python benchmarks/data_pipeline.py [--runs 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import timed  # noqa: E402 - benchmarks/, the script's own folder

from workbench.data import drop_duplicates, find_duplicates, load_dataset, redact_pii, scan_pii, split_dataset  # noqa: E402

SOURCE = ROOT / "datasets" / "banking77"


def pipeline() -> dict:
    ds = load_dataset(SOURCE, split="train")          # read + detect + validate
    dups = find_duplicates(ds)
    pii = scan_pii(ds)
    clean, _ = drop_duplicates(ds, report=dups)
    clean, _ = redact_pii(clean)
    splits = split_dataset(clean, test=0.1, validation=0.1, seed=42)
    return {"rows": len(ds), "kept": len(clean), "pii": sum(pii.counts.values()), "sizes": splits.sizes()}


def baseline() -> int:
    return len(pd.read_csv(SOURCE / "train.csv"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    pipeline()  # warm-up: imports and file cache
    base, n = timed(baseline, args.runs)
    ours, result = timed(pipeline, args.runs)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
          f"pandas {pd.__version__}")
    print(f"banking77 train: {result}")
    print(f"pandas.read_csv only      median {base * 1000:8.1f} ms over {args.runs} runs ({n} rows)")
    print(f"full data pipeline        median {ours * 1000:8.1f} ms over {args.runs} runs")
    print(f"ratio pipeline / read_csv {ours / base:8.1f}x")
    print(f"acceptance (< 3 s)        {'PASS' if ours < 3 else 'FAIL'}")


if __name__ == "__main__":
    main()
