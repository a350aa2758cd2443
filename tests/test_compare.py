"""Comparison of classifiers and of causal LMs, reports, and the ComparePanel."""

from __future__ import annotations

import json
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
    # Random weights with tied embeddings greedily repeat the prompt's last token, a newline: six empty answers,
    # flagged per example, counted per model and announced at the top of every report.
    assert (c.examples["degenerate:base"] == "empty").all() and c.examples["output:base"].str.strip().eq("").all()
    assert c.metrics.loc["base", ["degenerate", "degenerate_empty"]].tolist() == [6, 6]
    flagged = int((c.examples["degenerate:tuned"] != "").sum())
    assert c.metrics.loc["tuned", "degenerate"] == flagged
    paths = write_report(c, tmp_path / "r")
    assert "output:tuned" in paths["examples"].read_text()
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert md.splitlines()[2].startswith("> **Warning: degenerate answers.** base: 6 of 6 answers degenerate "
                                         "(6 empty)")
    assert 'class="wb-warning"' in page and "base: 6 of 6 answers degenerate (6 empty)" in page
    assert "degenerate" in paths["metrics"].read_text().splitlines()[0]


def test_reports_without_degenerate_answers_carry_no_warning(tmp_path):
    from workbench.compare import GenerationComparison, degenerate_warnings

    metrics = pd.DataFrame([{"model": "a", "rouge_l": 0.5, "examples": 4, "degenerate": 0, "degenerate_empty": 0,
                             "degenerate_echo": 0, "degenerate_repetition": 0}]).set_index("model")
    c = GenerationComparison(pd.DataFrame({"prompt": ["q"], "output:a": ["fine"]}), metrics, pd.DataFrame(), "a", {})
    assert degenerate_warnings(c) == []
    paths = write_report(c, tmp_path / "r")
    assert "Warning" not in paths["markdown"].read_text() and "wb-warning" not in paths["html"].read_text()


def test_generate_stream_calls_back_per_token_matches_generate_and_stops(generators):
    import threading

    from workbench.compare import Generation, generate, generate_stream, load_generator
    from workbench.templates import generation_prompt

    models, _ = generators
    model, tok = load_generator(models["tuned"])
    prompt = generation_prompt([{"role": "user", "content": "My VPN keeps dropping"}], tok)
    cfg = CompareConfig(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=1.0, seed=3)
    seen = []
    g = generate_stream(model, tok, prompt, cfg, on_token=lambda text, n: seen.append((text, n)))
    batch = generate(model, tok, [prompt], cfg)[0]
    assert (g.text, g.new_tokens, g.stopped) == (batch.text, batch.new_tokens, False)  # same seed, same answer
    assert [n for _, n in seen] == list(range(1, g.new_tokens + 1)) and seen[-1][0].strip() == g.text

    # The random base greedily writes newlines forever: only max_new_tokens or Stop end it.
    base, base_tok = load_generator(models["base"])
    greedy = CompareConfig(max_new_tokens=40)
    assert generate_stream(base, base_tok, prompt, greedy).new_tokens == 40
    stop = threading.Event()
    stopped = generate_stream(base, base_tok, prompt, greedy, stop=stop,
                              on_token=lambda text, n: n == 5 and stop.set())
    assert stopped.stopped and 5 <= stopped.new_tokens <= 6         # the token being generated when Stop came
    assert generate_stream(base, base_tok, prompt, greedy, stop=stop) == Generation("", 0, 0.0, stopped=True)


def test_compare_panel_side_by_side_chat_and_scores():
    from workbench.compare import Generation
    from workbench.panels.compare import ComparePanel

    class Tok:
        chat_template, eos_token = None, "<eos>"

    answers = {"a": "Restart the VPN client", "b": "Restart the Northwind Connect client"}
    loads, streamed = [], []

    def loader(path, device):
        loads.append(path)
        return path, Tok()

    def gen(model, tok, prompts, cfg):
        assert prompts[-1].endswith("### Assistant:\n")
        return [Generation(answers[model] if "hello" not in prompts[-1] else f"hi from {model}", 4, 0.1)]

    def stream(model, tok, prompt, cfg, stop, on_token):
        streamed.append((model, prompt, cfg))
        words = f"hi from {model}".split()
        for i in range(len(words)):
            on_token(" ".join(words[:i + 1]), i + 1)
        return Generation(" ".join(words), len(words), 0.1)

    test = load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl")
    p = ComparePanel({"a": "a", "b": "b"}, test, loader=loader, generator=gen, streamer=stream)
    row = p.sample(0)
    assert p.prompt.value == test.frame["prompt"].iat[row] and "Reference" in p.reference.value
    p.generate_btn.click()
    p.wait()
    html = "".join(w.value for w in p.columns.children)
    assert "Restart the VPN client" in html and '<mark class="wb-diff">Northwind Connect</mark>' in html
    assert sorted(loads) == ["a", "b"]
    assert p.chat_pick.value == ("a", "b")                             # the chat asks every picked model
    p.decoding.value, p.temperature.value, p.top_p.value, p.max_new_tokens.value = True, 0.5, 0.8, 7
    p.chat_input.value = "hello there"
    p.send_btn.click()
    p.wait()
    settings = {"max_new_tokens": 7, "do_sample": True, "temperature": 0.5, "top_p": 0.8, "seed": 0}
    assert p.history == [{"role": "user", "content": "hello there"},
                         {"role": "assistant", "model": "a", "content": "hi from a", "settings": settings,
                          "new_tokens": 3, "seconds": 0.1, "stopped": False},
                         {"role": "assistant", "model": "b", "content": "hi from b", "settings": settings,
                          "new_tokens": 3, "seconds": 0.1, "stopped": False}]
    assert [(m, (c.do_sample, c.temperature, c.top_p, c.max_new_tokens)) for m, _, c in streamed] == \
        [("a", (True, 0.5, 0.8, 7)), ("b", (True, 0.5, 0.8, 7))]
    log = p.chat_log.value
    assert log.count('class="wb-chat-answer"') == 2 and 'data-model="b" data-state="done"' in log
    assert "3 tokens in 0.1 s · sampling, temperature 0.5, top-p 0.8, at most 7 new tokens" in log
    assert loads.count("b") == 1                                        # loaded once, then cached
    p.decoding.value = False                                            # greedy: temperature and top-p do not apply
    assert p.temperature.disabled and p.top_p.disabled
    p.chat_pick.value = ("b",)
    p.chat_input.value = "and again"
    p.send_btn.click()
    p.wait()
    _, prompt, cfg = streamed[-1]
    assert "hi from b" in prompt and "hi from a" not in prompt and "and again" in prompt  # b's own conversation
    assert p.history[-1]["settings"]["do_sample"] is False and p.history[-1]["settings"]["temperature"] is None
    p.clear_btn.click()
    assert p.history == [] and p.chat_log.value == ""


def test_compare_panel_chat_stop_ends_the_answer_and_skips_the_waiting_models():
    import threading

    from workbench.compare import Generation
    from workbench.panels.compare import ComparePanel

    class Tok:
        chat_template, eos_token = None, "<eos>"

    started = threading.Event()

    def stream(model, tok, prompt, cfg, stop, on_token):
        n = 0
        while not stop.is_set() and n < cfg.max_new_tokens:  # a model that never says EOS
            n += 1
            on_token(f"word {n}", n)
            started.set()
            stop.wait(0.01)
        return Generation(f"word {n}", n, 0.5, stopped=stop.is_set())

    p = ComparePanel({"a": "a", "b": "b"}, loader=lambda path, device: (path, Tok()), streamer=stream)
    p.max_new_tokens.value = 5000
    p.chat_input.value = "write forever"
    p.send_btn.click()
    assert started.wait(10) and p.send_btn.disabled and not p.stop_btn.disabled
    p.stop_btn.click()
    p.wait()
    user, a, b = p.history
    assert a["model"] == "a" and a["stopped"] and 0 < a["new_tokens"] < 5000
    assert b == {"role": "assistant", "model": "b", "content": "", "settings": a["settings"], "new_tokens": 0,
                 "seconds": 0.0, "stopped": True}
    assert "Stopped." in p.chat_status.value and p.stop_btn.disabled and not p.send_btn.disabled
    assert f"stopped after {a['new_tokens']} tokens" in p.chat_log.value


@pytest.fixture(scope="module")
def intents(tmp_path_factory):
    """Four banking77 intents, 30 messages each, split 75/25 (seeded)."""
    ds = load_dataset(ROOT / "datasets" / "banking77")
    keep = ds.frame[ds.frame["label"].isin(["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"])]
    return split_dataset(ds.with_frame(keep.groupby("label").head(30)), test=0.25, validation=0, seed=1)


@pytest.mark.parametrize("method,head_init,labels", [
    ("full", "probe", ["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"]),
    ("lora", "random", ["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"]),
    # binary (spam / not spam is the textbook case): the probe's one-row logistic regression becomes a two-row head
    ("full", "probe", ["card_arrival", "exchange_rate"])])
def test_minilm_classifier_trains_saves_its_label_map_and_scores(tmp_path, intents, method, head_init, labels):
    from workbench.compare import ClassifierScorer, top_labels
    from workbench.config import LoraConfig, TrainConfig

    parts = {k: v.with_frame(v.frame[v.frame["label"].isin(labels)]) for k, v in intents.parts.items()}
    steps = 12 if len(labels) > 2 else 4
    r = run_training(parts["train"], parts["test"],
                     ModelConfig(name_or_path="minilm", task="sequence-classification", method=method, pooling="mean",
                                 normalize=True),
                     TrainConfig(output_dir=str(tmp_path / "run"), max_steps=steps, batch_size=8, max_length=64,
                                 learning_rate=3e-5 if method == "full" else 1e-3, head_learning_rate=3e-3,
                                 head_init=head_init, logging_steps=4, seed=3),
                     LoraConfig(r=8, alpha=16))
    assert r.status == "succeeded" and r.global_step == steps
    assert json.loads((tmp_path / "run" / "label_map.json").read_text())["labels"] == labels
    scorer = ClassifierScorer(r.model_dir)
    texts = parts["test"].frame["text"].tolist()
    probs = scorer.predict_proba(texts)
    assert probs.shape == (len(texts), len(labels)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    accuracy = np.mean([p == g for p, g in zip(scorer(texts), parts["test"].frame["label"])])
    assert accuracy >= 0.8, accuracy  # well separated intents; chance is 1 / len(labels)
    best = top_labels(scorer, texts[:2], k=2)
    assert len(best[0]) == 2 and best[0][0][1] >= best[0][1][1] and best[0][0][0] in labels


def test_classifier_compare_panel_side_by_side_and_scores(intents):
    from workbench.panels.compare import ClassifierComparePanel

    labels = ["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"]

    class Stub:  # a perfect model (it looks the label up) and one that always says card_arrival
        def __init__(self, perfect):
            self.labels, self.perfect = labels, perfect
            self.truth = dict(zip(intents["test"].frame["text"], intents["test"].frame["label"]))

        def predict_proba(self, texts):
            out = np.full((len(texts), 4), 0.1)
            for i, t in enumerate(texts):
                out[i, labels.index(self.truth.get(t, "card_arrival") if self.perfect else "card_arrival")] = 0.7
            return out

        def __call__(self, texts):
            return [labels[i] for i in self.predict_proba(texts).argmax(1)]

    p = ClassifierComparePanel({"probe": Stub(False), "tuned": Stub(True)}, intents["test"], FAST)
    row = next(i for i, lab in enumerate(intents["test"].frame["label"]) if lab == "pin_blocked")
    p.sample(row)
    assert "pin_blocked" in p.truth_html.value
    p.classify_btn.click()
    p.wait()
    boxes = {w.value.split('data-model="')[1].split('"')[0]: w.value for w in p.columns.children}
    assert 'data-verdict="wrong"' in boxes["probe"] and 'data-verdict="right"' in boxes["tuned"]
    assert "pin_blocked ✓" in boxes["tuned"] and "70.0%" in boxes["tuned"]
    p.text.value = "typed by hand"  # no true label for a typed message
    p.classify_btn.click()
    p.wait()
    assert 'data-verdict=""' in p.columns.children[0].value
    p.metrics_btn.click()
    p.wait()
    assert "Classes that changed most" in p.metrics_html.value and "wb-error" not in p.metrics_html.value
    assert p.comparison.metrics.loc["tuned", "accuracy"] == 1.0
    n, same = len(intents["test"]), int((intents["test"].frame["label"] == "card_arrival").sum())
    assert f"{n - same} of {n} examples get different labels" in p.examples_html.value  # both right on card_arrival


def test_disagreement_of_classifiers_lists_the_examples_with_different_labels():
    ds = _cls_test()
    gold = ds.frame["label"].tolist()
    c = compare_classifiers(ds, {"good": lambda texts: list(gold), "bad": lambda texts: ["a"] * 30}, cfg=FAST)
    differ = disagreement(c)
    assert list(differ.index) == list(range(10, 30))  # the a's agree, the b's and c's do not
    assert {"where", "text", "label", "pred:good", "pred:bad"} <= set(differ.columns)


def test_model_set_follows_the_format_and_adds_the_probe_first():
    from workbench.compare import model_set

    made = []
    def predictor(path):
        made.append(path)
        return lambda texts: ["a"] * len(texts)

    def fit(train, encoder):
        made.append(("probe", len(train), encoder))
        return lambda texts: ["b"] * len(texts)
    labelled = _cls_test()
    m = model_set(labelled, {"tuned": "runs/x/model"}, train=labelled, probe=True, probe_encoder="enc",
                  predictor=predictor, fit=fit)
    assert m.classifiers and list(m.models) == ["frozen probe", "tuned"]
    assert made == [("probe", 30, "enc"), "runs/x/model"]
    answers = load_dataset(pd.DataFrame({"prompt": ["q"], "completion": ["a"]}))
    m = model_set(answers, {"base": "b", "lora": "l"}, probe=True, predictor=predictor, fit=fit)
    assert not m.classifiers and m.models == {"base": "b", "lora": "l"} and len(made) == 2


def test_compare_models_compares_classifiers_with_the_probe_as_reference():
    from functools import partial

    from workbench.compare import ClassificationComparison, compare_models, model_set

    ds = _cls_test()
    gold = ds.frame["label"].tolist()
    load = partial(model_set, predictor=lambda path: lambda texts: list(gold),
                   fit=lambda train, encoder: lambda texts: ["a"] * len(texts))
    r = compare_models(ds, {"tuned": "runs/x/model"}, None, FAST, train=ds, probe=True, load=load)
    assert isinstance(r.comparison, ClassificationComparison) and r.models.classifiers
    assert r.comparison.reference == "frozen probe"
    assert r.comparison.metrics.loc["tuned", "accuracy"] == 1.0
    assert r.comparison.metrics.loc["frozen probe", "accuracy"] == pytest.approx(1 / 3)


def test_pairs_add_differences_besides_those_against_the_reference(generators):
    models, test = generators
    cfg = CompareConfig(max_new_tokens=4, batch_size=4, max_examples=4, bootstrap_resamples=200, metrics=["rouge_l"])
    c = compare_generators(test, {**models, "again": models["tuned"]}, "base", cfg, pairs=[("again", "tuned")])
    d = c.differences.set_index(["metric", "model", "versus"])
    assert {("again", "base"), ("tuned", "base"), ("again", "tuned")} == {k[1:] for k in d.index}
    # The same weights scored twice: no difference at all, and the pair says so.
    same = d.loc[("reference_nll", "again", "tuned")]
    assert same.difference == 0 and same.ties == 4 and not same.significant
    assert d.loc[("reference_nll", "again", "base")].difference == pytest.approx(
        d.loc[("reference_nll", "tuned", "base")].difference)
