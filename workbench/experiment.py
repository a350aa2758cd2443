"""An experiment end to end in-process: data from its config, splits, training, the run folder.

``finetune`` is what ``workbench train`` and the fine-tuning notebook call. (Papermill runs,
run ids, manifests and sweeps build on it.)
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .config import ExperimentConfig
from .data import data_report, load_dataset
from .data.split import Splits
from .train import TrainResult, pretrain, run_training


def experiment_splits(cfg: ExperimentConfig, out_dir=None) -> Splits:
    """Load, clean and split the experiment's data (a separate ``eval_split`` becomes the test split)."""
    d = cfg.data
    report = data_report(d.source, **d.load_kwargs(), dedupe=d.dedupe, redact=d.redact_pii,
                         test=0.0 if d.eval_split else d.test, validation=d.validation, seed=d.seed,
                         stratify=d.stratify, out_dir=out_dir)
    splits = report.splits
    if d.eval_split:
        test = load_dataset(d.source, format=d.format, columns=d.columns or None, split=d.eval_split, strict=d.strict)
        if out_dir is not None:
            from .files import atomic_write_jsonl

            atomic_write_jsonl(Path(out_dir) / "test.jsonl", test.records())
        parts = dict(splits.parts)
        parts["test"] = test
        prints = dict(splits.fingerprints)
        prints["test"] = test.fingerprint()
        splits = Splits(parts, prints, splits.seed, {**splits.ratios, "test": None}, splits.stratify,
                        splits.source_fingerprint, splits.dropped_rare)
    return splits


class TerminalProgress:
    """A progress bar with ETA, loss and tokens/s for the terminal, fed training-log entries.

    On a terminal it redraws one line; elsewhere (a CI log, a file) it prints a line at every
    tenth of the way, so logs stay readable. The rate is measured from the first entry it sees,
    so a resumed run's ETA counts only the steps still to do.
    """

    def __init__(self, stream=None, label: str = ""):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = f"{label} " if label else ""
        self.first: tuple[float, int] | None = None
        self.loss = self.tps = None
        self.evaluation = ""
        self.shown_tenth, self.open = -1, False

    def __call__(self, entry: dict) -> None:
        step, total = int(entry.get("step", 0)), max(1, int(entry.get("max_steps") or 1))
        now = time.time()
        if self.first is None:
            self.first = (now, step)
        self.loss = entry.get("loss", self.loss)
        self.tps = entry.get("tokens_per_s", self.tps)
        if entry.get("eval_accuracy") is not None:
            self.evaluation = f" val acc {100 * entry['eval_accuracy']:.2f}%"
        elif entry.get("eval_loss") is not None:
            self.evaluation = f" val loss {entry['eval_loss']:.4f}"
        t0, s0 = self.first
        rate = (step - s0) / (now - t0) if step > s0 and now > t0 else 0.0
        eta = f"ETA {_duration((total - step) / rate)}" if rate else "ETA ?"
        done = min(1.0, step / total)
        bar = "#" * int(30 * done) + "-" * (30 - int(30 * done))
        extra = (f" loss {self.loss:.4f}" if isinstance(self.loss, (int, float)) else "") + (
            f" {self.tps:,.0f} tok/s" if self.tps else "") + self.evaluation
        line = f"{self.label}[{bar}] {step}/{total} {eta}{extra}"
        if self.tty:
            self.stream.write(f"\r{line}   ")
            self.open = step < total
            if not self.open:
                self.stream.write("\n")
        elif int(10 * done) > self.shown_tenth:
            self.shown_tenth = int(10 * done)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End an unfinished bar's line (a stop or a failure before the last step)."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def finetune(cfg: ExperimentConfig, progress: bool = False, stop: threading.Event | None = None,
             on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train the experiment's model on its data; returns the run's result."""
    callback = on_log
    if progress:
        bar = TerminalProgress()
        callback = (lambda e: (bar(e), on_log(e))) if on_log else bar
    if cfg.model.task == "causal-lm" and cfg.data.format == "corpus" and cfg.model.name_or_path.startswith("scratch"):
        corpus = load_dataset(cfg.data.source, **cfg.data.load_kwargs())
        preset = cfg.model.name_or_path.partition(":")[2] or "small"
        return pretrain(corpus, cfg.train.output_dir, cfg.train, vocab_size=cfg.pretrain.vocab_size, preset=preset,
                        stop=stop, on_log=callback)
    splits = experiment_splits(cfg)
    return run_training(splits["train"], splits.parts.get("validation"), cfg.model, cfg.train, cfg.lora, cfg.quant,
                        stop=stop, on_log=callback)
