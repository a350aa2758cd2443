"""Duplicates (exact, normalised, conflicting), length filters, and reproducible splits."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.data import (
    DatasetError,
    drop_duplicates,
    filter_length,
    find_duplicates,
    load_dataset,
    split_dataset,
    verify_splits,
)


def _cls(rows):
    return load_dataset(pd.DataFrame(rows, columns=["text", "label"]))


def test_duplicate_kinds():
    ds = _cls([
        ("Where is my card?", "card_arrival"),   # 0
        ("Where is my card?", "card_arrival"),   # 1 exact of 0
        ("where is my card", "card_arrival"),    # 2 normalised of 0/1
        ("WHERE  is my CARD!!", "lost_card"),     # 3 conflicts with 0-2
        ("Top up failed", "top_up_failed"),      # 4 unique
    ])
    rep = find_duplicates(ds)
    assert [g.rows for g in rep.of_kind("exact")] == [(0, 1)]
    assert [g.rows for g in rep.of_kind("normalized")] == [(0, 1, 2)]
    assert [g.rows for g in rep.of_kind("conflicting")] == [(0, 1, 2, 3)]
    assert rep.summary() == {"exact_duplicate_rows": 1, "normalized_duplicate_rows": 2,
                             "conflicting_groups": 1, "conflicting_rows": 4}
    assert rep.rows_to_drop() == [1, 2]
    assert rep.rows_to_drop(normalized=False) == [1]
    assert rep.rows_to_drop(conflicting=True) == [0, 1, 2, 3]
    kept, _ = drop_duplicates(ds)
    assert kept.frame["text"].tolist() == ["Where is my card?", "WHERE  is my CARD!!", "Top up failed"]


def test_chat_conflicts_compare_the_last_answer():
    convo = lambda a: [{"role": "user", "content": "Reset MFA?"}, {"role": "assistant", "content": a}]  # noqa: E731
    ds = load_dataset(pd.DataFrame({"messages": [convo("Use the portal."), convo("Call ext. 4357.")]}))
    assert [g.rows for g in find_duplicates(ds).of_kind("conflicting")] == [(0, 1)]


def test_length_filter():
    ds = _cls([("a", "x"), ("hello there", "x"), ("x" * 50, "y")])
    kept, removed = filter_length(ds, min_chars=2, max_chars=20, field="input")
    assert removed == 2 and kept.frame["text"].tolist() == ["hello there"]


def _many(n_per_label=(20, 30, 50)):
    rows = [(f"text {lab} {i}", lab) for lab, n in zip("abc", n_per_label) for i in range(n)]
    return _cls(rows)


def test_split_sizes_and_stratification():
    s = split_dataset(_many(), test=0.2, validation=0.1, seed=1)
    assert s.sizes() == {"train": 70, "validation": 10, "test": 20}
    for name in s.names:
        counts = s[name].frame["label"].value_counts().to_dict()
        share = {k: v / len(s[name]) for k, v in counts.items()}
        assert share == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.5}, abs=0.05)
    all_rows = sorted(t for n in s.names for t in s[n].frame["text"])
    assert all_rows == sorted(_many().frame["text"])  # a partition: nothing lost or repeated


def test_split_is_deterministic_and_order_independent():
    ds = _many()
    a = split_dataset(ds, seed=7)
    b = split_dataset(ds.with_frame(ds.frame.sample(frac=1, random_state=3)), seed=7)
    assert a.fingerprints == b.fingerprints
    assert sorted(a["test"].frame["text"]) == sorted(b["test"].frame["text"])
    c = split_dataset(ds, seed=8)
    assert c.fingerprints["test"] != a.fingerprints["test"]


def test_rare_labels_error_names_the_line(tmp_path):
    p = tmp_path / "rare.csv"
    p.write_text("text,label\n" + "".join(f"common {i},common\n" for i in range(9)) + "lonely one,rare\n")
    ds = load_dataset(p)
    assert [w.kind for w in ds.report.warnings] == ["rare_label"]
    with pytest.raises(DatasetError) as err:
        split_dataset(ds)
    assert f"{ds.source}:11" in str(err.value) and "label 'rare' has 1 example" in str(err.value)
    dropped = split_dataset(ds, rare="drop")
    assert dropped.dropped_rare == ("rare",) and sum(dropped.sizes().values()) == 9
    kept = split_dataset(ds, rare="train")
    assert "lonely one" in kept["train"].frame["text"].tolist()


def test_stratify_by_a_metadata_column():
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "category": "vpn" if i % 4 else "email"} for i in range(40)]
    ds = load_dataset(pd.DataFrame(rows))
    s = split_dataset(ds, test=0.25, validation=0, stratify="category")
    assert s.names == ["train", "test"]
    assert s["test"].frame["category"].value_counts().to_dict() == {"vpn": 8, "email": 2}
    with pytest.raises(DatasetError, match="cannot stratify by 'categry'"):
        split_dataset(ds, stratify="categry")


def test_written_splits_verify_and_detect_tampering(tmp_path):
    s = split_dataset(_many(), seed=3)
    out = s.write(tmp_path / "splits")
    manifest = json.loads((out / "splits.json").read_text())
    assert manifest["splits"]["train"]["rows"] == len(s["train"])
    assert manifest["label_counts"]["test"] == {"a": 2, "b": 3, "c": 5}
    assert verify_splits(out) == s.fingerprints
    assert load_dataset(out, split="test").fingerprint() == s.fingerprints["test"]
    text = (out / "test.jsonl").read_text().replace("text a", "text A", 1)
    (out / "test.jsonl").write_text(text)
    with pytest.raises(DatasetError, match="split 'test' changed"):
        verify_splits(out)
    assert not list(out.glob("*.tmp"))  # atomic writes leave no temporaries
