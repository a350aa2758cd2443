"""This process's place in a launch: its rank, the world size, and the few collectives training needs.

A process started by ``workbench.launch`` (``torch.distributed.run``) reads its rank and the
world size from the environment torchrun sets; a process started any other way is rank 0 of a
world of one, and every function here is then a no-op. The process group itself is created by
the Trainer (accelerate) when ``TrainingArguments`` picks its device; the collectives below are
used only after that.
"""

from __future__ import annotations

import os


def rank() -> int:
    """This process's rank among all processes of the launch (0 outside a launch)."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's rank on its machine (0 outside a launch)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    """Processes in the launch (1 outside one)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    """Whether this process writes the run folder: rank 0, or the only process."""
    return rank() == 0


def sharded() -> bool:
    """Whether this process is one of a launch whose backend shards the model (FSDP, DeepSpeed)."""
    return world_size() > 1 and os.environ.get("WORKBENCH_BACKEND") in ("fsdp", "deepspeed")


def _group():
    """``torch.distributed`` when a process group of more than one process is up, else None."""
    if world_size() < 2:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    """Wait until every process gets here."""
    if (dist := _group()) is not None:
        dist.barrier()


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any: a decision all ranks take at the same step."""
    dist = _group()
    if dist is None:
        return bool(flag)
    import torch

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather(obj) -> list:
    """``obj`` of every process, in rank order (``[obj]`` outside a launch)."""
    dist = _group()
    if dist is None:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def per_device_batch(batch_size: int, grad_accum: int, processes: int) -> tuple[int, int]:
    """The per-process batch and accumulation that keep the spec's global batch (``batch_size x grad_accum``).

    The accumulation is divided first (the per-device batch, what memory holds, stays as the spec says), then
    the batch; otherwise the largest per-device batch up to ``batch_size`` that divides the global batch.

    Raises:
        ValueError: the global batch does not divide among ``processes``; the message says which sizes do.
    """
    total = batch_size * grad_accum
    if processes <= 1:
        return batch_size, grad_accum
    if total % processes:
        fits = [n for n in range(processes, 4 * processes + 1) if n % processes == 0][:3]
        raise ValueError(
            f"the global batch (batch_size {batch_size} x grad_accum {grad_accum} = {total}) does not divide "
            f"among {processes} processes: make it a multiple of {processes} (e.g. {', '.join(map(str, fits))})")
    if grad_accum % processes == 0:
        return batch_size, grad_accum // processes
    if batch_size % processes == 0:
        return batch_size // processes, grad_accum
    share = total // processes
    batch = max(b for b in range(1, batch_size + 1) if share % b == 0)
    return batch, share // batch
