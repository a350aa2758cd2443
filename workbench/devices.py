"""Devices and precision: where to train, in which dtype, and the 4-bit quantization settings.

torch and transformers are imported when a function runs, so that reading a config (which
names methods) does not load them.
"""

from __future__ import annotations


def resolve_device(preference: str = "auto") -> str:
    """``cuda`` if available, else ``mps``, else ``cpu``; an explicit choice is checked."""
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; use device: auto or cpu.")
    if preference == "mps" and not has_mps:
        raise RuntimeError("device 'mps' was asked for but is not available; use device: auto or cpu.")
    return preference


def compute_dtype(device: str, preference: str = "auto"):
    """bf16 where the device supports it, else fp32 (``preference`` overrides); a ``torch.dtype``."""
    import torch

    if preference != "auto":
        return getattr(torch, preference)
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def bnb_config(quant, device: str):
    """bitsandbytes 4-bit settings from a ``QuantConfig``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(device, quant.compute_dtype),
    )
