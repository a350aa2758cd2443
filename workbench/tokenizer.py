"""Tokenizers: loading one (local folder or hub id, fast only), training a byte-level BPE, naming
and fingerprinting one. Statistics over datasets are in ``workbench.tokens``."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable

from .errors import model_not_found


def load_tokenizer(name_or_path: str | Path, trust_remote_code: bool = False, **kwargs):
    """A fast tokenizer from a local folder or a hub id (``trust_remote_code`` off unless asked for).

    Raises:
        ModelNotFoundError: nothing of that name to load (one line saying what to name instead).
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code, **kwargs)
    except OSError as e:
        raise model_not_found(name_or_path, e) from None
    except ValueError:
        folder = Path(str(name_or_path)).expanduser()
        if folder.is_dir() and not any(folder.glob("tokenizer*")):  # transformers finds no backend to build
            raise model_not_found(name_or_path, OSError("the folder holds no tokenizer files (tokenizer.json, "
                                                        "tokenizer_config.json).")) from None
        raise
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{name_or_path}: a fast tokenizer is needed (offsets are used for loss masks).")
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # decoder-only models often ship without one
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2,
                    chat_template: str | None = None):
    """Train a byte-level BPE tokenizer on ``texts`` (for models pretrained from scratch and for tests).

    The result has ``<|bos|>`` (added in front by the post-processor), ``<|eos|>``, ``<|pad|>``
    and no unknown token (byte-level BPE can spell anything).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|bos|>", "<|eos|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|bos|> $A", pair="<|bos|> $A $B", special_tokens=[("<|bos|>", bos)]),
    ])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


#: Folder names that say nothing alone (``<package>/model``, ``<run>/train-lora/model``): shown with their parent.
GENERIC_FOLDERS = {"model", "models", "tokenizer", "base", "merged", "export", "final", "snapshot"}


def _folder_label(path: Path) -> str:
    path = path.expanduser().resolve()
    name = re.sub(r"-[0-9a-f]{16}$", "", path.name)  # a converted GGUF's cache folder: <file stem>-<sha256[:16]>
    return f"{path.parent.name}/{name}" if name.lower() in GENERIC_FOLDERS and path.parent.name else name


def tokenizer_name(tokenizer, given: str | Path = "") -> str:
    """A readable name for a tokenizer: what it was loaded as, short, with its class when that says something.

    A preset name or hub id stays as it is; a local folder becomes its name (a generic one such
    as ``model`` with its parent's, a converted GGUF's cache folder without its hash), never a
    site-packages path; a tokenizer built in memory is named by its algorithm and vocabulary.
    A model-specific class is added (``minilm (BertTokenizer)``); the generic fast backend is not.

    Args:
        tokenizer: A loaded tokenizer.
        given: The name it was loaded by (a preset, folder or hub id); default its ``name_or_path``.
    """
    name = str(given or getattr(tokenizer, "name_or_path", "") or "")
    if name and (Path(name).expanduser().is_absolute() or Path(name).expanduser().exists()):
        name = _folder_label(Path(name))
    if not name:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        algorithm = type(backend.model).__name__ if backend is not None else "tokenizer"
        name = f"unnamed {algorithm} ({len(tokenizer):,} tokens)"
    cls = type(tokenizer)
    return f"{name} ({cls.__name__})" if cls.__module__.startswith("transformers.models.") else name


_TOK_PRINTS: dict[int, str] = {}


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's vocabulary, rules and template."""
    key = id(tokenizer)
    if key not in _TOK_PRINTS:
        h = hashlib.sha1(tokenizer.backend_tokenizer.to_str().encode())
        h.update(str(getattr(tokenizer, "chat_template", "")).encode())
        _TOK_PRINTS[key] = h.hexdigest()[:16]
    return _TOK_PRINTS[key]
