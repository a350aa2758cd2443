"""Typed configuration: one dataclass per concern, YAML in and out.

An experiment YAML, a notebook's papermill parameters, a panel's form and the command line's
options are views of these dataclasses. ``from_dict`` builds one from plain data and refuses
what it does not know: an unknown key names the closest valid key, a wrong type names the
field and the type it expects. Each field is documented once, by the string under it
(``field_docs``); notebooks build their sections with ``section_from_params``, the command
line gets its options from ``add_config_arguments`` and forms their tooltips from
``field_help``, and ``tests/test_config_views.py`` fails when one of them drifts.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .data.documents import DocumentConfig  # noqa: F401 - the documents section's config, re-exported
from .data.formats import FORMATS
from .data.pii import ACTIONS as PII_ACTIONS
from .errors import ConfigError
from .methods import METHODS
from .metrics import PER_EXAMPLE
from .tasks import TASKS

T = TypeVar("T")

# Closed choices read the registries: a registered format, task or method is a valid value here.
FormatName = Literal[("auto", *FORMATS)]
TaskName = Literal[tuple(TASKS)]
MethodName = Literal[tuple(METHODS)]
#: The registry behind each of those Literals (and the values allowed besides its names). Checks read
#: the registry as it is when they run, so a format, task or method registered after this module was
#: imported is a valid value too; the Literal's own arguments are those known at import.
_REGISTERED = {FormatName: (("auto",), FORMATS), TaskName: ((), TASKS), MethodName: ((), METHODS)}


def choices(tp) -> tuple:
    """The values a ``Literal`` field type allows now (a registry-backed one reads its registry)."""
    if tp in _REGISTERED:
        extra, registry = _REGISTERED[tp]
        return (*extra, *registry)
    return typing.get_args(tp)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in choices(tp))
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
        args = choices(tp)
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


def parse_field(cls: type, name: str, text: str, base=None):
    """The value typed for field ``cls.name`` (a form's text box), parsed as YAML and checked with the field's
    type and the class's own checks on ``base`` (default: the class's defaults) with that field replaced.

    Never coerces: ``abc`` for a number, ``1.5`` for an integer or a value the class refuses raise.

    Raises:
        ConfigError: what is wrong with the value, in the class's words.
    """
    text = str(text).strip()
    hint = typing.get_type_hints(cls)[name]
    if not text:
        if type(None) in typing.get_args(hint):  # an optional field left empty: not set
            return None
        raise ConfigError(f"{name}: enter a value")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raw = text
    value = _coerce(raw, hint, name)
    dataclasses.replace(base if base is not None else cls(), **{name: value})
    return value


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

    An empty string stands for None, and so does 0 in an optional number field (the runner
    writes None that way); a mapping field is written as ``"k=v, k=v"`` and a list field as
    ``"a, b"``.
    """
    hints = typing.get_type_hints(cls)
    data = {}
    for key, value in params.items():
        tp = hints.get(key)
        optional = tp is not None and type(None) in typing.get_args(tp)
        if isinstance(value, str) and tp is not None and typing.get_origin(tp) is dict:
            value = parse_pairs(value)
        elif isinstance(value, str) and tp is not None and typing.get_origin(tp) is list:
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif value == "" and optional:
            value = None
        elif optional and value == 0 and not isinstance(value, bool) and (
                {int, float} & set(typing.get_args(tp))):
            value = None
        data[key] = value
    return from_dict(cls, data)


def section_from_params(cls: type[T], params: Mapping[str, Any]) -> T:
    """Build ``cls`` from those of a notebook's parameters that are its fields.

    A notebook passes ``globals()`` right after its parameters cell: every name that is a field
    of ``cls`` is read (and checked, as ``from_params`` does), every other name (other
    sections' fields, the notebook's own parameters, imports) is left alone. A test checks that
    the notebooks assign no field name outside their parameters cell.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return from_params(cls, **{k: v for k, v in params.items() if k in names})


# --------------------------------------------------------------------------- field docstrings and views


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body), by field name.

    Read from the class's source with ``ast``; a field without one is missing from the result
    (a test requires one for every field of every config class).
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    docs = {}
    for stmt, after in zip(node.body, node.body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def field_help(cls: type, name: str) -> str:
    """Field ``name``'s docstring as one line of plain text (CLI help, form tooltips)."""
    return " ".join(field_docs(cls).get(name, "").replace("``", "").split())


def section_names(root: type | None = None) -> dict[str, str]:
    """Each section's config class name to its field in ``root`` (default ``ExperimentConfig``).

    ``{"DataConfig": "data", "ModelConfig": "model", ...}``: what a notebook's
    ``metadata.workbench.configs`` names, and where the runner reads its values.
    """
    root = root or ExperimentConfig
    hints = typing.get_type_hints(root)
    return {hints[f.name].__name__: f.name for f in dataclasses.fields(root) if dataclasses.is_dataclass(hints[f.name])}


def _cli_kind(tp) -> tuple[str, object]:
    """("dict" | "list" | "bool" | "value", scalar type) of a field type, None dropped."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
        typing.Union, types.UnionType) else [tp]
    base = args[0] if len(args) == 1 else str
    origin = typing.get_origin(base)
    if origin is dict:
        return "dict", str
    if origin is list:
        return "list", str
    if base is bool:
        return "bool", bool
    if origin is Literal:
        return "value", type(typing.get_args(base)[0])
    return "value", base if base in (int, float, str) else str


def add_config_arguments(parser, cls: type, names: Sequence[str], positional: Sequence[str] = ()) -> None:
    """Add an ``argparse`` option for each of ``cls``'s fields in ``names``.

    ``eval_split`` becomes ``--eval-split``, with the field's default, and its docstring as help
    (litgpt derives its command line from signatures the same way). A mapping field takes
    ``KEY=VALUE`` and repeats (``--columns text=utterance``; the singular, ``--column``, works
    too); a list field takes values separated by commas and repeats; a true/false field is
    ``--name``/``--no-name``; an optional field takes ``none`` for None. Fields in
    ``positional`` are positional arguments. ``config_from_args`` builds ``cls`` back.
    """
    hints = typing.get_type_hints(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for name in names:
        tp = hints[name]
        kind, scalar = _cli_kind(tp)
        help_text = field_help(cls, name)
        if typing.get_origin(tp) is Literal:
            help_text += f" One of: {', '.join(map(str, choices(tp)))}."
        if kind == "value" and type(None) in typing.get_args(tp):
            help_text += " Write none for None."
        help_text = help_text.replace("%", "%%")
        if name in positional:
            parser.add_argument(name, help=help_text)
            continue
        flags = [f"--{name.replace('_', '-')}"]
        if kind == "dict":
            flags += [f"--{name[:-1]}"] if name.endswith("s") else []
            parser.add_argument(*flags, dest=name, action="append", metavar="KEY=VALUE", help=help_text)
        elif kind == "list":
            parser.add_argument(*flags, dest=name, action="append", metavar="A,B", help=help_text)
        elif kind == "bool":
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=defaults[name],
                                help=help_text)
        else:
            default = defaults[name]
            parser.add_argument(*flags, dest=name, type=str if default is None else scalar, default=default,
                                help=help_text)


def config_from_args(cls: type[T], args, names: Sequence[str]) -> T:
    """Build ``cls`` from the options ``add_config_arguments`` added for ``names`` (checked as YAML is)."""
    hints = typing.get_type_hints(cls)
    data = {}
    for name in names:
        value = getattr(args, name)
        kind, scalar = _cli_kind(hints[name])
        if kind == "dict":
            value = {k: v for text in value or [] for k, v in parse_pairs(text).items()}
        elif kind == "list":
            value = [v.strip() for text in value or [] for v in text.split(",") if v.strip()]
        elif isinstance(value, str) and value.lower() in ("none", "") and type(None) in typing.get_args(hints[name]):
            value = None
        elif isinstance(value, str) and scalar in (int, float):
            value = scalar(value)
        data[name] = value
    return from_dict(cls, data)


def to_dict(obj) -> dict:
    """A dataclass as plain data (for YAML, manifests and papermill parameters)."""
    return dataclasses.asdict(obj)


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read ``cls`` from a YAML file."""
    return from_dict(cls, yaml.safe_load(Path(path).read_text()) or {})


def dump_yaml(obj) -> str:
    """A dataclass (or plain data) as YAML, in field order."""
    return yaml.safe_dump(obj if isinstance(obj, dict) else to_dict(obj), sort_keys=False, allow_unicode=True)


def dump_changes(obj, keep: dict[str, tuple[str, ...]] | None = None) -> str:
    """An experiment (or any config dataclass) as the shortest YAML that reads back to it: only the values that
    differ from the defaults, section by section, plus the fields named in ``keep`` (``{"model":
    ("name_or_path",)}``) so the file says what matters even when it is a default."""
    keep = keep or {}

    def changes(value, default, path: str):
        if dataclasses.is_dataclass(value):
            out = {}
            for f in dataclasses.fields(value):
                v, d = getattr(value, f.name), getattr(default, f.name)
                sub = changes(v, d, f"{path}.{f.name}".lstrip("."))
                if sub is not _SAME or f.name in keep.get(path, ()):
                    out[f.name] = to_dict(v) if dataclasses.is_dataclass(v) and sub is _SAME else (
                        v if sub is _SAME else sub)
            return out or _SAME
        return _SAME if value == default else value

    out = changes(obj, type(obj)(), "")
    return dump_yaml({} if out is _SAME else out)


_SAME = object()


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how to read, clean and split it."""

    source: str = "datasets/banking77"
    """File, folder, or hub dataset name."""
    format: FormatName = "auto"
    """Task format; ``auto`` detects it from the column names."""
    columns: dict[str, str] = field(default_factory=dict)
    """Canonical field to source column, e.g. ``{text: utterance, label: intent}``; empty to detect."""
    split: str | None = None
    """Which split of a folder, a saved dataset or a JSON object of splits (default: train)."""
    eval_split: str | None = None
    """A separate split of the same source used as the test set (e.g. ``test``); None for the source's own
    test split if it has one, else one carved out of train. A validation split the source has (``val``,
    ``dev`` ...) is used as validation either way."""
    strict: bool = False
    """Raise on any bad row (True) or drop bad rows and report them (False)."""
    dedupe: bool = True
    """Drop exact and normalised duplicates from the training data."""
    keep_overlap: bool = False
    """Keep repeats in a provided validation or test split: its duplicates, and rows whose prompt is also in
    train (or, for test, in validation), exactly or after normalisation. Reported either way; dropped by
    default, so scores measure unseen prompts."""
    redact_pii: bool = True
    """Redact personal data before training, as ``pii_action`` says (False: report it, keep it)."""
    pii_action: Literal[PII_ACTIONS] = "tags"
    """What redaction does: ``tags`` replaces a value with its kind (``[EMAIL]``); ``pseudonyms`` with a
    made-up value of the same kind and shape, the same one for the same value in every row and split (keyed
    by the environment variable ``WORKBENCH_PII_SALT``, else by a random key kept in ~/.cache/workbench); ``drop``
    removes each row that holds personal data."""
    pii_region: str = "US"
    """Country (ISO 3166 code, e.g. ``US``, ``GB``, ``DE``, ``IN``) whose numbering plan reads phone numbers
    written without a ``+`` country code; other countries' national numbers are found with less confidence."""
    pii_min_confidence: float = 0.5
    """Report and redact findings at this confidence (0-1) or above: a number after "order" or "version"
    scores below 0.5, a valid phone after "call" near 1."""
    pii_ner: bool = False
    """Also scan for person names (spaCy's English NER model: install the ``ner`` extra) and street
    addresses. Off by default: the report then says names and addresses were not checked."""
    validation: float = 0.1
    """Share of rows held out for validation (unused when the source provides a validation split)."""
    test: float = 0.1
    """Share of rows held out for testing (unused when the source provides a test split or ``eval_split``
    names one)."""
    seed: int = 42
    """Seed of the split."""
    stratify: str | None = "auto"
    """``auto`` (by label for classification), a column name, or None."""
    reader: str | None = None
    """Force a reader (``csv``, ``tsv``, ``json``, ``jsonl``, ``parquet``, ``text``) when the file extension is
    wrong; None to go by the extension (a file without one is sniffed)."""
    encoding: str = "utf-8"
    """Text encoding of the files (e.g. ``latin-1``, ``cp1252``)."""
    header: bool | str = "auto"
    """Whether CSV/TSV files start with a header row: ``true``, ``false``, or ``auto``, which reads a first
    row that looks like a record (a sentence or number like the values below it, or a value repeated below
    it) as one, with a warning. Columns without a header are ``column_1``, ``column_2``, ... (named
    ``text``/``label`` by their contents when ``columns`` is empty)."""
    delimiter: str | None = None
    """CSV field separator (``;``, ``|``, ``\\t`` or ``tab``); None to sniff it from the first records."""
    quotechar: str | None = None
    """CSV quote character; None for the double quote."""
    field: str | None = None
    """JSON/JSONL: the key holding the records (dotted for nested keys), in the document or in each line."""
    # ``field`` above shadows dataclasses.field in this class body: write dataclasses.field below it.
    pii_allow: list[str] = dataclasses.field(default_factory=list)
    """Values that are not personal data and stay unredacted (role mailboxes such as ``security@example.com``)."""
    max_train_rows: int = 0
    """Train on the first N rows of the train split after shuffling it with ``seed`` (a quick trial on a
    subset); 0 for all rows. Validation and test splits stay whole."""

    def __post_init__(self):
        if str(self.header).lower() not in ("true", "false", "auto"):
            raise ConfigError(f"header must be true, false or auto, got {self.header!r}")
        if self.pii_action not in PII_ACTIONS:
            raise ConfigError(f"pii_action must be one of {', '.join(PII_ACTIONS)}, got {self.pii_action!r}")
        if not 0 <= self.pii_min_confidence <= 1:
            raise ConfigError(f"pii_min_confidence must be in [0, 1], got {self.pii_min_confidence}")
        if not re.fullmatch(r"[A-Za-z]{2}", self.pii_region):
            raise ConfigError(f"pii_region must be a two-letter country code such as US, GB, DE or IN, "
                              f"got {self.pii_region!r}")
        if self.max_train_rows < 0:
            raise ConfigError(f"max_train_rows must be 0 (all rows) or a number of rows, got {self.max_train_rows}")
        for name in ("validation", "test"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ConfigError(f"{name} must be a share in [0, 1), got {v}")
        if self.validation + self.test >= 1:
            raise ConfigError(f"validation + test must be below 1, got {self.validation + self.test}")

    def load_kwargs(self) -> dict:
        """What ``load_dataset(self.source, ...)`` takes."""
        return {"format": self.format, "columns": self.columns or None, "split": self.split, "strict": self.strict,
                "reader": self.reader, "encoding": self.encoding, "header": self.header,
                "delimiter": self.delimiter, "quotechar": self.quotechar, "field": self.field}

    def report_kwargs(self) -> dict:
        """What ``data_report(self.source, ...)`` takes: loading, cleaning and splitting."""
        return {**self.load_kwargs(), "eval_split": self.eval_split, "dedupe": self.dedupe,
                "keep_overlap": self.keep_overlap, "redact": self.redact_pii, "test": self.test,
                "validation": self.validation, "seed": self.seed, "stratify": self.stratify,
                "pii_allow": tuple(self.pii_allow), "pii_action": self.pii_action, "pii_region": self.pii_region,
                "pii_min_confidence": self.pii_min_confidence, "pii_ner": self.pii_ner}


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
    """A hub id, a local folder, a ``.gguf`` file (converted once into a cached folder), or a preset:
    ``minilm`` (the bundled encoder), ``smollm2-135m-instruct`` (chat model, Apache-2.0),
    ``gemma3-270m`` (Gemma Terms of Use; optional extra); empty with task ``pretraining`` to build
    the base from scratch (``pretrain.preset``)."""
    task: TaskName = "sequence-classification"
    """What the model learns: answers (causal-lm SFT), one label per text, or running text (pretraining)."""
    method: MethodName = "full"
    """Train every weight, low-rank adapters, or adapters on a 4-bit (NF4) base (workbench.methods)."""
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
    storage_dtype: Literal["uint8", "bfloat16", "float16", "float32"] = "uint8"
    """The dtype the packed 4-bit weights are stored in. FSDP shards parameters of one dtype only, so QLoRA
    under ``launch.backend: fsdp`` needs the model's float dtype here (``bfloat16``); uint8 otherwise."""


@dataclass(frozen=True)
class TrainConfig:
    """The training run."""

    output_dir: str = "runs/train"
    """The run folder: checkpoints, the model or adapter, logs, metrics. ``workbench train`` puts a spec that
    leaves this default in ``runs/train/<experiment name>`` (one folder per experiment)."""
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
    evaluate_on_stop: bool = False
    """When a run is stopped before its end, evaluate the model on the validation split before saving (takes as
    long as a full evaluation); off: a stopped run saves at once, with the evaluations it made while training."""
    seed: int = 42
    """Seed of initialisation, shuffling and dropout."""
    resume: bool = True
    """Continue from the last complete checkpoint in ``output_dir`` if there is one and it belongs to this run
    (same config, less how long it trains, logs, evaluates and saves, and same data); another run's is refused."""
    resume_anyway: bool = False
    """Resume the last complete checkpoint in ``output_dir`` even when it belongs to another run (its config or
    data differ); the differences are kept in the run's warnings."""
    oom_retry: bool = True
    """On out-of-memory, retry with half the batch and twice the accumulation (same effective batch)."""
    num_threads: int = 0
    """CPU threads for torch; 0 to choose from the machine's load (the cores other work leaves free, at least 1;
    shared out between the processes of a launch)."""
    report_to: list[str] = field(default_factory=list)
    """Experiment trackers the main process also logs to: ``tensorboard``, ``mlflow``, ``trackio`` (each local,
    stored in the run folder unless its own environment variable says otherwise; none by default)."""

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be at least 1")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8, got {self.max_length}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"max_steps must be -1 (train for the epochs) or at least 1, got {self.max_steps}")
        if self.epochs < 0 or (self.epochs == 0 and self.max_steps == -1):
            raise ConfigError(f"epochs must be positive (or set max_steps), got {self.epochs:g}")
        for name, bad, rule in (
                ("warmup", self.warmup < 0, "0 or more (a share of the steps below 1, else a number of steps)"),
                ("weight_decay", self.weight_decay < 0, "0 or more"),
                ("label_smoothing", not 0 <= self.label_smoothing < 1, "in [0, 1)"),
                ("head_learning_rate", self.head_learning_rate is not None and self.head_learning_rate <= 0,
                 "positive (or empty: the learning rate)"),
                ("probe_c", self.probe_c <= 0, "positive"),
                ("logging_steps", self.logging_steps < 1, "at least 1"),
                ("eval_steps", self.eval_steps < 0, "0 (once per epoch) or more"),
                ("save_steps", self.save_steps < 0, "0 (once per epoch) or more"),
                ("save_total_limit", self.save_total_limit < 1, "at least 1"),
                ("early_stopping_patience", self.early_stopping_patience < 0, "0 (never) or more"),
                ("num_threads", self.num_threads < 0, "0 (from the machine's load) or more"),
                ("report_to", any(t not in TRACKERS for t in self.report_to),
                 f"a list of {', '.join(TRACKERS)} (empty for none)")):
            if bad:
                raise ConfigError(f"{name} must be {rule}, got {getattr(self, name)}")


#: The experiment trackers ``train.report_to`` accepts: local-first, none needs an account or the network.
TRACKERS = ("tensorboard", "mlflow", "trackio")
#: How a launch spreads training over processes (``launch.backend``).
BACKENDS = ("ddp", "fsdp", "deepspeed")


@dataclass(frozen=True)
class LaunchConfig:
    """How many processes train, on how many machines: ``torch.distributed.run`` starts them, the Trainer (on
    accelerate) joins them. One process on one machine trains in the calling process, as before."""

    processes: int = 1
    """Training processes on this machine: one per GPU (on a machine without GPUs, CPU processes over gloo)."""
    machines: int = 1
    """Machines taking part; each runs the same command with its own ``machine_rank``."""
    machine_rank: int = 0
    """This machine's number, 0 to machines - 1; machine 0 is the main one: it alone writes the run folder."""
    main_process_ip: str = "127.0.0.1"
    """The address of machine 0, as the other machines reach it."""
    main_process_port: int = 0
    """The port machine 0 listens on for the others; 0 picks a free one (one machine only)."""
    backend: Literal[BACKENDS] = "ddp"
    """``ddp`` (a whole copy of the model per process), ``fsdp`` (FSDP2: parameters, gradients and optimizer
    state sharded) or ``deepspeed`` (ZeRO stage 2 or 3, from its config file)."""
    config_file: str | None = None
    """The backend's settings (YAML or JSON); None for the shipped ``experiments/launch/<backend>.yaml``."""
    connect_timeout: int = 60
    """Seconds a machine other than 0 waits for machine 0 before giving up with a message."""

    def __post_init__(self):
        for name, bad, rule in (
                ("processes", self.processes < 1, "at least 1"),
                ("machines", self.machines < 1, "at least 1"),
                ("machine_rank", not 0 <= self.machine_rank < self.machines, f"from 0 to machines - 1 ({self.machines - 1})"),
                ("main_process_port", not 0 <= self.main_process_port < 65536, "a port number, or 0 for a free one"),
                ("connect_timeout", self.connect_timeout < 1, "at least 1 second")):
            if bad:
                raise ConfigError(f"launch.{name} must be {rule}, got {getattr(self, name)}")
        if self.machines > 1 and not self.main_process_port:
            raise ConfigError("launch.main_process_port must be set (every machine uses the same one) when "
                              f"launch.machines is {self.machines}; 29500 is the usual choice")

    @property
    def world_size(self) -> int:
        """Processes in all: ``processes`` on each of ``machines``."""
        return self.processes * self.machines


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
    repetition_penalty: float = 1.0
    """Divides the scores of tokens already in the prompt or answer (1.0 for none; 1.1 to 1.3 curbs the loops
    small fine-tuned models fall into)."""
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
    verdict_metric: Literal["auto", "accuracy", "macro_f1"] = "auto"
    """Classification: the metric the verdict (better, worse, no significant difference) is about. ``auto``
    picks macro_f1 when the test labels are imbalanced (the largest class has more than 3 times the examples
    of the smallest, see ``metrics.IMBALANCE_RATIO``) and accuracy otherwise; the report says which and why."""
    out_of_scope: str = ""
    """Classification: the label of out-of-scope inputs (e.g. ``oos``); empty for none. When set, each model
    with class probabilities rejects as out-of-scope what it is unsure of: a threshold on its top class
    probability, fitted on the validation split (``metrics.fit_rejection_threshold``), on top of the label
    when it is also a trained class; reports add in-scope accuracy and out-of-scope recall and precision."""

    def __post_init__(self):
        for name in self.metrics:  # the per-example metrics of workbench.metrics score generations
            if name not in PER_EXAMPLE:
                close = difflib.get_close_matches(str(name), list(PER_EXAMPLE), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"metrics: {name!r} is not a generation metric.{hint} "
                                  f"Choose from {', '.join(sorted(PER_EXAMPLE))}.")


@dataclass(frozen=True)
class PretrainConfig:
    """Pretrain before fine-tuning: a small model from scratch on the corpus, or, when ``model.name_or_path``
    names a base, that base continued on the corpus (domain-adaptive pretraining)."""

    source: str = ""
    """The corpus: documents (Markdown, PDF, HTML...), a text file or a corpus dataset; empty for no pretraining."""
    text_column: str = ""
    """The column holding the text when ``source`` is a table (CSV, JSON, JSONL, Parquet) whose text column
    is not named like text (``text``, ``content``, ``body``...); empty to detect it."""
    held_out: float = 0.0
    """Share of the corpus's documents (rows, for a table without a ``path`` column) kept out of pretraining;
    the comparison reports every model's perplexity on them, with paired-bootstrap intervals. 0 for none."""
    finetune_plain: bool = True
    """When continuing a named base: also fine-tune that base as it was, so the comparison shows what the
    continued pretraining added."""
    preset: Literal["tiny", "small"] = "small"
    """From scratch: the model size (see workbench.presets)."""
    vocab_size: int = 2000
    """From scratch: the size of the byte-level BPE trained on the corpus."""
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

    def __post_init__(self):
        if not 0 <= self.held_out < 1:
            raise ConfigError(f"pretrain.held_out must be a share in [0, 1), got {self.held_out}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment (the sections of an experiment YAML): data, model, adapters, training, comparison."""

    name: str = "experiment"
    """Names the run folder: ``runs/<name>/<run-id>``."""
    description: str = ""
    """What the experiment is for, in a sentence."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data: where it is, how it is read, cleaned and split."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model, its task and the fine-tuning method."""
    methods: list[str] = field(default_factory=list)
    """Fine-tune with each of these methods in turn (full, lora, qlora); empty for ``model.method`` alone."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Low-rank adapters (methods lora and qlora)."""
    quant: QuantConfig = field(default_factory=QuantConfig)
    """4-bit quantization of the base model (method qlora)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The training run."""
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    """Processes and machines the training step runs on (one process by default)."""
    tokens: TokenConfig = field(default_factory=TokenConfig)
    """Token statistics (the tokenization notebook)."""
    compare: CompareConfig = field(default_factory=CompareConfig)
    """How the trained models are compared on the test split."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Pretraining first (from scratch, or continuing ``model.name_or_path``); off unless ``pretrain.source`` is set."""
    notebooks: list[str] = field(default_factory=lambda: ["01_explore_dataset.ipynb", "02_tokenization.ipynb",
                                                          "03_finetune.ipynb", "04_compare.ipynb"])
    """Notebooks papermill runs, in order; names in notebooks/ or paths."""

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"methods: {', '.join(bad)} not one of {', '.join(METHODS)}")

    def method_list(self) -> list[str]:
        return list(self.methods) or [self.model.method]


#: Short names ``-p`` and ``--grid`` accept for common keys.
ALIASES = {"lr": "train.learning_rate", "epochs": "train.epochs", "batch_size": "train.batch_size",
           "max_steps": "train.max_steps", "method": "model.method", "r": "lora.r", "seed": "train.seed"}


def apply_overrides(cfg: ExperimentConfig, overrides: list[str] | dict) -> ExperimentConfig:
    """``["train.learning_rate=1e-4", "lora.r=16"]`` applied to ``cfg`` (values parsed as YAML)."""
    pairs = overrides.items() if isinstance(overrides, dict) else (o.split("=", 1) for o in overrides)
    data = to_dict(cfg)
    for key, value in pairs:
        key = ALIASES.get(key.strip(), key.strip())
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"-p {key}: '{part}' is not a section of the experiment")
            node = node[part]
        node[parts[-1]] = yaml.safe_load(value) if isinstance(value, str) else value
    return from_dict(ExperimentConfig, data)
