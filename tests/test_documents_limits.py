"""Hostile documents: ZIP bombs, deeply nested HTML, files that never finish, links out of the folder.

Each test builds its hostile file in tmp_path, small on disk and cheap to write (the bomb's XML
is streamed into the ZIP a megabyte at a time). Where the danger is time, a 30 s SIGALRM guard
stands in for a timer: sizes are chosen so that the old quadratic code would take minutes.
"""

from __future__ import annotations

import io
import signal
import threading
import time
import zipfile
from pathlib import Path

import docx
import pytest

from fixtures.make_bad_documents import MB, declare_size, docx_bomb
from workbench.data import DatasetError
from workbench.data.documents import (DOCUMENT_SUFFIXES, EXTRACTORS, Block, DocumentConfig, FileContext,
                                      extract_blocks, ingest_documents)
from workbench.data.documents import office
from workbench.data.documents.base import FileError
from workbench.errors import ConfigError



@pytest.fixture
def guard():
    """Fail (rather than hang) when the code under test runs past 30 s."""

    def expire(signum, frame):
        raise TimeoutError("over 30 s: this should take a second or two")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- ZIP bombs


def _watch(monkeypatch) -> dict:
    """From now on: bytes that come out of any ZIP part, and whether python-docx is asked to parse anything."""
    seen = {"bytes": 0, "parsed": False}
    read = zipfile.ZipExtFile.read

    def counting(self, n=-1):
        data = read(self, n)
        seen["bytes"] += len(data)
        return data

    def parse(*args, **kwargs):
        seen["parsed"] = True
        raise AssertionError("python-docx must not see a refused file")

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    monkeypatch.setattr(docx, "Document", parse)
    return seen


def test_highly_compressed_docx_is_refused_by_ratio_before_unpacking(tmp_path, monkeypatch):
    bomb = docx_bomb(tmp_path / "bomb.docx", 20)
    unpacked = _watch(monkeypatch)
    assert bomb.stat().st_size < MB // 2  # 20 MB of XML in well under half a megabyte
    (tmp_path / "good.md").write_text("# Good\n\nThis one is read.\n")
    ingest = ingest_documents(tmp_path, scan=False)
    result = ingest.result("bomb.docx")
    assert result.status == "error" and [p.kind for p in result.problems] == ["too_large"]
    message = result.message
    assert "word/document.xml" in message and "max_compression_ratio=100" in message and "20.0 MB" in message
    assert "DocumentConfig.max_compression_ratio" in result.fix
    assert result.problems[0].file.endswith("bomb.docx")
    assert unpacked["bytes"] == 0 and not unpacked["parsed"]  # refused on the declared sizes alone
    assert ingest.result("good.md").status == "ok"
    assert ingest.corpus.frame["text"].str.contains("bomb").sum() == 0
    with pytest.raises(DatasetError, match="bomb.docx"):
        ingest_documents(tmp_path, scan=False, strict=True)


def test_docx_over_the_unpacked_size_limit_is_refused_naming_the_setting(tmp_path, monkeypatch):
    bomb = docx_bomb(tmp_path / "big.docx", 8)
    unpacked = _watch(monkeypatch)
    config = DocumentConfig(max_unpacked_mb=5, max_compression_ratio=1_000_000)
    result = ingest_documents(bomb, config, scan=False).results[0]
    assert result.status == "error" and result.problems[0].kind == "too_large"
    assert "over max_unpacked_mb=5" in result.message and "as its ZIP directory declares" in result.message
    assert "raise DocumentConfig.max_unpacked_mb (to 9 or more)" in result.fix
    assert unpacked["bytes"] == 0 and not unpacked["parsed"]


def test_docx_whose_zip_lies_about_sizes_is_not_unpacked_past_the_declared_size(tmp_path, monkeypatch):
    bomb = docx_bomb(tmp_path / "liar.docx", 8)
    declare_size(bomb, "word/document.xml", 1000)  # 8 MB inside, 1 KB declared: passes the checks on sizes
    unpacked = _watch(monkeypatch)
    config = DocumentConfig(max_unpacked_mb=5, max_compression_ratio=1_000_000)
    result = ingest_documents(bomb, config, scan=False).results[0]
    assert result.status == "error" and result.problems[0].kind == "corrupt", result.message
    assert unpacked["bytes"] < MB and not unpacked["parsed"]


def test_unpacking_stops_once_the_bytes_that_come_out_pass_the_limit(tmp_path):
    """The counting guard itself, against a package that declares less than it holds."""
    info = zipfile.ZipInfo("word/document.xml")
    info.file_size = info.compress_size = 1000
    pulled = []

    class Stream(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            pulled.append(len(b))
            b[:] = b"x" * len(b)
            return len(b)

    class Lying:
        def infolist(self):
            return [info]

        def open(self, _):
            return io.BufferedReader(Stream())

    path = tmp_path / "x.docx"
    path.write_bytes(b"PK")
    ctx = FileContext(path, "x.docx", 2, config=DocumentConfig(max_unpacked_mb=3))
    with pytest.raises(FileError) as err:
        office.check_unpacked(ctx, Lying())
    problem = err.value.problem
    assert problem.kind == "too_large" and "counted while unpacking" in problem.message and problem.file == "x.docx"
    assert sum(pulled) < 5 * MB  # an endless part: reading stopped soon after the limit


def test_an_ordinary_docx_passes_the_checks(tmp_path):
    d = docx.Document()
    d.add_heading("Printers", 1)
    for i in range(200):
        d.add_paragraph(f"Paragraph {i}: open tray two and remove the paper slowly.")
    d.save(tmp_path / "printers.docx")
    result = ingest_documents(tmp_path / "printers.docx", DocumentConfig(max_unpacked_mb=1), scan=False).results[0]
    assert result.status == "ok" and result.chunks > 0


@pytest.mark.parametrize("kwargs, says", [
    ({"max_unpacked_mb": 0}, "max_unpacked_mb must be a positive integer"),
    ({"max_compression_ratio": 2.5}, "max_compression_ratio must be a positive integer"),
    ({"max_seconds_per_file": -1}, "max_seconds_per_file must be a positive number"),
    ({"max_seconds_per_file": "60"}, "None for no limit"),
])
def test_limit_settings_say_what_is_allowed(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        DocumentConfig(**kwargs)


# --------------------------------------------------------------------------- HTML in time linear in its size


def _page(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "page.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    return path


def test_deeply_nested_divs_are_extracted_without_recursion_or_quadratic_time(tmp_path, guard):
    depth = 9200  # 100 KB: the quadratic version took minutes, and recursion stopped at about 1000
    path = _page(tmp_path, "<div>" * depth + "<p>Deep paragraph text.</p>" + "</div>" * depth)
    assert path.stat().st_size > 100_000
    blocks, result = extract_blocks(path)
    assert [b.text for b in blocks] == ["Deep paragraph text."] and result.status == "ok"


def test_nested_divs_with_text_at_every_level_pick_the_main_content(tmp_path, guard):
    depth = 8000
    path = _page(tmp_path, "<div>word " * depth + "</div>" * depth)
    blocks, result = extract_blocks(path)
    assert result.status == "ok" and blocks and all(set(b.text.split()) == {"word"} for b in blocks)


@pytest.mark.parametrize("body, expect", [
    ("<ul><li>item" * 6000 + "</li></ul>" * 6000, lambda bs: len(bs) == 6000 and bs[-1].text == "- item"),
    ("<table><tr><td>cell" * 5000 + "</td></tr></table>" * 5000,
     lambda bs: len(bs) == 1 and bs[0].text.split("\n") == ["cell"] * 5000),
    ("<p>" + "l<br>" * 40000 + "</p>", lambda bs: len(bs) == 1 and bs[0].text.split() == ["l"] * 40000),
    ("<b>k</b><nav></nav>" * 6000 + "<p>Only this.</p>", lambda bs: [b.text for b in bs] == ["k" * 6000, "Only this."]),
    ("<header>top " * 6000 + "</header>" * 6000 + "<p>Only this.</p>", lambda bs: [b.text for b in bs] == ["Only this."]),
    ("<span>s " * 8000 + "<p>Para.</p>" + "</span>" * 8000, lambda bs: bs[-1].text == "Para." and len(bs) == 8001),
], ids=["nested-lists", "nested-tables", "line-breaks", "sibling-boilerplate", "nested-headers", "nested-inline"])
def test_other_deep_or_wide_pages_are_linear_too(tmp_path, guard, body, expect):
    path = _page(tmp_path, body)
    assert path.stat().st_size > 100_000
    blocks, result = extract_blocks(path)
    assert result.status == "ok" and expect(blocks), [b.text[:40] for b in blocks[:5]]


def test_boilerplate_among_many_siblings_is_removed_without_scanning_the_siblings(tmp_path, monkeypatch):
    """``Tag.decompose`` finds each element by scanning its parent's children: quadratic in their number."""
    from bs4.element import Tag

    scanned = [0]
    index = Tag.index

    def counting(self, element):
        position = index(self, element)
        scanned[0] += position + 1
        return position

    monkeypatch.setattr(Tag, "index", counting)
    pairs = 6000
    path = _page(tmp_path, "<b>k</b><nav>menu</nav>" * pairs + "<p>Only this.</p>")
    blocks, result = extract_blocks(path)
    assert [b.text for b in blocks] == ["k" * pairs, "Only this."] and "6000 elements" in result.message
    assert scanned[0] < 10 * pairs  # removing each <nav> after a scan of the <b>s before it: 18 million


# --------------------------------------------------------------------------- time budget per file


@pytest.fixture
def slow_type(monkeypatch):
    """A ``.slow`` document type whose extractor yields one block, then computes for up to 20 s."""
    state = {"finished": False, "stopped": threading.Event(), "thread": None}

    def extract_slow(ctx: FileContext):
        state["thread"] = threading.current_thread()
        try:
            yield Block("first block of the slow file")
            end = time.monotonic() + 20
            while time.monotonic() < end:  # a library stuck in pure Python: no yield to check at
                sum(range(1000))
            state["finished"] = True
            yield Block("the slow file finished")
        finally:
            state["stopped"].set()

    monkeypatch.setitem(EXTRACTORS, "slow", extract_slow)
    monkeypatch.setitem(DOCUMENT_SUFFIXES, ".slow", "slow")
    return state


def test_a_file_over_its_time_budget_is_stopped_reported_and_the_folder_goes_on(tmp_path, guard, slow_type):
    (tmp_path / "a.md").write_text("# A\n\nBefore the slow file.\n")
    (tmp_path / "b.slow").write_text("anything")
    (tmp_path / "c.md").write_text("# C\n\nAfter the slow file.\n")
    ingest = ingest_documents(tmp_path, DocumentConfig(max_seconds_per_file=0.5), scan=False)
    slow = ingest.result("b.slow")
    assert slow.status == "error" and [p.kind for p in slow.problems] == ["timed_out"]
    assert "max_seconds_per_file=0.5 s" in slow.message and slow.problems[0].file.endswith("b.slow")
    assert "DocumentConfig.max_seconds_per_file" in slow.fix
    assert ingest.result("a.md").status == ingest.result("c.md").status == "ok"
    texts = " ".join(ingest.corpus.frame["text"])
    assert "Before the slow file." in texts and "After the slow file." in texts
    assert "slow file" not in texts.replace("Before the slow file.", "").replace("After the slow file.", "")
    # The worker was stopped in the middle of its computation, not left running.
    assert slow_type["stopped"].wait(10) and not slow_type["finished"]
    assert slow_type["thread"] is not threading.main_thread()


def test_no_time_budget_reads_in_the_calling_thread(tmp_path, slow_type, monkeypatch):
    monkeypatch.setattr(time, "monotonic", iter(range(0, 10**9, 100)).__next__)  # 20 s pass at once
    (tmp_path / "b.slow").write_text("anything")
    ingest = ingest_documents(tmp_path, DocumentConfig(max_seconds_per_file=None), scan=False)
    assert ingest.results[0].status == "ok" and slow_type["finished"]
    assert slow_type["thread"] is threading.main_thread()


# --------------------------------------------------------------------------- links out of the folder


def test_links_to_files_or_folders_outside_the_source_are_refused_not_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nTOPSECRET credentials live here.\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nInside the folder.\n")
    (docs / "linked.md").symlink_to(outside / "secret.md")
    (docs / "elsewhere").symlink_to(outside, target_is_directory=True)
    (docs / "alias.md").symlink_to(docs / "guide.md")  # a link that stays inside is fine
    ingest = ingest_documents(docs, scan=False)
    assert "TOPSECRET" not in " ".join(ingest.corpus.frame["text"])
    assert sorted(r.file.rsplit("/", 1)[-1] for r in ingest.results) == ["alias.md", "elsewhere", "guide.md",
                                                                          "linked.md"]
    for name, what in (("linked.md", "file"), ("elsewhere", "folder")):
        result = ingest.result(name)
        assert result.status == "error" and [p.kind for p in result.problems] == ["outside_source"]
        assert result.file.endswith(f"docs/{name}")  # the link, as found in the folder
        assert f"symbolic link to the {what} {(outside / 'secret.md') if what == 'file' else outside}" \
            in result.message
        assert "copy it into the folder" in result.fix
    assert ingest.result("guide.md").status == "ok"
    assert ingest.results_frame()["file"].tolist() == ["alias.md", "elsewhere", "guide.md", "linked.md"]
    with pytest.raises(DatasetError, match="linked.md"):
        ingest_documents(docs, scan=False, strict=True)
