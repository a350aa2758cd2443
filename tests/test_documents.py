"""Document ingestion: known text back from Markdown, PDF and HTML; chunking; bad files; pairs; the notebook.

The PDF and HTML renderings of the it_support knowledge base are made here, from the
Markdown read with markdown-it directly (not through workbench), so extraction is checked
against text known independently of the code under test.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from workbench.data import DatasetError, find_duplicates, load_dataset, scan_pii
from workbench.data.documents import (
    ChunkStats,
    DocumentConfig,
    DocumentIngest,
    chunk_stats,
    extract_blocks,
    ingest_documents,
    instruction_pairs,
    is_document_source,
    save_jsonl,
    token_counter,
)
from workbench.data.documents import extractors as extractors_module

ROOT = Path(__file__).resolve().parent.parent
KB = ROOT / "datasets" / "it_support" / "kb"
BAD = Path(__file__).resolve().parent / "fixtures" / "bad_documents"
NOTEBOOK = ROOT / "notebooks" / "05_documents.ipynb"
_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_WORDS = re.compile(r"\w+")
# Page furniture for the HTML rendering: none of these words occurs in the knowledge base.
BOILERPLATE = ("Copyright", "Sitemap", "Subscribe", "Newsletter", "Careers", "Breadcrumbtrail")


# --------------------------------------------------------------------------- references and renderings


def _inline(tok) -> str:
    parts = []
    for c in tok.children or []:
        if c.type in ("text", "code_inline", "image"):
            parts.append(c.content)
        elif c.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def reference(markdown: str) -> list[tuple[str, int, str]]:
    """``(kind, level, text)`` for each heading, paragraph, list item, table row and code block."""
    tokens, out, row, number = _MD.parse(markdown), [], None, []
    for i, t in enumerate(tokens):
        if t.type == "heading_open":
            out.append(("h", int(t.tag[1]), _inline(tokens[i + 1])))
        elif t.type == "bullet_list_open":
            number.append(None)
        elif t.type == "ordered_list_open":
            number.append(int(t.attrs.get("start", 1)))
        elif t.type in ("bullet_list_close", "ordered_list_close"):
            number.pop()
        elif t.type == "tr_open":
            row = []
        elif t.type == "tr_close":
            out.append(("row", 0, " | ".join(row)))
            row = None
        elif t.type == "inline" and row is not None:
            row.append(_inline(t))
        elif t.type == "inline" and tokens[i - 1].type == "paragraph_open":
            lead = ""
            if number and tokens[i - 2].type == "list_item_open":
                lead = "- " if number[-1] is None else f"{number[-1]}. "
                if number[-1] is not None:
                    number[-1] += 1
            out.append(("p", 0, lead + _inline(t)))
        elif t.type in ("fence", "code_block"):
            out.append(("code", 0, t.content.rstrip("\n")))
    return out


def words(text: str) -> list[str]:
    return [w.casefold() for w in _WORDS.findall(text)]


def in_order_recall(expected: list[str], got: list[str]) -> float:
    """Share of ``expected`` found in ``got`` in the same order (matching blocks, no reordering)."""
    matcher = difflib.SequenceMatcher(None, expected, got, autojunk=False)
    return sum(b.size for b in matcher.get_matching_blocks()) / max(1, len(expected))


def render_pdf(markdown: str, path: Path, outline: bool = True) -> None:
    """Draw an article with fpdf2: headings larger and bold (and bookmarked), body text wrapped."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    for kind, level, text in reference(markdown):
        if kind == "h":
            pdf.set_font("Helvetica", "B", {1: 18, 2: 14}.get(level, 12))
            if outline:
                pdf.start_section(text, level - 1)
            pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        else:
            pdf.set_font("Courier" if kind == "code" else "Helvetica", "", 10 if kind == "code" else 11)
            pdf.multi_cell(0, 5.5, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


def render_html(markdown: str, path: Path, charset: bool) -> None:
    """An article as a web page: the Markdown's HTML inside navigation, banners and footers."""
    title = reference(markdown)[0][2]
    page = f"""<!DOCTYPE html>
<html lang="en"><head>{'<meta charset="utf-8">' if charset else ''}
<title>{title} - Northwind IT</title><script>window.dataLayer = ["Subscribe"];</script>
<style>.nav {{ color: red }}</style></head>
<body>
<div class="cookie-banner">We use Newsletter cookies. <button>Accept</button></div>
<header class="site-header"><a href="/">Northwind IT</a>
<nav><a href="/a">Careers</a> <a href="/b">Sitemap</a></nav></header>
<div class="breadcrumbs"><a href="/">Home</a> &gt; Breadcrumbtrail</div>
<main><article>
{_MD.render(markdown)}
</article></main>
<aside><h2>Subscribe</h2><p>Get the Newsletter every week.</p></aside>
<footer><p>Copyright Northwind Analytics. <a href="/s">Sitemap</a></p></footer>
</body></html>
"""
    path.write_bytes(page.encode("utf-8"))


@pytest.fixture(scope="module")
def kb_articles() -> dict[str, str]:
    articles = {p.stem: p.read_text(encoding="utf-8") for p in sorted(KB.glob("*.md"))}
    assert len(articles) == 24
    kb_words = {w for text in articles.values() for w in words(text)}
    assert not {w.casefold() for w in BOILERPLATE} & kb_words  # else the boilerplate check proves nothing
    return articles


@pytest.fixture(scope="module")
def kb_pdf(tmp_path_factory, kb_articles) -> Path:
    folder = tmp_path_factory.mktemp("kb_pdf")
    for name, text in kb_articles.items():
        render_pdf(text, folder / f"{name}.pdf")
    return folder


@pytest.fixture(scope="module")
def kb_html(tmp_path_factory, kb_articles) -> Path:
    folder = tmp_path_factory.mktemp("kb_html")
    for i, (name, text) in enumerate(kb_articles.items()):
        render_html(text, folder / f"{name}.html", charset=i % 2 == 0)  # half declare their charset
    return folder


@pytest.fixture(scope="module")
def bpe(tmp_path_factory, kb_articles):
    """A byte-level BPE trained on the knowledge base, as a fast tokenizer saved to and loaded from a folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(kb_articles.values()), trainer)
    folder = tmp_path_factory.mktemp("bpe")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(str(folder))
    assert loaded.is_fast
    return loaded, folder, tok


def _check_against_reference(folder: Path, suffix: str, kb_articles: dict[str, str]) -> None:
    for name, text in kb_articles.items():
        blocks, result = extract_blocks(folder / f"{name}{suffix}")
        ref = reference(text)
        assert result.status == "ok", (name, result.message)
        assert [b.text for b in blocks if b.kind == "heading"] == [t for k, _, t in ref if k == "h"], name
        assert [b.level for b in blocks if b.kind == "heading"] == [lv for k, lv, _ in ref if k == "h"], name
        assert result.title == ref[0][2]
        expected = [w for _, _, t in ref for w in words(t)]
        got = [w for b in blocks for w in words(b.text)]
        assert in_order_recall(expected, got) >= 0.95, name
        yield name, expected, got, blocks


# --------------------------------------------------------------------------- the knowledge base, three ways


def test_markdown_kb_ingests_with_sections_lines_and_every_word(kb_articles):
    ingest = ingest_documents(KB, DocumentConfig(chunk_size=None, overlap=0))
    assert ingest.counts() == {"ok": 24}
    frame = ingest.corpus.frame
    for name, text in kb_articles.items():
        rows = frame[frame["path"].str.endswith(f"{name}.md")]
        ref = reference(text)
        # Sections kept whole and in order give back exactly the words of the article.
        assert [w for t in rows["text"] for w in words(t)] == [w for _, _, t in ref for w in words(t)], name
        # Each chunk's provenance line is the source line its text starts with (a heading here).
        lines = text.split("\n")
        for chunk, line in zip(rows["text"], rows["_line"]):
            assert lines[line - 1].lstrip("#").strip() == chunk.split("\n")[0], (name, line)
    assert ingest.corpus.format == "corpus" and list(frame.columns[:7]) == \
        ["text", "path", "title", "section", "page", "chunk", "tokens"]
    assert ingest.corpus.where(0).startswith("datasets/it_support/kb/access-request-applications.md:1")


def test_pdf_rendering_of_kb_gives_every_heading_and_the_words_in_order(kb_pdf, kb_articles):
    checked = list(_check_against_reference(kb_pdf, ".pdf", kb_articles))
    assert len(checked) == 24
    # Pages are recorded, and a multi-page article's later sections are on later pages.
    pages = [b.page for _, _, _, blocks in checked for b in blocks]
    assert min(pages) == 1 and max(pages) >= 2


def test_pdf_headings_come_from_font_size_when_there_is_no_outline(tmp_path, kb_articles):
    for name in ("vpn-troubleshooting", "reset-password"):
        render_pdf(kb_articles[name], tmp_path / f"{name}.pdf", outline=False)
    assert len(list(_check_against_reference(tmp_path, ".pdf", {n: kb_articles[n] for n in
                                                                 ("vpn-troubleshooting", "reset-password")}))) == 2


def test_html_rendering_of_kb_gives_the_article_and_drops_the_boilerplate(kb_html, kb_articles):
    for name, expected, got, _ in _check_against_reference(kb_html, ".html", kb_articles):
        assert in_order_recall(got, expected) >= 0.99, name  # nothing extra: navigation, banners, footer gone
        assert not {w.casefold() for w in BOILERPLATE} & set(got), name
    ingest = ingest_documents(kb_html, scan=False)
    messages = [r.message.casefold() for r in ingest.results]
    declared = [m for m in messages if "read as utf-8, declared in the document" in m]
    assumed = [m for m in messages if "no charset declared" in m and "utf-8 was assumed" in m]
    assert len(declared) == len(assumed) == 12


def test_html_main_content_found_by_text_density_without_main_or_article(tmp_path):
    links = "".join(f"<li><a href='/{i}'>Link number {i}</a></li>" for i in range(40))
    page = (f"<html><body><div id='wrap'><div class='col'><ul>{links}</ul></div>"
            "<div class='col'><h1>Printer jams</h1><p>Open tray two and remove the paper slowly.</p>"
            "<p>Close the tray and print a test page.</p></div></div></body></html>")
    (tmp_path / "p.html").write_text(page)
    blocks, result = extract_blocks(tmp_path / "p.html")
    assert [b.text for b in blocks] == ["Printer jams", "Open tray two and remove the paper slowly.",
                                        "Close the tray and print a test page."]
    assert result.title == "Printer jams"


def test_docx_headings_lists_and_tables_in_order(tmp_path):
    import docx

    d = docx.Document()
    d.core_properties.title = "Guest Wi-Fi"
    d.add_heading("Guest Wi-Fi", 0)
    d.add_paragraph("Visitors use NW-Guest.")
    d.add_heading("Vouchers", 1)
    d.add_paragraph("Ask reception.", style="List Bullet")
    table = d.add_table(rows=2, cols=2)
    for r, cells in enumerate([("Days", "Valid"), ("7", "yes")]):
        for c, value in enumerate(cells):
            table.cell(r, c).text = value
    d.add_heading("Limits", 2)
    d.add_paragraph("Ten devices per voucher.")
    d.save(tmp_path / "wifi.docx")
    blocks, result = extract_blocks(tmp_path / "wifi.docx")
    assert [(b.kind, b.level, b.text) for b in blocks] == [
        ("heading", 0, "Guest Wi-Fi"), ("paragraph", 0, "Visitors use NW-Guest."), ("heading", 1, "Vouchers"),
        ("list_item", 0, "- Ask reception."), ("table", 0, "Days | Valid\n7 | yes"), ("heading", 2, "Limits"),
        ("paragraph", 0, "Ten devices per voucher."),
    ]
    assert result.title == "Guest Wi-Fi" and result.status == "ok"
    sections = ingest_documents(tmp_path, scan=False).sections
    assert sections["section"].tolist() == ["Guest Wi-Fi", "Guest Wi-Fi > Vouchers", "Guest Wi-Fi > Vouchers > Limits"]


# --------------------------------------------------------------------------- bad documents

#: file -> (status, kind, what the message must say)
BAD_EXPECTED = {
    "encrypted.pdf": ("error", "encrypted", "encrypted: it needs a password"),
    "scanned.pdf": ("error", "needs_ocr", "OCR is needed"),
    "truncated.pdf": ("error", "truncated", "truncated: it has no %%EOF marker"),
    "corrupt.pdf": ("error", "corrupt", "PDF is corrupt"),
    "not-a-pdf.pdf": ("error", "corrupt", "not a PDF: it does not start with %PDF- (it holds plain text)"),
    "empty.pdf": ("error", "empty_file", "empty (0 bytes)"),
    "blank-pages.pdf": ("error", "no_text", "2 pages but no text on any of them"),
    "truncated.docx": ("error", "truncated", "DOCX is truncated or corrupt: its ZIP directory is missing"),
    "corrupt.docx": ("error", "corrupt", "not a Word document: a .docx file is a ZIP package, and this one holds "
                                         "plain text"),
    "spreadsheet.docx": ("error", "corrupt", "the file is an Excel workbook"),
    "encrypted.docx": ("error", "encrypted", "password-protected"),
    "empty.docx": ("error", "no_text", "holds no text"),
    "page-saved-as.pdf": ("warning", "wrong_extension", "named .pdf but holds an HTML page; it was read as html"),
    "report-named.docx": ("warning", "wrong_extension", "named .docx but holds a PDF; it was read as pdf"),
    "latin1-undeclared.html": ("warning", "encoding", "no charset is declared (no byte-order mark, no <meta charset>) "
                                                      "and the bytes are not UTF-8; read as cp1252"),
    "declared-latin1.html": ("ok", None, "read as cp1252 (declared as 'iso-8859-1'), declared in the document"),
    "nav-only.html": ("error", "no_text", "no main content"),
    "empty.md": ("error", "empty_file", "empty (0 bytes)"),
    "whitespace-only.txt": ("error", "no_text", "holds no text"),
    "binary.txt": ("error", "binary", "named .txt but holds a PNG image, not text"),
    "office-named.html": ("error", "binary", "named .html but holds an Office 97-2003 file, not text"),
    "legacy.doc": ("skipped", "unsupported_file", "Word 97-2003 (.doc) files are not read"),
    "bad-bytes.md": ("warning", "encoding", "the bytes are not valid UTF-8; read as cp1252"),
    "stray-byte.md": ("warning", "encoding", "not valid utf-8 at byte offset 92 (line 5)"),
    "good.md": ("ok", None, "read as utf-8"),
}


@pytest.fixture(scope="module")
def bad_ingest() -> DocumentIngest:
    return ingest_documents(BAD)


def test_bad_documents_corpus_is_complete():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(BAD_EXPECTED)
    assert sum(status != "ok" for status, _, _ in BAD_EXPECTED.values()) >= 12


@pytest.mark.parametrize("name", sorted(BAD_EXPECTED))
def test_each_bad_document_gets_its_own_message(bad_ingest, name):
    status, kind, says = BAD_EXPECTED[name]
    result = bad_ingest.result(name)
    assert result.status == status, result.message
    assert says.casefold() in result.message.casefold()
    if kind:
        assert kind in {p.kind for p in result.problems}
        assert all(p.fix for p in result.problems)
        assert all(p.file == result.file for p in result.problems)
    assert (result.chunks > 0) == (status in ("ok", "warning"))


def test_one_bad_file_never_stops_a_folder(bad_ingest):
    assert len(bad_ingest.results) == len(BAD_EXPECTED)
    texts = " ".join(bad_ingest.corpus.frame["text"])
    for readable in ("Reception hands out vouchers", "Demandez l\u2019acc\u00e8s au r\u00e9seau",
                     "Le caf\u00e9 de la cantine est ouvert d\u00e8s huit heures", "30 \u20ac per cartridge",
                     "The caf\u00e9 opens at eight; cr\u00e8me br\u00fbl\u00e9e"):
        assert readable in texts
    table = bad_ingest.results_frame()
    assert table["file"].tolist() == sorted(BAD_EXPECTED)
    assert {"status", "message", "fix", "chunks"} <= set(table.columns)
    with pytest.raises(DatasetError) as err:
        ingest_documents(BAD, strict=True)
    assert "encrypted.pdf" in str(err.value) and "scanned.pdf" in " ".join(p.file for p in err.value.problems)


def test_owner_password_only_pdf_is_read(tmp_path):
    import io

    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO((BAD / "report-named.docx").read_bytes()))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    writer.write(tmp_path / "restricted.pdf")
    result = ingest_documents(tmp_path).result("restricted.pdf")
    assert result.status == "ok" and result.chunks > 0
    assert "owner password only" in result.message


def test_mixed_folder_saves_pages_and_lines_as_integers_in_valid_json(tmp_path):
    shutil.copy(BAD / "good.md", tmp_path / "a.md")
    shutil.copy(BAD / "report-named.docx", tmp_path / "b.pdf")
    ingest = ingest_documents(tmp_path)
    assert ingest.corpus.frame[["page", "_line"]].values.tolist() == [[None, 1], [None, 5], [1, None], [2, None]]

    def no_nan(name):
        raise ValueError(f"{name} is not JSON")

    saved = save_jsonl(ingest.corpus, tmp_path / "out" / "c.jsonl").read_text().splitlines()
    assert [json.loads(line, parse_constant=no_nan)["page"] for line in saved] == [None, None, 1, 2]


def test_missing_source_is_an_error():
    with pytest.raises(DatasetError, match="no such file or folder"):
        ingest_documents(ROOT / "no-such-folder")


# --------------------------------------------------------------------------- chunking


def _chunks(tmp_path: Path, name: str, text: str, **config) -> list[str]:
    (tmp_path / name).write_text(text)
    return ingest_documents(tmp_path / name, DocumentConfig(**config), scan=False).corpus.frame["text"].tolist()


def test_chunks_end_at_paragraph_boundaries(tmp_path):
    paras = [" ".join(f"p{i}w{j}" for j in range(30)) for i in range(5)]
    chunks = _chunks(tmp_path, "doc.md", "# T\n\n" + "\n\n".join(paras) + "\n", chunk_size=100, overlap=0)
    assert chunks == ["T\n\n" + "\n\n".join(paras[:3]), "\n\n".join(paras[3:])]


def test_chunks_end_at_sentences_when_a_paragraph_is_too_long(tmp_path):
    sentences = [" ".join(f"s{i}w{j}" for j in range(9)) + f" end{i}." for i in range(6)]
    chunks = _chunks(tmp_path, "doc.txt", " ".join(sentences), chunk_size=25, overlap=0)
    assert chunks == [" ".join(sentences[k:k + 2]) for k in (0, 2, 4)]


def test_overlap_is_exactly_the_last_words_of_the_previous_chunk(tmp_path):
    text = " ".join(f"w{i}" for i in range(40))
    chunks = [c.split() for c in _chunks(tmp_path, "doc.txt", text, chunk_size=10, overlap=3)]
    assert all(len(c) <= 10 for c in chunks)
    assert all(a[-3:] == b[:3] for a, b in zip(chunks, chunks[1:]))
    assert [w for w in chunks[0]] + [w for c in chunks[1:] for w in c[3:]] == text.split()


def test_empty_headings_are_carried_into_the_next_section_not_left_alone(tmp_path):
    ingest = ingest_documents(_write(tmp_path, "d.md", "# Title\n\n## Chapter\n\n### Part\n\nBody text.\n"), scan=False)
    assert ingest.corpus.frame["text"].tolist() == ["Title\n\nChapter\n\nPart\n\nBody text."]
    assert ingest.corpus.frame["section"].tolist() == ["Title > Chapter > Part"]
    assert ingest.sections["heading"].tolist() == ["Part"]


def _write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name


def test_bpe_chunks_fit_the_budget_never_cross_sections_and_overlap(bpe):
    tokenizer, folder, _ = bpe
    ingest = ingest_documents(KB, DocumentConfig(chunk_size=64, overlap=8), tokenizer=tokenizer, scan=False)
    frame = ingest.corpus.frame
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in frame["text"]]
    assert lengths == frame["tokens"].tolist()
    assert max(lengths) <= 64 and ingest.stats.over_limit == 0
    assert ingest.stats.tokenizer == str(folder)
    overlaps = []
    for (_, section), group in frame.groupby(["path", "section"], sort=False):
        texts = group["text"].tolist()
        # A section starts with its heading (or the empty parent headings carried into it) ...
        assert any(texts[0].startswith(h) for h in section.split(" > ")), texts[0][:60]
        for a, b in zip(texts, texts[1:]):  # ... and its chunks overlap, by about 8 tokens, from a word
            shared = next((k for k in range(min(len(a), len(b)), 0, -1) if a.endswith(b[:k])), 0)
            assert shared == 0 or not a[-shared - 1].isalnum()
            overlaps.append(len(tokenizer(b[:shared], add_special_tokens=False)["input_ids"]))
    # Only a word longer than twice the overlap (a URL) leaves two chunks with nothing shared.
    assert max(overlaps) <= 16 and sum(n > 0 for n in overlaps) >= 0.9 * len(overlaps) and len(overlaps) > 50
    # Sections never interleave: each (path, section) is one contiguous run of rows.
    runs = (frame[["path", "section"]] != frame[["path", "section"]].shift()).any(axis=1).sum()
    assert runs == frame.groupby(["path", "section"]).ngroups


def test_every_tokenizer_form_gives_the_same_chunks(bpe, tmp_path):
    tokenizer, folder, raw = bpe
    source = KB / "vpn-troubleshooting.md"
    config = DocumentConfig(chunk_size=48, overlap=6)
    by_object = ingest_documents(source, config, tokenizer=tokenizer, scan=False).corpus.frame["text"].tolist()
    by_raw = ingest_documents(source, config, tokenizer=raw, scan=False).corpus.frame["text"].tolist()
    by_path = ingest_documents(source, dataclasses.replace(config, tokenizer=str(folder)),
                               scan=False).corpus.frame["text"].tolist()
    assert by_object == by_raw == by_path and len(by_object) > 5

    class Slow:  # a tokenizer with no offsets: two characters per token
        def tokenize(self, word):
            return [word[i:i + 2] for i in range(0, len(word), 2)]

    assert token_counter(Slow()).count(["abcde fg"]) == [4]
    with pytest.raises(ValueError, match="neither 'whitespace' nor a folder"):
        token_counter("no/such/tokenizer")


def test_chunk_stats_are_computed_from_token_lengths(bpe):
    ds = load_dataset(pd.DataFrame({"text": [" ".join(["w"] * n) for n in range(1, 21)]}), format="corpus")
    stats = chunk_stats(ds, chunk_size=15)
    assert isinstance(stats, ChunkStats)
    assert (stats.count, stats.min, stats.median, stats.max, stats.total, stats.over_limit) == (20, 1, 10.5, 20, 210, 5)
    assert stats.p95 == pytest.approx(19.05)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.count = 0
    tokenizer = bpe[0]
    text = ["Reset your password in the password portal."]
    by_bpe = chunk_stats(load_dataset(pd.DataFrame({"text": text}), format="corpus"), tokenizer)
    assert by_bpe.max == len(tokenizer(text[0], add_special_tokens=False)["input_ids"]) > 7


@pytest.mark.parametrize("kwargs, says", [
    ({"chunk_size": 4}, "at least 8"),
    ({"chunk_size": 64, "overlap": 32}, "less than half"),
    ({"overlap": -1}, "non-negative"),
    ({"tokenizer": ""}, "whitespace"),
])
def test_config_says_what_is_allowed(kwargs, says):
    with pytest.raises(ValueError, match=says):
        DocumentConfig(**kwargs)


# --------------------------------------------------------------------------- large files, progress


def test_large_markdown_is_streamed_with_correct_lines_and_progress(tmp_path, monkeypatch):
    body = "Caf\u00e9 cr\u00e8me r\u00e9sum\u00e9 " * 40
    sections = [f"## Section {i}\n\n{body}end {i}.\n" for i in range(120)]
    source = _write(tmp_path, "big.md", "# Big\n\n" + "\n".join(sections))
    whole = ingest_documents(source, scan=False).corpus.frame
    # Small blocks and units: multi-byte characters fall across block edges, units cut before headings.
    monkeypatch.setattr(extractors_module, "READ_BYTES", 4096)
    monkeypatch.setattr(extractors_module, "UNIT_CHARS", 8192)
    seen: list[tuple[int, int, str]] = []
    streamed = ingest_documents(source, progress=lambda done, total, f: seen.append((done, total, f)),
                                scan=False).corpus.frame
    assert streamed["text"].tolist() == whole["text"].tolist()
    assert streamed["_line"].tolist() == whole["_line"].tolist()
    lines = source.read_text().split("\n")
    headings = zip(streamed["_line"][1:], streamed["section"][1:])
    assert all(lines[n - 1] == f"## {s.split(' > ')[-1]}" for n, s in headings)
    size = source.stat().st_size
    assert len(seen) >= size // 4096 and seen[-1][:2] == (size, size)
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)


def test_pdf_progress_advances_per_page_and_tqdm_bar_shows(kb_pdf, capsys):
    seen = []
    ingest_documents(kb_pdf / "vpn-troubleshooting.pdf", progress=lambda d, t, f: seen.append(d), scan=False)
    pages = extract_blocks(kb_pdf / "vpn-troubleshooting.pdf")[1].pages
    assert pages >= 2 and len(seen) >= pages
    ingest_documents(KB / "mfa-setup.md", progress=True, scan=False)
    assert "documents: 100%" in capsys.readouterr().err


# --------------------------------------------------------------------------- duplicates, personal data


def test_duplicates_and_personal_data_are_flagged_per_file(tmp_path):
    shutil.copy(KB / "reset-password.md", tmp_path / "a.md")
    shutil.copy(KB / "reset-password.md", tmp_path / "b.md")
    _write(tmp_path, "c.md", "# Contact\n\nWrite to jane.doe@example.com or call +44 20 7946 0958 about VPN.\n")
    ingest = ingest_documents(tmp_path)
    a, b, c = (ingest.result(n) for n in ("a.md", "b.md", "c.md"))
    assert (a.duplicate_chunks, b.duplicate_chunks) == (0, b.chunks) and b.chunks > 0
    assert c.pii_findings >= 2 and a.pii_findings == b.pii_findings
    # The very functions any dataset goes through.
    assert ingest.duplicates == find_duplicates(ingest.corpus)
    assert ingest.pii == scan_pii(ingest.corpus)


# --------------------------------------------------------------------------- instruction pairs, saving


def test_instruction_pairs_come_from_sections_and_point_back_to_them(tmp_path):
    ingest = ingest_documents(KB, scan=False)
    pairs = instruction_pairs(ingest, template="question")
    assert pairs.format == "instruction" and len(pairs) > 100
    frame = pairs.frame
    assert {"path", "title", "section", "template"} <= set(frame.columns)
    assert not frame["section"].str.endswith("Related articles").any()
    bodies = dict(zip(zip(ingest.sections["path"], ingest.sections["section"]), ingest.sections["text"]))
    for row in frame.to_dict("records"):
        assert row["output"] == bodies[(row["path"], row["section"])]
        source_line = (ROOT / row["_file"]).read_text().split("\n")[row["_line"] - 1]
        assert source_line.lstrip("#").strip() == row["section"].split(" > ")[-1]
    asked = dict(zip(frame["section"], frame["instruction"]))
    assert asked["Reset or change your password > Reset a forgotten password"] == \
        "How do I reset a forgotten password?"
    pc = instruction_pairs(ingest, template=lambda s: f"Tell me about {s.heading}.", format="prompt_completion")
    assert pc.format == "prompt_completion" and pc.frame["prompt"].str.startswith("Tell me about").all()
    with pytest.raises(ValueError, match="continue, explain, question"):
        instruction_pairs(ingest, template="nope")
    saved = save_jsonl(pairs, tmp_path / "pairs.jsonl")
    reloaded = load_dataset(saved)
    assert reloaded.format == "instruction" and reloaded.frame["instruction"].tolist() == frame["instruction"].tolist()
    corpus = load_dataset(save_jsonl(ingest.corpus, tmp_path / "corpus.jsonl"))
    assert corpus.format == "corpus" and corpus.frame["text"].tolist() == ingest.corpus.frame["text"].tolist()


def test_document_sources_are_recognised_for_load_dataset(tmp_path):
    assert is_document_source(KB) and is_document_source(BAD / "scanned.pdf")
    assert not is_document_source(ROOT / "datasets" / "it_support")   # tickets.jsonl: a data folder
    _write(tmp_path, "notes.txt", "just text")
    assert not is_document_source(tmp_path) and not is_document_source(pd.DataFrame())


# --------------------------------------------------------------------------- the notebook


def test_notebook_parameters_match_the_config_and_the_layout():
    import nbformat
    import papermill

    params = papermill.inspect_notebook(str(NOTEBOOK))
    config_fields = {f.name for f in dataclasses.fields(DocumentConfig)}
    assert set(params) == config_fields | {"source", "output"}
    defaults = DocumentConfig()
    for name in config_fields:
        assert ast.literal_eval(params[name]["default"]) == getattr(defaults, name)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for value in (ast.literal_eval(params[n]["default"]) for n in params):
        assert isinstance(value, (str, int, float, bool, type(None)))
    assert nb.cells[-1].cell_type == "markdown"
    assert nb.cells[-1].source == "# Dataset explorer: opened here once workbench.panels.DatasetPanel exists"


def test_notebook_runs_headless_on_the_kb(tmp_path, monkeypatch, bpe):
    import papermill

    # A kernelspec named python3 that runs this interpreter, first on JUPYTER_PATH, so the
    # kernel is this virtualenv's ipykernel whatever else the machine has installed.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (workbench venv)", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    output = tmp_path / "out" / "corpus.jsonl"
    params = {"source": str(KB), "tokenizer": str(bpe[1]), "chunk_size": 64, "overlap": 8, "output": str(output)}
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "run.ipynb"), parameters=params,
                               kernel_name="python3", cwd=str(NOTEBOOK.parent), progress_bar=False)
    direct = ingest_documents(KB, DocumentConfig(chunk_size=64, overlap=8), tokenizer=bpe[0], scan=False)
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["text"] for r in written] == direct.corpus.frame["text"].tolist()
    assert (output.parent / "pairs.jsonl").exists()
    executed = json.loads((tmp_path / "run.ipynb").read_text())
    shown = json.dumps([c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code"])
    assert "reset-password.md" in shown and "p95" in shown
