"""Training around ``transformers.Trainer``: SFT, sequence classification, pretraining from scratch.

A run folder holds everything about one run::

    config.yaml          the resolved configuration
    label_map.json       class names (classification)
    train_log.jsonl      step, loss, learning rate, tokens/s, memory, evaluation metrics
    checkpoints/         Trainer checkpoints; complete ones carry a COMPLETE marker
    model/               the adapter or the whole model, with its tokenizer (safetensors)
    metrics.json         final metrics
    status.json          running / stopped / succeeded / failed, with a reason

Checkpoints are marked complete only after Trainer has written all of them, and resuming
picks the newest complete one, so a kill in the middle of a save costs one checkpoint,
never the run. A Stop request ends training at the next step with a checkpoint. A NaN or
infinite loss stops with a message; a CUDA out-of-memory error retries with half the batch
and twice the accumulation (the same effective batch), or says what to lower.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable


from . import plots, presets
from .config import LoraConfig, ModelConfig, QuantConfig, TokenConfig, TrainConfig, dump_yaml
from .data.dataset import LoadedDataset
from .devices import thread_warning, use_threads
from .errors import TrainingError
from .files import atomic_write_bytes, atomic_write_json, atomic_write_text
from .methods import get_method
from .models import load_model, save_trained, trainable_parameters
from .probe import embed, fit_probe
from .tasks import get_task, pack, prepare_sft  # noqa: F401 - pack and prepare_sft are part of this module's API
from .tokenizer import train_tokenizer
from .tokens import length_stats

COMPLETE = "COMPLETE"


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
    atomic_write_json(run_dir / "status.json", {"status": status, "reason": reason, "time": time.time(), **extra})


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


# --------------------------------------------------------------------------- data preparation


def check_masking(ds: LoadedDataset, tokenizer, cfg: TrainConfig) -> list[str]:
    """Run the token module's checks; stop when an example has no trained token. Returns warnings."""
    stats = length_stats(ds, tokenizer, TokenConfig(max_length=cfg.max_length, train_on_inputs=cfg.train_on_inputs,
                                                    batch_size=cfg.batch_size, sample=None))
    if stats.fully_masked_rows:
        rows = stats.fully_masked_rows
        where = ", ".join(ds.where(r) for r in rows[:5])
        raise TrainingError(
            f"{len(rows)} examples would train on nothing: every label is masked within max_length={cfg.max_length} "
            f"({where}{' ...' if len(rows) > 5 else ''}). Raise max_length, shorten those prompts, or drop them.")
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


def _callbacks(run_dir: Path, device: str, stop: threading.Event | None, on_log: Callable | None, resumed_step: int):
    from transformers import TrainerCallback

    log_path = run_dir / "train_log.jsonl"
    if log_path.exists():  # a resumed run rewrites what came after its checkpoint
        kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= resumed_step]
        atomic_write_text(log_path, "".join(ln + "\n" for ln in kept))

    class Workbench(TrainerCallback):
        def __init__(self):
            self.last = (time.perf_counter(), 0)
            self.stopped = False

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
            with open(log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")
            if on_log:
                on_log(entry)

        def on_step_end(self, args, state, control, **kw):
            if stop is not None and stop.is_set():
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
            if on_log and state.global_step % max(1, args.logging_steps) != 0:
                on_log({"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch,
                        "time": time.time(), "progress": True})

        def on_save(self, args, state, control, **kw):
            # Trainer has finished writing this checkpoint: only now does it count for resuming.
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.exists():
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
        TrainingError: data that cannot train, a NaN loss, or out of memory with nothing left to lower.
    """
    run_dir = Path(train_cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    try:
        return _run(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg, run_dir, ckpt_dir, stop, on_log,
                    tokenizer, init_head)
    except TrainingError as e:
        write_status(run_dir, "failed", str(e))
        raise
    except KeyboardInterrupt:
        write_status(run_dir, "interrupted", "interrupted by the user (Ctrl-C)")  # run_folders.INTERRUPTED
        raise
    except Exception as e:
        write_status(run_dir, "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        raise


def _run(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg, run_dir, ckpt_dir, stop, on_log, tokenizer,
         init_head) -> TrainResult:
    import torch
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    task, method = get_task(model_cfg.task), get_method(model_cfg.method)
    train_cfg = replace(train_cfg, **task.train_overrides)
    threads = use_threads(train_cfg.num_threads)  # 0: from the machine's load, not a constant
    if (busy := thread_warning(train_cfg.num_threads)):  # an explicit count above the cores free now
        print(f"WARNING: {busy}", file=sys.stderr, flush=True)
    set_seed(train_cfg.seed)
    if (problem := task.data_problem(train)):
        raise TrainingError(problem)
    labels = task.labels(train, eval)
    write_status(run_dir, "running")
    atomic_write_text(run_dir / "config.yaml", "".join(
        f"{name}:\n" + "".join(f"  {line}\n" for line in dump_yaml(obj).splitlines())
        for name, obj in (("model", model_cfg), ("lora", lora_cfg), ("quant", quant_cfg), ("train", train_cfg))))
    if labels:
        atomic_write_json(run_dir / "label_map.json", {"labels": labels})

    loaded = load_model(model_cfg, quant_cfg, lora_cfg, labels, tokenizer, train_cfg.label_smoothing)
    tok = loaded.tokenizer
    warnings = ([busy] if busy else []) + (check_masking(train, tok, train_cfg) if task.masks_labels else [])
    train_ds = task.batches(train, tok, train_cfg, labels)
    eval_ds = task.batches(eval, tok, train_cfg, labels, evaluation=True) if eval is not None else None
    collator = task.collator(tok, train_cfg)
    if init_head is not None:
        init_head(loaded.model, train)
    elif labels and train_cfg.head_init == "probe":
        init_head_from_probe(loaded, train, train_cfg)

    discarded = discard_incomplete(ckpt_dir)
    done = complete_checkpoints(ckpt_dir) if train_cfg.resume else []
    resume_from = str(done[-1]) if done else None
    resumed_step = int(done[-1].name.split("-")[-1]) if done else 0
    if not train_cfg.resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    batch, accum = train_cfg.batch_size, train_cfg.grad_accum
    trained, total = trainable_parameters(loaded.model)
    info = {"device": loaded.device, "cpu_threads": threads, "trainable_params": trained, "total_params": total,
            "warnings": warnings,
            "resumed_from": resume_from, "discarded_checkpoints": discarded}
    while True:
        has_eval = eval_ds is not None
        args = TrainingArguments(
            output_dir=str(ckpt_dir),
            num_train_epochs=train_cfg.epochs,
            max_steps=train_cfg.max_steps,
            per_device_train_batch_size=batch,
            per_device_eval_batch_size=max(batch, 16),
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
            report_to="none",
            disable_tqdm=True,
            use_cpu=loaded.device == "cpu",
            **method.training_args(loaded.device),
            train_sampling_strategy="group_by_length" if (train_cfg.group_by_length and not train_cfg.packing)
            else "random",
            include_num_input_tokens_seen=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        callback = _callbacks(run_dir, loaded.device, stop, on_log, resumed_step)
        callbacks = [callback]
        if train_cfg.early_stopping_patience and has_eval:
            callbacks.append(EarlyStoppingCallback(train_cfg.early_stopping_patience))
        optimizer = _optimizer(loaded.model, train_cfg, loaded.kind)
        trainer = Trainer(model=loaded.model, args=args, data_collator=collator, train_dataset=train_ds,
                          eval_dataset=eval_ds, processing_class=tok, callbacks=callbacks,
                          compute_metrics=task.compute_metrics,
                          optimizers=(optimizer, None))
        trainer.remove_callback(PrinterCallback)  # our log goes to train_log.jsonl and on_log
        try:
            out = trainer.train(resume_from_checkpoint=resume_from)
            break
        except torch.OutOfMemoryError:
            del trainer
            if loaded.device == "cuda":
                torch.cuda.empty_cache()
            if not train_cfg.oom_retry or batch == 1:
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
    if eval_ds is not None and not stopped:
        metrics.update({k: v for k, v in trainer.evaluate().items()})
        metrics.update(task.final_metrics(metrics))
    model_dir = save_trained(loaded, run_dir / "model", model_cfg.method, labels)
    atomic_write_json(run_dir / "metrics.json", metrics)
    status = "stopped" if stopped else "succeeded"
    write_status(run_dir, status, "stopped on request" if stopped else "",
                 global_step=state.global_step, max_steps=state.max_steps)
    return TrainResult(run_dir, model_dir, metrics, status, state.global_step, state.max_steps)


# --------------------------------------------------------------------------- pretraining


def pretrain(corpus: LoadedDataset, out_dir: str | Path, train_cfg: TrainConfig, vocab_size: int = 2000,
             preset: str = "small", stop: threading.Event | None = None,
             on_log: Callable[[dict], None] | None = None, base: str | None = None,
             model: ModelConfig | None = None) -> TrainResult:
    """Pretrain a causal LM on a text corpus (the ``pretraining`` task): from scratch, or continued.

    From scratch (``base`` None): trains a byte-level BPE tokenizer on the corpus, builds the
    preset model with random weights into ``out_dir/base``. Continued: starts from ``base`` (a
    folder, hub id or preset). Either way the model trains on packed text, every token, and
    ``out_dir/model`` is a base for fine-tuning. ``model``'s other settings (dtype, revision,
    ``trust_remote_code``...) apply; its name, task and method are the pretraining's.
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
    return run_training(corpus, None, model_cfg, cfg,
                        stop=stop, on_log=on_log)


def load_log(run_dir: str | Path) -> list[dict]:
    """The entries of a run's ``train_log.jsonl``."""
    path = Path(run_dir) / "train_log.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


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


def read_status(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "status.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "unknown"}


__all__ = ["TrainResult", "TrainingError", "complete_checkpoints", "headline_metrics", "load_log", "pack",
           "prepare_sft", "pretrain", "read_status", "run_training", "write_training_curves"]
