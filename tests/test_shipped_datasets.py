"""The shipped datasets hold what their READMEs promise and go through the data layer cleanly."""

from __future__ import annotations

import re
from pathlib import Path

from workbench.cli import DEMO_DATASETS
from workbench.data import data_report, find_duplicates, load_dataset, normalize_text, scan_pii

ROOT = Path(__file__).resolve().parent.parent
ALLOW = next(d for d in DEMO_DATASETS if d["name"] == "it_support")["pii_allow"]
DATA = ROOT / "datasets"


def test_banking77_copy_keeps_attribution_and_loads():
    folder = DATA / "banking77"
    assert (folder / "LICENSE").read_text().startswith("Attribution 4.0 International") or \
        "Creative Commons" in (folder / "LICENSE").read_text()
    assert "Casanueva" in (folder / "README.md").read_text()
    train = load_dataset(folder)
    test = load_dataset(folder, split="test")
    assert (train.format, len(train), len(test)) == ("classification", 10003, 3080)
    assert train.columns == {"text": "text", "label": "category"}
    assert train.frame["label"].nunique() == 77 and not train.report.errors


def test_it_support_tickets_meet_the_brief():
    ds = load_dataset(DATA / "it_support" / "tickets.jsonl")
    assert ds.format == "prompt_completion" and len(ds) >= 300
    categories = set(ds.frame["category"])
    assert {"accounts_passwords", "vpn", "email", "printers", "hardware", "software_install",
            "access_requests", "security"} <= categories
    # varied phrasing, not one template: few prompts share their first five words
    openings = {" ".join(normalize_text(p).split()[:5]) for p in ds.frame["prompt"]}
    assert len(openings) > 0.9 * len(ds)
    assert find_duplicates(ds).summary()["normalized_duplicate_rows"] == 0
    kb_ids = {f"KB-{i:03d}" for i in range(1, 25)}
    assert set(ds.frame["kb"]) <= kb_ids


def test_planted_personal_data_is_found():
    ds = load_dataset(DATA / "it_support" / "tickets.jsonl")
    report = scan_pii(ds, allow=ALLOW)
    planted = {i for i, v in enumerate(ds.frame["pii"]) if v}
    found = set(report.rows)
    assert len(planted) >= 30
    assert len(planted & found) / len(planted) >= 0.95           # recall (42/42 when written)
    assert found <= planted                                        # no false alarms on clean tickets
    assert len(report.counts) >= 7                                 # most kinds are represented


def test_knowledge_base_articles():
    articles = sorted((DATA / "it_support" / "kb").glob("*.md"))
    assert len(articles) >= 20
    names = {a.name for a in articles}
    for a in articles:
        text = a.read_text()
        assert text.startswith("# ") and len(text.split()) > 200
        for link in re.findall(r"\]\(([a-z0-9-]+\.md)\)", text):
            assert link in names, f"{a.name} links to missing {link}"


def test_demo_report_on_shipped_data(tmp_path):
    report = data_report(DATA / "it_support" / "tickets.jsonl", stratify="category", test=0.15, validation=0.1,
                         out_dir=tmp_path, pii_allow=ALLOW)
    assert sum(report.splits.sizes().values()) == len(report.dataset)
    written = (tmp_path / "train.jsonl").read_text() + (tmp_path / "test.jsonl").read_text()
    assert "4111 1111 1111 1111" not in written and "[CARD_NUMBER]" in written
