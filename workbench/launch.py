"""Training on several processes and machines: ``torch.distributed.run`` starts them, this process watches.

``launch_training`` takes what ``workbench.train.run_training`` takes, plus a ``LaunchConfig``.
The calling process (a terminal, a notebook kernel, the dashboard) never joins the process
group: it writes the splits once, starts ``launch.processes`` processes of
``workbench.worker`` through torchrun (accelerate's notebook launcher refuses to start once a
cell has touched CUDA; a subprocess always starts clean), and then

- streams the main process's progress into ``on_log`` (the same bar and loss curve as one process),
- passes a Stop on as a file every process looks for at each step; they agree on the step to stop at
  (and stop the same way, with a checkpoint, when this process is gone: a kernel shut down with its tab),
- holds the run folder's lock for them (machine 0), and keeps their output in ``launch.log``,
- on failure, marks the run failed with which rank ended and why (torchrun stops the others
  within a second or two of one dying; a process's own error, from any rank, is kept), and
  refuses a port in use or an unreachable main machine with a message instead of a hang.

Only rank 0 writes the run folder's logs, checkpoints' markers, metrics and status
(``workbench.distributed``); the global batch is the spec's (``distributed.per_device_batch``).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import psutil
import yaml

from .config import ConfigError, LaunchConfig, LoraConfig, ModelConfig, QuantConfig, TrainConfig, to_dict
from .data.dataset import LoadedDataset
from .devices import thread_count
from .distributed import per_device_batch
from .errors import TrainingError
from .files import atomic_write_json, atomic_write_text
from .methods import get_method
from .run_status import FAILED, STOPPED, STOPPED_BY_USER, FolderBusy, FolderLock, write_status
from .train import LOCK_HELD, FolderRefused, TrainResult, check_trackers

ROOT = Path(__file__).resolve().parent.parent
#: The shipped backend settings, one file per backend (``launch.config_file`` names another).
LAUNCH_CONFIGS = ROOT / "experiments" / "launch"
#: Lines the main process prints for the launching one: progress events, its result, its error.
EVENT, RESULT, ERROR = "@@workbench-event ", "@@workbench-result ", "@@workbench-error "
#: TrainingArguments a backend file may set: DDP's knobs, FSDP's, DeepSpeed's config.
BACKEND_KEYS = {"ddp": re.compile(r"ddp_\w+"), "fsdp": re.compile(r"fsdp|fsdp_config|ddp_timeout"),
                "deepspeed": re.compile(r"deepspeed|ddp_timeout")}
#: Seconds the launching process waits for the processes to end after a Stop has reached them all, before
#: ending them itself; a Stop that asks for an evaluation may take as long as one.
STOP_GRACE = 600


class LaunchError(TrainingError):
    """A launch could not start: a port in use, a main machine out of reach, a backend not installed."""


# --------------------------------------------------------------------------- checks before starting


def backend_config_path(launch: LaunchConfig) -> Path:
    """The backend's settings file: ``launch.config_file``, or the shipped one for ``launch.backend``."""
    if launch.config_file:
        return Path(launch.config_file).expanduser()
    return LAUNCH_CONFIGS / {"ddp": "ddp.yaml", "fsdp": "fsdp2.yaml", "deepspeed": "deepspeed-zero2.yaml"}[
        launch.backend]


def backend_args(launch: LaunchConfig, method: str, quant: QuantConfig) -> dict:
    """The TrainingArguments the backend's settings file holds, checked.

    Raises:
        ConfigError: the file is missing or unreadable, sets something that is not its backend's, or asks for what
            cannot work (FSDP on QLoRA with uint8 storage; DeepSpeed not installed).
    """
    path = backend_config_path(launch)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"launch.config_file {path}: {e}. Name a YAML file of the backend's settings, or leave "
                          f"it empty for the shipped {LAUNCH_CONFIGS.name}/ one") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    bad = [k for k in data if not BACKEND_KEYS[launch.backend].fullmatch(str(k))]
    if bad:
        raise ConfigError(f"{path}: {', '.join(map(str, bad))} is not a setting of backend {launch.backend} "
                          f"(it takes {BACKEND_KEYS[launch.backend].pattern.replace('|', ', ')}); is "
                          "launch.backend right?")
    if launch.backend == "fsdp" and get_method(method).quantized and quant.storage_dtype == "uint8":
        raise ConfigError("FSDP shards parameters of one dtype only, and QLoRA stores its 4-bit weights as uint8: "
                          "set quant.storage_dtype: bfloat16 (experiments/launch/fsdp2-qlora.yaml shows the whole "
                          "setup)")
    if launch.backend == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("launch.backend deepspeed needs the deepspeed package (pip install deepspeed, on a "
                              "machine with CUDA and a compiler); ddp or fsdp need nothing more")
    return data


def check_processes(launch: LaunchConfig) -> str:
    """The device the processes train on (``cuda`` or ``cpu``), after checking there are enough GPUs.

    Raises:
        ConfigError: more processes than GPUs on a GPU machine.
    """
    import torch

    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if launch.processes > gpus:
            raise ConfigError(f"launch.processes is {launch.processes} but this machine has {gpus} GPU(s): one "
                              f"process per GPU, so at most {gpus}")
        return "cuda"
    return "cpu"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(launch: LaunchConfig) -> int:
    """The port the main machine listens on: a free one for ``main_process_port: 0``, else the one set, checked.

    Raises:
        LaunchError: on machine 0, the port is in use; on another machine, machine 0 did not answer within
            ``connect_timeout`` seconds.
    """
    if launch.machine_rank == 0:
        if not launch.main_process_port:
            return free_port()
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("" if launch.machines > 1 else "127.0.0.1", launch.main_process_port))
            except OSError as e:
                raise LaunchError(f"port {launch.main_process_port} on this machine is in use ({e.strerror}): "
                                  "another launch may be running. Set launch.main_process_port to a free port (0 "
                                  "picks one on a single machine)") from None
        return launch.main_process_port
    deadline = time.monotonic() + launch.connect_timeout
    while True:
        try:
            with socket.create_connection((launch.main_process_ip, launch.main_process_port), timeout=2):
                return launch.main_process_port
        except OSError as e:
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"machine 0 at {launch.main_process_ip}:{launch.main_process_port} did not answer within "
                    f"{launch.connect_timeout} s ({e.strerror or e}): start machine 0 first, check "
                    "launch.main_process_ip and that the port is open between the machines") from None
            time.sleep(1)


# --------------------------------------------------------------------------- the data the processes read


def write_split(ds: LoadedDataset, path: Path) -> None:
    """A split as JSON lines the processes read back value for value (numbers stay numbers, text stays text)."""
    def plain(value):
        return value.item() if hasattr(value, "item") else value.tolist() if hasattr(value, "tolist") else str(value)

    head = {"format": ds.format, "columns": ds.columns, "source": ds.source, "order": list(map(str, ds.frame.columns))}
    lines = [json.dumps(head)] + [json.dumps(r, default=plain) for r in ds.frame.to_dict("records")]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_split(path: Path) -> LoadedDataset:
    """A split ``write_split`` wrote."""
    import pandas as pd

    lines = Path(path).read_text().splitlines()
    head = json.loads(lines[0])
    frame = pd.DataFrame.from_records([json.loads(line) for line in lines[1:]], columns=head["order"])
    return LoadedDataset(frame, head["format"], head["columns"], head["source"])


# --------------------------------------------------------------------------- watching the processes


def _failures(output: str) -> list[tuple[int, int]]:
    """(rank, exit code) of each failure in torchrun's summary, the root cause first."""
    failures = []
    root = output.rfind("Root Cause")
    for part in (output[root:], output[:root]) if root >= 0 else (output,):
        for block in re.split(r"\n\s*\[\d+\]:\s*\n", part):
            r, code = re.search(r"rank\s*:\s*(\d+)", block), re.search(r"exitcode\s*:\s*(-?\d+)", block)
            if r and code and (int(r.group(1)), int(code.group(1))) not in failures:
                failures.append((int(r.group(1)), int(code.group(1))))
    return failures


def _killed(failures: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranks a signal ended, other than the launcher's own SIGTERM to the survivors: the cause, when any."""
    return [(r, c) for r, c in failures if c < 0 and c != -signal.SIGTERM]


def failure_reason(output: str, world: int) -> str:
    """Which rank ended and why, from torchrun's summary of the failures: a rank a signal killed, else the root
    cause (the first observed failure)."""
    failures = _failures(output)
    if not failures:
        return "the launch ended without saying why (see the launch log in the run folder)"
    rank, code = (_killed(failures) or failures)[0]
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"was killed by {name}" + (" (out of memory, or kill -9)" if name == "SIGKILL" else "")
    else:
        why = f"exited with code {code}"
    others = "the other process" if world == 2 else f"the other {world - 1} processes"
    return (f"rank {rank} {why}; the launcher stopped {others}. Train again into the same folder to resume from "
            "its last complete checkpoint (with the same or another number of processes)")


def _emit_event(line: str, prefix: str):
    try:
        return json.loads(line[len(prefix):])
    except ValueError:
        return None


def launch_training(train: LoadedDataset, eval: LoadedDataset | None, model_cfg: ModelConfig,
                    train_cfg: TrainConfig, lora_cfg: LoraConfig = LoraConfig(), quant_cfg: QuantConfig = QuantConfig(),
                    launch: LaunchConfig = LaunchConfig(), stop: threading.Event | None = None,
                    on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train as ``run_training`` does, on ``launch.processes`` processes on each of ``launch.machines`` machines.

    Run the same call on every machine with its own ``launch.machine_rank``; machine 0 writes the run folder.

    Raises:
        ConfigError: settings that cannot launch (the global batch does not divide among the processes, more
            processes than GPUs, a bad backend file).
        LaunchError: a port in use, machine 0 out of reach.
        FolderRefused: another process trains into the folder, or it holds another run's checkpoint.
        TrainingError: the training failed, or a process died (the run is marked failed, naming the rank).
    """
    world = launch.world_size
    try:
        batch, accum = per_device_batch(train_cfg.batch_size, train_cfg.grad_accum, world)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    args = backend_args(launch, model_cfg.method, quant_cfg)
    if launch.backend == "fsdp" and train_cfg.head_learning_rate is not None:
        raise ConfigError("train.head_learning_rate (a classification head's own learning rate) cannot be used with "
                          "FSDP, which builds its own optimizer: leave it empty, or use launch.backend: ddp")
    check_trackers(train_cfg.report_to)  # here, not on rank 0 alone while the others wait for it
    device = check_processes(launch)
    port = check_port(launch)
    threads = train_cfg.num_threads or max(1, thread_count(0) // launch.processes)  # the free cores, shared
    run_dir = Path(train_cfg.output_dir)
    main_machine = launch.machine_rank == 0
    lock = FolderLock(run_dir, "training")
    if main_machine:
        try:
            lock.acquire()
        except FolderBusy as e:
            raise FolderRefused(str(e)) from None
    tmp = Path(tempfile.mkdtemp(prefix="workbench-launch-"))
    try:
        return _launch(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg, launch, stop, on_log, run_dir,
                       tmp, args, port, threads, device, (batch, accum))
    finally:
        lock.release()
        shutil.rmtree(tmp, ignore_errors=True)


def _launch(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg, launch, stop, on_log, run_dir: Path,
            tmp: Path, args: dict, port: int, threads: int, device: str, batch: tuple[int, int]) -> TrainResult:
    world = launch.world_size
    main_machine = launch.machine_rank == 0
    write_split(train, tmp / "train.jsonl")
    if eval is not None:
        write_split(eval, tmp / "eval.jsonl")
    job = {"model": to_dict(model_cfg), "train": {**to_dict(train_cfg), "num_threads": threads},
           "lora": to_dict(lora_cfg), "quant": to_dict(quant_cfg), "train_data": str(tmp / "train.jsonl"),
           "eval_data": str(tmp / "eval.jsonl") if eval is not None else None, "stop_file": str(tmp / "STOP"),
           "watcher": os.getpid()}
    atomic_write_json(tmp / "job.json", job)
    atomic_write_json(tmp / "backend.json", args)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(launch.machines),
               "--nproc-per-node", str(launch.processes), "--node-rank", str(launch.machine_rank),
               "--master-addr", launch.main_process_ip, "--master-port", str(port), "--max-restarts", "0",
               "--monitor-interval", "0.2", "-m", "workbench.worker", str(tmp / "job.json")]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1",
           "WORKBENCH_BACKEND_ARGS": str(tmp / "backend.json"), "WORKBENCH_LAUNCHER": "torch.distributed.run",
           "WORKBENCH_BACKEND": launch.backend, LOCK_HELD: str(run_dir.resolve()),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run_dir.mkdir(parents=True, exist_ok=True)
    if on_log:
        on_log({"step": 0, "max_steps": 0, "phase": "loading", "time": time.time(), "progress": True,
                "launch": f"{_count(world, 'process', 'processes')} ({launch.processes} x "
                          f"{_count(launch.machines, 'machine', 'machines')}, {launch.backend}, {device}): per-process "
                          f"batch {batch[0]} x accumulation {batch[1]} x {world} = global batch "
                          f"{train_cfg.batch_size * train_cfg.grad_accum}"})
    # Each machine's launcher keeps its processes' output in the run folder, in a file of its own.
    log_file = open(run_dir / ("launch.log" if main_machine else f"launch-machine-{launch.machine_rank}.log"), "a")
    tail: collections.deque[str] = collections.deque(maxlen=400)
    found: dict = {}
    errors: list[dict] = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, bufsize=1)

    def read():
        try:
            _read()
        finally:
            log_file.close()

    def _read():
        for line in proc.stdout:
            if line.startswith(EVENT):
                if (event := _emit_event(line, EVENT)) is not None and on_log:
                    try:
                        on_log(event)
                    except Exception as e:  # noqa: BLE001 - a view that fails must not stop the run
                        tail.append(f"on_log failed: {e}\n")
                continue
            if line.startswith(RESULT):
                found["result"] = _emit_event(line, RESULT)
                continue
            if line.startswith(ERROR):
                if (error := _emit_event(line, ERROR)) is not None:
                    errors.append(error)
                continue
            tail.append(line)
            log_file.write(line)
            log_file.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    asked_at = None
    try:
        while proc.poll() is None:
            if stop is not None and stop.is_set() and asked_at is None:
                (tmp / "STOP").write_text("stop\n")  # every process sees it at its next step
                asked_at = time.monotonic()
            if asked_at is not None and time.monotonic() - asked_at > STOP_GRACE:
                _end(proc)
            time.sleep(0.1)
    except KeyboardInterrupt:
        _end(proc)
        if main_machine:
            write_status(run_dir, STOPPED, STOPPED_BY_USER, time=time.time())
        raise
    finally:
        reader.join(timeout=60)  # the output ends with the processes; the reader closes launch.log
    result = found.get("result")
    if proc.returncode == 0 and result:
        return TrainResult(Path(result["run_dir"]), Path(result["model_dir"]) if result["model_dir"] else None,
                           result["metrics"], result["status"], result["global_step"], result["max_steps"])
    raise _failure(errors, "".join(tail), world, run_dir if main_machine else None)


def _failure(errors: list[dict], output: str, world: int, run_dir: Path | None) -> TrainingError:
    """The error a failed launch ends in, the run marked failed (``run_dir``: on machine 0).

    A refusal or a training error a process said is the reason (rank 0's words were written to the status by it);
    else a rank a signal killed (its peers then fail on a closed connection: not the cause); else the first
    process that said why it failed; else torchrun's root cause.
    """
    for kind, cls in (("refused", FolderRefused), ("training", TrainingError)):
        said = [e for e in errors if e.get("kind") == kind]
        if said:
            first = min(said, key=lambda e: e.get("rank", 0))
            message = first["message"] if not first.get("rank") else f"rank {first['rank']}: {first['message']}"
            if run_dir is not None and first.get("rank") and kind == "training":
                write_status(run_dir, FAILED, message, time=time.time())
            return cls(message)
    if not _killed(_failures(output)) and errors:
        reason = errors[0]["message"]
    else:
        reason = failure_reason(output, world)
    if run_dir is not None:
        write_status(run_dir, FAILED, reason, time=time.time())
    return TrainingError(reason)


def _end(proc: subprocess.Popen) -> None:
    """End the launcher and every process it started (torchrun starts each in a session of its own, so they are
    found by ancestry, not by process group)."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in family:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(family, timeout=10)
        if not alive:
            break
        family = alive
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def global_batch_note(train_cfg: TrainConfig, launch: LaunchConfig) -> str:
    """How the spec's global batch is made on this launch, in words (printed before a launch starts)."""
    batch, accum = per_device_batch(train_cfg.batch_size, train_cfg.grad_accum, launch.world_size)
    return (f"global batch {train_cfg.batch_size * train_cfg.grad_accum} = per-process batch {batch} x "
            f"accumulation {accum} x {_count(launch.world_size, 'process', 'processes')}")


__all__ = ["LaunchError", "backend_args", "failure_reason", "global_batch_note", "launch_training", "read_split",
           "write_split"]
