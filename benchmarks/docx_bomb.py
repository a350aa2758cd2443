"""Benchmark: time and peak memory to refuse a DOCX holding 1 GB of XML (issue 14: documents exhaust memory).

The bomb is a valid DOCX (python-docx's own parts) whose ``word/document.xml`` is 1 GB of one
paragraph repeated, deflated to a few megabytes. Three ways in, each in a fresh process
(imports excluded from the time), the default ``DocumentConfig`` unless said:

- default limits: refused on ``max_unpacked_mb=200``, by the size its ZIP directory declares;
- ``max_unpacked_mb`` raised to 2,000: refused on ``max_compression_ratio=100`` (declared);
- a lying ZIP that declares 150 MB for the part (under both limits): Python's ``zipfile`` unpacks
  no more than the declared size, the CRC check fails, and the file is reported corrupt; this is
  the most work a bomb can cause under the default limits.

Baseline, measured in the same run: an ordinary one-page DOCX, ingested. Prints the median of
``--runs`` of each (seconds, peak resident memory) and the ratio to the baseline.

    .venv/bin/python benchmarks/docx_bomb.py [--runs 3] [--mb 1024]
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

import docx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))
from fixtures.make_bad_documents import MB, declare_size, docx_bomb  # noqa: E402 - the bomb the tests use
from workbench.data.documents import DocumentConfig, ingest_documents  # noqa: E402 - after this checkout's path


def write_ordinary(path: Path) -> Path:
    d = docx.Document()
    d.add_heading("Printers", 1)
    for i in range(20):
        d.add_paragraph(f"Paragraph {i}: restart the printer, then check the queue and the cable.")
    d.save(path)
    return path


def child(path: str, unpacked_mb: int | None) -> None:
    config = DocumentConfig(max_unpacked_mb=unpacked_mb) if unpacked_mb else DocumentConfig()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    result = ingest_documents(path, config, scan=False).results[0]
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "imports_mb": before, "status": result.status,
                      "kinds": [p.kind for p in result.problems], "message": result.message[:160]}))


def measure(path: Path, runs: int, unpacked_mb: int | None = None) -> dict:
    results = []
    for _ in range(runs):
        cmd = [sys.executable, __file__, "--child", str(path)] + (["--unpacked-mb", str(unpacked_mb)]
                                                                   if unpacked_mb else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    last = results[-1]
    return {"seconds": statistics.median(r["seconds"] for r in results),
            "peak_mb": statistics.median(r["peak_mb"] for r in results),
            "imports_mb": statistics.median(r["imports_mb"] for r in results),
            "status": last["status"], "kinds": last["kinds"], "message": last["message"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=1024, help="MB of XML inside the bomb")
    ap.add_argument("--child")
    ap.add_argument("--unpacked-mb", type=int)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.unpacked_mb)
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        bomb = docx_bomb(Path(tmp) / "bomb.docx", args.mb)
        built = time.perf_counter() - t
        lying = Path(tmp) / "lying.docx"
        lying.write_bytes(bomb.read_bytes())
        declare_size(lying, "word/document.xml", 150 * MB)
        ordinary = write_ordinary(Path(tmp) / "ordinary.docx")
        print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
              f"bomb {bomb.stat().st_size / 1e6:.1f} MB on disk, {args.mb} MB of XML inside (built in {built:.0f} s)")
        rows = [("baseline: ordinary DOCX", measure(ordinary, args.runs)),
                ("bomb, default limits", measure(bomb, args.runs)),
                ("bomb, max_unpacked_mb=2000", measure(bomb, args.runs, unpacked_mb=2000)),
                ("bomb whose ZIP declares 150 MB, default limits", measure(lying, args.runs))]
    base = rows[0][1]
    for name, r in rows:
        print(f"{name}: median {r['seconds']:.2f} s ({r['seconds'] / base['seconds']:.1f}x), peak memory "
              f"{r['peak_mb']:.0f} MB ({r['imports_mb']:.0f} MB after imports); {r['status']} {r['kinds']}: "
              f"{r['message']}")


if __name__ == "__main__":
    main()
