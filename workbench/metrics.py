"""Metrics for comparing models, computed offline (no hub: ``evaluate.load`` would fetch).

Classification
    ``accuracy``, ``macro_f1`` and ``per_class``; ``confusion_matrix`` (rows are the true
    class, columns the predicted one), ``most_confused`` (the largest off-diagonal cells) and
    ``classification_report`` (a DataFrame of per-class precision, recall, F1 and support with
    macro and weighted averages). ``majority_label`` (the majority-class baseline) and
    ``imbalance_ratio`` (largest over smallest class; above ``IMBALANCE_RATIO`` accuracy misleads).
    Open set: ``reject`` predicts the out-of-scope label below a threshold on the top class
    probability, ``fit_rejection_threshold`` fits it on held-out data, ``open_set_scores`` gives
    in-scope accuracy and out-of-scope recall and precision.

Generation, one reference per example
    ``exact_match`` and ``token_f1`` as in the SQuAD evaluation script (lower-case, drop
    punctuation and the articles a/an/the, collapse whitespace; F1 over the bag of remaining
    tokens). ``rouge_l`` is the LCS F-measure on lower-cased word tokens (see ``rouge_tokens``).
    ``bleu``/``chrf`` (corpus) and ``sentence_bleu``/``sentence_chrf`` (one example) are
    sacrebleu's, with its defaults: BLEU with the ``13a`` tokenizer and exponential smoothing
    (effective n-gram order at sentence level), chrF with character 6-grams and beta 2.
    ``answer_length`` summarises how long answers are; ``degeneracy`` flags an answer that is
    empty, loops on repeated n-grams or echoes the prompt (``degeneracy_counts`` counts them), so
    a report can say its scores judge no real answers. Scales: ``exact_match``, ``token_f1``
    and ``rouge_l`` are in [0, 1]; BLEU and chrF keep sacrebleu's 0-100.

Language modelling
    ``perplexity_of_references``: the perplexity of reference answers given their prompts, for
    a Hugging Face causal LM, with the loss on the reference tokens only.

Paired comparison of two systems on the same examples
    ``paired_bootstrap`` (confidence interval and p-value of the difference of means),
    ``bootstrap_macro_f1`` (macro-F1's interval, or a paired macro-F1 difference, by the same
    resampling), ``class_recall_differences`` (each class's recall difference, paired),
    ``format_p`` (a p-value as text) and ``win_tie_loss``.

Registry. ``METRICS`` maps names to functions for configs and reports. Corpus metrics (the
default) take references and predictions and return a float. Per-example metrics, registered
with ``per_example=True`` and listed in ``PER_EXAMPLE``, take one reference and one
prediction and return a float; ``score_generations`` applies them to every example and
``score_corpus`` gives their corpus value (the mean over examples, or the corpus function
registered with them: sacrebleu's corpus BLEU and chrF are not means of sentence scores).
"""

from __future__ import annotations

import difflib
import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import pandas as pd

METRICS: dict[str, Callable] = {}
"""Every registered metric by name."""

PER_EXAMPLE: dict[str, Callable | None] = {}
"""Names of per-example metrics, each with its corpus-level function (None: the mean over examples)."""


def metric(name: str, per_example: bool = False, corpus: Callable | None = None):
    """Register a metric function under ``name``.

    Args:
        name: The name configs and reports use.
        per_example: True when the function scores one (reference, prediction) pair.
        corpus: For a per-example metric, the function of (references, predictions) that gives
            its corpus value; None means the mean of the per-example scores.

    Returns:
        A decorator that registers the function and returns it unchanged.
    """

    def register(fn):
        METRICS[name] = fn
        if per_example:
            PER_EXAMPLE[name] = corpus
        return fn

    return register


# --------------------------------------------------------------------------- classification


@metric("accuracy")
def accuracy(references, predictions) -> float:
    """Share of predictions equal to the reference."""
    r, p = np.asarray(references), np.asarray(predictions)
    return float((r == p).mean()) if r.size else 0.0


def per_class(references, predictions, labels=None) -> dict:
    """Precision, recall, F1 and support per class."""
    r, p = np.asarray(references), np.asarray(predictions)
    classes = list(labels) if labels is not None else sorted(set(r.tolist()) | set(p.tolist()))
    out = {}
    for c in classes:
        tp = int(((p == c) & (r == c)).sum())
        fp = int(((p == c) & (r != c)).sum())
        fn = int(((p != c) & (r == c)).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[c] = {"precision": prec, "recall": rec, "f1": f1, "support": int((r == c).sum())}
    return out


@metric("macro_f1")
def macro_f1(references, predictions) -> float:
    """Unweighted mean of per-class F1 over the classes present in the references."""
    r = np.asarray(references)
    scores = per_class(references, predictions, sorted(set(r.tolist())))
    return float(np.mean([s["f1"] for s in scores.values()])) if scores else 0.0


def _labels_and_codes(references, predictions, labels) -> tuple[list, np.ndarray, np.ndarray]:
    """The label list and each example's reference and prediction as an index into it (-1: not listed)."""
    refs, preds = list(references), list(predictions)
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions: one prediction per reference.")
    classes = list(labels) if labels is not None else sorted(set(refs) | set(preds))
    index = {c: i for i, c in enumerate(classes)}
    r = np.fromiter((index.get(x, -1) for x in refs), dtype=np.int64, count=len(refs))
    p = np.fromiter((index.get(x, -1) for x in preds), dtype=np.int64, count=len(preds))
    return classes, r, p


def confusion_matrix(references, predictions, labels=None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        references: The true class of each example.
        predictions: The predicted class of each example.
        labels: The classes, in the order of the rows and columns; by default the sorted union
            of the references and predictions. Examples whose reference or prediction is not
            listed are left out of the matrix.

    Returns:
        An integer array of shape (len(labels), len(labels)): ``m[i, j]`` is the number of
        examples of class ``labels[i]`` predicted as ``labels[j]``.
    """
    classes, r, p = _labels_and_codes(references, predictions, labels)
    k = len(classes)
    keep = (r >= 0) & (p >= 0)
    return np.bincount(r[keep] * k + p[keep], minlength=k * k).reshape(k, k).astype(np.int64)


def most_confused(references, predictions, labels=None, top: int = 10) -> list[tuple]:
    """The most frequent mistakes.

    Args:
        references: The true class of each example.
        predictions: The predicted class of each example.
        labels: The classes considered (default: the sorted union of references and predictions).
        top: How many pairs to return at most.

    Returns:
        ``(true, predicted, count)`` for off-diagonal cells with a non-zero count, largest count
        first; ties keep the order of ``labels`` (by true class, then predicted class).
    """
    classes, _, _ = _labels_and_codes(references, predictions, labels)
    m = confusion_matrix(references, predictions, classes)
    off = m.copy()
    np.fill_diagonal(off, 0)
    flat = off.ravel()
    order = np.argsort(-flat, kind="stable")  # stable: ties stay in row-major label order
    order = order[flat[order] > 0][:top]
    k = len(classes)
    return [(classes[i // k], classes[i % k], int(flat[i])) for i in order]


def classification_report(references, predictions, labels=None) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, with macro and weighted averages.

    An example whose prediction is not one of ``labels`` (an unparseable generation, say)
    still counts as a miss for its true class.

    Args:
        references: The true class of each example.
        predictions: The predicted class of each example.
        labels: The classes reported, in order (default: the sorted union of references and
            predictions, as scikit-learn does; classes only ever predicted then count in the
            macro average with F1 0, unlike ``macro_f1``, which averages over the classes of
            the references).

    Returns:
        A DataFrame indexed by class plus ``macro avg`` (unweighted mean over the rows above)
        and ``weighted avg`` (mean weighted by support), with columns ``precision``,
        ``recall``, ``f1`` and ``support``. A ratio with a zero denominator is 0.
    """
    classes, r, p = _labels_and_codes(references, predictions, labels)
    k = len(classes)
    tp = np.bincount(r[(r == p) & (r >= 0)], minlength=k).astype(float)
    support = np.bincount(r[r >= 0], minlength=k).astype(float)
    predicted = np.bincount(p[p >= 0], minlength=k).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    frame = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support},
                         index=pd.Index(classes, dtype=object))
    total = support.sum()
    weights = support / total if total else np.zeros(k)
    frame.loc["macro avg"] = [precision.mean() if k else 0.0, recall.mean() if k else 0.0,
                              f1.mean() if k else 0.0, total]
    frame.loc["weighted avg"] = [precision @ weights, recall @ weights, f1 @ weights, total]
    frame["support"] = frame["support"].astype(np.int64)
    return frame


IMBALANCE_RATIO = 3.0
"""Labels whose most frequent class has more than this many times the examples of the least frequent
one are imbalanced: accuracy then mostly measures the large classes (``imbalance_ratio``)."""


def majority_label(labels) -> str:
    """The most frequent label (ties: the first in sorted order): what the majority-class baseline predicts."""
    counts = Counter(str(x) for x in labels)
    if not counts:
        raise ValueError("No labels: an empty split has no majority class.")
    return min(counts, key=lambda c: (-counts[c], c))


def imbalance_ratio(labels) -> float:
    """Examples of the most frequent label over those of the least frequent one (1.0 when balanced or empty)."""
    counts = Counter(str(x) for x in labels).values()
    return max(counts) / min(counts) if counts else 1.0


def open_set_scores(references, predictions, out_of_scope: str) -> dict[str, float]:
    """How a classifier handles out-of-scope inputs (those whose reference is ``out_of_scope``).

    Args:
        references: The true label of each example.
        predictions: The predicted label of each example.
        out_of_scope: The out-of-scope label.

    Returns:
        ``in_scope_accuracy``: share of the in-scope examples given their label (one rejected as
        out-of-scope is wrong); ``oos_recall``: share of the out-of-scope examples predicted
        ``out_of_scope``; ``oos_precision``: share of the ``out_of_scope`` predictions that are
        out-of-scope; nan where there is nothing to divide by. ``in_scope`` and ``oos``: example counts.
    """
    classes, r, p = _labels_and_codes([str(x) for x in references], [str(x) for x in predictions],
                                      None)
    oos = classes.index(out_of_scope) if out_of_scope in classes else -2
    is_oos, said_oos = r == oos, p == oos
    ratio = lambda hit, total: float(hit / total) if total else float("nan")  # noqa: E731
    return {"in_scope_accuracy": ratio(((r == p) & ~is_oos).sum(), (~is_oos).sum()),
            "oos_recall": ratio((is_oos & said_oos).sum(), is_oos.sum()),
            "oos_precision": ratio((is_oos & said_oos).sum(), said_oos.sum()),
            "in_scope": int((~is_oos).sum()), "oos": int(is_oos.sum())}


def reject(probabilities, labels: Sequence[str], threshold: float, out_of_scope: str) -> list[str]:
    """Each row's most probable label, or ``out_of_scope`` when that probability is below ``threshold``.

    A model that has ``out_of_scope`` among its ``labels`` keeps predicting it; the threshold rejects
    its unsure in-scope predictions on top.
    """
    probs = np.asarray(probabilities, dtype=float)
    if probs.size == 0:
        return []
    best, top = probs.argmax(1), probs.max(1)
    return [out_of_scope if t < threshold else str(labels[i]) for i, t in zip(best, top)]


def fit_rejection_threshold(references, probabilities, labels: Sequence[str], out_of_scope: str) -> float:
    """The threshold of ``reject`` that best separates in-scope from out-of-scope examples of held-out data.

    The threshold maximises the mean of in-scope accuracy and out-of-scope recall
    (``open_set_scores``), so both count the same whatever the share of out-of-scope examples
    (macro-F1 would give out-of-scope the weight of one class among many, accuracy the weight of
    its share). Rejecting an in-scope example costs in-scope accuracy, so the balance is not won
    by rejecting everything. Candidates are 0 (reject nothing) and the midpoints between
    consecutive distinct top probabilities; ties go to the lowest.

    Args:
        references: True labels of the held-out examples (a validation split, never the test split).
        probabilities: Their class probabilities, one row per example, columns in ``labels`` order.
        labels: The model's classes (``out_of_scope`` may be one of them).
        out_of_scope: The out-of-scope label.

    Returns:
        The threshold on the top class probability.

    Raises:
        ValueError: when the references lack out-of-scope or in-scope examples (nothing to balance).
    """
    refs = np.array([str(x) for x in references], dtype=object)
    probs = np.asarray(probabilities, dtype=float)
    if probs.shape != (len(refs), len(labels)):
        raise ValueError(f"probabilities have shape {probs.shape}, expected ({len(refs)}, {len(labels)}): "
                         "one row per reference, one column per label.")
    is_oos = refs == out_of_scope
    if not is_oos.any() or is_oos.all():
        raise ValueError(f"the held-out examples need both {out_of_scope!r} and in-scope labels to fit a threshold "
                         f"({int(is_oos.sum())} of {len(refs)} are {out_of_scope!r}).")
    best = np.array([str(x) for x in labels], dtype=object)[probs.argmax(1)]
    top = probs.max(1)
    order = np.argsort(top, kind="stable")
    top, is_oos, best, refs = top[order], is_oos[order], best[order], refs[order]
    # Rejecting the j least confident examples: in-scope hits lost, out-of-scope examples caught.
    kept_right = (~is_oos & (best == refs)).astype(float)
    caught = (is_oos & (best != out_of_scope)).astype(float)
    lost, gained = np.concatenate([[0.0], np.cumsum(kept_right)]), np.concatenate([[0.0], np.cumsum(caught)])
    in_scope = (kept_right.sum() - lost) / (~is_oos).sum()
    recall = ((is_oos & (best == out_of_scope)).sum() + gained) / is_oos.sum()
    cuts = np.concatenate([[True], top[1:] > top[:-1], [False]])  # j rejected only where a threshold separates them
    score = np.where(cuts, (in_scope + recall) / 2, -np.inf)
    j = int(np.argmax(score))
    return 0.0 if j == 0 else float((top[j - 1] + top[j]) / 2)


# --------------------------------------------------------------------------- generation

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WORDS = re.compile(r"\w+")


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower-case, drop punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


@metric("exact_match", per_example=True)
def exact_match(reference: str, prediction: str) -> float:
    """1.0 when the normalised prediction equals the normalised reference (``normalize_answer``), else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


@metric("token_f1", per_example=True)
def token_f1(reference: str, prediction: str) -> float:
    """SQuAD's F1 over the bags of normalised tokens of the prediction and the reference.

    Args:
        reference: The expected answer.
        prediction: The model's answer.

    Returns:
        2PR/(P+R) where P is the share of prediction tokens found in the reference and R the
        share of reference tokens found in the prediction (counting repeats at most as often
        as they occur in both). When either side has no tokens after normalisation: 1.0 if
        both are empty, else 0.0.
    """
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE-L compares: maximal runs of word characters of the lower-cased text.

    Word characters are Unicode letters, digits and underscore (``\\w``); whitespace and
    punctuation only separate tokens and are dropped, so ``"Restart it, then log-in."``
    gives ``["restart", "it", "then", "log", "in"]``.
    """
    return _WORDS.findall(text.lower())


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Allison and Dix, 1986; Hyyrö, 2004): one big-integer update per token of
    ``b``, so long answers cost microseconds rather than a len(a) x len(b) table.
    """
    if not a or not b:
        return 0
    positions: dict = {}
    for i, tok in enumerate(a):
        positions[tok] = positions.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & positions.get(tok, 0)
        v = (v + u) | (v - u)
    return len(a) - (v & full).bit_count()


@metric("rouge_l", per_example=True)
def rouge_l(reference: str, prediction: str) -> float:
    """ROUGE-L F-measure: 2PR/(P+R) with P = LCS/len(prediction), R = LCS/len(reference).

    Args:
        reference: The expected answer.
        prediction: The model's answer.

    Returns:
        The F-measure (beta 1, as in Google's rouge-score) over ``rouge_tokens``; when either
        side has no tokens: 1.0 if both are empty, else 0.0.
    """
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(ref, pred)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=None)
def _sacrebleu(kind: str):
    """One scorer per kind, built once (sacrebleu's per-call helpers rebuild it every time)."""
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": lambda: BLEU(), "sentence_bleu": lambda: BLEU(effective_order=True),
            "chrf": lambda: CHRF()}[kind]()


def _pairs(references, predictions) -> tuple[list[str], list[str]]:
    refs, preds = list(references), list(predictions)
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions: one prediction per reference.")
    return ["" if x is None else str(x) for x in refs], ["" if x is None else str(x) for x in preds]


def bleu(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Corpus BLEU (0-100) from sacrebleu: 13a tokenizer, n-grams up to 4, exponential smoothing."""
    refs, preds = _pairs(references, predictions)
    return float(_sacrebleu("bleu").corpus_score(preds, [refs]).score)


def chrf(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Corpus chrF (0-100) from sacrebleu: character 6-grams, no word n-grams, beta 2."""
    refs, preds = _pairs(references, predictions)
    return float(_sacrebleu("chrf").corpus_score(preds, [refs]).score)


@metric("bleu", per_example=True, corpus=bleu)
def sentence_bleu(reference: str, prediction: str) -> float:
    """Sentence BLEU (0-100) from sacrebleu, with effective n-gram order and exponential smoothing."""
    return float(_sacrebleu("sentence_bleu").sentence_score(prediction, [reference]).score)


@metric("chrf", per_example=True, corpus=chrf)
def sentence_chrf(reference: str, prediction: str) -> float:
    """Sentence chrF (0-100) from sacrebleu."""
    return float(_sacrebleu("chrf").sentence_score(prediction, [reference]).score)


def _per_example_names(names: Sequence[str]) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    for n in names:
        if n not in PER_EXAMPLE:
            close = difflib.get_close_matches(n, list(PER_EXAMPLE), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            kind = " is a corpus metric, not a per-example one." if n in METRICS else " is not a metric."
            raise ValueError(f"{n!r}{kind}{hint} Per-example metrics: {', '.join(sorted(PER_EXAMPLE))}.")
    return names


def score_generations(references: Sequence[str], predictions: Sequence[str],
                      names: Sequence[str] = ("exact_match", "token_f1", "rouge_l", "bleu", "chrf")) -> pd.DataFrame:
    """Score every example with the named per-example metrics.

    Args:
        references: One reference answer per example (None counts as an empty string).
        predictions: One generated answer per example (None counts as an empty string).
        names: Registered per-example metrics (``PER_EXAMPLE``).

    Returns:
        One row per example (in input order) and one column per metric, in ``names`` order.

    Raises:
        ValueError: For a name that is not a per-example metric, or lengths that differ.
    """
    names = _per_example_names(names)
    refs, preds = _pairs(references, predictions)
    columns = {n: np.fromiter((METRICS[n](r, p) for r, p in zip(refs, preds)), dtype=float, count=len(refs))
               for n in names}
    return pd.DataFrame(columns, columns=names)


def score_corpus(references: Sequence[str], predictions: Sequence[str],
                 names: Sequence[str] = ("exact_match", "token_f1", "rouge_l", "bleu", "chrf")) -> dict[str, float]:
    """Corpus value of each named per-example metric.

    Args:
        references: One reference answer per example.
        predictions: One generated answer per example.
        names: Registered per-example metrics (``PER_EXAMPLE``).

    Returns:
        ``{name: value}``: the registered corpus function's value (corpus BLEU and chrF), or the
        mean of the per-example scores (0.0 for no examples).
    """
    names = _per_example_names(names)
    refs, preds = _pairs(references, predictions)
    out = {}
    for n in names:
        corpus = PER_EXAMPLE[n]
        if corpus is not None:
            out[n] = float(corpus(refs, preds))
        else:
            out[n] = float(np.mean([METRICS[n](r, p) for r, p in zip(refs, preds)])) if refs else 0.0
    return out


@dataclass(frozen=True)
class AnswerLengths:
    """How long answers are, in words (whitespace-separated) or tokens."""

    n: int
    mean: float
    median: float
    p90: float
    min: int
    max: int
    empty: int
    """Answers with no words or tokens."""
    length_ratio: float | None
    """Total answer length over total reference length (BLEU's ratio); None without references
    or when the references are all empty."""
    unit: str
    """``words`` or ``tokens``."""


def answer_length(answers: Sequence[str], references: Sequence[str] | None = None, tokenizer=None) -> AnswerLengths:
    """Length statistics of generated answers.

    Args:
        answers: The answers (None counts as empty).
        references: Optional reference answers, for the length ratio.
        tokenizer: Count tokens with this tokenizer (no special tokens) instead of words.

    Returns:
        The statistics; all zero for no answers.
    """

    def lengths(texts) -> np.ndarray:
        texts = ["" if t is None else str(t) for t in texts]
        if tokenizer is not None:
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
            return np.array([len(x) for x in ids], dtype=np.int64)
        return np.array([len(t.split()) for t in texts], dtype=np.int64)

    a = lengths(answers)
    ratio = None
    if references is not None:
        r = lengths(references)
        if len(r) != len(a):
            raise ValueError(f"{len(r)} references but {len(a)} answers: one answer per reference.")
        ratio = float(a.sum() / r.sum()) if r.sum() else None
    unit = "tokens" if tokenizer is not None else "words"
    if not len(a):
        return AnswerLengths(0, 0.0, 0.0, 0.0, 0, 0, 0, ratio, unit)
    return AnswerLengths(n=len(a), mean=float(a.mean()), median=float(np.median(a)),
                         p90=float(np.percentile(a, 90)), min=int(a.min()), max=int(a.max()),
                         empty=int((a == 0).sum()), length_ratio=ratio, unit=unit)


#: The kinds of degenerate answer ``degeneracy`` tells apart, in the order it checks them, with the
#: words reports use for them.
DEGENERATE_KINDS = {"empty": "empty", "echo": "prompt echoed", "repetition": "repeated n-grams"}


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def degeneracy(answer: str | None, prompt: str = "", n: int = 3, repeated_share: float = 0.5,
               echo_share: float = 0.8) -> str:
    """Why a generated answer is degenerate, or ``""`` when it is not.

    The words compared are ``rouge_tokens`` (lower-cased runs of word characters).

    - ``empty``: no words at all (nothing, whitespace and newlines, or punctuation only).
    - ``echo``: the answer repeats the prompt: their longest common word sequence is at least
      ``echo_share`` of the answer and at least half of the prompt.
    - ``repetition``: the answer loops: of its word ``n``-grams (at least four of them), at
      least ``repeated_share`` are repeats of an ``n``-gram seen earlier in it (natural text
      rarely repeats a 3-gram; a model stuck in a loop repeats little else).

    Args:
        answer: The generated answer (None counts as empty).
        prompt: What the model was asked (the user's text), for the echo check; empty to skip it.
        n: The n-gram length of the repetition check.
        repeated_share: Share of repeated n-grams from which an answer counts as a loop.
        echo_share: Share of the answer that, copied from the prompt, makes it an echo.

    Returns:
        ``"empty"``, ``"echo"``, ``"repetition"`` (see ``DEGENERATE_KINDS``) or ``""``.
    """
    words = rouge_tokens(answer or "")
    if not words:
        return "empty"
    asked = rouge_tokens(prompt or "")
    if asked:
        common = lcs_length(asked, words)
        if common >= echo_share * len(words) and common >= 0.5 * len(asked):
            return "echo"
    grams = _ngrams(words, n)
    if len(grams) >= 4 and 1 - len(set(grams)) / len(grams) >= repeated_share:
        return "repetition"
    return ""


def degeneracy_counts(answers: Sequence[str], prompts: Sequence[str] | None = None, **kwargs) -> dict[str, int]:
    """How many answers are degenerate, in all (``degenerate``) and by kind (``degenerate_<kind>``).

    Args:
        answers: The generated answers.
        prompts: What each answer was asked (for the echo check); None to skip that check.
        **kwargs: Thresholds of ``degeneracy``.
    """
    prompts = list(prompts) if prompts is not None else [""] * len(answers)
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers: one prompt per answer.")
    kinds = [degeneracy(a, p, **kwargs) for a, p in zip(answers, prompts)]
    return {"degenerate": sum(bool(k) for k in kinds), **{f"degenerate_{k}": kinds.count(k) for k in DEGENERATE_KINDS}}


def degeneracy_note(counts: dict, total: int | None = None) -> str:
    """A short phrase for ``degeneracy_counts`` (or a metrics row holding them), ``""`` when there are none.

    ``"6 of 8 answers degenerate (4 empty, 2 repeated n-grams)"``.
    """
    flagged = int(counts.get("degenerate") or 0)
    if not flagged:
        return ""
    kinds = ", ".join(f"{int(counts[f'degenerate_{k}'])} {words}" for k, words in DEGENERATE_KINDS.items()
                      if counts.get(f"degenerate_{k}"))
    of = f" of {int(total)}" if total else ""
    return f"{flagged}{of} answer{'s' if (total or flagged) != 1 else ''} degenerate" + (f" ({kinds})" if kinds else "")


# --------------------------------------------------------------------------- perplexity


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields have no single truth value
class ReferencePerplexity:
    """Negative log-likelihood of reference answers given their prompts."""

    nll: np.ndarray
    """Per example: the sum over scored tokens of -log p(token | everything before it), in nats."""
    tokens: np.ndarray
    """Per example: how many tokens were scored (the reference's tokens and the EOS)."""
    truncated: np.ndarray
    """Per example: True when the start of the text was dropped to fit ``max_length``."""
    perplexity: float
    """exp(total nll / total tokens) over all examples (nan when no token was scored)."""

    def table(self) -> pd.DataFrame:
        """One row per example: nll, tokens, perplexity (exp(nll/tokens); nan with no tokens), truncated."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ppl = np.exp(np.where(self.tokens > 0, self.nll / np.maximum(self.tokens, 1), np.nan))
        return pd.DataFrame({"nll": self.nll, "tokens": self.tokens, "perplexity": ppl, "truncated": self.truncated})


def _reference_ids(tokenizer, prompt: str, reference: str, add_special_tokens: bool,
                   max_length: int | None) -> tuple[list[int], list[bool], bool]:
    """Token ids of prompt + reference + EOS, which of them are scored, and whether it was truncated."""
    text = prompt + reference
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    start, end = len(prompt), len(text)
    # A token belongs to the reference when its characters overlap it (one that straddles the
    # boundary counts, as in the training masks of workbench.tokens); specials have empty offsets.
    scored = [e > s and s < end and e > start for s, e in enc["offset_mapping"]]
    ids.append(tokenizer.eos_token_id)
    scored.append(True)
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, scored = ids[-max_length:], scored[-max_length:]
    return ids, scored, truncated


def perplexity_of_references(model, tokenizer, prompts: Sequence[str], references: Sequence[str],
                             batch_size: int = 8, device=None, max_length: int | None = None, *,
                             add_special_tokens: bool = False) -> ReferencePerplexity:
    """Perplexity of each reference answer given its prompt, under a causal language model.

    Each example is the text ``prompt + reference`` (the reference appended directly, with no
    separator added) followed by the tokenizer's EOS token id, tokenized in one pass. The loss
    is taken on the reference's tokens and the EOS only; prompt tokens are context. A token
    that straddles the prompt/reference boundary counts as a reference token. The first token
    of a sequence has nothing before it and is never scored.

    Args:
        model: A Hugging Face causal LM (``model(input_ids, attention_mask).logits``), already on
            its device; it is put in eval mode for the call and restored afterwards.
        tokenizer: Its fast tokenizer (character offsets are used); needs an EOS token.
        prompts: The prompts exactly as the model sees them, already formatted by the caller
            (e.g. ``apply_chat_template(..., add_generation_prompt=True)``).
        references: The reference answers, one per prompt.
        batch_size: Examples per forward pass (they are grouped by length to limit padding).
        device: Where inputs go; default the device of the model's first parameter.
        max_length: Longest sequence fed to the model. Longer examples lose their *first*
            tokens (the start of the prompt), so the reference keeps as much context as fits;
            reference tokens cut this way are not scored.
        add_special_tokens: Let the tokenizer add its specials (BOS) in front. Off by default,
            because chat templates write them into the prompt text already.

    Returns:
        Per-example NLL sums and token counts, and the corpus perplexity.
    """
    import torch

    prompts, references = list(prompts), list(references)
    if len(prompts) != len(references):
        raise ValueError(f"{len(prompts)} prompts but {len(references)} references: one reference per prompt.")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("perplexity_of_references needs a fast tokenizer (offsets locate the reference tokens).")
    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has no EOS token; the reference is scored followed by EOS.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be at least 2 (a token and one to predict), not {max_length}.")

    encoded = [_reference_ids(tokenizer, p, r, add_special_tokens, max_length) for p, r in zip(prompts, references)]
    n = len(encoded)
    nll, counts = np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int64)
    truncated = np.array([e[2] for e in encoded], dtype=bool)
    if device is None:
        device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(n), key=lambda i: -len(encoded[i][0]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b in range(0, n, batch_size):
                rows = order[b:b + batch_size]
                width = max(len(encoded[i][0]) for i in rows)
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                attention = torch.zeros((len(rows), width), dtype=torch.long)
                scored = torch.zeros((len(rows), width), dtype=torch.bool)
                for j, i in enumerate(rows):  # right padding: real tokens keep positions 0..len-1
                    tok, mask, _ = encoded[i]
                    ids[j, :len(tok)] = torch.tensor(tok)
                    attention[j, :len(tok)] = 1
                    scored[j, :len(tok)] = torch.tensor(mask)
                logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
                target = scored[:, 1:].to(logits.device)  # logits at t predict token t + 1
                which = target.nonzero()[:, 0]
                # Only the scored positions go to float32, so memory stays O(scored tokens x vocab).
                token_nll = torch.nn.functional.cross_entropy(
                    logits[:, :-1][target].float(), ids[:, 1:].to(logits.device)[target], reduction="none")
                sums = torch.zeros(len(rows), dtype=torch.float64, device=logits.device)
                sums.index_add_(0, which, token_nll.double())
                per_row = target.sum(dim=1)
                for j, i in enumerate(rows):
                    nll[i], counts[i] = float(sums[j]), int(per_row[j])
    finally:
        model.train(was_training)
    total = counts.sum()
    ppl = math.exp(nll.sum() / total) if total else float("nan")
    return ReferencePerplexity(nll=nll, tokens=counts, truncated=truncated, perplexity=ppl)


# --------------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of the difference of mean scores between system b and system a."""

    mean_a: float
    mean_b: float
    difference: float
    """mean_b - mean_a on the data as given."""
    ci_low: float
    ci_high: float
    """Percentile interval of the resampled difference at the requested confidence."""
    p_value: float
    """Two-sided: twice the share of resamples whose difference is zero or of the other sign
    than ``difference`` (capped at 1); 1.0 when the observed difference is 0."""
    n: int
    """Examples compared."""


def _paired(scores_a, scores_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(scores_a, dtype=float).ravel(), np.asarray(scores_b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{a.size} scores for a but {b.size} for b: scores must be paired, one per example each.")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("Scores contain NaN; drop or fill those examples in both systems first.")
    return a, b


def paired_bootstrap(scores_a, scores_b, n_resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> BootstrapResult:
    """Is system b better than system a on the same examples? A paired bootstrap of the mean difference.

    Examples are resampled with replacement, the same draw for both systems, ``n_resamples``
    times; the differences of means give a percentile confidence interval and a p-value.
    Vectorised: a resample is one row of an index matrix, drawn and averaged in chunks of rows
    (3,080 examples x 2,000 resamples take tens of milliseconds).

    Args:
        scores_a: Per-example scores of system a (the baseline).
        scores_b: Per-example scores of system b, paired with ``scores_a``.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the numpy generator, for reproducible intervals.
        confidence: Coverage of the interval, in (0, 1).

    Returns:
        The means, their difference (b - a), the interval and the two-sided p-value.
    """
    a, b = _paired(scores_a, scores_b)
    if a.size == 0:
        raise ValueError("No scores to compare.")
    d = b - a
    return _bootstrap(lambda idx: d[idx].mean(axis=1), a.size, float(a.mean()), float(b.mean()),
                      n_resamples, seed, confidence)


def _bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n: int, value_a: float, value_b: float,
               n_resamples: int, seed: int, confidence: float) -> BootstrapResult:
    """The one bootstrap of this module: ``statistic`` (b's value minus a's) of ``n_resamples`` resamples of ``n``
    examples, drawn with replacement. ``statistic`` gets an index matrix, one resample per row, and returns one
    difference per row; rows are drawn in chunks, so memory stays bounded."""
    if n == 0:
        raise ValueError("No scores to compare.")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), not {confidence}.")
    observed = value_b - value_a
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 500_000 // n)  # ~4 MB of indices per chunk: cache-friendly, and memory stays bounded
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        means[start:stop] = statistic(rng.integers(0, n, size=(stop - start, n)))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    if observed > 0:
        p = 2 * float((means <= 0).mean())
    elif observed < 0:
        p = 2 * float((means >= 0).mean())
    else:
        p = 1.0
    return BootstrapResult(mean_a=value_a, mean_b=value_b, difference=observed,
                           ci_low=float(low), ci_high=float(high), p_value=min(1.0, p), n=n)


def _macro_f1_rows(r: np.ndarray, p: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of ``idx`` (a resample of example indices), from class codes ``r`` (true) and ``p``
    (predicted) in range(k); F1 = 2TP / (support + predicted), averaged over the classes present in the row."""
    rows = idx.shape[0]
    offset = (np.arange(rows) * k)[:, None]
    rr, pp = r[idx] + offset, p[idx] + offset
    size = rows * k
    support = np.bincount(rr.ravel(), minlength=size).reshape(rows, k)
    predicted = np.bincount(pp.ravel(), minlength=size).reshape(rows, k)
    tp = np.bincount(rr[rr == pp], minlength=size).reshape(rows, k)
    present = support > 0
    f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return f1.sum(1) / np.maximum(present.sum(1), 1)


def bootstrap_macro_f1(references, predictions, baseline=None, n_resamples: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> BootstrapResult:
    """Macro-F1 with a bootstrap interval, or with ``baseline`` the paired bootstrap of a macro-F1 difference.

    The resampling is ``paired_bootstrap``'s (same draws for the same seed and size); each resample's
    macro-F1 averages over the classes present in its references, as ``macro_f1`` does.

    Args:
        references: The true class of each example.
        predictions: The predicted class of each example (system b).
        baseline: Another system's predictions of the same examples (system a); None for b's interval alone.
        n_resamples, seed, confidence: As in ``paired_bootstrap``.

    Returns:
        ``mean_b``: b's macro-F1; ``mean_a``: the baseline's (0 without one); ``difference`` (b - a), its
        interval and p-value (without a baseline, the interval is that of b's macro-F1).
    """
    refs, preds = [str(x) for x in references], [str(x) for x in predictions]
    base = None if baseline is None else [str(x) for x in baseline]
    classes = sorted(set(refs) | set(preds) | set(base or []))
    _, r, p = _labels_and_codes(refs, preds, classes)
    k = len(classes)
    b_value = macro_f1(refs, preds) if refs else 0.0
    if base is None:
        return _bootstrap(lambda idx: _macro_f1_rows(r, p, k, idx), len(refs), 0.0, b_value,
                          n_resamples, seed, confidence)
    _, _, q = _labels_and_codes(refs, base, classes)
    return _bootstrap(lambda idx: _macro_f1_rows(r, p, k, idx) - _macro_f1_rows(r, q, k, idx), len(refs),
                      macro_f1(refs, base) if refs else 0.0, b_value, n_resamples, seed, confidence)


def class_recall_differences(references, predictions_a, predictions_b, labels=None, n_resamples: int = 2000,
                             seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Per class, the recall of system b against system a on the same examples, with a paired bootstrap.

    A class's recall is the share of its examples predicted right, so its difference is
    ``paired_bootstrap`` of the two systems' correctness on that class's examples (resampled within
    the class, whose support stays fixed).

    Args:
        references: The true class of each example.
        predictions_a, predictions_b: Each system's predictions, paired with ``references``.
        labels: The classes tested (default: those of the references, sorted); classes without examples are skipped.
        n_resamples, seed, confidence: As in ``paired_bootstrap``.

    Returns:
        One row per class: ``class``, ``support``, ``recall_a``, ``recall_b``, ``difference`` (b - a),
        ``ci_low``, ``ci_high``, ``p_value`` and ``significant`` (the interval excludes 0).
    """
    r = np.array([str(x) for x in references], dtype=object)
    if not len(r) == len(predictions_a) == len(predictions_b):
        raise ValueError(f"{len(r)} references but {len(predictions_a)} and {len(predictions_b)} predictions: "
                         "one prediction per reference from each system.")
    a = np.array([str(x) for x in predictions_a], dtype=object) == r
    b = np.array([str(x) for x in predictions_b], dtype=object) == r
    rows = []
    for c in (sorted(set(r.tolist())) if labels is None else [str(x) for x in labels]):
        mine = r == c
        if not mine.any():
            continue
        res = paired_bootstrap(a[mine], b[mine], n_resamples=n_resamples, seed=seed, confidence=confidence)
        rows.append({"class": c, "support": int(mine.sum()), "recall_a": res.mean_a, "recall_b": res.mean_b,
                     "difference": res.difference, "ci_low": res.ci_low, "ci_high": res.ci_high,
                     "p_value": res.p_value, "significant": bool(res.ci_low > 0 or res.ci_high < 0)})
    return pd.DataFrame(rows, columns=["class", "support", "recall_a", "recall_b", "difference", "ci_low", "ci_high",
                                       "p_value", "significant"])


def format_p(p: float, n_resamples: int) -> str:
    """A bootstrap p-value as text: ``p=0.064``, or ``p < 0.001`` when no resample crossed zero
    (the smallest p that ``n_resamples`` can show is 2/``n_resamples``; "p=0" would claim certainty)."""
    if p != p:
        return "p=n/a"
    floor = 2 / max(1, n_resamples)
    return f"p < {floor:.2g}" if p < floor else f"p={p:.3g}"


def win_tie_loss(scores_a, scores_b, tie: float = 1e-9) -> tuple[int, int, int]:
    """How often b beats a, ties with it, and loses to it, example by example.

    Args:
        scores_a: Per-example scores of system a.
        scores_b: Per-example scores of system b, paired with ``scores_a``.
        tie: Differences with absolute value at most this count as ties.

    Returns:
        ``(wins, ties, losses)`` from b's point of view; they sum to the number of examples.
    """
    a, b = _paired(scores_a, scores_b)
    d = b - a
    wins, losses = int((d > tie).sum()), int((d < -tie).sum())
    return wins, d.size - wins - losses, losses
