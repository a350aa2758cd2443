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
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .config import LoraConfig, ModelConfig, QuantConfig, TokenConfig, TrainConfig, dump_yaml
from .data.load import LoadedDataset
from .files import atomic_write_json, atomic_write_text

COMPLETE = "COMPLETE"


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""

    def _render_traceback_(self) -> list[str]:
        return [f"TrainingError: {self}"]


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


def label_names(train: LoadedDataset, *others: LoadedDataset | None) -> list[str]:
    """Sorted class names of the training split; other splits may not bring new ones."""
    names = sorted({str(x) for x in train.frame["label"]})
    known = set(names)
    for ds in others:
        if ds is None:
            continue
        new = sorted({str(x) for x in ds.frame["label"]} - known)
        if new:
            raise TrainingError(f"{ds.source} has labels the training split lacks: {', '.join(new[:5])}. "
                                "Every class needs training examples; re-split with stratification.")
    return names


def prepare_classification(ds: LoadedDataset, tokenizer, labels: list[str], max_length: int):
    """Tokenized ``datasets.Dataset`` with input_ids, attention_mask, labels and length."""
    import datasets

    index = {n: i for i, n in enumerate(labels)}
    texts = ds.frame["text"].tolist()
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    cols = {k: enc[k] for k in enc.keys()}
    cols["labels"] = [index[str(x)] for x in ds.frame["label"]]
    cols["length"] = [len(x) for x in enc["input_ids"]]
    return datasets.Dataset.from_dict(cols)


def check_masking(ds: LoadedDataset, tokenizer, cfg: TrainConfig) -> list[str]:
    """Run the token module's checks; stop when an example has no trained token. Returns warnings."""
    from .tokens import length_stats

    stats = length_stats(ds, tokenizer, TokenConfig(max_length=cfg.max_length, train_on_inputs=cfg.train_on_inputs,
                                                    batch_size=cfg.batch_size, sample=None))
    if stats.fully_masked_rows:
        rows = stats.fully_masked_rows
        where = ", ".join(ds.where(r) for r in rows[:5])
        raise TrainingError(
            f"{len(rows)} examples would train on nothing: every label is masked within max_length={cfg.max_length} "
            f"({where}{' ...' if len(rows) > 5 else ''}). Raise max_length, shorten those prompts, or drop them.")
    return list(stats.warnings)


def prepare_sft(ds: LoadedDataset, tokenizer, cfg: TrainConfig):
    """Tokenized SFT or corpus examples (input_ids, labels, length), packed when ``cfg.packing``."""
    import datasets

    from .tokens import format_example, tokenize_example

    token_cfg = TokenConfig(max_length=cfg.max_length, train_on_inputs=cfg.train_on_inputs)
    records = ds.frame[list(ds.fields)].to_dict("records")
    ids, labels = [], []
    for rec in records:
        if ds.format == "corpus":
            # Documents are cut into max_length pieces, not truncated: pretraining sees all of the text.
            ex = tokenize_example(format_example(rec, ds.format, tokenizer, token_cfg), tokenizer, None)
            for i in range(0, len(ex.input_ids), cfg.max_length):
                piece = ex.input_ids[i:i + cfg.max_length]
                if len(piece) > 1:
                    ids.append(piece)
                    labels.append(list(piece))
            continue
        ex = tokenize_example(format_example(rec, ds.format, tokenizer, token_cfg), tokenizer, cfg.max_length)
        ids.append(ex.input_ids)
        labels.append(ex.labels)
    if cfg.packing:
        return datasets.Dataset.from_dict(pack(ids, labels, cfg.max_length))
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": labels, "length": [len(x) for x in ids]})


def pack(ids: list[list[int]], labels: list[list[int]], max_length: int) -> dict[str, list]:
    """Greedy first-fit packing into rows of at most ``max_length`` tokens.

    Position ids restart at 0 for every example; with no attention mask, transformers turns
    that into a block-diagonal causal mask, so packed examples never attend to each other.
    The first label of each example is masked: it would otherwise be predicted from the
    previous example's last token.
    """
    rows: list[dict] = []
    space: list[int] = []
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    for i in order:
        n = len(ids[i])
        slot = next((r for r, free in enumerate(space) if free >= n), None)
        if slot is None:
            rows.append({"input_ids": [], "labels": [], "position_ids": []})
            space.append(max_length)
            slot = len(rows) - 1
        row = rows[slot]
        row["input_ids"] += ids[i]
        row["labels"] += [-100] + labels[i][1:]
        row["position_ids"] += list(range(n))
        space[slot] -= n
    for row in rows:
        row["length"] = len(row["input_ids"])
    return {k: [r[k] for r in rows] for k in ("input_ids", "labels", "position_ids", "length")}


class SFTCollator:
    """Pads input_ids/labels (and position_ids for packed rows) to the longest row of the batch."""

    def __init__(self, pad_id: int, packed: bool):
        self.pad_id, self.packed = pad_id, packed

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        batch = {"input_ids": ids, "labels": labels}
        if self.packed:
            pos = torch.zeros((len(features), width), dtype=torch.long)
            for i, f in enumerate(features):
                n = len(f["input_ids"])
                pos[i, :n] = torch.tensor(f["position_ids"])
                pos[i, n:] = torch.arange(width - n)  # padding: its own block, never attended from real tokens
            batch["position_ids"] = pos
        else:
            mask = torch.zeros((len(features), width), dtype=torch.long)
            batch["attention_mask"] = mask
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            if not self.packed:
                mask[i, :n] = 1
        return batch


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


# --------------------------------------------------------------------------- metrics


def classification_metrics(eval_pred) -> dict:
    from .metrics import accuracy, macro_f1

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": accuracy(labels, pred), "macro_f1": macro_f1(labels, pred)}


# --------------------------------------------------------------------------- the run


def init_head_from_probe(loaded, train: LoadedDataset, cfg: TrainConfig) -> None:
    """LP-FT: fit a logistic regression on the frozen encoder's embeddings and start the head there.

    Fine-tuning then begins near the probe's accuracy, and the first gradients do not
    distort the pretrained features through a random head.
    """
    from .probe import embed, fit_probe

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
    except Exception as e:
        write_status(run_dir, "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        raise


def _run(train, eval, model_cfg, train_cfg, lora_cfg, quant_cfg, run_dir, ckpt_dir, stop, on_log, tokenizer,
         init_head) -> TrainResult:
    import torch
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

    from .models import load_model, save_trained, trainable_parameters

    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    set_seed(train_cfg.seed)
    classification = model_cfg.task == "sequence-classification"
    if classification and train.format != "classification":
        raise TrainingError(f"sequence classification needs text+label data; {train.source} is {train.format}.")
    if not classification and train.format == "classification":
        raise TrainingError(f"{train.source} is classification data: use task sequence-classification, or "
                            "reformat it as prompt/completion for a causal LM.")
    labels = label_names(train, eval) if classification else None
    write_status(run_dir, "running")
    atomic_write_text(run_dir / "config.yaml", "".join(
        f"{name}:\n" + "".join(f"  {line}\n" for line in dump_yaml(obj).splitlines())
        for name, obj in (("model", model_cfg), ("lora", lora_cfg), ("quant", quant_cfg), ("train", train_cfg))))
    if labels:
        atomic_write_json(run_dir / "label_map.json", {"labels": labels})

    loaded = load_model(model_cfg, quant_cfg, lora_cfg, labels, tokenizer, train_cfg.label_smoothing)
    tok = loaded.tokenizer
    warnings: list[str] = []
    if classification:
        train_ds = prepare_classification(train, tok, labels, train_cfg.max_length)
        eval_ds = prepare_classification(eval, tok, labels, train_cfg.max_length) if eval is not None else None
        from transformers import DataCollatorWithPadding

        collator = DataCollatorWithPadding(tok)
    else:
        warnings = check_masking(train, tok, train_cfg)
        train_ds = prepare_sft(train, tok, train_cfg)
        eval_ds = prepare_sft(eval, tok, replace(train_cfg, packing=False)) if eval is not None else None
        collator = SFTCollator(tok.pad_token_id if tok.pad_token_id is not None else 0, train_cfg.packing)
    if init_head is not None:
        init_head(loaded.model, train)
    elif classification and train_cfg.head_init == "probe":
        init_head_from_probe(loaded, train, train_cfg)

    discarded = discard_incomplete(ckpt_dir)
    done = complete_checkpoints(ckpt_dir) if train_cfg.resume else []
    resume_from = str(done[-1]) if done else None
    resumed_step = int(done[-1].name.split("-")[-1]) if done else 0
    if not train_cfg.resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    batch, accum = train_cfg.batch_size, train_cfg.grad_accum
    trained, total = trainable_parameters(loaded.model)
    info = {"device": loaded.device, "trainable_params": trained, "total_params": total, "warnings": warnings,
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
            metric_for_best_model=("accuracy" if classification else "loss") if has_eval else None,
            greater_is_better=classification if has_eval else None,
            seed=train_cfg.seed,
            data_seed=train_cfg.seed,
            report_to="none",
            disable_tqdm=True,
            use_cpu=loaded.device == "cpu",
            bf16=loaded.device == "cuda" and torch.cuda.is_bf16_supported() and model_cfg.method != "qlora",
            optim="paged_adamw_8bit" if (model_cfg.method == "qlora" and loaded.device == "cuda") else "adamw_torch",
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
                          compute_metrics=classification_metrics if classification else None,
                          optimizers=(optimizer, None))
        from transformers.trainer_callback import PrinterCallback

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
        if not classification and "eval_loss" in metrics:
            metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50))
    model_dir = save_trained(loaded, run_dir / "model", model_cfg.method, labels)
    atomic_write_json(run_dir / "metrics.json", metrics)
    status = "stopped" if stopped else "succeeded"
    write_status(run_dir, status, "stopped on request" if stopped else "",
                 global_step=state.global_step, max_steps=state.max_steps)
    return TrainResult(run_dir, model_dir, metrics, status, state.global_step, state.max_steps)


# --------------------------------------------------------------------------- pretraining


def pretrain(corpus: LoadedDataset, out_dir: str | Path, train_cfg: TrainConfig, vocab_size: int = 2000,
             preset: str = "small", stop: threading.Event | None = None,
             on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Pretrain a small Llama from scratch on a text corpus.

    Trains a byte-level BPE tokenizer on the corpus, builds the preset model with random
    weights into ``out_dir/base``, and trains it as a causal LM on packed text. The
    trained model in ``out_dir/model`` is a base for fine-tuning.
    """
    from . import presets
    from .tokens import train_tokenizer

    if corpus.format != "corpus":
        raise TrainingError(f"pretraining needs a text corpus; {corpus.source} is {corpus.format}.")
    out = Path(out_dir)
    base = out / "base"
    if not (base / "config.json").exists():
        tok = train_tokenizer(corpus.frame["text"].tolist(), vocab_size=vocab_size)
        build = {"tiny": presets.tiny_llama, "small": presets.small_llama}[preset]
        presets.save_base_model(build(len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id), tok, base, seed=train_cfg.seed)
    cfg = replace(train_cfg, output_dir=str(out), packing=True, train_on_inputs=True)
    return run_training(corpus, None, ModelConfig(name_or_path=str(base), task="causal-lm", method="full"), cfg,
                        stop=stop, on_log=on_log)


def load_log(run_dir: str | Path) -> list[dict]:
    """The entries of a run's ``train_log.jsonl``."""
    path = Path(run_dir) / "train_log.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def read_status(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "status.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "unknown"}


__all__ = ["TrainResult", "TrainingError", "complete_checkpoints", "load_log", "pack", "prepare_sft", "pretrain",
           "read_status", "run_training"]
