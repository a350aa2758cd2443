"""One process of a launch (``workbench.launch``): ``python -m workbench.worker JOB.json`` under torchrun.

It joins the process group, reads the splits and settings the launching process wrote, and
trains with ``workbench.train.run_training``. Rank 0 prints its progress, result or error as
one JSON line each for the launching process; a Stop is a file the job names.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from . import distributed
from .config import LoraConfig, ModelConfig, QuantConfig, TrainConfig, from_dict
from .launch import ERROR, EVENT, RESULT, read_split
from .train import FolderRefused, TrainingError, run_training


@dataclass(frozen=True)
class StopFile:
    """A stop request as a file: set once the launching process writes it."""

    path: Path

    def is_set(self) -> bool:
        return self.path.exists()


def _say(prefix: str, payload: dict) -> None:
    if distributed.is_main():
        print(prefix + json.dumps(payload, default=str), flush=True)


def join_group() -> None:
    """Create the process group now (gloo on the CPU, NCCL on GPUs), each process on its own GPU; the Trainer's
    accelerate finds it made."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(distributed.local_rank())
    if distributed.world_size() > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    join_group()
    train = read_split(Path(job["train_data"]))
    eval = read_split(Path(job["eval_data"])) if job["eval_data"] else None
    try:
        result = run_training(train, eval, from_dict(ModelConfig, job["model"]), from_dict(TrainConfig, job["train"]),
                              from_dict(LoraConfig, job["lora"]), from_dict(QuantConfig, job["quant"]),
                              stop=StopFile(Path(job["stop_file"])), on_log=lambda e: _say(EVENT, e))
    except FolderRefused as e:
        _say(ERROR, {"kind": "refused", "message": str(e)})
        return 3
    except TrainingError as e:
        _say(ERROR, {"kind": "training", "message": str(e)})
        return 1
    _say(RESULT, {"run_dir": str(result.run_dir), "model_dir": str(result.model_dir) if result.model_dir else None,
                  "metrics": result.metrics, "status": result.status, "global_step": result.global_step,
                  "max_steps": result.max_steps})
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
