"""Token statistics: lengths, truncation, masking checks, packing and the cost of a run.

How a row becomes training text and which tokens the loss is on is ``workbench.templates``;
loading and training tokenizers is ``workbench.tokenizer``. Statistics use the same
formatting training uses, and the check ``boundary_mismatch`` reports where tokenizing the
prompt alone would disagree with the tokenization in context (a known cause of silently
fully-masked examples in code that masks by prompt length).

Statistics go through ``datasets.map`` with batched fast tokenizers and are cached in
memory by (data fingerprint, tokenizer fingerprint, settings).
"""

from __future__ import annotations

import hashlib
import html
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from . import plots
from .config import TokenConfig
from .data.dataset import LoadedDataset
from .templates import trained_mask, format_example, tokenize_example, uses_chat_template
from .tokenizer import tokenizer_fingerprint, tokenizer_name


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Distribution:
    """Summary of token lengths."""

    count: int
    total: int
    min: int
    median: float
    mean: float
    p95: float
    max: int
    bin_edges: tuple[float, ...]
    bin_counts: tuple[int, ...]

    @classmethod
    def of(cls, lengths, bins: int = 30) -> "Distribution":
        a = np.asarray(lengths, dtype=np.int64)
        if a.size == 0:
            return cls(0, 0, 0, 0.0, 0.0, 0.0, 0, (), ())
        counts, edges = np.histogram(a, bins=min(bins, max(1, int(a.max() - a.min()) + 1)))
        return cls(int(a.size), int(a.sum()), int(a.min()), float(np.median(a)), float(a.mean()),
                   float(np.percentile(a, 95)), int(a.max()), tuple(float(e) for e in edges),
                   tuple(int(c) for c in counts))


@dataclass(frozen=True)
class PackingStats:
    """Padding waste of batches versus packing into ``max_length`` sequences."""

    max_length: int
    batch_size: int
    real_tokens: int
    padded_tokens_dynamic: int
    """Tokens processed when each batch pads to its longest example (shuffled batches)."""
    padded_tokens_fixed: int
    """Tokens processed when every example pads to ``max_length``."""
    packed_sequences: int
    """Sequences of ``max_length`` when examples are packed end to end."""

    @property
    def padding_waste_dynamic(self) -> float:
        return 1 - self.real_tokens / self.padded_tokens_dynamic if self.padded_tokens_dynamic else 0.0

    @property
    def padding_waste_fixed(self) -> float:
        return 1 - self.real_tokens / self.padded_tokens_fixed if self.padded_tokens_fixed else 0.0

    @property
    def packing_efficiency(self) -> float:
        cap = self.packed_sequences * self.max_length
        return self.real_tokens / cap if cap else 0.0


def packing_stats(lengths, max_length: int, batch_size: int, seed: int = 0) -> PackingStats:
    """Compare padded batches (shuffled, padded to the batch's longest) with packed sequences."""
    a = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    real = int(a.sum())
    order = np.random.default_rng(seed).permutation(a.size)
    shuffled = a[order]
    dynamic = 0
    for i in range(0, shuffled.size, batch_size):
        chunk = shuffled[i:i + batch_size]
        dynamic += int(chunk.max()) * chunk.size
    packed = math.ceil(real / max_length) if real else 0
    return PackingStats(max_length, batch_size, real, dynamic, int(a.size) * max_length, packed)


@dataclass(frozen=True)
class LengthStats:
    """Token statistics of one dataset under one tokenizer and one set of settings."""

    tokenizer: str
    format: str
    rows: int
    """Rows measured (a sample when the dataset is larger than ``cfg.sample``)."""
    rows_total: int
    fields: dict[str, Distribution]
    """Per canonical text field, and ``example`` for the formatted training example."""
    trained: Distribution
    """Tokens the loss is computed on per example (after truncation)."""
    max_length: int
    truncated_rows: tuple[int, ...]
    """Positions (in the dataset) of examples longer than ``max_length``."""
    fully_masked_rows: tuple[int, ...]
    """Examples with no trained token left after truncation: they teach nothing."""
    boundary_mismatch_rows: tuple[int, ...]
    """Examples whose prompt tokenizes differently alone than in context."""
    missing_eos_rows: tuple[int, ...]
    """Examples whose trained tokens do not include EOS (and are not truncated)."""
    tokens_per_word: float
    unk_rate: float
    packing: PackingStats
    train_rows: int
    """Rows one epoch trains on: the train split after cleaning and splitting (and ``data.max_train_rows``) when
    given, else every row of the dataset; steps per epoch and the run's cost count these."""
    steps_per_epoch_padded: int
    """Optimiser steps per epoch over ``train_rows``, one example per batch slot."""
    steps_per_epoch_packed: int
    """Optimiser steps per epoch over ``train_rows`` packed into ``max_length`` rows (``train.packing``)."""
    epochs: float
    template: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def truncated_share(self) -> float:
        return len(self.truncated_rows) / self.rows if self.rows else 0.0

    @property
    def total_tokens(self) -> int:
        """Tokens of the formatted examples, scaled from the sample to the whole dataset."""
        ex = self.fields["example"]
        return int(round(ex.total * self.rows_total / self.rows)) if self.rows else 0

    @property
    def run_tokens(self) -> int:
        """Tokens of the ``train_rows`` processed over all epochs when packing (an estimate of a run's cost)."""
        ex = self.fields["example"]
        return int(round(ex.total * self.train_rows / self.rows * self.epochs)) if self.rows else 0

    def table(self) -> pd.DataFrame:
        """Per-field statistics as a table."""
        rows = []
        for name, d in self.fields.items():
            rows.append({"field": name, "min": d.min, "median": d.median, "p95": round(d.p95, 1), "max": d.max,
                         "mean": round(d.mean, 1), "total": d.total})
        return pd.DataFrame(rows).set_index("field")

    def summary(self) -> dict:
        """Headline figures, for a comparison table or a run manifest."""
        ex = self.fields["example"]
        return {
            "tokenizer": self.tokenizer,
            "rows": self.rows,
            "median": ex.median,
            "p95": round(ex.p95, 1),
            "max": ex.max,
            "truncated_share": round(self.truncated_share, 4),
            "tokens_per_word": round(self.tokens_per_word, 3),
            "unk_rate": round(self.unk_rate, 5),
            "total_tokens": self.total_tokens,
            "padding_waste": round(self.packing.padding_waste_dynamic, 4),
            "packing_efficiency": round(self.packing.packing_efficiency, 4),
            "train_rows": self.train_rows,
            "steps_per_epoch": self.steps_per_epoch_padded,
            "steps_per_epoch_packed": self.steps_per_epoch_packed,
        }


def sample_rows(n: int, cfg: TokenConfig) -> np.ndarray:
    """Positions measured: all rows, or a seeded sample of ``cfg.sample`` in dataset order."""
    if cfg.sample is None or n <= cfg.sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(cfg.seed).choice(n, size=cfg.sample, replace=False))


def _text_fields(ds: LoadedDataset) -> list[str]:
    return list(ds.spec.text_fields)


_CACHE: "OrderedDict[tuple, dict]" = OrderedDict()
_CACHE_SIZE = 16


def _measure(ds: LoadedDataset, rows: np.ndarray, tokenizer, cfg: TokenConfig) -> dict:
    """Batched tokenization of the sampled rows through ``datasets.map``; cached by fingerprints."""
    key = (ds.fingerprint(), tuple(rows[:5]), len(rows), tokenizer_fingerprint(tokenizer), cfg.template,
           cfg.train_on_inputs, cfg.max_length)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    import datasets

    sub = ds.frame.iloc[rows]
    records = sub[list(ds.fields)].to_dict("records")
    formatted = [format_example(r, ds.spec, tokenizer, cfg) for r in records]
    columns = {f"f_{f}": [str(v) for v in sub[f].tolist()] for f in _text_fields(ds)}
    columns["example"] = [fe.text for fe in formatted]
    columns["prompt"] = [fe.text[:fe.prompt_end] for fe in formatted]
    columns["span_start"] = [[s for s, _ in fe.trained] for fe in formatted]
    columns["span_end"] = [[e for _, e in fe.trained] for fe in formatted]
    special = formatted[0].add_special_tokens if formatted else True
    eos_id = tokenizer.eos_token_id
    unk_id = tokenizer.unk_token_id
    max_length = cfg.max_length
    generative = ds.spec.generative

    def batch_fn(batch):
        out = {}
        for name in [k for k in batch if k.startswith("f_")]:
            enc = tokenizer(batch[name], add_special_tokens=False)["input_ids"]
            out[f"len_{name[2:]}"] = [len(x) for x in enc]
        enc = tokenizer(batch["example"], add_special_tokens=special, return_offsets_mapping=True)
        ex_len, trained, eos_ok, unk, boundary = [], [], [], [], []
        prompt_ids = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"] if generative else None
        for i, (ids, offs) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
            spans = list(zip(batch["span_start"][i], batch["span_end"][i]))
            mask = trained_mask(offs, spans)[:max_length]
            kept = np.asarray(ids[:max_length])
            ex_len.append(len(ids))
            trained.append(int(mask.sum()))
            eos_ok.append(bool(eos_id is not None and (kept[mask] == eos_id).any()) if generative else True)
            unk.append(int((np.asarray(ids) == unk_id).sum()) if unk_id is not None else 0)
            if prompt_ids is not None and batch["prompt"][i]:
                boundary.append(_boundary_differs(ids, offs, prompt_ids[i], len(batch["prompt"][i])))
            else:
                boundary.append(False)
        out.update(len_example=ex_len, trained=trained, eos_ok=eos_ok, unk=unk, boundary=boundary)
        return out

    hf = datasets.Dataset.from_dict(columns)
    fp = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()  # statistics are quick; a bar per call is noise in a panel
    try:
        result = hf.map(batch_fn, batched=True, batch_size=1000, remove_columns=hf.column_names,
                        new_fingerprint=fp).to_dict()
    finally:
        if not quiet:
            datasets.utils.enable_progress_bars()
    result["words"] = sum(len(t.split()) for t in columns["example"])
    _CACHE[key] = result
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def _boundary_differs(ids, offsets, alone: list[int], prompt_chars: int) -> bool:
    """Whether the prompt's tokens in context differ from the prompt tokenized alone.

    In context, the prompt's tokens are those whose text ends within the prompt (special
    tokens, with empty offsets, are left out on both sides); a token that straddles the end
    of the prompt is a difference by itself.
    """
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    s, e = off[:, 0], off[:, 1]
    if ((s < prompt_chars) & (e > prompt_chars)).any():
        return True
    in_prompt = (e > s) & (e <= prompt_chars)
    return np.asarray(ids)[in_prompt].tolist() != list(alone)


def length_stats(ds: LoadedDataset, tokenizer, cfg: TokenConfig = TokenConfig(),
                 train_rows: int | None = None) -> LengthStats:
    """Token statistics of ``ds`` under ``tokenizer``: lengths, truncation, masking checks, packing, cost.

    Args:
        ds: A loaded dataset.
        tokenizer: A fast Hugging Face tokenizer.
        cfg: Max length, batch size, template choice, sample size.
        train_rows: Rows one epoch trains on (the train split after cleaning and splitting, not the
            raw rows of ``ds``); None for every row of ``ds``. Steps per epoch count these.

    Returns:
        LengthStats; ``warnings`` says what to look at (truncation over ``cfg.truncation_warn``,
        fully masked examples, missing EOS, prompt/answer boundary mismatches).
    """
    rows = sample_rows(len(ds), cfg)
    m = _measure(ds, rows, tokenizer, cfg)
    fields = {f: Distribution.of(m[f"len_{f}"]) for f in _text_fields(ds)}
    fields["example"] = Distribution.of(m["len_example"])
    ex_len = np.asarray(m["len_example"])
    trained = np.asarray(m["trained"])
    pos = rows
    truncated = tuple(int(pos[i]) for i in np.flatnonzero(ex_len > cfg.max_length))
    generative = ds.spec.generative
    fully = tuple(int(pos[i]) for i in np.flatnonzero(trained == 0)) if generative else ()
    trunc_set = set(truncated)
    missing_eos = tuple(int(pos[i]) for i, ok in enumerate(m["eos_ok"]) if not ok and int(pos[i]) not in trunc_set
                        and int(pos[i]) not in fully)
    boundary = tuple(int(pos[i]) for i, b in enumerate(m["boundary"]) if b)
    words = max(1, m["words"])
    pack = packing_stats(ex_len, cfg.max_length, cfg.batch_size, cfg.seed)
    train_rows = len(ds) if train_rows is None else train_rows
    scale = train_rows / max(1, len(rows))
    per_step = cfg.batch_size * cfg.grad_accum
    steps_padded = math.ceil(train_rows / per_step)
    steps_packed = math.ceil(pack.packed_sequences * scale / per_step)
    n = max(1, len(rows))
    template = "n/a" if not ds.spec.conversational else (
        "chat template" if uses_chat_template(tokenizer, cfg) else "fallback")
    warnings = []
    if len(truncated) / n > cfg.truncation_warn:
        warnings.append(f"{len(truncated) / n:.1%} of examples are longer than max_length={cfg.max_length} and "
                        f"will be truncated (threshold {cfg.truncation_warn:.0%}); raise max_length or shorten them.")
    if fully:
        warnings.append(f"{len(fully)} examples have no trained token within max_length={cfg.max_length} "
                        f"(e.g. row {fully[0]}): their prompts fill the window, so they teach nothing.")
    if missing_eos:
        warnings.append(f"{len(missing_eos)} examples do not end their target with EOS (e.g. row {missing_eos[0]}): "
                        "the model will not learn to stop. Check the chat template or the tokenizer's eos_token.")
    if boundary:
        warnings.append(f"{len(boundary)} examples tokenize the prompt/answer boundary differently in context than "
                        f"alone (e.g. row {boundary[0]}); masks here use offsets in context, but code that masks "
                        "by the prompt's own token count would mask the wrong tokens.")
    return LengthStats(
        tokenizer=tokenizer_name(tokenizer), format=ds.format, rows=len(rows), rows_total=len(ds), fields=fields,
        trained=Distribution.of(trained), max_length=cfg.max_length, truncated_rows=truncated,
        fully_masked_rows=fully, boundary_mismatch_rows=boundary, missing_eos_rows=missing_eos,
        tokens_per_word=float(ex_len.sum()) / words, unk_rate=float(np.sum(m["unk"])) / max(1, int(ex_len.sum())),
        packing=pack, train_rows=train_rows, steps_per_epoch_padded=steps_padded,
        steps_per_epoch_packed=steps_packed, epochs=cfg.epochs,
        template=template, warnings=tuple(warnings),
    )


def compare_tokenizers(ds: LoadedDataset, tokenizers: dict[str, object], cfg: TokenConfig = TokenConfig(),
                       train_rows: int | None = None) -> pd.DataFrame:
    """One row of headline statistics per tokenizer, on the same rows and settings (``train_rows``: see
    ``length_stats``)."""
    rows = []
    for name, tok in tokenizers.items():
        s = length_stats(ds, tok, cfg, train_rows).summary()
        s["tokenizer"] = name
        s["vocab_size"] = len(tok)
        rows.append(s)
    return pd.DataFrame(rows).set_index("tokenizer")


@dataclass(frozen=True)
class TokenReport:
    """Several tokenizers measured on the same rows and settings (the tokenization notebook and ``TokenPanel``)."""

    table: pd.DataFrame
    """One row of headline statistics per tokenizer (``compare_tokenizers``)."""
    stats: dict[str, LengthStats]
    """Each tokenizer's full statistics (``length_stats``), in the order given."""
    max_length: int
    """The length examples are truncated to (``cfg.max_length``), marked on the histogram."""

    @property
    def length_bins(self) -> dict[str, tuple[tuple[float, ...], tuple[int, ...]]]:
        """Tokens per formatted example, binned, per tokenizer: (bin edges, counts), what ``histogram`` draws and
        the Tokens panel's chart shows (each tokenizer's own edges, ``Distribution.of``)."""
        return {name: (s.fields["example"].bin_edges, s.fields["example"].bin_counts) for name, s in self.stats.items()}

    @cached_property
    def histogram(self) -> bytes:
        """PNG of ``length_bins``: one line per tokenizer, ``max_length`` marked (drawn when first asked for)."""
        return plots.to_png(plots.stairs_histogram(self.length_bins, "tokens per formatted example", "tokens",
                                                   self.max_length))

    @property
    def warnings(self) -> list[tuple[str, str]]:
        """(tokenizer, warning) for every warning of every tokenizer."""
        return [(name, w) for name, s in self.stats.items() for w in s.warnings]


def token_report(ds: LoadedDataset, tokenizers: dict[str, object], cfg: TokenConfig = TokenConfig(),
                 train_rows: int | None = None) -> TokenReport:
    """Compare ``tokenizers`` on ``ds``: the side-by-side table, each one's statistics and warnings, the histogram.

    Args:
        ds: The dataset.
        tokenizers: Name to a loaded tokenizer.
        cfg: Lengths, batch, template and sample settings.
        train_rows: Rows one epoch trains on (the train split's); None for every row of ``ds``.

    Returns:
        A ``TokenReport``.
    """
    table = compare_tokenizers(ds, tokenizers, cfg, train_rows)
    stats = {name: length_stats(ds, tok, cfg, train_rows) for name, tok in tokenizers.items()}
    return TokenReport(table, stats, cfg.max_length)


# --------------------------------------------------------------------------- loss-mask view


@dataclass(frozen=True)
class TokenView:
    """One token as shown in the loss-mask viewer."""

    index: int
    id: int
    text: str
    trained: bool
    special: bool


@dataclass(frozen=True)
class MaskView:
    """The tokens of one example as trained, and its length before truncation."""

    tokens: list[TokenView]
    length: int

    @property
    def truncated(self) -> bool:
        return self.length > len(self.tokens)

    @property
    def trained(self) -> int:
        return sum(t.trained for t in self.tokens)

    def html(self) -> str:
        return loss_mask_html(self.tokens, len(self.tokens) if self.truncated else None)


def loss_mask_view(ds: LoadedDataset, row: int, tokenizer, cfg: TokenConfig = TokenConfig()) -> MaskView:
    """The formatted example of ``row`` token by token, with whether the loss is computed on each."""
    record = ds.frame[list(ds.fields)].iloc[row].to_dict()
    tok = tokenize_example(format_example(record, ds.spec, tokenizer, cfg), tokenizer, cfg.max_length)
    special = set(getattr(tokenizer, "all_special_ids", []))
    out = []
    for i, (tid, label, (s, e)) in enumerate(zip(tok.input_ids, tok.labels, tok.offsets)):
        text = tok.text[s:e] if e > s else tokenizer.convert_ids_to_tokens(tid)
        out.append(TokenView(i, tid, text, label != -100, tid in special))
    return MaskView(out, tok.length)


def loss_mask_html(tokens: list[TokenView], truncated_after: int | None = None) -> str:
    """HTML of the tokens: trained ones highlighted, token borders visible, specials in brackets."""
    parts = ['<div class="wb-lossmask" style="font-family:monospace;white-space:pre-wrap;line-height:1.9">']
    for t in tokens:
        text = html.escape(t.text).replace("\n", "↵\n")
        style = ("background:#c8f7c5;border-bottom:2px solid #2e7d32" if t.trained
                 else "background:#eeeeee;color:#666")
        cls = "wb-tok wb-trained" if t.trained else "wb-tok"
        if t.special:
            text = f"<b>{text}</b>"
        parts.append(f'<span class="{cls}" title="#{t.index} id={t.id}" style="{style};margin-right:1px">{text}</span>')
    if truncated_after is not None:
        parts.append(f'<span class="wb-truncated" style="color:#b00"> … truncated after {truncated_after} tokens'
                     "</span>")
    parts.append("</div>")
    return "".join(parts)
