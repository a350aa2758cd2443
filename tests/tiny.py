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


def full_model(base):
    """A full fine-tune of the causal LM in ``base`` (a ``ModelConfig``)."""
    from workbench.config import ModelConfig

    return ModelConfig(name_or_path=str(base), task="causal-lm", method="full")


def quick_train(out, **changes):
    """A few logged, checkpointed steps into ``out`` on one thread (a ``TrainConfig``); ``changes`` override."""
    from workbench.config import TrainConfig

    return TrainConfig(**{"output_dir": str(out), "max_steps": 4, "save_steps": 2, "learning_rate": 3e-3,
                          "batch_size": 8, "max_length": 128, "logging_steps": 1, "num_threads": 1, **changes})


def ticket_splits(longest_prompt: int | None = None):
    """Eight help-desk tickets per category (prompts under ``longest_prompt`` characters when given), a fifth of
    them held out for validation, stratified by category."""
    from workbench.data import load_dataset, split_dataset

    ds = load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl")
    frame = ds.frame if longest_prompt is None else ds.frame[ds.frame.prompt.str.len() < longest_prompt]
    return split_dataset(ds.with_frame(frame.groupby("category").head(8)), test=0, validation=0.2,
                         stratify="category")
