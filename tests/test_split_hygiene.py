"""Split hygiene: provided splits kept and cleaned like train, overlaps found and dropped, prompts never crossing."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import datasets
import pandas as pd
import pytest

from workbench.config import DataConfig, ExperimentConfig, load_yaml
from workbench.data import data_report, load_dataset, split_dataset, verify_splits
from workbench.data.clean import find_overlap, prompt_keys
from workbench.pipeline import experiment_splits

ROOT = Path(__file__).resolve().parent.parent
LABELS = ("card_arrival", "top_up", "pin_blocked")


def _train_rows(n: int = 60) -> list[tuple[str, str]]:
    return [(f"question number {i} about my {LABELS[i % 3]} issue", LABELS[i % 3]) for i in range(n)] + [
        ("Please email me at ana.silva@mail.example about my card", "card_arrival")]


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


@pytest.fixture
def leaky_folder(tmp_path) -> Path:
    """train.csv, and a test.csv that repeats train (exactly, after normalisation), repeats itself, holds an email."""
    folder = tmp_path / "leaky"
    folder.mkdir()
    _write_csv(folder / "train.csv", _train_rows())
    test = [(f"fresh test question {i} on {LABELS[i % 3]}", LABELS[i % 3]) for i in range(12)]
    test += [("question number 4 about my top_up issue", "top_up"),             # exact copy of a train text
             ("question number 5 about my pin_blocked issue", "pin_blocked"),   # exact copy
             ("QUESTION number 6, about my card_arrival issue!", "card_arrival"),  # normalised copy
             ("fresh test question 0 on card_arrival", "card_arrival"),          # duplicate within test
             ("Write to bo.lind@mail.example when my top-up lands", "top_up")]   # raw email
    _write_csv(folder / "test.csv", test)
    return folder


def test_provided_test_split_is_kept_cleaned_and_checked_against_train(leaky_folder):
    report = data_report(leaky_folder, validation=0.2)
    splits = report.splits
    assert splits.provided == {"test": "test"} and splits.ratios["test"] is None
    (test,) = report.provided
    assert test.overlaps[0].summary() == {"exact": 2, "normalized": 1}
    assert test.duplicates.summary()["exact_duplicate_rows"] == 1
    texts = splits["test"].frame["text"].tolist()
    assert len(texts) == 17 - 3 - 1  # three repeats of train, one duplicate
    assert not set(prompt_keys(splits["test"])) & set(prompt_keys(splits["train"]))
    assert texts.count("fresh test question 0 on card_arrival") == 1
    assert "Write to [EMAIL] when my top-up lands" in texts and not any("@" in t for t in texts)
    assert "Please email me at [EMAIL] about my card" in report.splits["train"].frame["text"].tolist() + \
        report.splits["validation"].frame["text"].tolist()
    text = report.to_text()
    assert "prompts also in train: 2 exact, 1 normalised (dropped)" in text
    assert "test.csv" in text and "in train at" in text and "exact duplicates at" in text
    assert report.to_dict()["provided_splits"]["test"]["overlap"] == {"train": {"exact": 2, "normalized": 1}}


def test_keep_overlap_keeps_the_repeats_and_still_reports_them(leaky_folder):
    kept = data_report(leaky_folder, keep_overlap=True)
    (test,) = kept.provided
    assert len(kept.splits["test"]) == 17 and test.overlaps[0].summary() == {"exact": 2, "normalized": 1}
    assert "(kept: keep_overlap)" in kept.to_text()
    assert "Write to [EMAIL] when my top-up lands" in kept.splits["test"].frame["text"].tolist()  # still redacted


def test_provided_validation_is_used_not_resplit(tmp_path):
    folder = tmp_path / "three"
    folder.mkdir()
    train = [{"instruction": f"Explain topic {i}", "output": f"Topic {i} is ..."} for i in range(40)]
    val = [{"instruction": f"Describe item {i}", "output": "..."} for i in range(6)] + [train[3]]
    test = [{"instruction": f"Summarise note {i}", "output": "..."} for i in range(5)] + [val[0], train[8]]
    for name, rows in (("train", train), ("validation", val), ("test", test)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = data_report(folder, stratify=None, seed=3)
    s = report.splits
    assert s.provided == {"validation": "validation", "test": "test"}
    assert s.sizes() == {"train": 40, "validation": 6, "test": 5}  # all of train trains; repeats left eval
    val_report, test_report = report.provided
    assert [o.other for o in test_report.overlaps] == ["train", "validation"]
    assert [o.summary()["exact"] for o in test_report.overlaps] == [1, 1]
    assert val_report.overlaps[0].summary()["exact"] == 1


def test_eval_split_through_the_experiment_pipeline_writes_verifiable_splits(leaky_folder, tmp_path):
    cfg = ExperimentConfig(data=DataConfig(source=str(leaky_folder), eval_split="test", test=0.0, validation=0.2))
    out = tmp_path / "splits"
    splits = experiment_splits(cfg, out_dir=out)
    manifest = json.loads((out / "splits.json").read_text())
    assert set(manifest["splits"]) == {"train", "validation", "test"} and manifest["provided"] == {"test": "test"}
    assert manifest["splits"]["test"]["rows"] == 13
    assert verify_splits(out) == splits.fingerprints
    assert experiment_splits(cfg).fingerprints == splits.fingerprints  # reproducible


def test_saved_dataset_dict_splits_are_used(tmp_path):
    def rows(texts):
        return datasets.Dataset.from_dict({"text": texts, "label": [LABELS[i % 3] for i in range(len(texts))]})

    train = [f"saved question {i} for {LABELS[i % 3]}" for i in range(30)]
    datasets.DatasetDict({"train": rows(train), "validation": rows([f"val {i}" for i in range(5)] + [train[0]]),
                          "test": rows([f"test {i}" for i in range(6)])}).save_to_disk(str(tmp_path / "saved"))
    s = data_report(tmp_path / "saved", split="train").splits
    assert s.provided == {"validation": "validation", "test": "test"}
    assert s.sizes() == {"train": 30, "validation": 5, "test": 6}


def _instruction_set() -> pd.DataFrame:
    """An alpaca-style set where some instructions are asked several times with different answers."""
    rows = [{"instruction": f"Give me a fact about animal {i}", "input": "", "output": f"Fact {i}."} for i in range(60)]
    for i in range(15):
        rows += [{"instruction": f"Name a colour like shade {i}", "input": "", "output": f"Colour {i}-{k}."}
                 for k in range(1 + i % 4)]
    rows += [{"instruction": "Summarise this.", "input": f"Text {i}", "output": f"Sum {i}"} for i in range(5)]
    return pd.DataFrame(rows)


def _sides(s) -> dict[str, set[str]]:
    out = defaultdict(set)
    for name in s.names:
        for key in prompt_keys(s[name]):
            out[key].add(name)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_repeated_prompts_never_cross_splits(seed):
    ds = load_dataset(_instruction_set())
    s = split_dataset(ds, test=0.15, validation=0.15, seed=seed, stratify=None)
    assert all(len(sides) == 1 for sides in _sides(s).values())
    assert sum(s.sizes().values()) == len(ds) and s.repeated_prompts == 11
    assert min(s.sizes().values()) > 0
    shuffled = ds.with_frame(ds.frame.sample(frac=1, random_state=seed))
    assert split_dataset(shuffled, test=0.15, validation=0.15, seed=seed, stratify=None).fingerprints == s.fingerprints
    # "Summarise this." with different inputs is five different prompts: they may sit in any split.
    assert len({k for k in _sides(s) if k.startswith("summarise this")}) == 5


def test_group_aware_split_still_stratifies_by_label():
    rows = [(f"text {lab} {i}", lab) for lab, n in zip("abc", (20, 30, 50)) for i in range(n)]
    rows += [("same question", "a"), ("Same question!", "b"), ("same  QUESTION", "b")]  # one prompt, two labels
    ds = load_dataset(pd.DataFrame(rows, columns=["text", "label"]))
    s = split_dataset(ds, test=0.2, validation=0.1, seed=1)
    assert all(len(sides) == 1 for sides in _sides(s).values())
    for name in s.names:
        share = s[name].frame["label"].value_counts(normalize=True).to_dict()
        assert share == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.5}, abs=0.06)


def test_find_overlap_exact_and_normalised():
    a = load_dataset(pd.DataFrame({"text": ["Hi there", "hi, THERE!", "new one"], "label": ["x", "y", "x"]}))
    b = load_dataset(pd.DataFrame({"text": ["other", "Hi there"], "label": ["x", "x"]}))
    o = find_overlap(a, b)
    assert (o.exact, o.normalized, o.matches) == ((0,), (1,), ((0, 1), (1, 1)))


def test_banking77_demo_splits_keep_their_train_and_validation():
    """The recorded banking77 figures trained on these; only the test split lost its repeats of train."""
    cfg = load_yaml(ExperimentConfig, ROOT / "experiments" / "banking77-minilm.yaml")
    s = experiment_splits(cfg)
    assert s.fingerprints["train"] == "583f95a63f80797c" and s.fingerprints["validation"] == "f74b00af490b288c"
    assert s.sizes() == {"train": 8976, "validation": 997, "test": 3052}
    assert not set(prompt_keys(s["test"])) & (set(prompt_keys(s["train"])) | set(prompt_keys(s["validation"])))


def test_json_of_splits_and_a_dev_file_are_provided_splits(tmp_path):
    train = [{"prompt": f"How do I reset thing {i}?", "completion": f"Open settings {i}."} for i in range(20)]
    val = [{"prompt": f"Where is room {i}?", "completion": "Floor 2."} for i in range(4)] + [train[0]]
    test = [{"prompt": f"Who owns app {i}?", "completion": "IT."} for i in range(3)]
    source = tmp_path / "splits.json"
    source.write_text(json.dumps({"train": train, "val": val, "test": test}))
    s = data_report(source, stratify=None).splits
    assert s.provided == {"validation": "validation", "test": "test"}
    assert s.sizes() == {"train": 20, "validation": 4, "test": 3}
    folder = tmp_path / "dev"
    folder.mkdir()
    _write_csv(folder / "train.csv", _train_rows())
    _write_csv(folder / "dev.csv", [(f"dev question {i}", LABELS[i % 3]) for i in range(6)])
    s = data_report(folder, test=0.2).splits
    assert s.provided == {"validation": "validation"} and len(s["validation"]) == 6
    assert s.ratios["test"] == 0.2 and len(s["test"]) == 12
