"""Honest classification reports: per-class figures, macro-F1 intervals, the majority baseline, the verdict's
metric, per-class recall tests, p-values as text, and out-of-scope rejection fitted on validation."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from workbench import metrics as M
from workbench.compare import MAJORITY, compare_classifiers, per_class_table, summary_lines, write_report
from workbench.config import CompareConfig, ConfigError, from_params
from workbench.data import load_dataset

FAST = CompareConfig(bootstrap_resamples=400, seed=0)


def _split(labels, texts=None):
    texts = texts or [f"message {i}" for i in range(len(labels))]
    return load_dataset(pd.DataFrame({"text": texts, "label": labels}))


def _spam_drop():
    """2,000 messages, 10% spam. The probe calls 100 hams spam and gets every spam; the fine-tune gets every ham
    but lets half the spam through: the same accuracy (0.95), a worse macro-F1, spam recall 1.0 -> 0.5."""
    gold = ["ham"] * 1800 + ["spam"] * 200
    probe = ["spam"] * 100 + ["ham"] * 1700 + ["spam"] * 200
    tuned = ["ham"] * 1900 + ["spam"] * 100
    return _split(gold), {"probe": lambda texts: probe, "tuned": lambda texts: tuned}


def test_binary_imbalanced_flat_accuracy_but_minority_recall_drop_is_flagged_on_macro_f1(tmp_path):
    test, models = _spam_drop()
    c = compare_classifiers(test, models, "probe", FAST)
    acc = c.differences[c.differences.metric == "accuracy"].iloc[0]
    f1 = c.differences[c.differences.metric == "macro_f1"].iloc[0]
    assert acc.difference == 0 and not acc.significant and acc.p_value == 1.0   # accuracy sees nothing
    assert f1.difference < 0 and f1.ci_high < 0 and f1.significant               # macro-F1 does
    spam = c.class_differences.set_index("class").loc["spam"]
    assert (spam["recall:probe"], spam["recall"], spam["difference"]) == (1.0, 0.5, -0.5) and spam["significant"]
    assert list(c.class_differences["class"]) == ["ham", "spam"]                   # binary: every class tested
    # auto: 1800 over 200 is a ratio of 9 > 3, so the verdict is about macro-F1 and says why
    assert c.verdict.metric == "macro_f1" and "imbalanced" in c.verdict.reason and "ratio 9.0 > 3" in c.verdict.reason
    (line,) = c.verdict.lines
    assert line.startswith("tuned against probe on macro-F1:") and "significantly worse" in line
    assert "spam 1.000 → 0.500 (-0.500, p < 0.005)" in line                     # 400 resamples: p < 2/400
    # Forced onto accuracy, the verdict finds no difference but says macro-F1 disagrees.
    forced = compare_classifiers(test, models, "probe", CompareConfig(bootstrap_resamples=400,
                                                                      verdict_metric="accuracy"))
    assert forced.verdict.reason == "set in the spec (verdict_metric: accuracy)"
    assert "no significant difference. On macro-F1 it differs:" in forced.verdict.lines[0]
    # Binary everywhere: per-class table, confusion plots and both reports.
    paths = write_report(c, tmp_path / "r", "spam")
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert paths["confusion:tuned"].read_bytes()[:4] == b"\x89PNG" and c.confusion["tuned"].tolist() == [[1800, 0],
                                                                                                         [100, 100]]
    assert "## Verdict (macro-F1)" in md and line in md and "Verdict (macro-F1)" in page and "wb-verdict" in page
    assert "## Per-class recall against probe (paired bootstrap)" in md
    assert paths["class_differences"].read_text().splitlines()[0] == (
        "model,versus,class,support,recall:probe,recall,difference,ci_low,ci_high,p_value,significant")
    assert md.index("## Metrics") < md.index("## Verdict") < md.index("## Differences against probe")


def test_balanced_labels_get_an_accuracy_verdict():
    test = _split(["a"] * 10 + ["b"] * 8)
    c = compare_classifiers(test, {"x": lambda t: ["a"] * 18, "y": lambda t: ["b"] * 18}, cfg=FAST)
    assert c.verdict.metric == "accuracy" and c.verdict.reason.startswith("auto: the test labels are balanced enough")
    assert "ratio 1.2 <= 3" in c.verdict.reason and c.verdict.lines[0].startswith("y against x on accuracy: 0.556 →")
    with pytest.raises(ConfigError, match="verdict_metric"):
        from_params(CompareConfig, verdict_metric="f1")


def test_majority_baseline_predicts_the_most_frequent_training_label(tmp_path):
    test = _split(["a"] * 6 + ["b"] * 3 + ["c"] * 1)
    train = _split(["b"] * 5 + ["a"] * 2)            # b leads in training though a leads in test
    model = {"m": lambda texts: ["a"] * 10}
    c = compare_classifiers(test, model, cfg=FAST, train=train)
    row = c.metrics.loc[MAJORITY]
    assert row["accuracy"] == pytest.approx(0.3)     # always b: right on the 3 b's of 10
    # macro-F1 by hand: b has P 0.3, R 1, F1 2(0.3)/1.3; a and c have F1 0; mean over the 3 test classes
    assert row["macro_f1"] == pytest.approx(2 * 0.3 / 1.3 / 3)
    assert c.settings["majority_class"] == {"label": "b", "counted_on": "training split"}
    assert list(c.metrics.index) == [MAJORITY, "m"] and MAJORITY not in c.reports   # a row, not a model
    baseline = summary_lines(c)["baseline"][0]
    assert "always 'b', the most frequent label of the training split: accuracy 0.300" in baseline
    # No training split at hand: the test split's majority, and the report says so.
    c = compare_classifiers(test, model, cfg=FAST)
    assert c.metrics.loc[MAJORITY, "accuracy"] == pytest.approx(0.6)
    assert c.settings["majority_class"]["counted_on"] == "test split (no training split at hand)"
    assert "most frequent label of the test split (no training split at hand)" in \
        write_report(c, tmp_path / "r")["markdown"].read_text()


def test_per_class_precision_recall_f1_match_a_hand_computation():
    gold = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"]
    pred = ["a", "a", "a", "b", "b", "b", "a", "c", "c", "b"]
    ref = list(gold)
    c = compare_classifiers(_split(gold), {"ref": lambda t: ref, "m": lambda t: pred}, "ref", FAST)
    t = per_class_table(c).sort_index()
    # a: predicted 4 times, 3 right (P 3/4), 4 true, 3 found (R 3/4); b: predicted 4, 2 right (P 1/2), R 2/3;
    # c: predicted 2, both right (P 1), R 2/3
    f1 = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    assert t["precision:m"].tolist() == pytest.approx([3 / 4, 1 / 2, 1.0])
    assert t["recall:m"].tolist() == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    assert t["f1:m"].tolist() == pytest.approx([f1(3 / 4, 3 / 4), f1(1 / 2, 2 / 3), f1(1, 2 / 3)])
    assert t["support"].tolist() == [4, 3, 3]
    assert t["recall change:m"].tolist() == pytest.approx([-1 / 4, -1 / 3, -1 / 3])
    row = c.metrics.loc["m"]
    assert row["macro_precision"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert row["macro_recall"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert row["macro_f1"] == pytest.approx(np.mean([f1(3 / 4, 3 / 4), f1(1 / 2, 2 / 3), f1(1, 2 / 3)]))
    assert c.reports["m"].loc["b", ["precision", "recall", "support"]].tolist() == pytest.approx([0.5, 2 / 3, 3])


def test_macro_f1_interval_contains_the_point_estimate_and_shares_the_bootstrap():
    rng = np.random.default_rng(1)
    gold = rng.choice(["x", "y", "z"], size=300, p=[0.6, 0.3, 0.1]).tolist()
    noisy = [g if rng.random() < 0.8 else rng.choice(["x", "y", "z"]) for g in gold]
    r = M.bootstrap_macro_f1(gold, noisy, n_resamples=500, seed=3)
    assert r.mean_b == pytest.approx(M.macro_f1(gold, noisy)) and r.ci_low < r.mean_b < r.ci_high
    # the vectorised per-resample macro-F1 agrees with macro_f1 on the data as given
    classes = sorted(set(gold) | set(noisy))
    _, codes_r, codes_p = M._labels_and_codes(gold, noisy, classes)
    assert M._macro_f1_rows(codes_r, codes_p, 3, np.arange(300)[None])[0] == pytest.approx(r.mean_b)
    # a model against itself: difference 0, p 1
    same = M.bootstrap_macro_f1(gold, noisy, noisy, n_resamples=200)
    assert (same.difference, same.p_value, same.ci_low, same.ci_high) == (0.0, 1.0, 0.0, 0.0)
    c = compare_classifiers(_split(gold), {"noisy": lambda t: noisy}, cfg=FAST)
    for _, row in c.metrics.iterrows():
        assert row["macro_f1_low"] <= row["macro_f1"] <= row["macro_f1_high"]
        assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]


def test_p_values_are_printed_as_text_everywhere(tmp_path):
    assert M.format_p(0.0, 2000) == "p < 0.001" and M.format_p(0.0421, 2000) == "p=0.0421"
    test, models = _spam_drop()
    c = compare_classifiers(test, models, "probe", CompareConfig(bootstrap_resamples=2000))
    assert c.class_differences.set_index("class").loc["spam", "p_value"] == 0.0
    paths = write_report(c, tmp_path / "r")
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "spam 1.000 → 0.500 (-0.500, p < 0.001)" in c.verdict.lines[0] and "p < 0.001" in md
    tables = re.findall(r"\n(\| model \| versus \|.*?)\n\n", md, flags=re.S)
    assert len(tables) == 2                                                      # differences, per-class tests
    for table in tables:
        head, _, *rows = table.splitlines()
        at = head.split(" | ").index("p_value")
        assert all(re.fullmatch(r"p( < |=)[\d.e-]+", r.split(" | ")[at].strip()) for r in rows)
    assert "p &lt; 0.001" in page and not re.search(r"<td>0\.0</td>\s*<td>(True|False)</td>", page)


def _row(labels, top, p):
    """Class probabilities with ``p`` on ``top`` and the rest spread evenly."""
    return [p if lab == top else (1 - p) / (len(labels) - 1) for lab in labels]


class Table:
    """A classifier with class probabilities, looked up by text (``labels`` + ``predict_proba``, as the probe)."""

    def __init__(self, labels, rows):
        self.labels, self.rows = labels, rows

    def predict_proba(self, texts):
        return np.array([self.rows[t] for t in texts])

    def __call__(self, texts):
        return [self.labels[i] for i in self.predict_proba(texts).argmax(1)]


INTENTS = ["card", "pin", "top_up"]
WITH_OOS = ["card", "oos", "pin", "top_up"]   # a model that also learnt the out-of-scope class
# validation: (text, gold, top label and probability for INTENTS, for WITH_OOS)
VALIDATION = [("v1", "card", "card", .9, "card", .9), ("v2", "pin", "pin", .8, "pin", .85),
              ("v3", "top_up", "top_up", .6, "top_up", .6), ("v4", "card", "pin", .45, "pin", .45),
              ("v5", "oos", "card", .35, "oos", .95), ("v6", "oos", "pin", .5, "card", .5),
              ("v7", "oos", "top_up", .7, "pin", .7)]
TEST = [("t1", "card", "card", .9, "card", .9), ("t2", "pin", "pin", .6, "pin", .6),
        ("t3", "top_up", "top_up", .8, "top_up", .8), ("t4", "card", "pin", .85, "pin", .85),
        ("t5", "oos", "card", .5, "card", .5), ("t6", "oos", "pin", .9, "oos", .9),
        ("t7", "oos", "top_up", .7, "top_up", .7)]


def test_rejection_threshold_maximises_in_scope_accuracy_plus_oos_recall_by_hand():
    gold = [g for _, g, *_ in VALIDATION]
    probs = [_row(INTENTS, top, p) for _, _, top, p, _, _ in VALIDATION]
    # Sorted top probabilities: .35 oos, .45 in (wrong anyway), .5 oos, .6 in, .7 oos, .8 in, .9 in.
    # Rejecting below .55 keeps 3/4 in-scope right and catches 2/3 oos (mean .708); below .75: 2/4 and 3/3 (.75).
    assert M.fit_rejection_threshold(gold, probs, INTENTS, "oos") == pytest.approx(0.75)
    assert M.reject(probs, INTENTS, 0.75, "oos") == ["card", "pin", "oos", "oos", "oos", "oos", "oos"]
    with pytest.raises(ValueError, match="need both 'oos' and in-scope"):
        M.fit_rejection_threshold(gold[:4], probs[:4], INTENTS, "oos")


def test_open_set_threshold_is_fitted_on_validation_and_scored_on_test(tmp_path):
    def table(labels, which):
        return Table(labels, {t: _row(labels, *(r[2:4] if which == 0 else r[4:6]))
                              for r in VALIDATION + TEST for t in [r[0]]})

    validation = _split([g for _, g, *_ in VALIDATION], [t for t, *_ in VALIDATION])
    test = _split([g for _, g, *_ in TEST], [t for t, *_ in TEST])
    by_hand = {t: "oos" if t == "t5" else "card" if g == "oos" else g for t, g, *_ in TEST}  # no probabilities
    models = {"probe": table(INTENTS, 0), "tuned": table(WITH_OOS, 1),
              "plain": lambda texts: [by_hand[t] for t in texts]}
    c = compare_classifiers(test, models, "probe", CompareConfig(bootstrap_resamples=200, out_of_scope="oos"),
                            validation=validation)
    oos = c.settings["out_of_scope"]
    assert oos["thresholds"] == pytest.approx({"probe": 0.75, "tuned": 0.775}) and "plain" not in oos["thresholds"]
    assert "no class probabilities" in oos["notes"]["plain"]
    assert c.examples["pred:probe"].tolist() == ["card", "oos", "top_up", "pin", "oos", "pin", "oos"]
    # tuned predicts oos itself on t6 (its own class) and rejects t2, t5, t7 below 0.775
    assert c.examples["pred:tuned"].tolist() == ["card", "oos", "top_up", "pin", "oos", "oos", "oos"]
    m = c.metrics
    # probe: in-scope t1 t3 right of t1-t4 (t2 rejected, t4 wrong); oos t5 t7 caught of 3; oos said 3 times, 2 right
    assert m.loc["probe", ["in_scope_accuracy", "oos_recall", "oos_precision"]].tolist() == pytest.approx(
        [2 / 4, 2 / 3, 2 / 3])
    assert m.loc["tuned", ["in_scope_accuracy", "oos_recall", "oos_precision"]].tolist() == pytest.approx(
        [2 / 4, 1.0, 3 / 4])
    assert m.loc["plain", ["in_scope_accuracy", "oos_recall", "oos_precision"]].tolist() == pytest.approx(
        [1.0, 1 / 3, 1.0])
    assert "oos" in c.labels and c.confusion["tuned"].shape == (4, 4)
    md = write_report(c, tmp_path / "r")["markdown"].read_text()
    assert "## Out of scope (oos)" in md and "| model | in_scope_accuracy | oos_recall | oos_precision |" in md
    assert "- probe: rejects below 0.75 top-class probability (fitted on 7 validation examples, 3 out-of-scope)" in md
    # Without a validation split: no threshold, and the report says why.
    c = compare_classifiers(test, {"probe": table(INTENTS, 0)}, cfg=CompareConfig(bootstrap_resamples=200,
                                                                                  out_of_scope="oos"))
    assert c.settings["out_of_scope"]["thresholds"] == {}
    assert "no validation split" in summary_lines(c)["out_of_scope"][1]
    assert c.metrics.loc["probe", "oos_recall"] == 0.0
