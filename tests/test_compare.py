"""Comparison of classifiers and of causal LMs, reports, and the ComparePanel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny import bpe_tokenizer
from workbench import presets
from workbench.compare import compare_classifiers, compare_generators, disagreement, per_class_table, write_report
from workbench.config import CompareConfig, ModelConfig, TrainConfig
from workbench.data import load_dataset, split_dataset
from workbench.train import run_training

ROOT = Path(__file__).resolve().parent.parent
FAST = CompareConfig(bootstrap_resamples=300, seed=0)


def _cls_test():
    rows = [(f"text {i}", lab) for i, lab in enumerate(["a"] * 10 + ["b"] * 10 + ["c"] * 10)]
    return load_dataset(pd.DataFrame(rows, columns=["text", "label"]))


def test_compare_classifiers_by_hand(tmp_path):
    ds = _cls_test()
    gold = ds.frame["label"].tolist()
    perfect = lambda texts: list(gold)  # noqa: E731
    worse = lambda texts: ["a"] * 30   # noqa: E731  right on 10 of 30
    c = compare_classifiers(ds, {"good": perfect, "bad": worse}, reference="good", cfg=FAST)
    assert c.metrics.loc["good", "accuracy"] == 1.0
    assert c.metrics.loc["bad", "accuracy"] == pytest.approx(1 / 3)
    diff = c.differences.iloc[0]
    assert (diff.model, diff.versus, diff.wins, diff.ties, diff.losses) == ("bad", "good", 0, 10, 20)
    assert diff.difference == pytest.approx(-2 / 3) and diff.ci_high < 0 and diff.significant
    assert c.confusion["bad"].tolist() == [[10, 0, 0], [10, 0, 0], [10, 0, 0]]
    assert c.most_confused["bad"][:2] == [("b", "a", 10), ("c", "a", 10)]
    paths = write_report(c, tmp_path / "report", "hand")
    page = paths["html"].read_text()
    assert "data:image/png;base64" in page and "Differences against good" in page
    md = paths["markdown"].read_text()
    assert md.splitlines()[4].startswith("| model | accuracy | accuracy_low | accuracy_high | macro_f1 |")
    assert "- b → a: 10" in md
    table = per_class_table(c)  # by hand: "bad" says a for everything: a's F1 is 2(1/3)(1)/(4/3) = 0.5, b's and c's 0
    assert list(table.index) == ["a", "b", "c"] and table["support"].tolist() == [10, 10, 10]
    assert table["f1:good"].tolist() == [1.0, 1.0, 1.0]
    assert table["f1:bad"].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert table["f1 change:bad"].tolist() == pytest.approx([-0.5, -1.0, -1.0])
    assert paths["per_class"].read_text().splitlines()[0].startswith("class,support,f1:good,recall:good,f1:bad")
    assert paths["confusion:bad"].name == "confusion-bad.png" and paths["confusion:bad"].read_bytes()[:4] == b"\x89PNG"
    assert "![confusion: bad](confusion-bad.png)" in md and "## Per class (F1 change against good" in md
    assert "Per class (F1 change against good" in page


def test_frozen_probe_on_minilm():
    from workbench.probe import fit_probe

    ds = load_dataset(ROOT / "datasets" / "banking77")
    keep = ds.frame[ds.frame["label"].isin(["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"])]
    small = ds.with_frame(keep.groupby("label").head(30))
    splits = split_dataset(small, test=0.25, validation=0, seed=1)
    probe = fit_probe(splits["train"])
    pred = probe.predict(splits["test"].frame["text"].tolist())
    acc = np.mean([p == g for p, g in zip(pred, splits["test"].frame["label"])])
    assert acc > 0.8  # four well separated intents; chance is 0.25
    w, b = probe.head_weights()
    assert w.shape == (4, 384) and b.shape == (4,)


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    """A random tiny Llama and a copy of it fine-tuned on the tickets."""
    root = tmp_path_factory.mktemp("gen")
    tok = bpe_tokenizer(vocab_size=600)
    base = presets.save_base_model(presets.tiny_llama(len(tok), bos_token_id=tok.bos_token_id,
                                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
                                   tok, root / "base")
    ds = load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl")
    splits = split_dataset(ds, test=0.05, validation=0, stratify="category")
    tuned = run_training(splits["train"], None, ModelConfig(name_or_path=str(base), task="causal-lm"),
                         TrainConfig(output_dir=str(root / "ft"), max_steps=40, learning_rate=3e-3, batch_size=8,
                                     max_length=512))
    return {"base": str(base), "tuned": str(tuned.model_dir)}, splits["test"]


def test_compare_generators_aligns_outputs_and_scores(tmp_path, generators):
    models, test = generators
    cfg = CompareConfig(max_new_tokens=8, batch_size=4, max_examples=6, bootstrap_resamples=200)
    c = compare_generators(test, models, "base", cfg)
    assert len(c.examples) == 6 and {"output:base", "output:tuned", "rouge_l:tuned", "reference"} <= set(c.examples)
    assert set(c.metrics.index) == {"base", "tuned"}
    assert {"rouge_l", "rouge_l_low", "rouge_l_high", "reference_perplexity", "tokens_per_s"} <= set(c.metrics)
    # 40 steps on tickets make the references far more likely than under random weights
    assert c.metrics.loc["tuned", "reference_perplexity"] < c.metrics.loc["base", "reference_perplexity"] / 2
    ppl = c.differences[c.differences.metric == "reference_nll"].iloc[0]
    assert ppl.difference > 0 and ppl.ci_low > 0                       # a real gain, interval above zero
    assert set(c.differences.metric) == set(cfg.metrics) | {"reference_nll"}
    assert c.settings["decoding"] == {"max_new_tokens": 8, "do_sample": False, "temperature": None, "top_p": None,
                                      "seed": 0}
    assert list(disagreement(c).columns)[-1] == "spread"
    paths = write_report(c, tmp_path / "r")
    assert "output:tuned" in paths["examples"].read_text()


def test_compare_panel_side_by_side_chat_and_scores():
    from workbench.compare import Generation
    from workbench.panels.compare import ComparePanel

    class Tok:
        chat_template, eos_token = None, "<eos>"

    answers = {"a": "Restart the VPN client", "b": "Restart the Northwind Connect client"}
    loads = []

    def loader(path, device):
        loads.append(path)
        return path, Tok()

    def gen(model, tok, prompts, cfg):
        assert prompts[-1].endswith("### Assistant:\n")
        return [Generation(answers[model] if "hello" not in prompts[-1] else f"hi from {model}", 4, 0.1)]

    test = load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl")
    p = ComparePanel({"a": "a", "b": "b"}, test, loader=loader, generator=gen)
    row = p.sample(0)
    assert p.prompt.value == test.frame["prompt"].iat[row] and "Reference" in p.reference.value
    p.generate_btn.click()
    p.wait()
    html = "".join(w.value for w in p.columns.children)
    assert "Restart the VPN client" in html and '<mark class="wb-diff">Northwind Connect</mark>' in html
    assert sorted(loads) == ["a", "b"]
    p.chat_model.value = "b"
    p.chat_input.value = "hello there"
    p.send_btn.click()
    p.wait()
    assert p.history[-1] == {"role": "assistant", "content": "hi from b"} and "hi from b" in p.chat_log.value
    assert loads.count("b") == 1                                        # loaded once, then cached
