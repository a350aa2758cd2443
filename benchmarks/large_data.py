"""Benchmark: token statistics, training's masking check and the personal-data scan on 1M-2M rows.

Issue 14 ("Nothing lost, nothing hung", point 10) measured token statistics over all rows of a
1M-row set (what training's masking check uses) at 430 s and 4.5 GB, and duplicates plus the
personal-data scan on 2M rows at 106 s; statistics and masking checks now measure a seeded sample
(``TokenConfig.sample``). The rows are it_support's 335 tickets (prompt/completion) repeated, a
row number appended to each prompt so that no two rows are equal, built in memory
(``LoadedDataset.with_frame``: loading is not measured). Cases, each in a fresh process (data
building and tokenizer loading excluded from the time), reporting wall time and peak resident
memory (``ru_maxrss``):

- ``tokens``: ``tokens.token_report`` with the default ``TokenConfig`` (what the tokenization
  notebook and ``TokenPanel`` call) on ``--rows`` rows;
- ``masking``: ``train.check_masking`` with the default ``TrainConfig`` (what ``workbench train``
  runs before training a causal LM) on ``--rows`` rows;
- ``fingerprint``: ``LoadedDataset.fingerprint`` alone (part of both calls above: their cache key);
- ``clean``: ``data.find_duplicates`` then ``data.scan_pii`` on ``2 x --rows`` rows.

Baseline, in the same run: the same cases on ``--baseline-rows`` rows (10,000; 20,000 for
``clean``). The script prints the median of ``--runs`` of each and the ratio to the baseline.

    .venv/bin/python benchmarks/large_data.py [--runs 3] [--rows 1000000] [--tokenizer smollm2-135m-instruct]
    .venv/bin/python benchmarks/large_data.py --rows 20000 --runs 1      # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from timing import timed  # noqa: E402 - benchmarks/, the script's own folder

SOURCE = ROOT / "datasets" / "it_support" / "tickets.jsonl"
CASES = ("tokens", "masking", "fingerprint", "clean")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def build(rows: int):
    """``rows`` distinct prompt/completion rows: the tickets repeated, ``(ticket N)`` appended to each prompt."""
    import numpy as np

    from workbench.data import load_dataset

    base = load_dataset(SOURCE)
    pos = np.arange(rows) % len(base)
    frame = base.frame.iloc[pos].reset_index(drop=True)
    frame["prompt"] = [f"{p} (ticket {i})" for i, p in enumerate(frame["prompt"].tolist())]
    frame["id"] = [f"{t}-{i}" for i, t in enumerate(frame["id"].tolist())]
    frame["_line"] = pos + 1
    return base.with_frame(frame)


def child(case: str, rows: int, tokenizer: str) -> None:
    """Run ``case`` once on ``rows`` rows in this process; print seconds, peak memory and what it found as JSON."""
    from workbench import presets

    tok = presets.resolve_tokenizer(tokenizer) if case in ("tokens", "masking") else None
    ds = build(rows)
    ready = peak_mb()
    out: dict = {}
    if case == "tokens":
        from workbench import tokens
        from workbench.config import TokenConfig

        cfg = TokenConfig()
        seconds, report = timed(lambda: tokens.token_report(ds, {tokenizer: tok}, cfg), 1)
        stats = report.stats[tokenizer]
        out.update(measured=stats.rows, median_tokens=stats.fields["example"].median, warnings=len(stats.warnings))
    elif case == "masking":
        from workbench.config import TrainConfig
        from workbench.train import check_masking

        seconds, warnings = timed(lambda: check_masking(ds, tok, TrainConfig()), 1)
        out.update(warnings=len(warnings))
    elif case == "fingerprint":
        seconds, fp = timed(ds.fingerprint, 1)
        out.update(fingerprint=fp)
    else:
        from workbench.data import find_duplicates, scan_pii

        dup_s, dups = timed(lambda: find_duplicates(ds), 1)
        pii_s, pii = timed(lambda: scan_pii(ds), 1)
        seconds = dup_s + pii_s
        out.update(duplicates_s=dup_s, pii_s=pii_s, groups=len(dups.groups), findings=len(pii.findings))
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "ready_mb": ready, "rows": rows, **out}))


def measure(case: str, rows: int, runs: int, tokenizer: str) -> dict:
    """Median over ``runs`` fresh processes of one case."""
    results = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, __file__, "--child", case, "--rows", str(rows),
                               "--tokenizer", tokenizer], capture_output=True, text=True, timeout=3600)
        if proc.returncode:
            sys.exit(f"{case} on {rows:,} rows failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    median = {k: statistics.median(r[k] for r in results) for k in ("seconds", "peak_mb", "ready_mb")}
    for k in ("duplicates_s", "pii_s"):
        if k in results[-1]:
            median[k] = statistics.median(r[k] for r in results)
    return {**results[-1], **median, "all_seconds": [round(r["seconds"], 2) for r in results]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the token cases; the clean case takes twice")
    ap.add_argument("--baseline-rows", type=int, default=10_000)
    ap.add_argument("--tokenizer", default="smollm2-135m-instruct", help="a preset or built-in name (kb-bpe, minilm)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--child", choices=CASES)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rows, args.tokenizer)
        return
    from workbench import presets

    presets.resolve_tokenizer(args.tokenizer)  # convert a preset's .gguf once, outside any timing
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"tokenizer {args.tokenizer}; median of {args.runs} runs, each in a fresh process")
    print(f"| case | rows | median s (runs) | peak MB (after building data) | baseline s | ratio time | "
          f"ratio peak above build | found |")
    print("|---|---|---|---|---|---|---|---|")
    started = time.perf_counter()
    for case in args.cases.split(","):
        scale = 2 if case == "clean" else 1
        base = measure(case, args.baseline_rows * scale, args.runs, args.tokenizer)
        big = measure(case, args.rows * scale, args.runs, args.tokenizer)
        grown = (big["peak_mb"] - big["ready_mb"]) / max(base["peak_mb"] - base["ready_mb"], 1)
        found = {"tokens": lambda r: f"{r['measured']:,} rows measured, {r['warnings']} warnings",
                 "masking": lambda r: f"{r['warnings']} warnings",
                 "fingerprint": lambda r: r["fingerprint"],
                 "clean": lambda r: (f"duplicates {r['duplicates_s']:.1f} s + personal data {r['pii_s']:.1f} s; "
                                     f"{r['groups']} groups, {r['findings']:,} findings")}[case]
        print(f"| {case} | {big['rows']:,} | {big['seconds']:.2f} {big['all_seconds']} | "
              f"{big['peak_mb']:,.0f} ({big['ready_mb']:,.0f}) | {base['seconds']:.2f} on {base['rows']:,} | "
              f"{big['seconds'] / max(base['seconds'], 1e-9):.1f}x | {grown:.1f}x | {found(big)} |", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
