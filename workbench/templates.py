"""Templates: how a row becomes training text, and which characters and tokens the loss is on.

Every conversational format becomes a list of chat messages (its descriptor's ``messages``).
With ``template="auto"`` the tokenizer's chat template renders them when it has one;
otherwise the documented fallback template does::

    ### System:\\n{content}\\n\\n            (only when there is a system message)
    ### User:\\n{content}\\n\\n
    ### Assistant:\\n{content}{eos}\\n\\n

The loss is computed on assistant content and its EOS (all tokens with ``train_on_inputs``).
Running text (a corpus) is trained whole, with EOS; classification text trains no token.
Masks are derived from character spans and the tokenizer's offsets on the *whole* formatted
text, so a token that merges across the prompt/answer boundary is handled.

Settings come as any object with ``template`` (auto, chat, fallback) and ``train_on_inputs``:
a ``TokenConfig`` or a ``TrainConfig``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .data.formats import Format, get_format
from .tokenizer import tokenizer_name

FALLBACK_ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}


def uses_chat_template(tokenizer, cfg=None) -> bool:
    """Whether rows render through the tokenizer's chat template (``cfg.template``: auto, chat, fallback)."""
    template = getattr(cfg, "template", "auto")
    has = bool(getattr(tokenizer, "chat_template", None))
    if template == "chat" and not has:
        raise ValueError(f"template='chat' but {tokenizer_name(tokenizer)} has no chat template; use 'auto'.")
    return has and template != "fallback"


@dataclass(frozen=True)
class FormattedExample:
    """The training text of one row and the character spans the loss is computed on."""

    text: str
    trained: tuple[tuple[int, int], ...]
    add_special_tokens: bool
    prompt_end: int
    """Character offset where the first trained span starts (end of the first prompt)."""


def _fallback(messages: list[dict], eos: str, generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
    parts, spans, pos = [], [], 0
    for m in messages:
        head = f"### {FALLBACK_ROLES[m['role']]}:\n"
        body = m["content"] + (eos if m["role"] == "assistant" else "")
        parts.append(head)
        pos += len(head)
        if m["role"] == "assistant":
            spans.append((pos, pos + len(body)))
        parts.append(body + "\n\n")
        pos += len(body) + 2
    if generation_prompt:
        parts.append("### Assistant:\n")
    return "".join(parts), spans


def _templated(messages: list[dict], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if full.startswith(upto) and upto.startswith(before):
            start = len(before)
            # The turn ends where the content ends plus the template's end-of-turn marker.
            spans.append((start, len(upto.rstrip("\n"))))
        else:  # template is not prefix-stable: find the content itself
            start = full.find(m["content"], spans[-1][1] if spans else 0)
            if start >= 0:
                spans.append((start, start + len(m["content"])))
    return full, spans


def format_example(row: dict, fmt: Format | str, tokenizer, cfg=None) -> FormattedExample:
    """The training text of a canonical ``row`` of format ``fmt`` and its trained character spans.

    ``cfg`` is anything with ``template`` and ``train_on_inputs`` (a ``TokenConfig``, a
    ``TrainConfig``); None for the defaults (``auto``, answers only).
    """
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    eos = tokenizer.eos_token or ""
    if not fmt.conversational:
        text = fmt.text(row)
        if fmt.generative:  # running text: all of it is learned, and where it ends
            text += eos
            return FormattedExample(text, ((0, len(text)),), True, 0)
        return FormattedExample(text, (), True, len(text))  # classified, not generated: no token trained
    messages = fmt.messages(row)
    if uses_chat_template(tokenizer, cfg):
        text, spans = _templated(messages, tokenizer)
        special = False
    else:
        text, spans = _fallback(messages, eos)
        special = True
    prompt_end = spans[0][0] if spans else len(text)
    if getattr(cfg, "train_on_inputs", False):
        spans = [(0, len(text))]
    return FormattedExample(text, tuple(spans), special, prompt_end)


class TextOnly:
    """Stands in for a tokenizer when only the formatted text is wanted (no chat template)."""

    eos_token = "<eos>"
    chat_template = None


def example_html(example: FormattedExample) -> str:
    """The formatted text with the trained character spans highlighted (no tokenizer needed)."""
    parts, pos = ['<div class="wb-example" style="font-family:monospace;white-space:pre-wrap">'], 0
    for s, e in example.trained:
        parts.append(f'<span style="color:#555">{html.escape(example.text[pos:s])}</span>')
        parts.append(f'<span class="wb-trained" style="background:#c8f7c5">{html.escape(example.text[s:e])}</span>')
        pos = e
    parts.append(f'<span style="color:#555">{html.escape(example.text[pos:])}</span></div>')
    return "".join(parts)


def generation_prompt(messages: list[dict], tokenizer, cfg=None) -> str:
    """The text to feed a model so that it writes the next assistant turn."""
    if uses_chat_template(tokenizer, cfg):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return _fallback(messages, tokenizer.eos_token or "", generation_prompt=True)[0]


def trained_mask(offsets, spans) -> np.ndarray:
    """True for tokens whose character range overlaps a trained span (empty ranges never do)."""
    if not spans or not len(offsets):
        return np.zeros(len(offsets), dtype=bool)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = off[:, 0], off[:, 1]
    mask = np.zeros(len(off), dtype=bool)
    for s, e in spans:
        mask |= (starts < e) & (ends > s) & (ends > starts)
    return mask


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids and labels (-100 where the loss is not computed) of one formatted example."""

    input_ids: list[int]
    labels: list[int]
    offsets: list[tuple[int, int]]
    text: str
    length: int
    """Length before truncation."""

    @property
    def truncated(self) -> bool:
        return self.length > len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != -100)


def tokenize_example(example: FormattedExample, tokenizer, max_length: int | None = None) -> TokenizedExample:
    """Tokenize a formatted example in one pass; labels follow the trained spans."""
    enc = tokenizer(example.text, add_special_tokens=example.add_special_tokens, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    mask = trained_mask(offsets, example.trained)
    labels = [i if m else -100 for i, m in zip(ids, mask)]
    n = len(ids)
    if max_length is not None and n > max_length:
        ids, labels, offsets = ids[:max_length], labels[:max_length], offsets[:max_length]
    return TokenizedExample(ids, labels, offsets, example.text, n)
