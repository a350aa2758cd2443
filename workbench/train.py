"""Training around ``transformers.Trainer``: SFT, sequence classification, pretraining from scratch.

A run folder holds everything about one run::

    config.yaml          the resolved configuration
    label_map.json       class names (classification)
    train_log.jsonl      step, loss, learning rate, tokens/s, memory, evaluation metrics
    checkpoints/         Trainer checkpoints; complete ones carry a COMPLETE marker
    model/               the adapter or the whole model, with its tokenizer (safetensors)
    metrics.json         final metrics
    status.json          running / stopped / succeeded / failed, with a reason, the process id, host and
                         a heartbeat (workbench.run_status: a killed run reads as died)
    .lock                held by the process training into the folder (workbench.run_status.FolderLock)

Checkpoints are marked complete only after Trainer has written all of them, and resuming
picks the newest complete one, so a kill in the middle of a save costs one checkpoint,
never the run. Each checkpoint records the fingerprint of the run it belongs to
(``workbench_run.json``: the resolved config, less what may change on resume, and the data);
a run resumes only its own checkpoints, and says what differs otherwise
(``TrainConfig.resume_anyway`` overrides). One process at a time trains into a folder. A cut
last line of ``train_log.jsonl`` (a kill or a full disk in the middle of a write) is skipped
by readers and dropped on resume; a full disk ends the run with a message, resumable.
Resuming is exact in any epoch, with length grouping too (``_trainer_class``).

A Stop request ends training at the next step with a checkpoint. A NaN or
infinite loss stops with a message; a CUDA out-of-memory error retries with half the batch
and twice the accumulation (the same effective batch), or says what to lower.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable


from . import distributed, plots, presets
from .config import LoraConfig, ModelConfig, QuantConfig, TokenConfig, TrainConfig, dump_yaml, to_dict
from .data.dataset import LoadedDataset
from .data.pii import redact_secrets
from .devices import release_memory, thread_warning, use_threads
from .errors import TrainingError
from .files import atomic_write_bytes, atomic_write_json, atomic_write_text
from .methods import get_method
from .models import load_model, save_trained, trainable_parameters
from .probe import embed, fit_probe
from .run_status import (
    FAILED,
    RUNNING,
    STOPPED,
    STOPPED_BY_USER,
    SUCCEEDED,
    FolderBusy,
    FolderLock,
    disk_full,
    disk_full_message,
    read_status,
)
from .run_status import write_status as _write_status
from .tasks import get_task, pack, prepare_sft, untrained_error  # noqa: F401 - pack and prepare_sft are part of this module's API
from .tokenizer import train_tokenizer
from .tokens import length_stats

COMPLETE = "COMPLETE"
#: The fingerprint of the run a checkpoint belongs to, in the checkpoint's folder.
FINGERPRINT = "workbench_run.json"
#: TrainConfig fields that may change when a run resumes: how long it trains, how it logs, evaluates and
#: saves, where it writes, and how it uses the machine. Every other setting is part of the run's fingerprint.
RESUMABLE = ("output_dir", "epochs", "max_steps", "logging_steps", "eval_steps", "save_steps", "save_total_limit",
             "early_stopping_patience", "evaluate_on_stop", "resume", "resume_anyway", "oom_retry", "num_threads",
             "report_to")
#: Set by ``workbench.launch`` in its processes' environment: the run folder whose lock the launching process
#: holds for them (rank 0 does not take it again).
LOCK_HELD = "WORKBENCH_LOCK_HELD"
#: ModelConfig fields that may change on resume: where it runs and what it trades memory for.
MODEL_RESUMABLE = ("device", "gradient_checkpointing")


class FolderRefused(TrainingError):
    """Training would not start in its output folder (another process trains there, or it holds another run's
    checkpoint); nothing in the folder was changed."""


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    run_dir: Path
    model_dir: Path | None
    metrics: dict
    status: str
    """``succeeded`` or ``stopped``."""
    global_step: int
    max_steps: int


# --------------------------------------------------------------------------- run folder


def write_status(run_dir: Path, status: str, reason: str = "", **extra) -> None:
    """A training folder's ``status.json`` (see ``workbench.run_status.write_status``: pid, host, heartbeat)."""
    _write_status(run_dir, status, reason, time=time.time(), **extra)


def _safe_status(run_dir: Path, status: str, reason: str, main: bool = True) -> None:
    """Record how a run ended when it can (on a full disk, in status.json's own blocks: ``write_status``); only
    the main process of a launch writes (``main``)."""
    if not main:
        return
    try:
        write_status(run_dir, status, reason)
    except OSError:
        pass


def complete_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoints with the COMPLETE marker, oldest first."""
    if not ckpt_dir.exists():
        return []
    found = [p for p in ckpt_dir.glob("checkpoint-*") if (p / COMPLETE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def discard_incomplete(ckpt_dir: Path) -> list[str]:
    """Remove checkpoint folders a crash left half-written; returns their names."""
    gone = []
    for p in ckpt_dir.glob("checkpoint-*") if ckpt_dir.exists() else []:
        if not (p / COMPLETE).exists():
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def _plain(value):
    """``value`` as JSON reads it back (tuples as lists), so a recorded fingerprint compares equal to a new one."""
    return json.loads(json.dumps(value, default=str))


def run_fingerprint(train: LoadedDataset, eval: LoadedDataset | None, model_cfg: ModelConfig, train_cfg: TrainConfig,
                    lora_cfg: LoraConfig, quant_cfg: QuantConfig) -> dict:
    """What makes a run this run: its resolved config (less ``RESUMABLE`` and ``MODEL_RESUMABLE``) and its data.

    A local ``model.name_or_path`` counts by its absolute path; the adapter and quantization
    sections count only for methods that use them.

    Returns:
        ``{"config": {"section.field": value}, "data": {"train": fingerprint, "eval": fingerprint or None}}``.
    """
    method = get_method(model_cfg.method)
    sections = [("model", model_cfg), ("train", train_cfg)] + ([("lora", lora_cfg)] if method.adapter else []) + (
        [("quant", quant_cfg)] if method.quantized else [])
    config = {}
    for name, obj in sections:
        for key, value in to_dict(obj).items():
            if (name == "model" and key in MODEL_RESUMABLE) or (name == "train" and key in RESUMABLE):
                continue
            if (name, key) == ("model", "name_or_path") and value and Path(value).expanduser().exists():
                value = str(Path(value).expanduser().resolve())
            config[f"{name}.{key}"] = value
    return _plain({"config": config, "data": {"train": train.fingerprint(),
                                              "eval": eval.fingerprint() if eval is not None else None}})


def fingerprint_differences(recorded: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, in words.

    Returns:
        One phrase per difference: ``train.learning_rate 0.001 -> 0.0003``, ``the training data changed (...)``.
    """
    out = []
    old, new = recorded.get("config", {}), current.get("config", {})
    for key in list(dict.fromkeys([*old, *new])):
        if key not in old:
            out.append(f"{key} (new setting) {new[key]!r}")
        elif key not in new:
            out.append(f"{key} {old[key]!r} (no longer a setting)")
        elif old[key] != new[key]:
            out.append(f"{key} {old[key]!r} -> {new[key]!r}" if isinstance(old[key], str) or isinstance(new[key], str)
                       else f"{key} {old[key]} -> {new[key]}")
    for part, words in (("train", "the training data changed"), ("eval", "the evaluation data changed")):
        a, b = recorded.get("data", {}).get(part), current.get("data", {}).get(part)
        if a != b:
            out.append(f"{words} (fingerprint {str(a)[:12]} -> {str(b)[:12]})")
    return out


def check_resume(checkpoint: Path, current: dict, run_dir: Path, anyway: bool) -> str | None:
    """Refuse to resume ``checkpoint`` when it belongs to another run; returns a warning to keep, or None.

    Raises:
        FolderRefused: the checkpoint's fingerprint differs from ``current`` (unless ``anyway``).
    """
    path = checkpoint / FINGERPRINT
    if not path.exists():
        return (f"{checkpoint.name} records no fingerprint (written before checkpoints had one): resumed without "
                "checking that it belongs to this run")
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = {}
    differences = fingerprint_differences(recorded, current) if recorded else ["its fingerprint is unreadable"]
    if not differences:
        return None
    what = "; ".join(differences)
    if anyway:
        return f"resumed {checkpoint.name} of another run anyway (resume_anyway): {what}"
    raise FolderRefused(
        f"{run_dir} holds {checkpoint.name} of another run ({what}). Train into a new output folder "
        "(--output-dir, train.output_dir), or resume it regardless with --resume-anyway (train.resume_anyway: true); "
        "train.resume: false starts over in this folder, deleting its checkpoints.")


# --------------------------------------------------------------------------- data preparation


def check_masking(ds: LoadedDataset, tokenizer, cfg: TrainConfig) -> list[str]:
    """Run the token module's checks on a seeded sample (``TokenConfig.sample`` rows: bounded time and memory on
    large data); stop when a sampled example has no trained token. Returns warnings. Every row is checked for
    trained tokens again where training tokenizes it (``tasks.prepare_sft``)."""
    stats = length_stats(ds, tokenizer, TokenConfig(max_length=cfg.max_length, train_on_inputs=cfg.train_on_inputs,
                                                    batch_size=cfg.batch_size))
    if stats.fully_masked_rows:
        raise untrained_error(ds, stats.fully_masked_rows, cfg.max_length)
    return list(stats.warnings)


# --------------------------------------------------------------------------- callbacks


def _memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil comes with accelerate
        return float("nan")


def _log_entries(text: str) -> list[dict]:
    """The entries of a training log's text; a line cut by a kill or a full disk (not JSON) is skipped."""
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "step" in entry:
            out.append(entry)
    return out


def _callbacks(run_dir: Path, device: str, stop: threading.Event | None, on_log: Callable | None, resumed_step: int,
               fingerprint: dict | None = None):
    from transformers import TrainerCallback

    log_path = run_dir / "train_log.jsonl"
    main = distributed.is_main()  # the other processes of a launch log, save and report nothing
    if not main:
        on_log = None
    if main and log_path.exists():  # a resumed run rewrites what came after its checkpoint, and drops a cut last line
        kept = [e for e in _log_entries(log_path.read_text(errors="replace")) if e["step"] <= resumed_step]
        atomic_write_text(log_path, "".join(json.dumps(e) + "\n" for e in kept))

    class Workbench(TrainerCallback):
        def __init__(self):
            self.last = (time.perf_counter(), 0)
            self.stopped = False
            self.eval_step, self.eval_steps = 0, 0  # batches of the evaluation in progress, of how many

        def on_train_begin(self, args, state, control, **kw):
            # The peak memory of training, not of loading (FSDP loads the whole model before sharding it).
            if device == "cuda":
                import torch

                torch.cuda.reset_peak_memory_stats()

        def on_prediction_step(self, args, state, control, **kw):
            self.eval_step += 1
            if on_log:
                on_log({"step": state.global_step, "max_steps": state.max_steps, "phase": "evaluating",
                        "eval_step": self.eval_step, "eval_steps": self.eval_steps, "time": time.time(),
                        "progress": True})

        def on_evaluate(self, args, state, control, **kw):
            self.eval_step = 0

        def on_log(self, args, state, control, logs=None, **kw):
            logs = dict(logs or {})
            loss = logs.get("loss", logs.get("train_loss"))
            if loss is not None and not math.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss} at step {state.global_step}. Lower the learning rate (now "
                    f"{args.learning_rate:g}), check the data for empty or garbled examples, or use fp32. "
                    f"The last good checkpoint is kept in {run_dir / 'checkpoints'}.")
            now, seen = time.perf_counter(), int(getattr(state, "num_input_tokens_seen", 0) or 0)
            t0, s0 = self.last
            entry = {"step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
                     **logs, "memory_mb": round(_memory_mb(device), 1), "time": time.time()}
            if "loss" in logs and seen > s0 and now > t0:  # training windows only: evaluation time is not training
                entry["tokens_per_s"] = round((seen - s0) / (now - t0), 1)
            self.last = (now, seen)
            if not main:
                return
            with open(log_path, "a") as f:  # one write of a whole line; a cut one is skipped by readers
                f.write(json.dumps(entry) + "\n")
            if on_log:
                on_log(entry)

        def on_step_end(self, args, state, control, **kw):
            # Every process of a launch stops at the same step (one stopping alone would leave the others
            # waiting for it in the next step's gradient exchange).
            if distributed.any_process(stop is not None and stop.is_set()):
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
            if on_log and state.global_step % max(1, args.logging_steps) != 0:
                on_log({"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch,
                        "time": time.time(), "progress": True})

        def on_save(self, args, state, control, **kw):
            # Trainer has finished writing this checkpoint: only now does it count for resuming.
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            distributed.barrier()  # every process has written its part (its RNG state, its shard)
            if main and ckpt.exists():
                if fingerprint is not None:
                    atomic_write_json(ckpt / FINGERPRINT, fingerprint)
                atomic_write_text(ckpt / COMPLETE, f"{state.global_step}\n")

    return Workbench()


# --------------------------------------------------------------------------- the run


def init_head_from_probe(loaded, train: LoadedDataset, cfg: TrainConfig) -> None:
    """LP-FT: fit a logistic regression on the frozen encoder's embeddings and start the head there.

    Fine-tuning then begins near the probe's accuracy, and the first gradients do not
    distort the pretrained features through a random head.
    """
    model = loaded.model
    if loaded.kind != "pooled-classifier":
        raise TrainingError("head_init: probe needs a pooled classification head (a sentence-transformers encoder).")
    x = embed(train.frame["text"].tolist(), model.encoder, max_length=cfg.max_length, device=loaded.device,
              pooling=model.pooling, normalize=model.normalize, tokenizer=loaded.tokenizer)
    probe = fit_probe(train, C=cfg.probe_c, max_length=cfg.max_length, embeddings=x)
    model.init_head(*probe.head_weights())
    model.encoder.train()


def _optimizer(model, cfg: TrainConfig, kind: str):
    """AdamW with a separate learning rate for a classification head when asked for.

    Biases and LayerNorm weights get no weight decay; neither does the head.
    """
    import torch

    if cfg.head_learning_rate is None or kind != "pooled-classifier":
        return None
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in head_ids:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "lr": cfg.learning_rate, "weight_decay": 0.0},
              {"params": head, "lr": cfg.head_learning_rate, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate)


def run_training(
    train: LoadedDataset,
    eval: LoadedDataset | None,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    lora_cfg: LoraConfig = LoraConfig(),
    quant_cfg: QuantConfig = QuantConfig(),
    *,
    stop: threading.Event | None = None,
    on_log: Callable[[dict], None] | None = None,
    tokenizer=None,
    init_head: Callable | None = None,
) -> TrainResult:
    """Fine-tune ``model_cfg``'s base on ``train`` (evaluating on ``eval``) into ``train_cfg.output_dir``.

    The task follows ``model_cfg.task``: ``sequence-classification`` needs a classification
    dataset; ``causal-lm`` takes prompt/completion, instruction, chat or corpus data.

    Args:
        stop: Set it to stop at the next step; a checkpoint is written and the run can resume.
        on_log: Called with each log entry (and a progress entry every step) from the training thread.
        tokenizer: Use this tokenizer instead of the model's.
        init_head: ``init_head(model, train_dataset)`` may initialise a classification head (LP-FT).

    Raises:
        FolderRefused: another process trains into ``output_dir``, or its newest checkpoint belongs to
            another run (config or data differ; ``train_cfg.resume_anyway`` overrides). The folder is left as it was.
        TrainingError: data that cannot train, a NaN loss, out of memory with nothing left to lower, or a
            full disk (the run resumes from its last complete checkpoint once there is space).
    """
    run_dir = Path(train_cfg.output_dir)
    ckpt_dir = run_dir / "checkpoints"
    main = distributed.is_main()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # In a launch, the launching process holds the folder's lock for its processes (os.environ[LOCK_HELD]).
        held = main and os.environ.get(LOCK_HELD) == str(run_dir.resolve())
        lock = FolderLock(run_dir, "training")
        if main and not held:
            lock.acquire()
    except FolderBusy as e:
        raise FolderRefused(str(e)) from None
    except OSError as e:
        if disk_full(e):
            raise TrainingError(disk_full_message(e, run_dir)) from None
        raise
    try:
        with tracker_env(train_cfg.report_to if main else [], run_dir):
            return _run(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg, run_dir, ckpt_dir, stop, on_log,
                        tokenizer, init_head, lock.note)
    except FolderRefused:
        raise
    except TrainingError as e:
        _safe_status(run_dir, FAILED, str(e), main)
        raise
    except KeyboardInterrupt:
        _safe_status(run_dir, STOPPED, STOPPED_BY_USER, main)
        raise
    except Exception as e:
        if disk_full(e, run_dir):  # a checkpoint cut short has no COMPLETE marker: resuming takes the one before
            message = disk_full_message(e, run_dir)
            if main:  # and it can never be resumed: its space goes back, for the status and the user's next step
                for cut in (p for p in ckpt_dir.glob("checkpoint-*") if not (p / COMPLETE).exists()):
                    shutil.rmtree(cut, ignore_errors=True)
            _safe_status(run_dir, FAILED, message, main)
            raise TrainingError(message) from None
        _safe_status(run_dir, FAILED, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", main)
        raise
    finally:
        lock.release()
        release_memory()


#: Where each tracker keeps its runs: the environment variable it reads, and the run folder's default for it.
TRACKER_STORES = {"tensorboard": ("TENSORBOARD_LOGGING_DIR", "tensorboard"),
                  "mlflow": ("MLFLOW_TRACKING_URI", "mlruns"),
                  "trackio": ("TRACKIO_DIR", "trackio")}
#: The package each tracker needs, and how to install it.
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio"}


def check_trackers(report_to) -> None:
    """Raises ``TrainingError`` when a tracker of ``report_to`` is not installed (saying what to install)."""
    import importlib.util

    missing = [t for t in report_to if importlib.util.find_spec(TRACKER_PACKAGES[t]) is None]
    if missing:
        raise TrainingError(f"train.report_to names {', '.join(missing)}, which is not installed: pip install "
                            f"{' '.join(TRACKER_PACKAGES[t] for t in missing)} (or pip install -e '.[trackers]' for "
                            "TensorBoard), or remove it from train.report_to")


@contextlib.contextmanager
def tracker_env(report_to, run_dir: Path):
    """Point each tracker of ``report_to`` at a store in the run folder while training, unless its own
    environment variable already names one; the environment is restored afterwards (a kernel trains many runs).

    Raises:
        TrainingError: a tracker's package is not installed (the message says what to install).
    """
    check_trackers(report_to)
    saved = {}
    for name in report_to:
        var, folder = TRACKER_STORES[name]
        if not os.environ.get(var):
            path = (run_dir / folder).resolve()
            saved[var] = None
            os.environ[var] = path.as_uri() if name == "mlflow" else str(path)
    try:
        yield
    finally:
        for var in saved:
            os.environ.pop(var, None)


def tracker_locations(report_to) -> dict:
    """``{tracker: where its runs are}`` as ``tracker_env`` set it (or the user's own environment did)."""
    return {name: os.environ.get(TRACKER_STORES[name][0], "") for name in report_to}


def _backend_args(main: bool) -> dict:
    """The TrainingArguments of a launch's backend (DDP, FSDP or DeepSpeed settings), which ``workbench.launch``
    resolved from ``launch.config_file`` and passes to its processes as JSON; {} outside a launch."""
    path = os.environ.get("WORKBENCH_BACKEND_ARGS")
    if not path or distributed.world_size() < 2:
        return {}
    return json.loads(Path(path).read_text())


def _check_same_start(args, fingerprint: dict, resume_from: str | None) -> None:
    """Every process of a launch trains on the same splits from the same checkpoint: compared before training.

    Raises:
        TrainingError: some process made other splits, or sees another checkpoint to resume (the run folder is
            not on storage all machines share); the message names the ranks.
    """
    args.device  # noqa: B018 - sets up the process group (accelerate) so the processes can compare
    seen = distributed.gather((fingerprint["data"], Path(resume_from).name if resume_from else None))
    odd = [r for r, (data, _) in enumerate(seen) if data != seen[0][0]]
    if odd:
        raise TrainingError(f"the processes of this launch made different data splits (ranks {odd} differ from "
                            "rank 0): the data changed while they loaded it, or it is read from different copies. "
                            "Give every machine the same files and start again.")
    odd = [r for r, (_, ckpt) in enumerate(seen) if ckpt != seen[0][1]]
    if odd:
        raise TrainingError(f"ranks {odd} see another checkpoint to resume than rank 0 ({seen[0][1] or 'none'}): "
                            "the run folder must be on storage every machine shares (NFS, a cluster file system) "
                            "for a launch on several machines to checkpoint and resume")


def _trainer_class():
    """``Trainer`` whose length-grouped order is drawn from the seed and the epoch, so resuming is exact in any epoch.

    transformers' ``LengthGroupedSampler`` draws each epoch's order from the global torch RNG
    when its iterator starts. A run resumed in the middle of a later epoch restores that RNG
    only after the epoch's order is drawn, so it trained on another order than the run it
    continues (resume was exact only within the first epoch). Here the order is a function of
    ``data_seed`` and the epoch number (``set_epoch``, which Trainer calls before each epoch,
    resumed or not).
    """
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededLengthSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths: list[int], seed: int):
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return super().__iter__()

    class WorkbenchTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler and sampler.generator is None:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                # Grouped by the global batch, as one process groups them: the same order whatever the count
                # of processes (accelerate deals the batches out to them in turn).
                return EpochSeededLengthSampler(sampler.batch_size * self.args.world_size, sampler.lengths, seed)
            return sampler

    return WorkbenchTrainer


def _run(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg, run_dir, ckpt_dir, stop, on_log, tokenizer,
         init_head, lock_note: str = "") -> TrainResult:
    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    task, method = get_task(model_cfg.task), get_method(model_cfg.method)
    train_cfg = replace(train_cfg, **task.train_overrides)
    threads = use_threads(train_cfg.num_threads)  # 0: from the machine's load, not a constant
    if (busy := thread_warning(train_cfg.num_threads)):  # an explicit count above the cores free now
        print(f"WARNING: {busy}", file=sys.stderr, flush=True)
    set_seed(train_cfg.seed)
    if (problem := task.data_problem(train)):
        raise TrainingError(problem)
    # What this run is, checked against the checkpoint it would resume before anything in the folder changes.
    fingerprint = run_fingerprint(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg)
    done = complete_checkpoints(ckpt_dir) if train_cfg.resume else []
    resume_warning = check_resume(done[-1], fingerprint, run_dir, train_cfg.resume_anyway) if done else None
    labels = task.labels(train, eval)
    main, world = distributed.is_main(), distributed.world_size()
    try:  # the spec's global batch, whatever the process count
        batch, accum = distributed.per_device_batch(train_cfg.batch_size, train_cfg.grad_accum, world)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if main:
        write_status(run_dir, RUNNING)
        atomic_write_text(run_dir / "config.yaml", "".join(
            f"{name}:\n" + "".join(f"  {line}\n" for line in dump_yaml(redact_secrets(to_dict(obj))).splitlines())
            for name, obj in (("model", model_cfg), ("lora", lora_cfg), ("quant", quant_cfg), ("train", train_cfg))))
        if labels:
            atomic_write_json(run_dir / "label_map.json", {"labels": labels})

    loaded = load_model(model_cfg, quant_cfg, lora_cfg, labels, tokenizer, train_cfg.label_smoothing)
    tok = loaded.tokenizer
    warnings = ([busy] if busy else []) + [w for w in (lock_note, resume_warning) if w] + (
        check_masking(train, tok, train_cfg) if task.masks_labels else [])
    for w in (lock_note, resume_warning) if main else ():
        if w:
            print(f"WARNING: {run_dir}: {w}", file=sys.stderr, flush=True)
    train_ds = task.batches(train, tok, train_cfg, labels)
    eval_ds = task.batches(eval, tok, train_cfg, labels, evaluation=True) if eval is not None else None
    collator = task.collator(tok, train_cfg)
    if init_head is not None:
        init_head(loaded.model, train)
    elif labels and train_cfg.head_init == "probe":
        init_head_from_probe(loaded, train, train_cfg)

    discarded = discard_incomplete(ckpt_dir) if main else []
    resume_from = str(done[-1]) if done else None
    resumed_step = int(done[-1].name.split("-")[-1]) if done else 0
    if main and not train_cfg.resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    trained, total = trainable_parameters(loaded.model)
    info = {"device": loaded.device, "cpu_threads": threads, "trainable_params": trained, "total_params": total,
            "warnings": warnings,
            "resumed_from": resume_from, "discarded_checkpoints": discarded}
    if world > 1:
        info.update({"world_size": world, "launcher": os.environ.get("WORKBENCH_LAUNCHER", "torch.distributed.run"),
                     "per_device_batch_size": batch, "grad_accum_per_process": accum})
    backend_args = _backend_args(main)
    trackers = tracker_locations(train_cfg.report_to) if main else {}
    if trackers:
        info["trackers"] = trackers
        atomic_write_json(run_dir / "trackers.json", trackers)
    while True:
        has_eval = eval_ds is not None
        args = TrainingArguments(
            output_dir=str(ckpt_dir),
            num_train_epochs=train_cfg.epochs,
            max_steps=train_cfg.max_steps,
            per_device_train_batch_size=batch,
            per_device_eval_batch_size=max(1, max(train_cfg.batch_size, 16) // world),  # the same global batch
            gradient_accumulation_steps=accum,
            learning_rate=train_cfg.learning_rate,
            warmup_steps=train_cfg.warmup,
            lr_scheduler_type=train_cfg.scheduler,
            weight_decay=train_cfg.weight_decay,
            logging_steps=train_cfg.logging_steps,
            logging_first_step=True,
            eval_strategy=("steps" if train_cfg.eval_steps else "epoch") if has_eval else "no",
            eval_steps=train_cfg.eval_steps or None,
            save_strategy="steps" if train_cfg.save_steps else "epoch",
            save_steps=train_cfg.save_steps or 500,
            save_total_limit=train_cfg.save_total_limit,
            load_best_model_at_end=bool(train_cfg.early_stopping_patience and has_eval),
            metric_for_best_model=task.best_metric if has_eval else None,
            greater_is_better=task.greater_is_better if has_eval else None,
            seed=train_cfg.seed,
            data_seed=train_cfg.seed,
            report_to=list(trackers) or "none",
            disable_tqdm=True,
            use_cpu=loaded.device == "cpu",
            **method.training_args(loaded.device),
            train_sampling_strategy="group_by_length" if (train_cfg.group_by_length and not train_cfg.packing)
            else "random",
            include_num_input_tokens_seen=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            **backend_args,
        )
        if world > 1:
            _check_same_start(args, fingerprint, resume_from)
        callback = _callbacks(run_dir, loaded.device, stop, on_log, resumed_step, fingerprint)
        callback.eval_steps = math.ceil(len(eval_ds) / (args.per_device_eval_batch_size * world)) if has_eval else 0
        callbacks = [callback]
        if train_cfg.early_stopping_patience and has_eval:
            callbacks.append(EarlyStoppingCallback(train_cfg.early_stopping_patience))
        optimizer = _optimizer(loaded.model, train_cfg, loaded.kind)
        trainer = _trainer_class()(model=loaded.model, args=args, data_collator=collator, train_dataset=train_ds,
                                   eval_dataset=eval_ds, processing_class=tok, callbacks=callbacks,
                                   compute_metrics=task.compute_metrics, optimizers=(optimizer, None))
        trainer.remove_callback(PrinterCallback)  # our log goes to train_log.jsonl and on_log
        try:
            out = trainer.train(resume_from_checkpoint=resume_from)
            break
        except torch.OutOfMemoryError:
            del trainer
            if loaded.device == "cuda":
                torch.cuda.empty_cache()
            # In a launch the other processes are in the middle of a step: this one ends (the launcher stops them)
            # with the advice, rather than retrying alone.
            if not train_cfg.oom_retry or batch == 1 or world > 1:
                raise TrainingError(
                    f"out of GPU memory at batch_size={batch}, max_length={train_cfg.max_length}. Lower batch_size "
                    "(raise grad_accum to keep the effective batch), lower max_length, turn on "
                    "gradient_checkpointing, or use method qlora.") from None
            batch, accum = batch // 2, accum * 2
            info.setdefault("oom_retries", []).append({"batch_size": batch, "grad_accum": accum})
            done = complete_checkpoints(ckpt_dir)
            resume_from = str(done[-1]) if done else None

    state = trainer.state
    stopped = callback.stopped and state.global_step < state.max_steps
    # train_seconds: this session's time in Trainer.train (evaluations during training included).
    metrics = {"train_loss": out.training_loss, "global_step": state.global_step, "max_steps": state.max_steps,
               "epoch": state.epoch, "train_seconds": round(out.metrics.get("train_runtime", 0.0), 1), **info}
    if eval_ds is not None and (not stopped or train_cfg.evaluate_on_stop):
        if on_log:
            on_log({"step": state.global_step, "max_steps": state.max_steps, "phase": "evaluating", "eval_step": 0,
                    "eval_steps": callback.eval_steps, "time": time.time(), "progress": True})
        metrics.update({k: v for k, v in trainer.evaluate().items()})
        metrics.update(task.final_metrics(metrics))
        if stopped:
            metrics["evaluated_at_stop"] = True
    status = STOPPED if stopped else SUCCEEDED
    # Sharded weights (FSDP, DeepSpeed) are gathered by every process; the main one saves them.
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped) if distributed.sharded() else None
    if not main:  # the main process saves the model, the metrics and the status
        distributed.barrier()
        return TrainResult(run_dir, run_dir / "model", metrics, status, state.global_step, state.max_steps)
    if on_log:
        on_log({"step": state.global_step, "max_steps": state.max_steps, "phase": "saving", "time": time.time(),
                "progress": True})
    model_dir = save_trained(loaded, run_dir / "model", model_cfg.method, labels, state_dict=state_dict)
    atomic_write_json(run_dir / "metrics.json", metrics)
    write_status(run_dir, status, (getattr(stop, "reason", "") or "stopped on request") if stopped else "",
                 global_step=state.global_step, max_steps=state.max_steps)
    distributed.barrier()
    return TrainResult(run_dir, model_dir, metrics, status, state.global_step, state.max_steps)


# --------------------------------------------------------------------------- pretraining


def pretrain(corpus: LoadedDataset, out_dir: str | Path, train_cfg: TrainConfig, vocab_size: int = 2000,
             preset: str = "small", stop: threading.Event | None = None,
             on_log: Callable[[dict], None] | None = None, base: str | None = None,
             model: ModelConfig | None = None, run: Callable = run_training) -> TrainResult:
    """Pretrain a causal LM on a text corpus (the ``pretraining`` task): from scratch, or continued.

    From scratch (``base`` None): trains a byte-level BPE tokenizer on the corpus, builds the
    preset model with random weights into ``out_dir/base``. Continued: starts from ``base`` (a
    folder, hub id or preset). Either way the model trains on packed text, every token, and
    ``out_dir/model`` is a base for fine-tuning. ``model``'s other settings (dtype, revision,
    ``trust_remote_code``...) apply; its name, task and method are the pretraining's. ``run`` trains
    (``run_training``, or a launch of several processes: the base is built here, once).
    """
    if (problem := get_task("pretraining").data_problem(corpus)):
        raise TrainingError(problem)
    out = Path(out_dir)
    if base is None:
        base = str(out / "base")
        if not (Path(base) / "config.json").exists():
            tok = train_tokenizer(corpus.frame["text"].tolist(), vocab_size=vocab_size)
            presets.save_base_model(presets.llama_preset(preset, len(tok), bos_token_id=tok.bos_token_id,
                                                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
                                    tok, base, seed=train_cfg.seed)
    cfg = replace(train_cfg, output_dir=str(out))
    model_cfg = replace(model or ModelConfig(), name_or_path=base, task="pretraining", method="full")
    return run(corpus, None, model_cfg, cfg, stop=stop, on_log=on_log)


def load_log(run_dir: str | Path) -> list[dict]:
    """The entries of a run's ``train_log.jsonl`` (a line cut by a kill or a full disk is skipped)."""
    path = Path(run_dir) / "train_log.jsonl"
    if not path.exists():
        return []
    return _log_entries(path.read_text(errors="replace"))


def headline_metrics(metrics: dict, extra: tuple[str, ...] = (), numbers: bool = False) -> dict:
    """The figures a finished training run is summed up by: its evaluation metrics and training loss.

    Args:
        metrics: A run's metrics (``TrainResult.metrics``).
        extra: More keys to keep (``trainable_params``, ``device``...).
        numbers: Keep numbers only (for ``{value:.4g}`` formatting).

    Returns:
        The kept entries, in their original order.
    """
    return {k: v for k, v in metrics.items() if (k.startswith("eval_") or k == "train_loss" or k in extra)
            and (not numbers or isinstance(v, (int, float)))}


def write_training_curves(run_dir: str | Path) -> bytes:
    """Draw a run's loss and evaluation curves from its training log into ``training_curves.png``.

    Returns:
        The PNG bytes (also written to ``run_dir/training_curves.png``).
    """
    png = plots.to_png(plots.training_curves(load_log(run_dir)))
    atomic_write_bytes(Path(run_dir) / "training_curves.png", png)
    return png


__all__ = ["TrainResult", "TrainingError", "complete_checkpoints", "headline_metrics", "load_log", "pack",
           "prepare_sft", "pretrain", "read_status", "run_training", "write_training_curves"]
