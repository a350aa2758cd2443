"""Run several models on the same examples and compare them, with intervals.

Classification: each model (a trained run folder, a merged export, the frozen-encoder probe)
predicts the test split; the comparison has accuracy and macro-F1 per model, each with a bootstrap
interval, beside the majority-class baseline; per-class precision, recall and F1, confusion
matrices, the most confused pairs; for every model against the reference, paired bootstrap
intervals of the accuracy and macro-F1 differences with win/tie/loss counts and of each class's
recall change. The verdict names its metric (``CompareConfig.verdict_metric``: macro-F1 on
imbalanced labels). With ``CompareConfig.out_of_scope``, models reject unsure inputs as
out-of-scope (a threshold fitted on the validation split) and reports add in-scope accuracy and
out-of-scope recall and precision.

Generation: each causal LM (a base, an adapter, a merged export) answers the same prompts,
formatted with its own tokenizer's chat template (or the fallback template); outputs are
aligned per example with latency and tokens/s, scored with the metrics named in
``CompareConfig.metrics`` and the perplexity of the reference answers, and compared with the
reference model by paired bootstrap. Decoding settings are recorded with the results.
Degenerate answers (empty, looping on repeated n-grams, echoing the prompt; see
``metrics.degeneracy``) are flagged per example, counted per model, and every report opens with
a warning when a model wrote any: a ROUGE-L of 0 over empty answers judges no answers at all.

Chat: ``generate_stream`` answers one prompt token by token, calling back with the text so far,
and ends early when a ``threading.Event`` is set (the panels' Stop button).
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import metrics as M
from . import plots
from .config import CompareConfig, QuantConfig, TokenConfig
from .data.dataset import LoadedDataset
from .devices import use_threads
from .errors import Cancelled
from .files import atomic_write_bytes, atomic_write_text
from .methods import METHODS
from .models import load_causal_lm, load_classifier
from .probe import fit_probe
from .templates import generation_prompt, uses_chat_template
from .tokenizer import load_tokenizer

Predictor = Callable[[list[str]], list[str]]


# --------------------------------------------------------------------------- classification


class ClassifierScorer:
    """Class probabilities of a trained classifier folder; calling it predicts labels (a ``Predictor``)."""

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 64, max_length: int = 128):
        self.model, self.labels = load_classifier(path, device)
        self.tokenizer = load_tokenizer(path)
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities (texts x labels, in ``self.labels`` order); batches by length, order kept."""
        import torch

        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                idx = order[i:i + self.batch_size]
                enc = self.tokenizer([texts[j] for j in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                out[idx] = self.model(**enc).logits.float().softmax(-1).cpu().numpy()
        return out

    def __call__(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(1)] if texts else []


def classifier_predictor(path: str | Path, device: str = "cpu", batch_size: int = 64, max_length: int = 128) -> Predictor:
    """A function from texts to predicted labels for a trained classifier folder (with ``predict_proba``)."""
    return ClassifierScorer(path, device, batch_size, max_length)


def top_labels(scorer, texts: list[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable labels of each text, with probabilities, for anything with
    ``labels`` and ``predict_proba`` (a ``ClassifierScorer``, a frozen-encoder ``Probe``)."""
    probs = scorer.predict_proba(texts)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(scorer.labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, best)]


MAJORITY = "majority class"
"""The row of the majority-class baseline in a classification comparison's metrics."""

CLASS_TESTS = 10
"""Per-class recall tests: every class when there are at most this many; else this many, those whose recall
changed most."""

_METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


@dataclass(frozen=True)
class Verdict:
    """What a classification comparison concludes, and on which metric."""

    metric: str
    """``accuracy`` or ``macro_f1``."""
    reason: str
    """Why that metric: set in the spec, or chosen by ``auto`` from the label distribution."""
    lines: list[str]
    """One sentence per model against the reference."""


@dataclass(frozen=True)
class ClassificationComparison:
    """Models compared on one labelled test split."""

    examples: pd.DataFrame
    """text, label, then ``pred:<model>`` and ``correct:<model>`` per model."""
    metrics: pd.DataFrame
    """Per model, and the majority-class baseline (row ``MAJORITY``): accuracy and macro-F1 (with
    intervals), macro precision and recall, out-of-scope figures (with ``out_of_scope``), seconds, examples/s."""
    differences: pd.DataFrame
    """Per model against the reference and metric (accuracy, macro_f1): difference, interval, p-value,
    wins/ties/losses (examples right/wrong)."""
    reports: dict[str, pd.DataFrame]
    confusion: dict[str, np.ndarray]
    most_confused: dict[str, list]
    labels: list[str]
    reference: str
    settings: dict = field(default_factory=dict)
    class_differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Per model and class: recall against the reference with a paired bootstrap interval (every class when
    there are at most ``CLASS_TESTS``, else the ``CLASS_TESTS`` whose recall changed most)."""
    verdict: Verdict | None = None


def _in_chunks(fn: Callable, texts: list[str], on_chunk: Callable[[int], None], size: int = 256) -> list:
    """``fn`` over ``texts`` a chunk at a time (so progress can be told and a cancel heard between chunks)."""
    out: list = []
    for i in range(0, len(texts), size):
        out.append(fn(texts[i:i + size]))
        on_chunk(min(i + size, len(texts)))
    return out


def compare_classifiers(test: LoadedDataset, predictors: dict[str, Predictor], reference: str | None = None,
                        cfg: CompareConfig = CompareConfig(), *, train: LoadedDataset | None = None,
                        validation: LoadedDataset | None = None,
                        progress: Callable[[str, float], None] | None = None,
                        stop: threading.Event | None = None) -> ClassificationComparison:
    """Predict ``test`` with every model and compare them (see the module docstring).

    Args:
        test: The labelled test split.
        predictors: Display name to a predictor (texts to labels). One that also has ``labels`` and
            ``predict_proba`` (``ClassifierScorer``, the probe) gets a rejection threshold with
            ``cfg.out_of_scope``.
        reference: The model the others are compared against; None for the first.
        cfg: Bootstrap settings, ``verdict_metric`` and ``out_of_scope``.
        train: The training split: the majority-class baseline predicts its most frequent label (without
            it, the test split's, and the settings and report say so).
        validation: Where rejection thresholds are fitted (with ``cfg.out_of_scope``).
        progress: Hears ``(message, share done)`` as each model predicts, a chunk of 256 texts at a time.
        stop: Set it (from another thread) to cancel between chunks (``Cancelled``; nothing is kept). Without
            ``progress`` and ``stop``, each model predicts the split in one call.

    Returns:
        A ``ClassificationComparison``.
    """
    if not test.spec.has_label:
        raise ValueError(f"{test.source} is {test.format}, not classification data")
    test_fingerprint = test.fingerprint()  # of the whole split, before any sampling: which split was scored
    test = _sample(test, cfg)
    texts = test.frame["text"].tolist()
    gold = [str(x) for x in test.frame["label"]]
    classes = sorted(set(gold))
    oos = cfg.out_of_scope
    examples = pd.DataFrame({"where": [test.where(i) for i in range(len(test))], "text": texts, "label": gold})
    if train is not None and len(train):
        majority, counted_on = M.majority_label(train.frame["label"]), "training split"
    else:
        majority, counted_on = M.majority_label(gold), "test split (no training split at hand)"
    rows = [{"model": MAJORITY, **_class_scores(gold, [majority] * len(gold), classes, cfg)}]
    preds, thresholds, notes = {}, {}, {}
    say = progress or (lambda message, share: None)
    for k, (name, predict) in enumerate(predictors.items()):
        def told(done: int, k=k, name=name) -> None:
            if stop is not None and stop.is_set():
                raise Cancelled("scoring was cancelled; no figures were kept")
            say(f"{name}: {done:,} of {len(texts):,} texts", (k + done / max(len(texts), 1)) / len(predictors))

        told(0)
        threshold, notes[name] = _rejection_threshold(predict, validation, oos)
        start = time.perf_counter()
        # In chunks only when someone listens: a headless comparison predicts each split in one call.
        chunked = progress is not None or stop is not None
        if threshold is None:
            pred = [str(p) for chunk in (_in_chunks(predict, texts, told) if chunked and texts else [predict(texts)])
                    for p in chunk]
        else:
            thresholds[name] = threshold
            proba = (np.vstack(_in_chunks(predict.predict_proba, texts, told)) if chunked and texts
                     else predict.predict_proba(texts))
            pred = M.reject(proba, predict.labels, threshold, oos)
        seconds = time.perf_counter() - start
        preds[name] = pred
        examples[f"pred:{name}"] = pred
        examples[f"correct:{name}"] = np.array([p == g for p, g in zip(pred, gold)], dtype=float)
        rows.append({"model": name, **_class_scores(gold, pred, classes, cfg), "oos_threshold": threshold,
                     "examples_per_s": len(gold) / seconds if seconds else float("nan"), "seconds": seconds})
    table = pd.DataFrame(rows).set_index("model")
    if not oos:
        table = table.drop(columns="oos_threshold")
    table = table[[c for c in table.columns if c not in ("examples", "seconds", "examples_per_s")]
                  + ["examples", "seconds", "examples_per_s"]]
    labels = sorted(set(classes) | ({oos} if oos and any(oos in p for p in preds.values()) else set()))
    reports = {n: M.classification_report(gold, p, labels) for n, p in preds.items()}
    confusion = {n: M.confusion_matrix(gold, p, labels) for n, p in preds.items()}
    confused = {n: M.most_confused(gold, p, labels, top=10) for n, p in preds.items()}
    reference = reference or next(iter(predictors))
    diffs = [_differences({n: examples[f"correct:{n}"].to_numpy() for n in predictors}, reference, cfg, "accuracy"),
             _macro_f1_differences(gold, preds, reference, cfg)]
    diffs = pd.concat([d for d in diffs if len(d)], ignore_index=True) if len(predictors) > 1 else diffs[0]
    class_diffs = _class_differences(gold, preds, reference, classes, cfg)
    verdict = _verdict(gold, table, diffs, class_diffs, reference, cfg)
    settings = {"bootstrap_resamples": cfg.bootstrap_resamples, "confidence": cfg.confidence, "seed": cfg.seed,
                "test": test.source, "test_fingerprint": test_fingerprint, "examples": len(test),
                "majority_class": {"label": majority, "counted_on": counted_on},
                "verdict": {"metric": verdict.metric, "reason": verdict.reason}}
    if oos:
        settings["out_of_scope"] = {"label": oos, "thresholds": thresholds, "notes": notes,
                                    "fitted_on": "validation split", "objective": "mean of in-scope accuracy and "
                                    "out-of-scope recall (metrics.fit_rejection_threshold)"}
    return ClassificationComparison(examples, table, diffs, reports, confusion, confused, labels, reference,
                                    settings, class_diffs, verdict)


def _class_scores(gold: list[str], pred: list[str], classes: list[str], cfg: CompareConfig) -> dict:
    """One model's row of the metrics table: accuracy and macro-F1 with intervals, macro precision and recall,
    and with ``cfg.out_of_scope`` in-scope accuracy and out-of-scope recall and precision."""
    correct = np.array([p == g for p, g in zip(pred, gold)], dtype=float)
    lo, hi = _interval(correct, cfg)
    f1 = M.bootstrap_macro_f1(gold, pred, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                              confidence=cfg.confidence)
    macro = M.classification_report(gold, pred, classes).loc["macro avg"]
    row = {"accuracy": correct.mean(), "accuracy_low": lo, "accuracy_high": hi, "macro_f1": f1.mean_b,
           "macro_f1_low": f1.ci_low, "macro_f1_high": f1.ci_high, "macro_precision": macro["precision"],
           "macro_recall": macro["recall"], "examples": len(gold), "seconds": float("nan"),
           "examples_per_s": float("nan")}
    if cfg.out_of_scope:
        scores = M.open_set_scores(gold, pred, cfg.out_of_scope)
        row.update({k: scores[k] for k in ("in_scope_accuracy", "oos_recall", "oos_precision")})
    return row


def _rejection_threshold(predict, validation: LoadedDataset | None, oos: str) -> tuple[float | None, str]:
    """A model's rejection threshold fitted on ``validation``, or None, with a note saying which and why."""
    if not oos:
        return None, ""
    if not hasattr(predict, "predict_proba"):
        return None, "no class probabilities: its own predictions, no threshold"
    if validation is None or not len(validation):
        return None, "no validation split to fit a threshold on: no rejection"
    val_gold = [str(x) for x in validation.frame["label"]]
    n_oos = val_gold.count(oos)
    if n_oos in (0, len(val_gold)):
        return None, (f"the validation split has {n_oos} of {len(val_gold)} examples labelled {oos!r}; a threshold "
                      "needs both kinds: no rejection")
    probs = predict.predict_proba(validation.frame["text"].tolist())
    threshold = M.fit_rejection_threshold(val_gold, probs, predict.labels, oos)
    return threshold, (f"rejects below {threshold:.3g} top-class probability (fitted on {len(val_gold)} validation "
                       f"examples, {n_oos} out-of-scope)")


def _macro_f1_differences(gold: list[str], preds: dict[str, list[str]], reference: str,
                          cfg: CompareConfig) -> pd.DataFrame:
    """Like ``_differences`` for macro-F1: the paired bootstrap of ``metrics.bootstrap_macro_f1``."""
    rows = []
    base = np.array([p == g for p, g in zip(preds[reference], gold)], dtype=float)
    for name, pred in preds.items():
        if name == reference:
            continue
        b = M.bootstrap_macro_f1(gold, pred, preds[reference], n_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                                 confidence=cfg.confidence)
        wins, ties, losses = M.win_tie_loss(base, np.array([p == g for p, g in zip(pred, gold)], dtype=float))
        rows.append({"model": name, "versus": reference, "metric": "macro_f1", "difference": b.difference,
                     "ci_low": b.ci_low, "ci_high": b.ci_high, "p_value": b.p_value,
                     "resamples": cfg.bootstrap_resamples, "significant": bool(b.ci_low > 0 or b.ci_high < 0),
                     "wins": wins, "ties": ties, "losses": losses})
    return pd.DataFrame(rows)


def _class_differences(gold: list[str], preds: dict[str, list[str]], reference: str, classes: list[str],
                       cfg: CompareConfig) -> pd.DataFrame:
    """Each model's per-class recall against the reference (``metrics.class_recall_differences``); with more
    than ``CLASS_TESTS`` classes, the ``CLASS_TESTS`` whose recall changed most."""
    parts = []
    for name, pred in preds.items():
        if name == reference:
            continue
        d = M.class_recall_differences(gold, preds[reference], pred, classes, n_resamples=cfg.bootstrap_resamples,
                                       seed=cfg.seed, confidence=cfg.confidence)
        if len(d) > CLASS_TESTS:
            d = d.loc[d["difference"].abs().sort_values(ascending=False, kind="stable").index[:CLASS_TESTS]]
        d = d.rename(columns={"recall_a": f"recall:{reference}", "recall_b": "recall"})
        d.insert(0, "versus", reference)
        d.insert(0, "model", name)
        parts.append(d)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def verdict_metric(cfg: CompareConfig, labels: list[str]) -> tuple[str, str]:
    """The metric a classification verdict is about, and why: the spec's ``verdict_metric``, or with ``auto``
    macro-F1 when ``labels`` (the test split's) are imbalanced (``metrics.imbalance_ratio`` above
    ``metrics.IMBALANCE_RATIO``), accuracy otherwise."""
    if cfg.verdict_metric != "auto":
        return cfg.verdict_metric, f"set in the spec (verdict_metric: {cfg.verdict_metric})"
    counts = pd.Series(labels).value_counts()
    ratio = M.imbalance_ratio(labels)
    sizes = (f"largest class {counts.index[0]!r} {counts.iloc[0]} examples, smallest {counts.index[-1]!r} "
             f"{counts.iloc[-1]}, ratio {ratio:.1f}") if len(counts) else "no labels"
    if ratio > M.IMBALANCE_RATIO:
        return "macro_f1", (f"auto: the test labels are imbalanced ({sizes} > {M.IMBALANCE_RATIO:g}), so accuracy "
                            "mostly measures the large classes; macro-F1 weighs every class the same")
    return "accuracy", f"auto: the test labels are balanced enough ({sizes} <= {M.IMBALANCE_RATIO:g})"


def _verdict(gold: list[str], table: pd.DataFrame, diffs: pd.DataFrame, class_diffs: pd.DataFrame, reference: str,
             cfg: CompareConfig) -> Verdict:
    """One sentence per model: the difference on the verdict metric and what it means, the other metric when it
    disagrees, and the classes whose recall changed significantly."""
    metric, reason = verdict_metric(cfg, gold)
    other = "accuracy" if metric == "macro_f1" else "macro_f1"

    def judged(row) -> str:
        word = ("significantly better" if row.difference > 0 else "significantly worse") if row.significant \
            else "no significant difference"
        return (f"{row.difference:+.3f} ({cfg.confidence:.0%} interval {row.ci_low:+.3f} to {row.ci_high:+.3f}, "
                f"{M.format_p(row.p_value, cfg.bootstrap_resamples)}): {word}")

    lines = []
    for _, row in (diffs[diffs["metric"] == metric].iterrows() if len(diffs) else []):
        name = row.model
        line = (f"{name} against {reference} on {_METRIC_NAMES[metric]}: {table.loc[reference, metric]:.3f} → "
                f"{table.loc[name, metric]:.3f}, {judged(row)}.")
        alt = diffs[(diffs["metric"] == other) & (diffs["model"] == name)].iloc[0]
        if alt.significant != row.significant or (alt.significant
                                                  and np.sign(alt.difference) != np.sign(row.difference)):
            line += f" On {_METRIC_NAMES[other]} it differs: {judged(alt)}."
        if len(class_diffs):
            changed = class_diffs[(class_diffs["model"] == name) & class_diffs["significant"]]
            if len(changed):
                line += " Recall changed significantly for " + "; ".join(
                    f"{c['class']} {c[f'recall:{reference}']:.3f} → {c['recall']:.3f} ({c['difference']:+.3f}, "
                    f"{M.format_p(c['p_value'], cfg.bootstrap_resamples)})" for _, c in changed.iterrows()) + "."
        lines.append(line)
    return Verdict(metric, reason, lines)


def _sample(ds: LoadedDataset, cfg: CompareConfig) -> LoadedDataset:
    if cfg.max_examples is None or len(ds) <= cfg.max_examples:
        return ds
    rows = np.sort(np.random.default_rng(cfg.seed).choice(len(ds), cfg.max_examples, replace=False))
    return ds.with_frame(ds.frame.iloc[rows])


def _interval(scores: np.ndarray, cfg: CompareConfig) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean."""
    r = M.paired_bootstrap(np.zeros_like(scores), scores, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                           confidence=cfg.confidence)
    return r.ci_low, r.ci_high


def _differences(scores: dict[str, np.ndarray], reference: str, cfg: CompareConfig, metric: str,
                 also: Sequence[tuple[str, str]] = ()) -> pd.DataFrame:
    """Each model against ``reference``, then each (model, versus) pair of ``also``."""
    rows = []
    pairs = [(name, reference) for name in scores if name != reference]
    pairs += [(name, versus) for name, versus in also if name in scores and versus in scores and versus != reference]
    for name, versus in pairs:
        base, s = scores[versus], scores[name]
        b = M.paired_bootstrap(base, s, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed, confidence=cfg.confidence)
        wins, ties, losses = M.win_tie_loss(base, s)
        rows.append({"model": name, "versus": versus, "metric": metric, "difference": b.difference,
                     "ci_low": b.ci_low, "ci_high": b.ci_high, "p_value": b.p_value,
                     "resamples": cfg.bootstrap_resamples,
                     "significant": bool(b.ci_low > 0 or b.ci_high < 0), "wins": wins, "ties": ties,
                     "losses": losses})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    seconds: float
    stopped: bool = False
    """Ended early by a stop event (``generate_stream``)."""


def decoding_settings(cfg: CompareConfig) -> dict:
    """The decoding settings of ``cfg`` as recorded with results (temperature and top-p only when sampling)."""
    return {"max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.do_sample,
            "temperature": cfg.temperature if cfg.do_sample else None,
            "top_p": cfg.top_p if cfg.do_sample else None, "seed": cfg.seed,
            **({"repetition_penalty": cfg.repetition_penalty} if cfg.repetition_penalty != 1.0 else {})}


def _generate_kwargs(cfg: CompareConfig, tokenizer) -> dict:
    """What ``model.generate`` takes for ``cfg``'s decoding settings."""
    kwargs = {"max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.do_sample, "use_cache": True,
              "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
    if cfg.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = cfg.repetition_penalty
    return kwargs


def load_generator(path: str | Path, device: str = "cpu"):
    """A causal LM for comparison: an adapter trained with QLoRA is evaluated on its 4-bit base, as trained."""
    use_threads()  # generation too: one thread per free core, not one per core, on a busy machine
    info = Path(path) / "workbench.json"
    method = METHODS.get(json.loads(info.read_text()).get("method")) if info.exists() else None
    return load_causal_lm(path, device, quant=QuantConfig() if method is not None and method.reload_quantized() else None)


def special_tokens_for(tokenizer) -> bool:
    """Whether prompts get the tokenizer's special tokens (BOS) added, as in training.

    Chat templates write their own; the fallback template relies on the tokenizer adding BOS.
    """
    return not uses_chat_template(tokenizer)


def generate(model, tokenizer, prompts: list[str], cfg: CompareConfig = CompareConfig(),
             on_batch: Callable[[int, int], None] | None = None,
             stop: threading.Event | None = None) -> list[Generation]:
    """Generate an answer for each already formatted prompt (batched, left-padded).

    ``on_batch(done, total)`` is called after every batch; setting ``stop`` (from another thread) ends the
    batch being generated after its current token and raises ``Cancelled``.
    """
    import torch

    special = special_tokens_for(tokenizer)
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[Generation] = [Generation("", 0, 0.0)] * len(prompts)
    torch.manual_seed(cfg.seed)
    try:
        for i in range(0, len(prompts), cfg.batch_size):
            batch = prompts[i:i + cfg.batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=special).to(device)
            kwargs = _generate_kwargs(cfg, tokenizer)
            if stop is not None:
                kwargs["stopping_criteria"] = [_StopOnEvent(stop)]
            start = time.perf_counter()
            with torch.no_grad():
                ids = model.generate(**enc, **kwargs)
            seconds = time.perf_counter() - start
            if stop is not None and stop.is_set():
                raise Cancelled("scoring was cancelled; no figures were kept")
            new = ids[:, enc["input_ids"].shape[1]:]
            for j, row in enumerate(new):
                tokens = row.tolist()
                if tokenizer.eos_token_id in tokens:
                    tokens = tokens[:tokens.index(tokenizer.eos_token_id)]
                tokens = [t for t in tokens if t != tokenizer.pad_token_id]
                out[i + j] = Generation(tokenizer.decode(tokens, skip_special_tokens=True).strip(), len(tokens),
                                        seconds / len(batch))
            if on_batch is not None:
                on_batch(i + len(batch), len(prompts))
    finally:
        tokenizer.padding_side = side
    return out


class _StopOnEvent:
    """A stopping criterion for ``model.generate`` (asked after every token): stop once ``event`` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids.new_full((input_ids.shape[0],), int(self.event.is_set())).bool()


class _TextCallbackStreamer:
    """A streamer for ``model.generate`` (``put`` per token, ``end``): decodes the new tokens and
    calls ``on_token(text so far, tokens so far)``; the prompt (the first ``put``) and EOS are skipped."""

    def __init__(self, tokenizer, on_token: Callable[[str, int], None] | None):
        self.tokenizer, self.on_token = tokenizer, on_token
        self.ids: list[int] = []
        self.prompt_seen = self.finished = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if self.finished or token == self.tokenizer.eos_token_id:
                self.finished = True
                continue
            self.ids.append(token)
            if self.on_token is not None:
                self.on_token(self.text(), len(self.ids))

    def end(self) -> None:
        pass

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()


def generate_stream(model, tokenizer, prompt: str, cfg: CompareConfig = CompareConfig(),
                    stop: threading.Event | None = None,
                    on_token: Callable[[str, int], None] | None = None) -> Generation:
    """Answer one already formatted prompt token by token, as ``generate`` would, until EOS,
    ``cfg.max_new_tokens`` or ``stop``.

    Runs in the calling thread (a panel calls it from a worker thread, so the kernel stays free).

    Args:
        model, tokenizer: A causal LM and its tokenizer (``load_generator``).
        prompt: The formatted prompt (``templates.generation_prompt``).
        cfg: Decoding settings: ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``, ``seed``.
        stop: Set it (from another thread) to end generation after the token being generated.
        on_token: Called after every new token with the answer so far (decoded, special tokens
            dropped) and the number of tokens so far.

    Returns:
        The answer (stripped), its token count, the seconds taken, and whether ``stop`` ended it.
    """
    import torch

    stop = stop or threading.Event()
    if stop.is_set():
        return Generation("", 0, 0.0, stopped=True)
    device = next(model.parameters()).device
    enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=special_tokens_for(tokenizer)).to(device)
    streamer = _TextCallbackStreamer(tokenizer, on_token)
    kwargs = {**_generate_kwargs(cfg, tokenizer), "streamer": streamer, "stopping_criteria": [_StopOnEvent(stop)]}
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(**enc, **kwargs)
    seconds = time.perf_counter() - start
    stopped = stop.is_set() and not streamer.finished and len(streamer.ids) < cfg.max_new_tokens
    return Generation(streamer.text().strip(), len(streamer.ids), seconds, stopped)


def prompts_and_references(ds: LoadedDataset, tokenizer, token_cfg: TokenConfig = TokenConfig()):
    """Generation prompts (all turns before the last answer, formatted) and the reference answers."""
    prompts, refs = [], []
    for rec in ds.frame[list(ds.fields)].to_dict("records"):
        msgs = ds.spec.messages(rec)
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        prompts.append(generation_prompt(msgs[:last], tokenizer, token_cfg))
        refs.append(msgs[last]["content"])
    return prompts, refs


@dataclass(frozen=True)
class GenerationComparison:
    """Causal LMs compared on one test split."""

    examples: pd.DataFrame
    """prompt (user turn), reference, then ``output:<model>``, one column per metric per model, and
    ``degenerate:<model>`` (the kind of degenerate answer, ``metrics.degeneracy``; empty when fine)."""
    metrics: pd.DataFrame
    """Per model: each metric's mean and interval, reference perplexity, latency, tokens/s, and the
    count of degenerate answers (``degenerate``, and ``degenerate_<kind>`` per kind)."""
    differences: pd.DataFrame
    """Per model and metric against the reference: difference, interval, p-value, wins/ties/losses."""
    reference: str
    settings: dict


def compare_generators(test: LoadedDataset, models: dict[str, str | Path], reference: str | None = None,
                       cfg: CompareConfig = CompareConfig(), device: str = "cpu",
                       loader: Callable = load_generator, corpus: Sequence[str] = (),
                       pairs: Sequence[tuple[str, str]] = (), progress: Callable[[str, float], None] | None = None,
                       stop: threading.Event | None = None) -> GenerationComparison:
    """Generate with every model on ``test`` and compare (see the module docstring).

    ``progress(message, share done)`` hears what is happening (loading a model, answers so far, perplexity);
    setting ``stop`` cancels (``Cancelled``) within a token.

    ``corpus``: texts none of the models trained on (a pretraining step's held-out documents); each
    model's perplexity on them is reported too (``corpus_perplexity``; differences as ``corpus_nll``,
    per text and token, higher is better). ``pairs``: more (model, versus) differences to report
    besides each model against ``reference``.
    """
    test_fingerprint = test.fingerprint()  # of the whole split, before any sampling: which split was scored
    test = _sample(test, cfg)
    users = [test.spec.prompt_text(r) for r in test.frame[list(test.fields)].to_dict("records")]
    examples = pd.DataFrame({"where": [test.where(i) for i in range(len(test))], "prompt": users})
    rows, per_metric = [], {m: {} for m in cfg.metrics + ["reference_nll"] + (["corpus_nll"] if corpus else [])}
    refs = None
    say = progress or (lambda message, share: None)
    for k, (name, path) in enumerate(models.items()):
        step = f"{name} ({k + 1} of {len(models)})"
        say(f"{step}: loading the model", k / len(models))
        model, tok = loader(path, device)
        prompts, refs = prompts_and_references(test, tok)
        gens = generate(model, tok, prompts, cfg, stop=stop, on_batch=lambda done, total: say(
            f"{step}: {done} of {total} answers", (k + 0.9 * done / max(total, 1)) / len(models)))
        say(f"{step}: perplexity of the references", (k + 0.9) / len(models))
        outputs = [g.text for g in gens]
        examples[f"output:{name}"] = outputs
        examples[f"degenerate:{name}"] = [M.degeneracy(a, u) for a, u in zip(outputs, users)]
        scores = M.score_generations(refs, outputs, cfg.metrics)
        for m in cfg.metrics:
            examples[f"{m}:{name}"] = scores[m].to_numpy()
            per_metric[m][name] = scores[m].to_numpy()
        ppl = M.perplexity_of_references(model, tok, prompts, refs, batch_size=cfg.batch_size, device=device,
                                         add_special_tokens=special_tokens_for(tok))
        nll_per_token = np.asarray(ppl.nll) / np.maximum(np.asarray(ppl.tokens), 1)
        examples[f"reference_nll:{name}"] = nll_per_token
        per_metric["reference_nll"][name] = -nll_per_token  # higher is better, like the other metrics
        held_out = {}
        if corpus:  # running text: no prompt, the tokenizer's own specials, as in pretraining
            cp = M.perplexity_of_references(model, tok, [""] * len(corpus), list(corpus), batch_size=cfg.batch_size,
                                            device=device, add_special_tokens=True)
            per_metric["corpus_nll"][name] = -np.asarray(cp.nll) / np.maximum(np.asarray(cp.tokens), 1)
            held_out = {"corpus_perplexity": cp.perplexity}
        seconds = sum(g.seconds for g in gens)
        row = {"model": name, "reference_perplexity": ppl.perplexity, **held_out, "examples": len(gens),
               "seconds_per_example": seconds / max(1, len(gens)),
               "tokens_per_s": sum(g.new_tokens for g in gens) / seconds if seconds else float("nan"),
               "answer_tokens_mean": float(np.mean([g.new_tokens for g in gens])) if gens else 0.0,
               **M.degeneracy_counts(outputs, users)}
        for m in cfg.metrics:
            lo, hi = _interval(per_metric[m][name], cfg)
            row.update({m: float(per_metric[m][name].mean()), f"{m}_low": lo, f"{m}_high": hi})
        rows.append(row)
        del model
        if stop is not None and stop.is_set():
            raise Cancelled("scoring was cancelled; no figures were kept")
    say("done", 1.0)
    examples.insert(2, "reference", refs or [])
    reference = reference or next(iter(models))
    diffs = pd.concat([_differences(per_metric[m], reference, cfg, m, pairs) for m in per_metric], ignore_index=True)
    settings = {"decoding": decoding_settings(cfg), "bootstrap_resamples": cfg.bootstrap_resamples,
                "confidence": cfg.confidence, "models": {k: str(v) for k, v in models.items()}, "test": test.source,
                "test_fingerprint": test_fingerprint, "examples": len(test), "cpu_threads": torch.get_num_threads(),
                **({"corpus_texts": len(corpus)} if corpus else {})}
    return GenerationComparison(examples, pd.DataFrame(rows).set_index("model"), diffs, reference, settings)


def disagreement(comparison: GenerationComparison | ClassificationComparison, metric: str = "rouge_l") -> pd.DataFrame:
    """The examples where the models disagree.

    Causal LMs: every example, sorted by how much the models' scores on ``metric`` differ
    (largest first, in a ``spread`` column). Classifiers: the examples that get more than one
    distinct label, in test order (``metric`` is not used).
    """
    if isinstance(comparison, ClassificationComparison):
        preds = [c for c in comparison.examples.columns if c.startswith("pred:")]
        return comparison.examples[comparison.examples[preds].nunique(axis=1) > 1]
    cols = [c for c in comparison.examples.columns if c.startswith(f"{metric}:")]
    ex = comparison.examples.copy()
    ex["spread"] = ex[cols].max(axis=1) - ex[cols].min(axis=1) if cols else 0.0
    return ex.sort_values("spread", ascending=False)


# --------------------------------------------------------------------------- the models of a test split


@dataclass(frozen=True)
class ModelSet:
    """The models to compare on some data, in the form its format asks for."""

    models: dict
    """Name to a predictor (``classifiers``: a ``ClassifierScorer`` or the frozen-encoder ``Probe``) or
    to a model folder (causal LMs)."""
    classifiers: bool
    """The data has labels, so the models are classifiers."""


def model_set(ds: LoadedDataset, folders: dict[str, str | Path], *, train: LoadedDataset | None = None,
              probe: bool = False, probe_encoder: str = "minilm", predictor: Callable = classifier_predictor,
              fit: Callable = fit_probe, probe_c: float | None = None) -> ModelSet:
    """The models in ``folders``, loaded as the data's format asks (its descriptor's ``has_label``).

    Args:
        ds: Data of the format the models were trained on (a test split).
        folders: Display name to a trained model folder.
        train: The training split, for the probe.
        probe: With labelled data, put the frozen-encoder + logistic-regression baseline first,
            named ``frozen probe``.
        probe_encoder: The probe's encoder.
        predictor, fit: ``classifier_predictor`` and ``fit_probe`` (tests pass stubs).
        probe_c: The probe's inverse regularisation (``train.probe_c``, as LP-FT's probe); None for ``fit``'s.

    Returns:
        Classifiers (predictors) for labelled data; for generative data, the folders unchanged.
    """
    if not ds.spec.has_label:
        return ModelSet(dict(folders), classifiers=False)
    models = {}
    if probe:
        models["frozen probe"] = fit(train, probe_encoder, **({} if probe_c is None else {"C": probe_c}))
    models.update({name: predictor(path) for name, path in folders.items()})
    return ModelSet(models, classifiers=True)


@dataclass(frozen=True)
class SplitComparison:
    """Models compared on one test split: the loaded models and the comparison."""

    models: ModelSet
    comparison: ClassificationComparison | GenerationComparison


def compare_models(test: LoadedDataset, folders: dict[str, str | Path], reference: str | None = None,
                   cfg: CompareConfig = CompareConfig(), *, train: LoadedDataset | None = None, probe: bool = False,
                   probe_encoder: str = "minilm", device: str = "cpu", load: Callable = model_set,
                   corpus: Sequence[str] = (), pairs: Sequence[tuple[str, str]] = (), probe_c: float | None = None,
                   validation: LoadedDataset | None = None) -> SplitComparison:
    """Compare the models in ``folders`` on ``test``: classifiers or causal LMs, as the data's format says.

    Args:
        test: The test split.
        folders: Display name to a trained model folder.
        reference: The model the others are compared against; None for the first (the probe,
            when there is one).
        cfg: Decoding, metrics and bootstrap settings.
        train: The training split, for the probe.
        probe: With labelled data, add the frozen-encoder baseline (see ``model_set``).
        probe_encoder: The probe's encoder.
        probe_c: The probe's inverse regularisation (``train.probe_c``); None for the probe's default.
        device: Where causal LMs generate.
        load: ``model_set`` (tests pass a stub).
        corpus: Causal LMs: held-out running text to measure each model's perplexity on.
        pairs: Causal LMs: more (model, versus) differences to report (a fine-tune of a continued base
            against the same fine-tune of the base as it was).
        validation: Classifiers: the validation split, where out-of-scope rejection thresholds are fitted
            (``cfg.out_of_scope``).

    Returns:
        A ``SplitComparison``: ``compare_classifiers`` or ``compare_generators`` of the loaded models.
    """
    models = load(test, folders, train=train, probe=probe, probe_encoder=probe_encoder, probe_c=probe_c)
    if models.classifiers:
        comparison = compare_classifiers(test, models.models, reference or next(iter(models.models)), cfg,
                                         train=train, validation=validation)
    else:
        comparison = compare_generators(test, models.models, reference or None, cfg, device, corpus=corpus,
                                        pairs=pairs)
    return SplitComparison(models, comparison)


# --------------------------------------------------------------------------- reports


def per_class_table(comparison: ClassificationComparison) -> pd.DataFrame:
    """Per class: support, each model's F1, recall and precision, and each model's F1 and recall change
    against the reference.

    Sorted by the change of the last model (largest gains first), so the classes fine-tuning
    helped and hurt are at the two ends.
    """
    ref = comparison.reference
    frame = pd.DataFrame({"support": comparison.reports[ref].loc[comparison.labels, "support"].astype(int)})
    for name, report in comparison.reports.items():
        frame[f"f1:{name}"] = report.loc[comparison.labels, "f1"]
        frame[f"recall:{name}"] = report.loc[comparison.labels, "recall"]
    for name, report in comparison.reports.items():
        frame[f"precision:{name}"] = report.loc[comparison.labels, "precision"]
    others = [n for n in comparison.reports if n != ref]
    for name in others:
        frame[f"f1 change:{name}"] = frame[f"f1:{name}"] - frame[f"f1:{ref}"]
        frame[f"recall change:{name}"] = frame[f"recall:{name}"] - frame[f"recall:{ref}"]
    frame.index.name = "class"
    if others:
        frame = frame.sort_values([f"f1 change:{others[-1]}", f"f1:{others[-1]}"], ascending=[False, False])
    return frame


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def markdown_table(frame: pd.DataFrame, index: bool = True, digits: int = 4) -> str:
    """A pipe table (pandas' to_markdown needs the tabulate package; this does not)."""
    df = frame.reset_index() if index else frame
    fmt = lambda v: f"{v:.{digits}g}" if isinstance(v, float) else str(v)  # noqa: E731
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def degenerate_warnings(comparison) -> list[str]:
    """One line per model that wrote degenerate answers (empty, looping, echoing the prompt), e.g.
    ``"base: 6 of 6 answers degenerate (6 empty)"``; none for classifiers or when all answers are fine."""
    table = comparison.metrics
    if "degenerate" not in table.columns:
        return []
    lines = []
    for name, row in table.iterrows():
        note = M.degeneracy_note(row.to_dict(), row.get("examples"))
        if note:
            lines.append(f"{name}: {note}")
    return lines


_DEGENERATE_ADVICE = ("their scores judge no real answers; read them (the degenerate:<model> column of the "
                      "examples) before trusting a difference.")


def shown_differences(comparison) -> pd.DataFrame:
    """The differences table as reports show it: p-values as text (``p < 0.001``, never ``0``)."""
    shown = comparison.differences.copy()
    if "p_value" in shown:
        resamples = comparison.settings.get("bootstrap_resamples", 2000)
        shown["p_value"] = [M.format_p(p, resamples) for p in shown["p_value"]]
    return shown


def summary_lines(comparison: ClassificationComparison) -> dict[str, list[str]]:
    """The sentences a classification report opens with, by section: ``baseline`` (what the majority-class
    row predicts), ``verdict`` (its metric and why, then one line per model) and ``out_of_scope``
    (how models reject, one line per model; empty without ``out_of_scope``)."""
    majority = comparison.settings.get("majority_class", {})
    out = {"baseline": [], "verdict": [], "out_of_scope": []}
    if majority:
        row = comparison.metrics.loc[MAJORITY]
        out["baseline"].append(f"Majority-class baseline (row {MAJORITY!r}): always {majority['label']!r}, the most "
                               f"frequent label of the {majority['counted_on']}: accuracy {row['accuracy']:.3f}, "
                               f"macro-F1 {row['macro_f1']:.3f}. A model has to beat it to have learnt anything.")
    if comparison.verdict is not None:
        v = comparison.verdict
        out["verdict"] = [f"Verdict metric: {_METRIC_NAMES[v.metric]}, {v.reason}.", *v.lines]
    oos = comparison.settings.get("out_of_scope")
    if oos:
        out["out_of_scope"] = [f"Out-of-scope inputs are those labelled {oos['label']!r}. A model with class "
                               f"probabilities predicts {oos['label']!r} when its top class probability is below a "
                               f"threshold fitted on the {oos['fitted_on']}, maximising the {oos['objective']}.",
                               *(f"{name}: {note}" for name, note in oos["notes"].items())]
    return out


def _shown_class_differences(comparison: ClassificationComparison) -> pd.DataFrame:
    """The per-class recall tests as reports show them: p-values as text."""
    shown = comparison.class_differences.copy()
    if len(shown):
        resamples = comparison.settings.get("bootstrap_resamples", 2000)
        shown["p_value"] = [M.format_p(p, resamples) for p in shown["p_value"]]
    return shown


def _class_tests_title(comparison: ClassificationComparison) -> str:
    n = len(comparison.labels)
    which = f", the {CLASS_TESTS} classes whose recall changed most of {n}" if n > CLASS_TESTS else ""
    return f"Per-class recall against {comparison.reference} (paired bootstrap{which})"


def report_markdown(comparison, title: str = "Comparison") -> str:
    """The comparison as Markdown: a warning about degenerate answers if any, metric table, (classifiers: the
    majority-class baseline, the verdict, out-of-scope figures), differences with intervals, (classifiers:
    per-class recall tests, confusions, per-class table), settings."""
    parts = [f"# {title}", ""]
    warnings = degenerate_warnings(comparison)
    if warnings:
        parts += [f"> **Warning: degenerate answers.** {'; '.join(warnings)}. Such answers are empty, loop on "
                  f"repeated n-grams or echo the prompt: {_DEGENERATE_ADVICE}", ""]
    parts += ["## Metrics", "", markdown_table(comparison.metrics), ""]
    if isinstance(comparison, ClassificationComparison):
        summary = summary_lines(comparison)
        parts += [*summary["baseline"], ""]
        if summary["verdict"]:
            parts += [f"## Verdict ({_METRIC_NAMES[comparison.verdict.metric]})", "", summary["verdict"][0], ""]
            parts += [*(f"- {line}" for line in summary["verdict"][1:]), ""] if summary["verdict"][1:] else []
        if summary["out_of_scope"]:
            cols = ["in_scope_accuracy", "oos_recall", "oos_precision", "oos_threshold"]
            parts += [f"## Out of scope ({comparison.settings['out_of_scope']['label']})", "",
                      summary["out_of_scope"][0],
                      "", markdown_table(comparison.metrics[cols], digits=3), "",
                      *(f"- {line}" for line in summary["out_of_scope"][1:]), ""]
    parts += [f"## Differences against {comparison.reference}", ""]
    parts.append(markdown_table(shown_differences(comparison), index=False) if len(comparison.differences)
                 else "(one model only)")
    if isinstance(comparison, ClassificationComparison):
        if len(comparison.class_differences):
            parts += ["", f"## {_class_tests_title(comparison)}", "",
                      markdown_table(_shown_class_differences(comparison), index=False, digits=3)]
        for name, pairs in comparison.most_confused.items():
            parts += ["", f"### Most confused: {name}", "", f"![confusion: {name}](confusion-{_slug(name)}.png)", ""]
            parts += [f"- {t} → {p}: {n}" for t, p, n in pairs[:10]]
        parts += ["", f"## Per class (F1 change against {comparison.reference}, largest gains first)", "",
                  markdown_table(per_class_table(comparison), digits=3)]
    parts += ["", "## Settings", "", "```json", json.dumps(comparison.settings, indent=2, default=str), "```", ""]
    return "\n".join(parts)


def confusion_pngs(comparison: ClassificationComparison) -> dict[str, bytes]:
    """Each model's confusion plot as PNG bytes."""
    return {name: plots.to_png(plots.confusion_plot(matrix, comparison.labels, name))
            for name, matrix in comparison.confusion.items()}


def report_html(comparison, title: str = "Comparison", pngs: dict[str, bytes] | None = None) -> str:
    """A standalone HTML page: tables, plots (embedded PNG; ``pngs`` when already drawn), per-example samples."""

    warnings = degenerate_warnings(comparison)
    warning = (f'<p class="wb-warning" style="color:#b00;font-weight:bold">Warning: degenerate answers. '
               f"{html.escape('; '.join(warnings))}. Such answers are empty, loop on repeated n-grams or echo the "
               f"prompt: {html.escape(_DEGENERATE_ADVICE)}</p>") if warnings else ""
    body = [f"<h1>{html.escape(title)}</h1>", warning, "<h2>Metrics</h2>", comparison.metrics.round(4).to_html(),
            f"<h2>Differences against {html.escape(comparison.reference)}</h2>",
            shown_differences(comparison).round(4).to_html(index=False) if len(comparison.differences)
            else "<p>one model</p>"]
    if isinstance(comparison, ClassificationComparison):
        summary = summary_lines(comparison)
        opening = [f"<p>{html.escape(line)}</p>" for line in summary["baseline"]]
        if summary["verdict"]:
            opening.append(f"<h2>Verdict ({_METRIC_NAMES[comparison.verdict.metric]})</h2>"
                           f"<p>{html.escape(summary['verdict'][0])}</p><ul class=\"wb-verdict\">"
                           + "".join(f"<li>{html.escape(line)}</li>" for line in summary["verdict"][1:]) + "</ul>")
        if summary["out_of_scope"]:
            cols = ["in_scope_accuracy", "oos_recall", "oos_precision", "oos_threshold"]
            opening.append(f"<h2>Out of scope ({html.escape(comparison.settings['out_of_scope']['label'])})</h2>"
                           f"<p>{html.escape(summary['out_of_scope'][0])}</p>"
                           + comparison.metrics[cols].round(3).to_html() + "<ul>"
                           + "".join(f"<li>{html.escape(x)}</li>" for x in summary["out_of_scope"][1:]) + "</ul>")
        body[4:4] = opening  # after the metrics table, before the differences
        if len(comparison.class_differences):
            body.append(f"<h2>{html.escape(_class_tests_title(comparison))}</h2>"
                        + _shown_class_differences(comparison).round(3).to_html(index=False))
        body.append(f"<h2>Per class (F1 change against {html.escape(comparison.reference)}, largest gains first)"
                    "</h2>")
        body.append(per_class_table(comparison).round(3).to_html())
        pngs = pngs or confusion_pngs(comparison)
        for name in comparison.confusion:
            body.append(f"<h3>Confusion: {html.escape(name)}</h3>")
            body.append(plots.png_tag(pngs[name], name))
            body.append(comparison.reports[name].round(3).to_html())
        sample = comparison.examples.head(50)
    else:
        sample = disagreement(comparison).head(30)
    body += ["<h2>Examples</h2>", sample.to_html(index=False), "<h2>Settings</h2>",
             f"<pre>{html.escape(json.dumps(comparison.settings, indent=2, default=str))}</pre>"]
    style = "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}" \
            "td,th{border:1px solid #ccc;padding:2px 6px}</style>"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{style}</head>" \
           f"<body>{''.join(body)}</body></html>"


def write_report(comparison, out_dir: str | Path, title: str = "Comparison") -> dict[str, Path]:
    """Write report.html, report.md, metrics.csv, differences.csv, examples.jsonl and settings.json (decoding,
    bootstrap, which test split: its fingerprint) into ``out_dir``.

    Classification adds per_class.csv, class_differences.csv (per-class recall tests) and a confusion plot per
    model (confusion-<model>.png).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "markdown": out / "report.md", "metrics": out / "metrics.csv",
             "differences": out / "differences.csv", "examples": out / "examples.jsonl",
             "settings": out / "settings.json"}
    pngs = confusion_pngs(comparison) if isinstance(comparison, ClassificationComparison) else None
    atomic_write_text(paths["html"], report_html(comparison, title, pngs))
    atomic_write_text(paths["markdown"], report_markdown(comparison, title))
    atomic_write_text(paths["metrics"], comparison.metrics.to_csv())
    atomic_write_text(paths["differences"], comparison.differences.to_csv(index=False))
    atomic_write_text(paths["settings"], json.dumps(comparison.settings, indent=2, default=str))
    atomic_write_text(paths["examples"], comparison.examples.to_json(orient="records", lines=True, force_ascii=False))
    if pngs is not None:
        paths["per_class"] = out / "per_class.csv"
        atomic_write_text(paths["per_class"], per_class_table(comparison).to_csv())
        paths["class_differences"] = out / "class_differences.csv"
        atomic_write_text(paths["class_differences"], comparison.class_differences.to_csv(index=False))
        for name, png in pngs.items():
            paths[f"confusion:{name}"] = atomic_write_bytes(out / f"confusion-{_slug(name)}.png", png)
    return paths


__all__ = ["ClassificationComparison", "ClassifierScorer", "GenerationComparison", "classifier_predictor",
           "compare_classifiers", "compare_generators", "confusion_pngs", "decoding_settings", "degenerate_warnings",
           "disagreement", "generate", "generate_stream", "load_generator",
           "per_class_table", "prompts_and_references", "report_html", "report_markdown", "summary_lines",
           "top_labels", "verdict_metric", "write_report", "Verdict"]
