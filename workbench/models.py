"""Models: load a base (hub id, local folder or preset), quantize, attach adapters, merge, export.

- Causal LMs load with ``AutoModelForCausalLM``; QLoRA loads them in 4-bit NF4 with double
  quantization through bitsandbytes, runs ``prepare_model_for_kbit_training`` and adds LoRA.
- Classification: encoders trained for sentence embeddings (sentence-transformers folders
  such as all-MiniLM-L6-v2, trained with mean pooling) get ``PooledClassifier``, a mean
  pooling + linear head that matches how they were trained; other models use their own
  ``AutoModelForSequenceClassification`` head.
- ``trust_remote_code`` is off unless the config asks; weights are saved as safetensors.
- Merging a QLoRA adapter reloads the base in full precision and merges there, never into
  the 4-bit weights.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import distributed
from .config import LoraConfig, ModelConfig, QuantConfig
from .devices import bnb_config, resolve_device
from .files import atomic_write_json
from .heads import CLASSIFIER_FILE, HEAD_FILE, PooledClassifier
from .methods import get_method
from .errors import ModelNotFoundError, model_not_found
from .presets import LICENCES, resolve_path
from .tasks import get_task
from .tokenizer import load_tokenizer

LABELS_FILE = "label_map.json"


def quiet_loading() -> None:
    """Turn off transformers' per-load progress bars: they clutter notebooks and reports."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_classifier(path: str | Path, device: str = "cpu") -> tuple[PooledClassifier, list[str]]:
    """A saved ``PooledClassifier`` (full or adapter) and its label names, for inference."""
    quiet_loading()
    from safetensors.torch import load_file
    from transformers import AutoModel

    path = Path(path)
    meta = json.loads((path / CLASSIFIER_FILE).read_text())
    if (path / "encoder").exists():
        encoder = AutoModel.from_pretrained(path / "encoder")
    else:
        from peft import PeftModel

        base = AutoModel.from_pretrained(resolve_path(meta["base"]))
        encoder = PeftModel.from_pretrained(base, path / "adapter")
    model = PooledClassifier(encoder, meta["num_labels"], meta["pooling"], normalize=meta.get("normalize", False))
    model.head.load_state_dict(load_file(str(path / HEAD_FILE)))
    return model.to(device).eval(), meta["labels"]


# --------------------------------------------------------------------------- loading


@dataclass
class Loaded:
    """A model ready to train, with what is needed to save and describe it."""

    model: nn.Module
    tokenizer: object
    device: str
    kind: str
    """``causal-lm``, ``pooled-classifier`` or ``classifier`` (the model's own head)."""
    base: str


def load_model(cfg: ModelConfig, quant: QuantConfig = QuantConfig(), lora: LoraConfig = LoraConfig(),
               labels: list[str] | None = None, tokenizer=None, label_smoothing: float = 0.0) -> Loaded:
    """Load the base model of ``cfg`` for its task, prepared by its method (adapters attached).

    Args:
        cfg: Model, task and method.
        quant: 4-bit settings (methods that quantize).
        lora: Adapter settings (adapter methods).
        labels: Class names, for sequence classification.
        tokenizer: Reuse this tokenizer instead of loading the model's.
        label_smoothing: For the pooled classification head.
    """
    quiet_loading()
    task, method = get_task(cfg.task), get_method(cfg.method)
    device = resolve_device(cfg.device)
    # One process of a launch per GPU: this one's (its local rank), named, wherever the model is placed. Under
    # FSDP or DeepSpeed the whole model stays in CPU memory until the Trainer shards it onto the GPUs (only a
    # 4-bit base, small, loads onto its GPU as it is quantized).
    place = f"cuda:{distributed.local_rank()}" if device == "cuda" and distributed.world_size() > 1 else device
    if distributed.sharded() and not method.quantized:
        place = "cpu"
    path = resolve_path(cfg.name_or_path)
    try:  # a name that loads nothing says so in one line, with the presets, not a hub traceback
        tok = tokenizer or load_tokenizer(path, trust_remote_code=cfg.trust_remote_code)
        common = {"trust_remote_code": cfg.trust_remote_code, **method.load_kwargs(quant, device)}
        if "device_map" in common:
            common["device_map"] = {"": place}
        model, kind = task.load(path, labels, common, cfg, tok, label_smoothing)
    except (OSError, ModelNotFoundError) as e:
        raise model_not_found(cfg.name_or_path, e, presets=LICENCES) from None
    if kind == "pooled-classifier":  # the head stays a plain, fully trained module
        model.encoder = method.prepare(model.encoder, kind, lora, cfg.gradient_checkpointing)
    else:
        model = method.prepare(model, kind, lora, cfg.gradient_checkpointing)
    if not method.quantized:  # a quantized base was placed on its device as it loaded
        model = model.to(place)
    return Loaded(model, tok, device, kind, cfg.name_or_path)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


# --------------------------------------------------------------------------- saving, merging


def save_trained(loaded: Loaded, out_dir: str | Path, method: str, labels: list[str] | None = None,
                 state_dict: dict | None = None) -> Path:
    """Save the adapter or the whole model (safetensors) with its tokenizer and label map.

    ``state_dict``: the whole model's weights gathered from the processes that hold its shards (FSDP,
    DeepSpeed ZeRO-3), saved instead of the module's own (which hold one shard each)."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if isinstance(loaded.model, PooledClassifier):
        loaded.model.save_pretrained(tmp, loaded.base, method, labels or [], state_dict=state_dict)
    else:
        # A PeftModel writes the adapter only (taken from state_dict when one is given).
        loaded.model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
    loaded.tokenizer.save_pretrained(tmp)
    if labels:
        atomic_write_json(tmp / LABELS_FILE, {"labels": labels, "label2id": {n: i for i, n in enumerate(labels)}})
    atomic_write_json(tmp / "workbench.json", {"kind": loaded.kind, "method": method, "base": loaded.base})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)  # one rename: a reader sees no folder or a complete one
    return out


def merge_and_export(trained_dir: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Merge a LoRA/QLoRA adapter into a full-precision reload of its base and save a standalone model.

    Args:
        trained_dir: A folder written by ``save_trained`` holding an adapter.
        out_dir: Where the merged model (safetensors, tokenizer, label map) goes.
        base: The base model, if it moved since training (default: as recorded).
    """
    from peft import PeftModel
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    src = Path(trained_dir)
    info = json.loads((src / "workbench.json").read_text())
    base = resolve_path(base or info["base"])
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if info["kind"] == "pooled-classifier":
        meta = json.loads((src / CLASSIFIER_FILE).read_text())
        encoder = PeftModel.from_pretrained(AutoModel.from_pretrained(base, dtype=torch.float32), src / "adapter")
        tmp.mkdir(parents=True)
        encoder.merge_and_unload().save_pretrained(tmp / "encoder")
        shutil.copy(src / HEAD_FILE, tmp / HEAD_FILE)
        atomic_write_json(tmp / CLASSIFIER_FILE, {**meta, "method": "full", "merged_from": str(src)})
    else:
        cls = AutoModelForCausalLM if info["kind"] == "causal-lm" else AutoModelForSequenceClassification
        model = PeftModel.from_pretrained(cls.from_pretrained(base, dtype=torch.float32), src)
        model.merge_and_unload().save_pretrained(tmp)
    for f in src.iterdir():  # tokenizer files and label map travel with the model
        if f.is_file() and (f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template"))
                            or f.name == LABELS_FILE):
            shutil.copy(f, tmp / f.name)
    atomic_write_json(tmp / "workbench.json", {"kind": info["kind"], "method": "merged", "base": str(base),
                                               "adapter": str(src)})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_causal_lm(path: str | Path, device: str = "cpu", quant: QuantConfig | None = None):
    """A trained causal LM for generation: a merged/full folder, or an adapter on its recorded base."""
    quiet_loading()
    from transformers import AutoModelForCausalLM

    path = Path(resolve_path(str(path)))  # a preset or .gguf base (the comparison's "base") becomes its folder
    tok = load_tokenizer(path)
    info_file = path / "workbench.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    kwargs = {}
    if quant is not None:
        kwargs = {"quantization_config": bnb_config(quant, device), "device_map": {"": device}}
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(resolve_path(info.get("base") or _adapter_base(path)), **kwargs)
        model = PeftModel.from_pretrained(base, path)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quant is None:
        model = model.to(device)
    return model.eval(), tok


def _adapter_base(path: Path) -> str:
    return json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
