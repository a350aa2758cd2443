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

from .config import LoraConfig, ModelConfig, QuantConfig
from .files import atomic_write_json

PRESETS = {"minilm"}
CLASSIFIER_FILE = "classifier.json"
HEAD_FILE = "head.safetensors"
LABELS_FILE = "label_map.json"


def quiet_loading() -> None:
    """Turn off transformers' per-load progress bars: they clutter notebooks and reports."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def resolve_device(preference: str = "auto") -> str:
    """``cuda`` if available, else ``mps``, else ``cpu``; an explicit choice is checked."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; use device: auto or cpu.")
    if preference == "mps" and not has_mps:
        raise RuntimeError("device 'mps' was asked for but is not available; use device: auto or cpu.")
    return preference


def compute_dtype(device: str, preference: str = "auto") -> torch.dtype:
    """bf16 where the device supports it, else fp32 (``preference`` overrides)."""
    if preference != "auto":
        return getattr(torch, preference)
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_path(name_or_path: str) -> str:
    """Preset names to their folders; anything else is passed to ``from_pretrained`` as given."""
    if name_or_path == "minilm":
        from .presets import minilm_path

        return str(minilm_path())
    return str(name_or_path)


def is_sentence_encoder(path: str) -> bool:
    p = Path(path)
    return (p / "modules.json").exists() or (p / "1_Pooling" / "config.json").exists()


def pooling_mode(path: str, preference: str = "auto") -> str | None:
    """``mean`` or ``cls`` for a pooled head; None to use the model's own classification head."""
    if preference != "auto":
        return preference
    cfg = Path(path) / "1_Pooling" / "config.json"
    if cfg.exists():
        pool = json.loads(cfg.read_text())
        return "cls" if pool.get("pooling_mode_cls_token") else "mean"
    return None


# --------------------------------------------------------------------------- classification head


class PooledClassifier(nn.Module):
    """An encoder, mean (or CLS) pooling over real tokens, dropout and a linear head.

    Returns ``SequenceClassifierOutput`` so Trainer treats it like any classifier.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1,
                 label_smoothing: float = 0.0, normalize: bool = False):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.normalize = normalize
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.head = nn.Linear(hidden, num_labels)
        self.num_labels = num_labels
        self.label_smoothing = label_smoothing
        self.config = encoder.config  # Trainer and peft read model.config

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        pooled = self.pool(out.last_hidden_state, attention_mask)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def init_head(self, weight, bias) -> None:
        """Set the head (labels x hidden, labels), e.g. from a logistic-regression probe (LP-FT)."""
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight, dtype=self.head.weight.dtype))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=self.head.bias.dtype))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        pooled = self.embed(input_ids, attention_mask, token_type_ids)
        logits = self.head(self.dropout(pooled).to(self.head.weight.dtype))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, out_dir: str | Path, base: str, method: str, labels: list[str]) -> None:
        """Encoder (or its adapter), head weights and a description, as safetensors and JSON."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(out / ("adapter" if method in ("lora", "qlora") else "encoder"))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD_FILE))
        atomic_write_json(out / CLASSIFIER_FILE, {"base": base, "method": method, "pooling": self.pooling,
                                                  "normalize": self.normalize, "num_labels": self.num_labels,
                                                  "labels": labels})


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


def bnb_config(quant: QuantConfig, device: str):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(device, quant.compute_dtype),
    )


def load_model(cfg: ModelConfig, quant: QuantConfig = QuantConfig(), lora: LoraConfig = LoraConfig(),
               labels: list[str] | None = None, tokenizer=None, label_smoothing: float = 0.0) -> Loaded:
    """Load the base model of ``cfg`` for its task and method, adapters attached.

    Args:
        cfg: Model, task and method.
        quant: 4-bit settings (QLoRA only).
        lora: Adapter settings (LoRA and QLoRA).
        labels: Class names, for sequence classification.
        tokenizer: Reuse this tokenizer instead of loading the model's.
        label_smoothing: For the pooled classification head.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    from .tokens import load_tokenizer

    quiet_loading()
    device = resolve_device(cfg.device)
    path = resolve_path(cfg.name_or_path)
    tok = tokenizer or load_tokenizer(path, trust_remote_code=cfg.trust_remote_code)
    common = {"trust_remote_code": cfg.trust_remote_code}
    qlora = cfg.method == "qlora"
    if qlora:
        common["quantization_config"] = bnb_config(quant, device)
        common["device_map"] = {"": device}
        common["dtype"] = compute_dtype(device, quant.compute_dtype)
    if cfg.task == "causal-lm":
        model = AutoModelForCausalLM.from_pretrained(path, **common)
        kind = "causal-lm"
    else:
        if not labels:
            raise ValueError("sequence classification needs the label names")
        pool = pooling_mode(path, cfg.pooling)
        if pool:
            encoder = AutoModel.from_pretrained(path, **common)
            model = PooledClassifier(encoder, len(labels), pool, label_smoothing=label_smoothing,
                                     normalize=cfg.normalize)
            kind = "pooled-classifier"
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={n: i for i, n in enumerate(labels)}, **common)
            kind = "classifier"
    if kind == "causal-lm":
        if getattr(model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
            model.config.pad_token_id = tok.pad_token_id
        # Training needs no KV cache, and with one transformers skips packed-sequence detection:
        # packed examples would attend to each other.
        model.config.use_cache = False
    if cfg.method in ("lora", "qlora"):
        model = attach_lora(model, lora, kind, qlora, cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        target = model.encoder if kind == "pooled-classifier" else model
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not qlora:
        model = model.to(device)
    return Loaded(model, tok, device, kind, cfg.name_or_path)


def attach_lora(model: nn.Module, lora: LoraConfig, kind: str, quantized: bool = False,
                gradient_checkpointing: bool = False) -> nn.Module:
    """Add LoRA adapters; for a 4-bit base, prepare it for k-bit training first."""
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model, prepare_model_for_kbit_training

    inner = model.encoder if kind == "pooled-classifier" else model
    if quantized:
        inner = prepare_model_for_kbit_training(inner, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    task_type = {"causal-lm": "CAUSAL_LM", "classifier": "SEQ_CLS", "pooled-classifier": "FEATURE_EXTRACTION"}[kind]
    target = lora.target_modules
    peft_cfg = PeftLora(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=target,
                        modules_to_save=list(lora.modules_to_save) or None, task_type=task_type)
    wrapped = get_peft_model(inner, peft_cfg)
    if kind == "pooled-classifier":
        model.encoder = wrapped  # the head stays a plain, fully trained module
        return model
    return wrapped


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


# --------------------------------------------------------------------------- saving, merging


def save_trained(loaded: Loaded, out_dir: str | Path, method: str, labels: list[str] | None = None) -> Path:
    """Save the adapter or the whole model (safetensors) with its tokenizer and label map."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if loaded.kind == "pooled-classifier":
        loaded.model.save_pretrained(tmp, loaded.base, method, labels or [])
    else:
        loaded.model.save_pretrained(tmp)  # a PeftModel writes the adapter only
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

    from .tokens import load_tokenizer

    path = Path(path)
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
