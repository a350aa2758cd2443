"""Classification heads: mean (or CLS) pooling over an encoder's real tokens and a linear head.

Encoders trained for sentence embeddings (sentence-transformers folders such as the bundled
all-MiniLM-L6-v2) were trained with mean pooling; ``PooledClassifier`` classifies the way
they embed. Saved as the encoder (or its adapter), ``head.safetensors`` and ``classifier.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .files import atomic_write_json

CLASSIFIER_FILE = "classifier.json"
HEAD_FILE = "head.safetensors"


def pooling_mode(path: str, preference: str = "auto") -> str | None:
    """``mean`` or ``cls`` for a pooled head; None to use the model's own classification head."""
    if preference != "auto":
        return preference
    cfg = Path(path) / "1_Pooling" / "config.json"
    if cfg.exists():
        pool = json.loads(cfg.read_text())
        return "cls" if pool.get("pooling_mode_cls_token") else "mean"
    return None


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

    def save_pretrained(self, out_dir: str | Path, base: str, method: str, labels: list[str],
                        state_dict: dict | None = None) -> None:
        """Encoder (or its adapter), head weights and a description, as safetensors and JSON.

        ``state_dict``: the whole classifier's weights gathered from the processes holding its shards (FSDP,
        DeepSpeed ZeRO-3), saved instead of the modules' own."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        parts = {"encoder": {}, "head": {}}
        for key, value in (state_dict or {}).items():
            part, _, name = key.partition(".")
            if part in parts:
                parts[part][name] = value
        # A peft-wrapped encoder saves its adapter only; the base is reloaded from ``base``.
        self.encoder.save_pretrained(out / ("adapter" if hasattr(self.encoder, "peft_config") else "encoder"),
                                     **({"state_dict": parts["encoder"]} if state_dict is not None else {}))
        head = parts["head"] if state_dict is not None else self.head.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, str(out / HEAD_FILE))
        atomic_write_json(out / CLASSIFIER_FILE, {"base": base, "method": method, "pooling": self.pooling,
                                                  "normalize": self.normalize, "num_labels": self.num_labels,
                                                  "labels": labels})
