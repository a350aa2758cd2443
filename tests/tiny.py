"""Tiny tokenizers and models for tests: built here, never downloaded."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def word_tokenizer(words: list[str], chat_template: str | None = None, specials: tuple[str, ...] = ()):
    """One token per word or punctuation run, so token counts can be checked by hand.

    ``[UNK]`` stands for any word not in ``words``; ``<eos>``/``<pad>`` are special tokens.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<pad>": 1, "<eos>": 2}
    for w in list(specials) + words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<eos>", pad_token="<pad>",
                                   additional_special_tokens=list(specials) or None)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def kb_texts() -> list[str]:
    return [p.read_text() for p in sorted((ROOT / "datasets" / "it_support" / "kb").glob("*.md"))]


def bpe_tokenizer(vocab_size: int = 600, chat_template: str | None = None):
    """A byte-level BPE trained on the shipped knowledge base (seconds, offline)."""
    from workbench.tokenizer import train_tokenizer

    return train_tokenizer(kb_texts(), vocab_size=vocab_size, chat_template=chat_template)


def tiny_base(out_dir, vocab_size: int = 600, seed: int = 0):
    """A tiny Llama with random weights and the KB tokenizer, saved to ``out_dir`` (loads via from_pretrained)."""
    from workbench import presets

    tok = bpe_tokenizer(vocab_size=vocab_size)
    cfg = presets.tiny_llama(len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    return presets.save_base_model(cfg, tok, out_dir, seed=seed)
