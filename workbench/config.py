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

    An empty string stands for None, and a mapping field is written as ``"k=v, k=v"``.
    """
    hints = typing.get_type_hints(cls)
    data = {}
    for key, value in params.items():
        tp = hints.get(key)
        if isinstance(value, str) and tp is not None and typing.get_origin(tp) is dict:
            value = parse_pairs(value)
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
