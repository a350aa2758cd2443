"""Metrics against values worked out by hand (and sacrebleu / scikit-learn where they are the reference)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tiny import word_tokenizer
from workbench import metrics as M

# --------------------------------------------------------------------------- classification

# cat x4, dog x2, bird x1. By hand, rows = true, columns = predicted (cat, dog, bird):
#   cat  -> cat, dog, dog, cat   : [2, 2, 0]
#   dog  -> dog, bird            : [0, 1, 1]
#   bird -> cat                  : [1, 0, 0]
REFS = ["cat", "cat", "cat", "cat", "dog", "dog", "bird"]
PREDS = ["cat", "dog", "dog", "cat", "dog", "bird", "cat"]
LABELS = ["cat", "dog", "bird"]


def test_accuracy_and_macro_f1_keep_their_behaviour():
    assert M.accuracy(REFS, PREDS) == pytest.approx(3 / 7)
    assert M.accuracy([], []) == 0.0
    # F1 per class as in the report test below: cat 4/7, dog 2/5, bird 0.
    assert M.macro_f1(REFS, PREDS) == pytest.approx((4 / 7 + 2 / 5 + 0) / 3)
    assert M.per_class(REFS, PREDS, LABELS)["cat"] == pytest.approx(
        {"precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "support": 4})


def test_confusion_matrix_3x3_by_hand():
    m = M.confusion_matrix(REFS, PREDS, LABELS)
    assert m.tolist() == [[2, 2, 0], [0, 1, 1], [1, 0, 0]]
    assert m.sum() == len(REFS)
    # Default labels: sorted union, so bird, cat, dog.
    assert M.confusion_matrix(REFS, PREDS).tolist() == [[0, 1, 0], [0, 2, 2], [1, 0, 1]]
    # A prediction outside the labels is left out of the matrix.
    assert M.confusion_matrix(["a", "a"], ["a", "junk"], ["a"]).tolist() == [[1]]


def test_most_confused_orders_by_count_then_label_order():
    assert M.most_confused(REFS, PREDS, LABELS) == [("cat", "dog", 2), ("dog", "bird", 1), ("bird", "cat", 1)]
    assert M.most_confused(REFS, PREDS, LABELS, top=1) == [("cat", "dog", 2)]
    assert M.most_confused(["a", "b"], ["a", "b"], top=5) == []


def test_classification_report_by_hand():
    report = M.classification_report(REFS, PREDS, LABELS)
    assert list(report.index) == LABELS + ["macro avg", "weighted avg"]
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    # cat: predicted 3 times (2 right) -> P 2/3; 4 true, 2 found -> R 1/2; F1 = 2(1/3)/(7/6) = 4/7.
    # dog: predicted 3 times (1 right) -> P 1/3; R 1/2; F1 = 2(1/6)/(5/6) = 2/5.  bird: all 0.
    assert report.loc["cat", ["precision", "recall", "f1"]].tolist() == pytest.approx([2 / 3, 1 / 2, 4 / 7])
    assert report.loc["dog", ["precision", "recall", "f1"]].tolist() == pytest.approx([1 / 3, 1 / 2, 2 / 5])
    assert report.loc["bird", ["precision", "recall", "f1"]].tolist() == [0.0, 0.0, 0.0]
    assert report["support"].tolist() == [4, 2, 1, 7, 7]
    assert report.loc["macro avg", "f1"] == pytest.approx((4 / 7 + 2 / 5) / 3)
    assert report.loc["weighted avg", "f1"] == pytest.approx((4 * 4 / 7 + 2 * 2 / 5) / 7)
    assert report.loc["weighted avg", "recall"] == pytest.approx(M.accuracy(REFS, PREDS))


def test_classification_report_matches_scikit_learn():
    from sklearn.metrics import classification_report as sk_report

    rng = np.random.default_rng(0)
    refs = rng.choice(["a", "b", "c", "d"], 200).tolist()
    preds = [r if rng.random() < 0.6 else rng.choice(["a", "b", "c", "d"]) for r in refs]
    ours = M.classification_report(refs, preds)
    sk = sk_report(refs, preds, output_dict=True, zero_division=0)
    for row in ["a", "b", "c", "d", "macro avg", "weighted avg"]:
        assert ours.loc[row, "precision"] == pytest.approx(sk[row]["precision"])
        assert ours.loc[row, "recall"] == pytest.approx(sk[row]["recall"])
        assert ours.loc[row, "f1"] == pytest.approx(sk[row]["f1-score"])


def test_prediction_outside_labels_is_still_a_miss():
    # "junk" is not a label: the true "a" was missed, so recall of a is 1/2, precision 1/1.
    report = M.classification_report(["a", "a", "b"], ["a", "junk", "b"], ["a", "b"])
    assert report.loc["a", ["precision", "recall"]].tolist() == [1.0, 0.5]


# --------------------------------------------------------------------------- exact match, token F1


@pytest.mark.parametrize("reference, prediction, expected", [
    ("The Eiffel Tower", "eiffel tower!", 1.0),       # case, article and punctuation ignored
    ("  an   apple ", "Apple.", 1.0),
    ("Paris", "Paris, France", 0.0),
    ("", "the", 1.0),                                 # both normalise to nothing
    ("42", "", 0.0),
])
def test_exact_match(reference, prediction, expected):
    assert M.exact_match(reference, prediction) == expected


def test_token_f1_by_hand():
    # ref -> "quick brown fox jumps" (4 tokens); pred -> "quick brown fox sleeps today" (5 tokens).
    # Overlap 3: P = 3/5, R = 3/4, F1 = 2 * (9/20) / (27/20) = 2/3.
    assert M.token_f1("The quick brown fox jumps", "a quick brown fox sleeps today") == pytest.approx(2 / 3)
    # Repeats are clipped: ref {go: 2, stop: 1}, pred {go: 3} -> overlap 2, P = R = 2/3.
    assert M.token_f1("go go stop", "go go go") == pytest.approx(2 / 3)
    assert M.token_f1("yes", "no") == 0.0
    assert M.token_f1("", "") == 1.0
    assert M.token_f1("answer", "") == 0.0


# --------------------------------------------------------------------------- ROUGE-L


def _lcs_table(a, b) -> int:
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            t[i + 1][j + 1] = t[i][j] + 1 if x == y else max(t[i][j + 1], t[i + 1][j])
    return t[-1][-1]


def test_rouge_tokens_split_on_whitespace_and_punctuation():
    assert M.rouge_tokens("Restart it, then LOG-in.") == ["restart", "it", "then", "log", "in"]
    assert M.rouge_tokens(" ,.! ") == []


def test_rouge_l_lin_2004_examples():
    # Lin (2004), section 3.1: reference "police killed the gunman".
    # "police kill the gunman": LCS = police, the, gunman = 3 -> P = R = 3/4 -> F = 3/4.
    assert M.rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(3 / 4)
    # "the gunman kill police": LCS = the, gunman = 2 -> P = R = 1/2 -> F = 1/2.
    assert M.rouge_l("police killed the gunman", "the gunman kill police") == pytest.approx(1 / 2)
    # Unequal lengths: "Police killed him." -> LCS = police, killed = 2; P = 2/3, R = 2/4;
    # F = 2 (1/3) / (7/6) = 4/7.
    assert M.rouge_l("police killed the gunman", "Police killed him.") == pytest.approx(4 / 7)
    assert M.rouge_l("same words", "Same, words!") == 1.0
    assert M.rouge_l("", "") == 1.0 and M.rouge_l("x", "") == 0.0


def test_lcs_length_agrees_with_the_dynamic_programming_table():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 40))]
        assert M.lcs_length(a, b) == _lcs_table(a, b)
    long = [str(i % 7) for i in range(300)]
    assert M.lcs_length(long, long[::-1]) == _lcs_table(long, long[::-1])


# --------------------------------------------------------------------------- BLEU and chrF

CORPUS_REFS = ["The printer on floor 2 is out of toner.",
               "Restart the VPN client and sign in again.",
               "Your password expires in 5 days."]
CORPUS_PREDS = ["The printer on the second floor has no toner.",
                "Please restart the VPN client, then sign in again.",
                "Password expires in five days."]


def test_bleu_and_chrf_match_sacrebleu():
    import sacrebleu

    assert M.bleu(CORPUS_REFS, CORPUS_PREDS) == pytest.approx(
        sacrebleu.corpus_bleu(CORPUS_PREDS, [CORPUS_REFS]).score)
    assert M.chrf(CORPUS_REFS, CORPUS_PREDS) == pytest.approx(
        sacrebleu.corpus_chrf(CORPUS_PREDS, [CORPUS_REFS]).score)
    for r, p in zip(CORPUS_REFS, CORPUS_PREDS):
        assert M.sentence_bleu(r, p) == pytest.approx(sacrebleu.sentence_bleu(p, [r]).score)
        assert M.sentence_chrf(r, p) == pytest.approx(sacrebleu.sentence_chrf(p, [r]).score)
    # Corpus BLEU pools n-gram counts: it is not the mean of sentence BLEU.
    mean_sentence = np.mean([M.sentence_bleu(r, p) for r, p in zip(CORPUS_REFS, CORPUS_PREDS)])
    assert abs(M.bleu(CORPUS_REFS, CORPUS_PREDS) - mean_sentence) > 0.1


def test_bleu_by_hand():
    # ref "the cat sat on the mat", hyp "the cat sat on a mat" (6 words each, BP = 1):
    # 1-grams 5/6, 2-grams 3/5 (the cat, cat sat, sat on), 3-grams 2/4, 4-grams 1/3.
    # BLEU = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = (1/12) ** (1/4).
    assert M.bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(100 * (1 / 12) ** 0.25)
    assert M.sentence_bleu("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(100 * (1 / 12) ** 0.25)
    # Brevity penalty: every n-gram of "the cat sat on" matches, but c = 4 < r = 6: BP = exp(1 - 6/4).
    assert M.bleu(["the cat sat on the mat"], ["the cat sat on"]) == pytest.approx(100 * math.exp(-0.5))
    assert M.bleu(["reset the router and wait"], ["reset the router and wait"]) == pytest.approx(100.0)


def test_bleu_papineni_modified_precision_textbook_case():
    # Papineni et al. (2002), 2.1: candidate "the the the the the the the", reference "the cat is on
    # the mat": clipped unigram precision 2/7. No n-gram of order 2-4 matches; sacrebleu's default
    # "exp" smoothing replaces the k-th such zero by 1/2^k over the n-gram total: 1/(2*6), 1/(4*5),
    # 1/(8*4). Hypothesis longer than reference: BP = 1.
    expected = 100 * (2 / 7 * 1 / 12 * 1 / 20 * 1 / 32) ** 0.25
    assert M.bleu(["the cat is on the mat"], ["the the the the the the the"]) == pytest.approx(expected)


def test_chrf_extremes():
    assert M.chrf(["reset the router"], ["reset the router"]) == pytest.approx(100.0)
    assert M.sentence_chrf("abc", "xyz") == 0.0


# --------------------------------------------------------------------------- registry and tables


def test_generation_metrics_are_registered_per_example():
    assert {"exact_match", "token_f1", "rouge_l", "bleu", "chrf"} <= set(M.PER_EXAMPLE)
    assert M.METRICS["bleu"] is M.sentence_bleu and M.METRICS["rouge_l"] is M.rouge_l
    assert "accuracy" in M.METRICS and "accuracy" not in M.PER_EXAMPLE


def test_score_generations_one_row_per_example_one_column_per_metric():
    table = M.score_generations(CORPUS_REFS, CORPUS_PREDS, ["rouge_l", "exact_match", "bleu"])
    assert list(table.columns) == ["rouge_l", "exact_match", "bleu"]
    assert len(table) == 3
    assert table["rouge_l"].tolist() == pytest.approx([M.rouge_l(r, p) for r, p in zip(CORPUS_REFS, CORPUS_PREDS)])
    assert table["exact_match"].tolist() == [0.0, 0.0, 0.0]
    assert table.loc[2, "bleu"] == pytest.approx(M.sentence_bleu(CORPUS_REFS[2], CORPUS_PREDS[2]))
    # SQuAD-style and ROUGE-L normalise case and punctuation; BLEU and chrF (sacrebleu defaults) do not.
    full = M.score_generations(["The VPN is down."], ["the vpn is down"])
    assert full.iloc[0].to_dict() == pytest.approx(
        {"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0,
         "bleu": M.sentence_bleu("The VPN is down.", "the vpn is down"),
         "chrf": M.sentence_chrf("The VPN is down.", "the vpn is down")})
    assert full.loc[0, "bleu"] < 100 and full.loc[0, "chrf"] < 100


def test_score_generations_refuses_unknown_and_corpus_metrics():
    with pytest.raises(ValueError, match="Did you mean 'rouge_l'"):
        M.score_generations(["a"], ["a"], ["rougel"])
    with pytest.raises(ValueError, match="corpus metric"):
        M.score_generations(["a"], ["a"], ["accuracy"])
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        M.score_generations(["a", "b"], ["a"], ["exact_match"])


def test_score_corpus_uses_corpus_bleu_and_means_elsewhere():
    scores = M.score_corpus(CORPUS_REFS, CORPUS_PREDS, ["token_f1", "bleu", "chrf"])
    per = M.score_generations(CORPUS_REFS, CORPUS_PREDS, ["token_f1"])
    assert scores["token_f1"] == pytest.approx(per["token_f1"].mean())
    assert scores["bleu"] == pytest.approx(M.bleu(CORPUS_REFS, CORPUS_PREDS))
    assert scores["chrf"] == pytest.approx(M.chrf(CORPUS_REFS, CORPUS_PREDS))


def test_answer_length_by_hand():
    # Words: 3, 0, 1, 4 -> mean 2, median 2, min 0, max 4, one empty; references 2+1+3+2 = 8 words.
    stats = M.answer_length(["a b c", "", "d", "e f g h"], ["x y", "z", "u v w", "s t"])
    assert (stats.n, stats.mean, stats.median, stats.min, stats.max, stats.empty) == (4, 2.0, 2.0, 0, 4, 1)
    assert stats.length_ratio == pytest.approx(8 / 8)
    assert stats.p90 == pytest.approx(np.percentile([3, 0, 1, 4], 90))
    assert stats.unit == "words" and M.answer_length(["a"]).length_ratio is None
    tok = word_tokenizer(["reset", "the", "router", "."])
    assert M.answer_length(["reset the router ."], tokenizer=tok).mean == 4.0


PROMPT = "My VPN keeps dropping every few minutes"


@pytest.mark.parametrize("answer, prompt, kind", [
    ("", PROMPT, "empty"),
    ("\n\n  \n", PROMPT, "empty"),                            # what a random model writes greedily
    ("... !!", PROMPT, "empty"),                                # punctuation only: no words
    (None, PROMPT, "empty"),
    ("Restart the VPN client, then sign in again.", PROMPT, ""),
    ("Restart the VPN", "My VPN drops, should I restart the VPN?", ""),  # short, shares words, no echo
    ("1. Open Settings. 2. Open Network settings. 3. Open the VPN tab and reconnect.", PROMPT, ""),
    (PROMPT, PROMPT, "echo"),
    (PROMPT + " ok", PROMPT, "echo"),                            # 7 of 8 words copied in order
    ("You say your VPN keeps dropping every few minutes. Update the client, check the Wi-Fi signal, and call "
     "the desk on 4400 if it still drops after a restart.", PROMPT, ""),  # quotes the question, then answers
    ("the the the the the the", "", "repetition"),
    ("Open settings and click reset. " * 4, PROMPT, "repetition"),        # a 5-word loop, four times
    ("my vpn keeps dropping " * 5, PROMPT, "repetition"),                 # the prompt's start, looping
    ("reset reset reset", "", ""),                                        # too short to call a loop
])
def test_degeneracy_flags_empty_looping_and_echoed_answers(answer, prompt, kind):
    assert M.degeneracy(answer, prompt) == kind


def test_degeneracy_counts_and_note():
    answers = ["", "\n", "the the the the the the", PROMPT, "Restart the VPN client."]
    counts = M.degeneracy_counts(answers, [PROMPT] * 5)
    assert counts == {"degenerate": 4, "degenerate_empty": 2, "degenerate_echo": 1, "degenerate_repetition": 1}
    assert M.degeneracy_note(counts, 5) == "4 of 5 answers degenerate (2 empty, 1 prompt echoed, 1 repeated n-grams)"
    assert M.degeneracy_counts([PROMPT])["degenerate"] == 0     # without prompts there is no echo to see
    assert M.degeneracy_note(M.degeneracy_counts(["fine answer here"], ["q"]), 1) == ""
    with pytest.raises(ValueError, match="one prompt per answer"):
        M.degeneracy_counts(["a"], ["b", "c"])


# --------------------------------------------------------------------------- paired comparison


def test_bootstrap_of_constant_differences_has_zero_width():
    a = np.linspace(0, 1, 50)
    b = a + 0.25
    r = M.paired_bootstrap(a, b, n_resamples=500)
    assert r.difference == pytest.approx(0.25)
    assert r.ci_low == r.ci_high == pytest.approx(0.25)
    assert r.p_value == 0.0 and r.n == 50
    assert r.mean_b - r.mean_a == pytest.approx(0.25)


def test_bootstrap_of_identical_systems():
    a = np.random.default_rng(3).random(200)
    r = M.paired_bootstrap(a, a.copy())
    assert r.difference == 0.0 and r.ci_low == 0.0 and r.ci_high == 0.0
    assert r.p_value == pytest.approx(1.0)


def test_bootstrap_separates_a_clearly_better_system_and_not_a_coin_flip():
    rng = np.random.default_rng(1)
    a = rng.random(500)
    better = a + 0.1 + rng.normal(0, 0.05, 500)
    r = M.paired_bootstrap(a, better)
    assert r.ci_low > 0 and r.difference == pytest.approx(0.1, abs=0.01) and r.p_value < 0.01
    # Differences +1/-1 alternating (26 vs 25): mean 1/51, standard error ~0.14 -> no evidence.
    d = np.array([1.0, -1.0] * 25 + [1.0])
    coin = M.paired_bootstrap(np.zeros(51), d)
    assert coin.ci_low < 0 < coin.ci_high and coin.p_value > 0.5
    worse = M.paired_bootstrap(better, a)
    assert worse.ci_high < 0 and worse.difference == pytest.approx(-r.difference)


def test_bootstrap_interval_is_paired_and_has_normal_width():
    # Strongly correlated systems: the paired interval follows the spread of b - a (0.02), not of
    # the scores themselves (0.3). Half-width ~ z * sd(d) / sqrt(n).
    rng = np.random.default_rng(2)
    a = rng.normal(0.5, 0.3, 2000)
    d = rng.normal(0.01, 0.02, 2000)
    r = M.paired_bootstrap(a, a + d, n_resamples=4000, confidence=0.95)
    expected = 1.96 * d.std() / math.sqrt(d.size)
    assert (r.ci_high - r.ci_low) / 2 == pytest.approx(expected, rel=0.1)
    assert r.ci_low < d.mean() < r.ci_high


def test_bootstrap_is_reproducible_by_seed_and_validates_input():
    a, b = np.random.default_rng(4).random((2, 100))
    assert M.paired_bootstrap(a, b, seed=7) == M.paired_bootstrap(a, b, seed=7)
    assert M.paired_bootstrap(a, b, seed=7).ci_low != M.paired_bootstrap(a, b, seed=8).ci_low
    with pytest.raises(ValueError, match="paired"):
        M.paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="confidence"):
        M.paired_bootstrap(a, b, confidence=95)


def test_win_tie_loss_from_b_point_of_view():
    a = [0.5, 0.5, 0.5, 0.5, 1.0]
    b = [0.7, 0.5, 0.5 + 1e-12, 0.2, 0.0]
    assert M.win_tie_loss(a, b) == (1, 2, 2)
    assert M.win_tie_loss(b, a) == (2, 2, 1)
    assert M.win_tie_loss(a, b, tie=0.25) == (0, 3, 2)


# --------------------------------------------------------------------------- perplexity

WORDS = ["question", ":", "what", "is", "two", "plus", "?", "answer", "four", "five", "the", "sum", "equals"]


@pytest.fixture(scope="module")
def tiny_lm():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = word_tokenizer(WORDS)  # tokenizers WordLevel + PreTrainedTokenizerFast, <eos> and <pad>
    assert len(tok) <= 50
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id))
    return model.train(), tok  # left in training mode: the function must switch to eval and back


def _manual_nll(model, tok, prompt_words, reference_words, keep_last=None):
    """Sum of -log p over reference tokens and EOS, one unpadded sequence, with torch by hand."""
    import torch

    prompt_ids = tok.convert_tokens_to_ids(prompt_words)
    ids = prompt_ids + tok.convert_tokens_to_ids(reference_words) + [tok.eos_token_id]
    first_scored = len(prompt_ids)
    if keep_last is not None and len(ids) > keep_last:
        first_scored -= len(ids) - keep_last
        ids = ids[-keep_last:]
    with torch.no_grad():
        logp = torch.log_softmax(model.eval()(torch.tensor([ids])).logits[0].double(), dim=-1)
    positions = range(max(first_scored, 1), len(ids))  # position 0 has nothing to be predicted from
    return -sum(float(logp[t - 1, ids[t]]) for t in positions), len(positions)


EXAMPLES = [  # prompt words, reference words: different lengths so batches need padding
    ("question : what is two plus two ? answer :".split(), ["four"]),
    ("what is two plus two ?".split(), "the sum equals four".split()),
    (["question", ":"], "two plus two is four".split()),
]


def test_perplexity_of_references_matches_a_manual_masked_loss(tiny_lm):
    model, tok = tiny_lm
    prompts = [" ".join(p) + " " for p, _ in EXAMPLES]
    refs = [" ".join(r) for _, r in EXAMPLES]
    result = M.perplexity_of_references(model, tok, prompts, refs, batch_size=2, device="cpu")
    assert model.training  # restored
    manual = [_manual_nll(model, tok, p, r) for p, r in EXAMPLES]
    assert result.tokens.tolist() == [len(r) + 1 for _, r in EXAMPLES]  # reference words + EOS
    assert result.nll == pytest.approx([m[0] for m in manual], rel=1e-5)
    total_nll, total_tokens = sum(m[0] for m in manual), sum(m[1] for m in manual)
    assert result.perplexity == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-5)
    assert not result.truncated.any()
    # Batch size does not change the numbers (padding is masked).
    one = M.perplexity_of_references(model, tok, prompts, refs, batch_size=1)
    assert one.nll == pytest.approx(result.nll, rel=1e-5)
    table = result.table()
    assert table["perplexity"].tolist() == pytest.approx(np.exp(result.nll / result.tokens).tolist())


def test_perplexity_masks_the_prompt(tiny_lm):
    model, tok = tiny_lm
    # Same reference, different prompts: only the context changes, not which tokens are scored.
    a = M.perplexity_of_references(model, tok, ["question : what is two plus two ? "], ["four"])
    b = M.perplexity_of_references(model, tok, ["what is the sum ? "], ["four"])
    assert a.tokens.tolist() == b.tokens.tolist() == [2]
    assert a.nll[0] != pytest.approx(b.nll[0])
    # An empty reference scores the EOS alone; the prompt text is appended to directly.
    empty = M.perplexity_of_references(model, tok, ["what is two plus two ?"], [""])
    assert empty.tokens.tolist() == [1]
    assert empty.nll[0] == pytest.approx(_manual_nll(model, tok, "what is two plus two ?".split(), [])[0], rel=1e-5)


def test_perplexity_truncates_the_prompt_from_the_left(tiny_lm):
    model, tok = tiny_lm
    prompt, ref = "question : what is two plus two ? answer :".split(), "the sum equals four".split()
    result = M.perplexity_of_references(model, tok, [" ".join(prompt) + " "], [" ".join(ref)], max_length=7)
    nll, n = _manual_nll(model, tok, prompt, ref, keep_last=7)
    assert result.truncated.tolist() == [True]
    assert result.tokens.tolist() == [n] == [5]  # 4 reference words + EOS still fit in 7
    assert result.nll[0] == pytest.approx(nll, rel=1e-5)


def test_perplexity_needs_pairs(tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="one reference per prompt"):
        M.perplexity_of_references(model, tok, ["a", "b"], ["c"])


@pytest.mark.parametrize("p,resamples,text", [(0.0, 2000, "p < 0.001"), (0.0, 200, "p < 0.01"),
                                              (0.064, 2000, "p=0.064"), (1.0, 2000, "p=1"),
                                              (float("nan"), 2000, "p=n/a")])
def test_p_values_never_print_as_zero(p, resamples, text):
    assert M.format_p(p, resamples) == text


def test_headline_says_p_below_the_bootstrap_floor():
    from workbench.cli import _headline

    lines = _headline({"differences": [{"model": "lora", "versus": "base", "metric": "rouge_l", "difference": 0.05,
                                        "ci_low": 0.03, "ci_high": 0.07, "p_value": 0.0, "significant": True,
                                        "wins": 30, "losses": 5, "resamples": 2000}]})
    assert "p < 0.001" in lines[0] and "p=0" not in lines[0]
