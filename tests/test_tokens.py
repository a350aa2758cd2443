"""Token statistics on fixtures whose answers can be counted by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from tiny import bpe_tokenizer, word_tokenizer
from workbench.config import TokenConfig
from workbench.data import load_dataset
from workbench.templates import format_example, generation_prompt, tokenize_example
from workbench.tokens import compare_tokenizers, length_stats, loss_mask_html, loss_mask_view, packing_stats

WORDS = "a b c d e hello there hi ### User Assistant : you are welcome".split()


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer(WORDS)


def cls(rows):
    return load_dataset(pd.DataFrame(rows, columns=["text", "label"]))


def test_lengths_truncation_unknowns_and_cost(tok):
    ds = cls([("a b c", "x"), ("a b", "y"), ("a b c d zzz", "x")])  # 3, 2, 5 tokens; one unknown word
    s = length_stats(ds, tok, TokenConfig(max_length=8, batch_size=2, sample=None))
    text = s.fields["text"]
    assert (text.min, text.median, text.max, text.total) == (2, 3.0, 5, 10)
    assert s.fields["example"].total == 10  # no special tokens added by this tokenizer
    assert s.unk_rate == pytest.approx(1 / 10)
    assert s.tokens_per_word == pytest.approx(10 / 10)
    assert s.steps_per_epoch_padded == 2  # ceil(3 rows / batch 2)
    assert s.truncated_rows == () and s.warnings == ()
    assert s.total_tokens == 10 and s.packing.packed_sequences == 2


def test_truncation_share_and_warning(tok):
    ds = cls([("a b c", "x"), ("a b", "y"), ("a b c d e a b c d e", "x")])  # 3, 2, 10 tokens
    s = length_stats(ds, tok, TokenConfig(max_length=8, sample=None, truncation_warn=0.1))
    assert s.truncated_rows == (2,)
    assert s.truncated_share == pytest.approx(1 / 3)
    assert any("33.3% of examples are longer than max_length=8" in w for w in s.warnings)


def test_packing_against_padding_by_hand():
    p = packing_stats([3, 2, 5], max_length=8, batch_size=3)
    assert (p.real_tokens, p.padded_tokens_dynamic, p.padded_tokens_fixed, p.packed_sequences) == (10, 15, 24, 2)
    assert p.padding_waste_dynamic == pytest.approx(1 / 3)
    assert p.padding_waste_fixed == pytest.approx(1 - 10 / 24)
    assert p.packing_efficiency == pytest.approx(10 / 16)
    truncated = packing_stats([20], max_length=8, batch_size=1)
    assert truncated.real_tokens == 8  # counted after truncation


def test_fallback_template_masks_only_the_answer(tok):
    ds = load_dataset(pd.DataFrame({"prompt": ["hello there"], "completion": ["hi"]}))
    fe = format_example(ds.records()[0], ds.format, tok)
    assert fe.text == "### User:\nhello there\n\n### Assistant:\nhi<eos>\n\n"
    ex = tokenize_example(fe, tok)
    tokens = tok.convert_ids_to_tokens(ex.input_ids)
    assert tokens == ["###", "User", ":", "hello", "there", "###", "Assistant", ":", "hi", "<eos>"]
    assert [t for t, lab in zip(tokens, ex.labels) if lab != -100] == ["hi", "<eos>"]
    s = length_stats(ds, tok, TokenConfig(max_length=64, sample=None))
    assert (s.fields["prompt"].total, s.fields["completion"].total, s.fields["example"].total) == (2, 1, 10)
    assert s.trained.total == 2 and s.template == "fallback"
    assert s.fully_masked_rows == () and s.missing_eos_rows == () and s.boundary_mismatch_rows == ()


def test_train_on_inputs_trains_everything(tok):
    ds = load_dataset(pd.DataFrame({"prompt": ["hello there"], "completion": ["hi"]}))
    s = length_stats(ds, tok, TokenConfig(max_length=64, sample=None, train_on_inputs=True))
    assert s.trained.total == 10


def test_fully_masked_when_the_prompt_fills_the_window(tok):
    ds = load_dataset(pd.DataFrame({"prompt": ["a b c d e a b c d e", "a"], "completion": ["hi", "hi"]}))
    s = length_stats(ds, tok, TokenConfig(max_length=8, sample=None))
    assert s.fully_masked_rows == (0,)
    assert any("no trained token within max_length=8" in w for w in s.warnings)


CHAT = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<eos>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_chat_template_masks_every_assistant_turn():
    tok = word_tokenizer(WORDS, CHAT, specials=("<|user|>", "<|assistant|>", "<|system|>"))
    convo = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"},
             {"role": "user", "content": "a b"}, {"role": "assistant", "content": "you are welcome"}]
    ds = load_dataset(pd.DataFrame({"messages": [convo]}))
    view = loss_mask_view(ds, 0, tok, TokenConfig(max_length=64)).tokens
    assert [t.text for t in view if t.trained] == ["hi", "there", "<eos>", "you", "are", "welcome", "<eos>"]
    s = length_stats(ds, tok, TokenConfig(max_length=64, sample=None))
    assert s.template == "chat template" and s.trained.total == 7 and s.warnings == ()
    assert generation_prompt(convo[:1], tok).endswith("<|assistant|>\n")
    fallback = length_stats(ds, tok, TokenConfig(max_length=64, sample=None, template="fallback"))
    assert fallback.template == "fallback"


def test_missing_eos_is_reported():
    no_eos = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
              "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    tok = word_tokenizer(WORDS, no_eos, specials=("<|user|>", "<|assistant|>"))
    ds = load_dataset(pd.DataFrame({"prompt": ["hello"], "completion": ["hi"]}))
    s = length_stats(ds, tok, TokenConfig(max_length=64, sample=None))
    assert s.missing_eos_rows == (0,)
    assert any("do not end their target with EOS" in w for w in s.warnings)


def test_boundary_that_merges_in_context_is_reported():
    # The generation prompt ends with a space; byte-level BPE glues it to the answer's first word.
    template = ("{% for m in messages %}{{ m.role }}: {{ m.content }}{% if m.role == 'assistant' %}<|eos|>{% endif %}"
                "\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    tok = bpe_tokenizer(chat_template=template)
    ds = load_dataset(pd.DataFrame({"prompt": ["Where is the VPN client?"], "completion": ["Company Portal."]}))
    s = length_stats(ds, tok, TokenConfig(max_length=128, sample=None))
    assert s.boundary_mismatch_rows == (0,)
    assert any("tokenize the prompt/answer boundary differently" in w for w in s.warnings)
    # the mask still covers the answer, because it is taken from offsets in context
    view = loss_mask_view(ds, 0, tok, TokenConfig(max_length=128)).tokens
    assert "".join(t.text for t in view if t.trained).strip() == "Company Portal.<|eos|>"


def test_compare_tokenizers_side_by_side(tok):
    ds = cls([("a b c", "x"), ("hello there you", "y")])
    table = compare_tokenizers(ds, {"words": tok, "bpe": bpe_tokenizer()}, TokenConfig(max_length=32, sample=None))
    assert list(table.index) == ["words", "bpe"]
    assert table.loc["words", "total_tokens"] == 6
    assert table.loc["bpe", "total_tokens"] > 6  # a 600-token BPE splits these words further
    assert table.loc["words", "vocab_size"] == len(tok)


def test_sampling_scales_totals(tok):
    ds = cls([("a b", "x")] * 50 + [("a b", "y")] * 50)
    s = length_stats(ds, tok, TokenConfig(max_length=8, sample=10, seed=1))
    assert s.rows == 10 and s.rows_total == 100 and s.total_tokens == 200


def test_loss_mask_html_escapes_and_marks(tok):
    ds = load_dataset(pd.DataFrame({"prompt": ["hello"], "completion": ["<b>hi</b>"]}))
    view = loss_mask_view(ds, 0, tok).tokens
    html = loss_mask_html(view)
    assert "<b>hi</b>" not in html and "&lt;" in html
    assert html.count("wb-trained") == sum(t.trained for t in view) > 0


def test_mask_view_says_when_it_truncates(tok):
    ds = load_dataset(pd.DataFrame({"prompt": ["a b c d e a b c d e"], "completion": ["hi"]}))
    view = loss_mask_view(ds, 0, tok, TokenConfig(max_length=8))
    assert (view.length, len(view.tokens), view.truncated, view.trained) == (18, 8, True, 0)  # 3+10+3+hi+eos
    assert "truncated after 8 tokens" in view.html()


def test_token_report_is_what_the_notebook_and_the_panel_show(tok):
    from workbench.tokens import token_report

    ds = load_dataset(pd.DataFrame({"prompt": ["hello there", "a b c d e a b c d e"], "completion": ["hi", "a"]}))
    other = word_tokenizer(WORDS + ["x"])
    cfg = TokenConfig(max_length=16, sample=None)
    r = token_report(ds, {"words": tok, "more words": other}, cfg)
    assert list(r.table.index) == ["words", "more words"] and list(r.stats) == ["words", "more words"]
    assert r.stats["words"] == length_stats(ds, tok, cfg)
    assert r.table.loc["words", "vocab_size"] == len(tok)
    assert r.warnings and all(name in ("words", "more words") for name, _ in r.warnings)
    assert [w for n, w in r.warnings if n == "words"] == list(r.stats["words"].warnings)
    assert r.max_length == 16 and list(r.length_bins) == ["words", "more words"]  # what the panel's chart draws
    edges, counts = r.length_bins["words"]
    assert len(edges) == len(counts) + 1 and sum(counts) == 2  # both examples, binned
    assert r.histogram.startswith(b"\x89PNG")  # the same data as a PNG, for the notebook
