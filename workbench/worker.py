"""One process of a launch (``workbench.launch``): ``python -m workbench.worker JOB.json`` under torchrun.

It joins the process group, reads the splits and settings the launching process wrote, and
trains with ``workbench.train.run_training``. Rank 0 prints its progress, and the first process
of each machine its result or error, as one JSON line each for the launching process on its
machine; a Stop is a file the job names.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from . import distributed
from .config import LoraConfig, ModelConfig, QuantConfig, TrainConfig, from_dict
from .launch import ERROR, EVENT, RESULT, read_split
from .run_status import FolderBusy, FolderLock
from .train import FolderRefused, TrainingError, run_training


@dataclass
class StopFile:
    """A stop request: set once the launching process writes the file, or once that process is gone (a notebook
    kernel shut down with its tab): the run then stops at the next step with a checkpoint, as on Stop, rank 0
    holding the run folder's lock the launching process held until the end (no other run takes the folder
    meanwhile)."""

    path: Path
    watcher: int = 0
    folder: Path | None = None
    _lock: FolderLock | None = field(default=None, init=False, repr=False)

    def is_set(self) -> bool:
        if self.path.exists():
            return True
        if self.orphaned:
            self._hold_folder()
            return True
        return False

    def _hold_folder(self) -> None:
        if self._lock is not None or self.folder is None or not distributed.is_main():
            return
        self._lock = FolderLock(self.folder, "training")
        try:
            self._lock.acquire()
        except FolderBusy:  # another process was quicker: this run still stops at this step
            pass

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    @property
    def orphaned(self) -> bool:
        """Whether the process that launched this one (and watches it) is gone."""
        return self.watcher > 0 and not _alive(self.watcher)

    @property
    def reason(self) -> str:
        """Why the run stopped, for its status."""
        return ("stopped: the process that launched it ended (a notebook kernel shut down?); resume by training "
                "again into the same folder" if self.orphaned and not self.path.exists() else "stopped on request")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def _say(prefix: str, payload: dict) -> None:
    """One line for the launching process on this machine: progress (rank 0 alone has some), the result (from the
    first process of each machine), an error (from any process, with its rank)."""
    if prefix != ERROR and distributed.local_rank() != 0:
        return
    try:
        print(prefix + json.dumps(payload, default=_plain), flush=True)
    except (BrokenPipeError, ValueError):  # the launching process is gone: train on, stop at the next step
        _quiet()


def _quiet() -> None:
    """Send what this process prints to nowhere (its reader is gone; a write would end training)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)


def join_group() -> None:
    """Create the process group now (gloo on the CPU, NCCL on GPUs), each process on its own GPU; the Trainer's
    accelerate finds it made."""
    if torch.cuda.is_available():
        torch.cuda.set_device(distributed.local_rank())
    if distributed.world_size() > 1 and not dist.is_initialized():
        # The backend file's ddp_timeout bounds every collective (accelerate keeps a group made before it);
        # on GPUs a gloo backend beside NCCL serves what FSDP gathers on the CPU.
        timeout = json.loads(Path(os.environ["WORKBENCH_BACKEND_ARGS"]).read_text()).get("ddp_timeout", 1800) \
            if os.environ.get("WORKBENCH_BACKEND_ARGS") else 1800
        dist.init_process_group(backend="cuda:nccl,cpu:gloo" if torch.cuda.is_available() else "gloo",
                                timeout=datetime.timedelta(seconds=int(timeout)))


def main(argv: list[str]) -> int:
    job_file = Path(argv[0])
    job = json.loads(job_file.read_text())
    join_group()
    stop = StopFile(Path(job["stop_file"]), int(job.get("watcher") or 0), Path(job["train"]["output_dir"]))
    try:
        return _train(job_file, job, stop)
    finally:
        stop.release()


def _train(job_file: Path, job: dict, stop: StopFile) -> int:
    train = read_split(Path(job["train_data"]))
    eval = read_split(Path(job["eval_data"])) if job["eval_data"] else None
    try:
        result = run_training(train, eval, from_dict(ModelConfig, job["model"]), from_dict(TrainConfig, job["train"]),
                              from_dict(LoraConfig, job["lora"]), from_dict(QuantConfig, job["quant"]),
                              stop=stop, on_log=lambda e: _say(EVENT, e))
    except FolderRefused as e:
        _say(ERROR, {"kind": "refused", "message": str(e), "rank": distributed.rank()})
        return 3
    except TrainingError as e:
        _say(ERROR, {"kind": "training", "message": str(e), "rank": distributed.rank()})
        return 1
    except Exception as e:  # a bug, or a peer gone: one line for the caller, the traceback for launch.log
        first = str(e).splitlines()[0] if str(e) else ""
        _say(ERROR, {"kind": "crash", "rank": distributed.rank(),
                     "message": f"rank {distributed.rank()} failed: {type(e).__name__}: {first} (the traceback is "
                                "in the run folder's launch log)"})
        raise
    _say(RESULT, {"run_dir": str(result.run_dir), "model_dir": str(result.model_dir) if result.model_dir else None,
                  "metrics": result.metrics, "status": result.status, "global_step": result.global_step,
                  "max_steps": result.max_steps})
    if dist.is_initialized():
        dist.destroy_process_group()
    if stop.orphaned and distributed.is_main():  # nobody is left to remove the job's folder (splits, settings)
        shutil.rmtree(job_file.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
