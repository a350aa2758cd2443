"""Benchmark: ingest a 200-page PDF (text layer, paragraphs, headings, chunks, duplicate and PII scan).

The PDF is drawn here with fpdf2 from the it_support knowledge base (articles repeated until
200 pages): headings bookmarked and set larger, wrapped body text, as a word processor would.
Baseline, measured in the same run: pypdf alone, ``page.extract_text()`` over every page.
Prints the median of N runs of each and their ratio; the acceptance bound is 10 s.

    .venv/bin/python benchmarks/documents_pdf.py [--runs 5] [--pages 200]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import timed  # noqa: E402 - benchmarks/, the script's own folder

import pypdf  # noqa: E402
from fpdf import FPDF  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402

from workbench.data.documents import DocumentConfig, ingest_documents  # noqa: E402

KB = ROOT / "datasets" / "it_support" / "kb"


def _blocks(markdown: str):
    """``(level, text)`` per heading (level >= 1) and per paragraph, list item or table row (level 0)."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    for i, tok in enumerate(tokens):
        if tok.type == "inline":
            text = " ".join("".join(c.content if c.type in ("text", "code_inline") else " "
                                    for c in tok.children or []).split())
            opener = tokens[i - 1]
            if text:
                yield (int(opener.tag[1]) if opener.type == "heading_open" else 0), text


def build_pdf(path: Path, pages: int) -> int:
    pdf = FPDF()
    articles = [p.read_text(encoding="utf-8") for p in sorted(KB.glob("*.md"))]
    while pdf.pages_count < pages:
        for markdown in articles:
            pdf.add_page()
            for level, text in _blocks(markdown):
                if level:
                    pdf.set_font("Helvetica", "B", {1: 18, 2: 14}.get(level, 12))
                    pdf.start_section(text, level - 1)
                    pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
                else:
                    pdf.set_font("Helvetica", "", 11)
                    pdf.multi_cell(0, 5.5, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2)
            if pdf.pages_count >= pages:
                break
    pdf.output(str(path))
    return pdf.pages_count


def baseline(path: Path) -> int:
    return sum(len(page.extract_text()) for page in pypdf.PdfReader(path).pages)


def ours(path: Path):
    return ingest_documents(path, DocumentConfig())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kb-200.pdf"
        n = build_pdf(path, args.pages)
        ours(path)  # warm-up: imports and file cache
        base, chars = timed(lambda: baseline(path), args.runs)
        mine, ingest = timed(lambda: ours(path), args.runs)
        size = path.stat().st_size
    result = ingest.results[0]
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"pypdf {pypdf.__version__}")
    print(f"PDF: {n} pages, {size / 1e6:.2f} MB, {chars} characters; ingest: status {result.status}, "
          f"{result.sections} sections, {ingest.stats.count} chunks (median {ingest.stats.median:.0f} words)")
    print(f"pypdf extract_text loop   median {base:8.3f} s over {args.runs} runs")
    print(f"ingest_documents          median {mine:8.3f} s over {args.runs} runs")
    print(f"ratio ingest / baseline   {mine / base:8.2f}x")
    print(f"acceptance (< 10 s)       {'PASS' if mine < 10 else 'FAIL'}")


if __name__ == "__main__":
    main()
