"""Typed configuration: one dataclass per concern, YAML in and out.

An experiment YAML, a notebook's papermill parameters and a panel's form are three views of
these dataclasses. ``from_dict`` builds one from plain data and refuses what it does not
know: an unknown key names the closest valid key, a wrong type names the field and the type
it expects.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key that is not allowed; the message says what is."""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value, tp, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}.{hint}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML reads 1e-4 as a string
                except ValueError:
                    pass
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types.

    Raises:
        ConfigError: naming the closest valid key for an unknown one, or the field and the
            expected type for a wrong value.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in (data or {}).items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else f" Valid keys: {', '.join(names)}."
            raise ConfigError(f"unknown key '{path}' for {cls.__name__}.{hint}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where + ': ' if where else ''}{e}") from None


def parse_pairs(text: str) -> dict[str, str]:
    """``"text=utterance, label=intent"`` to ``{"text": "utterance", "label": "intent"}``."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"expected KEY=VALUE pairs separated by commas, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def from_params(cls: type[T], **params) -> T:
    """Build ``cls`` from notebook parameters, which are primitives only.

    An empty string stands for None, a mapping field is written as ``"k=v, k=v"`` and a list
    field as ``"a, b"``.
    """
    hints = typing.get_type_hints(cls)
    data = {}
    for key, value in params.items():
        tp = hints.get(key)
        if isinstance(value, str) and tp is not None and typing.get_origin(tp) is dict:
            value = parse_pairs(value)
        elif isinstance(value, str) and tp is not None and typing.get_origin(tp) is list:
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif value == "" and tp is not None and type(None) in typing.get_args(tp):
            value = None
        data[key] = value
    return from_dict(cls, data)


def to_dict(obj) -> dict:
    """A dataclass as plain data (for YAML, manifests and papermill parameters)."""
    return dataclasses.asdict(obj)


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read ``cls`` from a YAML file."""
    return from_dict(cls, yaml.safe_load(Path(path).read_text()) or {})


def dump_yaml(obj) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how to read, clean and split it."""

    source: str = "datasets/banking77"
    """File, folder, or hub dataset name."""
    format: Literal["auto", "prompt_completion", "instruction", "chat", "classification", "corpus"] = "auto"
    """Task format; ``auto`` detects it from the column names."""
    columns: dict[str, str] = field(default_factory=dict)
    """Canonical field to source column, e.g. ``{text: utterance, label: intent}``; empty to detect."""
    split: str | None = None
    """Which split of a folder or saved dataset (default: train)."""
    eval_split: str | None = None
    """A separate split of the same source used as the test set (e.g. ``test``); None to carve one out."""
    strict: bool = False
    """Raise on any bad row (True) or drop bad rows and report them (False)."""
    dedupe: bool = True
    """Drop exact and normalised duplicates."""
    redact_pii: bool = True
    """Replace personal data with tags before training."""
    validation: float = 0.1
    """Share of rows held out for validation."""
    test: float = 0.1
    """Share of rows held out for testing (0 when ``eval_split`` names one)."""
    seed: int = 42
    """Seed of the split."""
    stratify: str | None = "auto"
    """``auto`` (by label for classification), a column name, or None."""

    def __post_init__(self):
        for name in ("validation", "test"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ConfigError(f"{name} must be a share in [0, 1), got {v}")
        if self.validation + self.test >= 1:
            raise ConfigError(f"validation + test must be below 1, got {self.validation + self.test}")

    def load_kwargs(self) -> dict:
        return {"format": self.format, "columns": self.columns or None, "split": self.split, "strict": self.strict}


@dataclass(frozen=True)
class TokenConfig:
    """How examples are formatted and measured in tokens."""

    max_length: int = 512
    """Longest sequence in tokens; longer examples are truncated."""
    batch_size: int = 8
    """Examples per device batch."""
    grad_accum: int = 1
    """Gradient accumulation steps (effective batch = batch_size x grad_accum)."""
    epochs: float = 1.0
    """Epochs, for the run cost estimate."""
    template: Literal["auto", "chat", "fallback"] = "auto"
    """``auto``: the tokenizer's chat template when it has one, else the documented fallback."""
    train_on_inputs: bool = False
    """Compute the loss on prompt tokens too (default: completion tokens only)."""
    sample: int | None = 20000
    """Measure at most this many rows (a seeded sample); None for all."""
    truncation_warn: float = 0.05
    """Warn when more than this share of examples is truncated."""
    seed: int = 0
    """Seed of the sample and of the batch order in the padding estimate."""

    def __post_init__(self):
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8, got {self.max_length}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise ConfigError(f"sample must be positive or null, got {self.sample}")


# --------------------------------------------------------------------------- models and training


@dataclass(frozen=True)
class ModelConfig:
    """Which base model, for which task, adapted how."""

    name_or_path: str = "minilm"
    """A hub id, a local folder, or a preset: ``minilm`` (the bundled encoder), ``tiny-llama``."""
    task: Literal["causal-lm", "sequence-classification"] = "sequence-classification"
    """What the model learns: next tokens (SFT, pretraining) or one label per text."""
    method: Literal["full", "lora", "qlora"] = "full"
    """Train every weight, low-rank adapters, or adapters on a 4-bit (NF4) base."""
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    """Where to train; ``auto`` picks cuda, then mps, then cpu."""
    pooling: Literal["auto", "mean", "cls"] = "auto"
    """Classification pooling; ``auto`` is mean for sentence-transformers encoders, the model's own head otherwise."""
    normalize: bool = True
    """L2-normalise pooled embeddings before the head (as sentence-transformers encoders were trained)."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model. Off unless you trust its author."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% slower."""


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (peft)."""

    r: int = 16
    """Rank of the update matrices."""
    alpha: int = 32
    """Scale of the update (alpha / r multiplies it)."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    target_modules: str | list[str] = "all-linear"
    """Modules that get adapters: ``all-linear`` or a list of names (e.g. ``[q_proj, v_proj]``)."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained in full and saved with the adapter (a classification head is added automatically)."""

    def __post_init__(self):
        if self.r < 1 or self.alpha < 1:
            raise ConfigError(f"lora.r and lora.alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class QuantConfig:
    """4-bit quantization of the base model for QLoRA (bitsandbytes)."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    """NF4 (normal float, the QLoRA paper's choice) or FP4."""
    double_quant: bool = True
    """Quantize the quantization constants too (about 0.4 bits per weight saved)."""
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Matmul dtype: ``auto`` is bf16 where the device supports it, else fp32."""


@dataclass(frozen=True)
class TrainConfig:
    """The training run."""

    output_dir: str = "runs/train"
    """The run folder: checkpoints, the model or adapter, logs, metrics."""
    epochs: float = 3.0
    """Passes over the training split (ignored when ``max_steps`` is set)."""
    max_steps: int = -1
    """Stop after this many optimiser steps; -1 to use ``epochs``."""
    learning_rate: float = 2e-4
    """Peak learning rate (of the adapters, or of the whole model for ``full``)."""
    head_learning_rate: float | None = None
    """Learning rate of a classification head; None for ``learning_rate``."""
    head_init: Literal["random", "probe"] = "random"
    """Classification: start the head at a logistic-regression probe on frozen embeddings (LP-FT)."""
    probe_c: float = 30.0
    """Inverse regularisation of that probe (scikit-learn's C)."""
    batch_size: int = 8
    """Examples per device batch."""
    grad_accum: int = 1
    """Batches per optimiser step (effective batch = batch_size x grad_accum)."""
    max_length: int = 512
    """Longest sequence in tokens; longer examples are truncated (and checked first)."""
    warmup: float = 0.05
    """Warmup as a share of the steps (below 1) or a number of steps."""
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    """Learning-rate schedule after warmup."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    label_smoothing: float = 0.0
    """Label smoothing for classification."""
    train_on_inputs: bool = False
    """SFT: compute the loss on prompt tokens too (default: the answer only)."""
    packing: bool = False
    """SFT/pretraining: pack examples into max_length rows; they never attend to each other."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding)."""
    eval_steps: int = 0
    """Evaluate every N steps; 0 to evaluate once per epoch."""
    save_steps: int = 0
    """Checkpoint every N steps; 0 to checkpoint once per epoch."""
    save_total_limit: int = 2
    """Checkpoints kept (older ones are deleted)."""
    logging_steps: int = 10
    """Log loss, learning rate, tokens/s and memory every N steps."""
    early_stopping_patience: int = 0
    """Stop after N evaluations without improvement; 0 to never stop early."""
    seed: int = 42
    """Seed of initialisation, shuffling and dropout."""
    resume: bool = True
    """Continue from the last complete checkpoint in ``output_dir`` if there is one."""
    oom_retry: bool = True
    """On out-of-memory, retry with half the batch and twice the accumulation (same effective batch)."""
    num_threads: int = 0
    """CPU threads for torch; 0 to leave torch's default."""

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be at least 1")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8, got {self.max_length}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("set epochs > 0 or max_steps > 0")


@dataclass(frozen=True)
class CompareConfig:
    """How models are compared: decoding, metrics, the bootstrap."""

    max_new_tokens: int = 128
    """Longest generated answer in tokens."""
    do_sample: bool = False
    """Greedy decoding (False) or sampling (True)."""
    temperature: float = 0.7
    """Sampling temperature (with ``do_sample``)."""
    top_p: float = 0.9
    """Nucleus sampling mass (with ``do_sample``)."""
    seed: int = 0
    """Seed of sampling and of the bootstrap."""
    batch_size: int = 16
    """Examples per forward pass."""
    max_examples: int | None = None
    """Score at most this many test examples (a seeded sample); None for all."""
    metrics: list[str] = field(default_factory=lambda: ["rouge_l", "token_f1", "bleu", "chrf", "exact_match"])
    """Generation metrics by name (see workbench.metrics)."""
    bootstrap_resamples: int = 2000
    """Resamples of the paired bootstrap."""
    confidence: float = 0.95
    """Confidence level of the intervals."""


@dataclass(frozen=True)
class DocumentConfig:
    """How documents are cut into corpus chunks (the notebook's parameters, less the paths)."""

    tokenizer: str = "whitespace"
    """``whitespace`` to count words, a preset name (``kb-bpe``, ``minilm``), or a local folder
    holding a Hugging Face tokenizer; a tokenizer object can be handed to
    ``ingest_documents(tokenizer=...)`` instead."""
    chunk_size: int | None = 256
    """Most tokens in a chunk; None keeps each section whole."""
    overlap: int = 32
    """Tokens repeated from the end of one chunk at the start of the next chunk of the same
    section, so that text cut at a boundary is seen whole once; less than half of ``chunk_size``."""

    def __post_init__(self):
        if not isinstance(self.tokenizer, str) or not self.tokenizer:
            raise ConfigError("tokenizer must be 'whitespace', a preset name or the path of a local tokenizer folder; "
                              "pass a tokenizer object as ingest_documents(tokenizer=...).")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 8):
            raise ConfigError(f"chunk_size must be an integer of at least 8 tokens, or None; got {self.chunk_size!r}.")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise ConfigError(f"overlap must be a non-negative integer; got {self.overlap!r}.")
        if self.chunk_size is not None and self.overlap * 2 >= self.chunk_size:
            raise ConfigError(f"overlap ({self.overlap}) must be less than half of chunk_size ({self.chunk_size}), "
                              f"so that every chunk moves forward; try overlap={self.chunk_size // 8}.")


@dataclass(frozen=True)
class PretrainConfig:
    """Pretrain a small base model from scratch before fine-tuning (the offline generative demo)."""

    source: str = ""
    """The corpus: documents (Markdown, PDF, HTML...), a text file or a corpus dataset; empty for no pretraining."""
    preset: Literal["tiny", "small"] = "small"
    """Model size (see workbench.presets)."""
    vocab_size: int = 2000
    """Size of the byte-level BPE trained on the corpus."""
    epochs: float = 20.0
    """Passes over the corpus."""
    max_steps: int = -1
    """Stop after this many steps; -1 to use ``epochs``."""
    learning_rate: float = 3e-3
    """Peak learning rate."""
    batch_size: int = 16
    """Packed rows per batch."""
    max_length: int = 256
    """Tokens per packed row."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment (the sections of an experiment YAML): data, model, adapters, training, comparison."""

    name: str = "experiment"
    """Names the run folder: ``runs/<name>/<run-id>``."""
    description: str = ""
    """What the experiment is for, in a sentence."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    methods: list[str] = field(default_factory=list)
    """Fine-tune with each of these methods in turn (full, lora, qlora); empty for ``model.method`` alone."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    notebooks: list[str] = field(default_factory=lambda: ["01_explore_dataset.ipynb", "02_tokenization.ipynb",
                                                          "03_finetune.ipynb", "04_compare.ipynb"])
    """Notebooks papermill runs, in order; names in notebooks/ or paths."""

    def __post_init__(self):
        bad = [m for m in self.methods if m not in ("full", "lora", "qlora")]
        if bad:
            raise ConfigError(f"methods: {', '.join(bad)} not one of full, lora, qlora")

    def method_list(self) -> list[str]:
        return list(self.methods) or [self.model.method]
