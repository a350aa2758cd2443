"""Devices and precision: where to train, in which dtype, and the 4-bit quantization settings.

torch and transformers are imported when a function runs, so that reading a config (which
names methods) does not load them.
"""

from __future__ import annotations

import os
import time


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
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(device, quant.compute_dtype),
        bnb_4bit_quant_storage=getattr(torch, quant.storage_dtype),
    )


def thread_count(requested: int = 0) -> int:
    """CPU threads for torch: ``requested`` when positive, else the cores other work leaves free.

    Several processes each running as many threads as there are cores slow one another to a
    crawl (measured on 2 cores: 66 against 300 tokens/s when training, 12.4 s against 0.49 s
    for 8 generated tokens), so a busy machine gets fewer threads: the cores less those busy
    elsewhere, at least one.
    """
    if requested > 0:
        return requested
    return free_cores(busy_elsewhere())


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_cores(load: float) -> int:
    """The cores ``load`` (cores busy elsewhere) leaves free, at least one."""
    return max(1, min(cores(), int(cores() - load + 0.5)))


def thread_warning(requested: int) -> str:
    """Why an explicit thread count is too many for the machine now, or "" when it is not.

    An explicit ``num_threads`` above the cores other work leaves free makes the threads wait for
    one another (see ``thread_count``); the warning gives the measured load and suggests 0 (auto).
    """
    if requested <= 0:
        return ""
    load = busy_elsewhere()
    free = free_cores(load)
    if requested <= free:
        return ""
    return (f"num_threads={requested}, but other work keeps {load:.1f} of the {cores()} cores busy, leaving {free} "
            f"free: {requested} threads will wait on one another (on 2 busy cores training ran at 66 tokens/s "
            f"against 300 with one thread). Set num_threads to 0 to choose from the load.")


def busy_elsewhere(samples: int = 5, interval: float = 0.05, source: str = "/proc/loadavg") -> float:
    """How many cores other work keeps busy now: runnable tasks other than the caller (median of
    ``samples`` reads of /proc/loadavg), or the one-minute load average where there is no /proc.

    The load average alone lags by a minute: a pipeline's previous step would still count as busy.
    """
    try:
        counts = []
        for i in range(samples):
            with open(source) as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)  # the reader itself is running
            if i + 1 < samples:
                time.sleep(interval)
        return float(sorted(counts)[len(counts) // 2])
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:  # pragma: no cover - neither on this platform
            return 0.0


def use_threads(requested: int = 0) -> int:
    """Set torch's CPU thread count from ``thread_count(requested)``; returns it."""
    import torch

    n = thread_count(requested)
    torch.set_num_threads(n)
    return n


def release_memory() -> None:
    """Give back what a finished run held: collect the model and trainer (they reference each other, so only
    the cycle collector frees them) and return cached GPU blocks to the driver. A kernel that trained stays
    small enough to train again, or to compare, without a restart."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
