"""Benchmark: load a 100,000-column CSV (issue 14: wide files loaded in linear time, bounded memory).

The wide file is 10 rows of ``text``, ``label`` and 100,000 one-character metadata columns
(1,000,020 cells, about 2.5 MB). Baseline, measured in the same run: the same cells laid out as a
usual table, 100 columns by 10,000 rows. Each load runs in a fresh process (imports excluded from
the time), which reports the wall time of ``load_dataset`` and its peak resident memory; the
script prints the median of ``--runs`` of each and the ratios.

    .venv/bin/python benchmarks/wide_csv.py [--runs 3] [--columns 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench.data import load_dataset  # noqa: E402 - after the path of this checkout


def write_table(path: Path, columns: int, rows: int) -> Path:
    """``text``, ``label`` and ``columns - 2`` metadata columns of ``"1"``, ``rows`` rows."""
    extra = columns - 2
    with path.open("w", encoding="utf-8") as f:
        f.write("text,label," + ",".join(f"c{i}" for i in range(extra)) + "\n")
        cells = ",".join("1" * extra)
        for r in range(rows):
            f.write(f"row number {r},{'ab'[r % 2]},{cells}\n")
    return path


def child(path: str) -> None:
    """Load ``path`` once in this process; print seconds, peak memory and the shape as JSON."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    ds = load_dataset(path, strict=False)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "imports_mb": before,
                      "shape": list(ds.frame.shape), "problems": len(ds.report.errors)}))


def measure(path: Path, runs: int) -> dict:
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                             check=True, timeout=600)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in results),
            "peak_mb": statistics.median(r["peak_mb"] for r in results),
            "imports_mb": statistics.median(r["imports_mb"] for r in results),
            "shape": results[-1]["shape"], "problems": results[-1]["problems"],
            "all_seconds": [round(r["seconds"], 2) for r in results]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--columns", type=int, default=100_000)
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    rows = 10
    with tempfile.TemporaryDirectory() as tmp:
        wide = write_table(Path(tmp) / "wide.csv", args.columns, rows)
        usual = write_table(Path(tmp) / "usual.csv", 100, args.columns * rows // 100)
        print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
              f"wide file {wide.stat().st_size / 1e6:.1f} MB, baseline {usual.stat().st_size / 1e6:.1f} MB")
        base = measure(usual, args.runs)
        ours = measure(wide, args.runs)
    for name, r in (("baseline 100 columns", base), (f"wide {args.columns:,} columns", ours)):
        print(f"{name}: shape {r['shape']}, median {r['seconds']:.2f} s {r['all_seconds']}, "
              f"peak memory {r['peak_mb']:.0f} MB ({r['imports_mb']:.0f} MB after imports), "
              f"{r['problems']} errors")
    grown = (ours["peak_mb"] - ours["imports_mb"]) / max(base["peak_mb"] - base["imports_mb"], 1)
    print(f"ratio wide / baseline: time {ours['seconds'] / base['seconds']:.1f}x, memory above imports {grown:.1f}x")


if __name__ == "__main__":
    main()
