"""An experiment in-process: its data split the way training splits it, and fine-tuning.

``finetune`` is what ``workbench train`` and the fine-tuning notebook call;
``experiment_splits`` is what the papermill runner (``workbench.notebook_runner``) fingerprints
a run's data with, and what ``workbench.repeat.rerun`` checks the data against.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from .config import ExperimentConfig
from .data import data_report, load_dataset, split_dataset
from .data.dataset import LoadedDataset
from .data.split import Splits
from .files import atomic_write_jsonl
from .progress import TerminalProgress
from .tasks import get_task
from .train import TrainResult, pretrain, run_training


def experiment_splits(cfg: ExperimentConfig, out_dir=None) -> Splits:
    """Load, clean and split the experiment's data (a separate ``eval_split`` becomes the test split)."""
    d = cfg.data
    report = data_report(d.source, **{**d.report_kwargs(), "test": 0.0 if d.eval_split else d.test}, out_dir=out_dir)
    splits = report.splits
    if d.eval_split:
        test = load_dataset(d.source, **{**d.load_kwargs(), "split": d.eval_split})
        if out_dir is not None:
            atomic_write_jsonl(Path(out_dir) / "test.jsonl", test.records())
        parts = dict(splits.parts)
        parts["test"] = test
        prints = dict(splits.fingerprints)
        prints["test"] = test.fingerprint()
        splits = Splits(parts, prints, splits.seed, {**splits.ratios, "test": None}, splits.stratify,
                        splits.source_fingerprint, splits.dropped_rare)
    return splits


def quick_splits(ds: LoadedDataset) -> Splits:
    """How a dataset loaded by hand (the dashboard) is split for training: a tenth for validation,
    no test split, rare labels kept in train, stratified by label when the data has labels."""
    return split_dataset(ds, test=0.0, validation=0.1, rare="train", stratify="auto" if ds.spec.has_label else None)


def finetune(cfg: ExperimentConfig, progress: bool = False, stop: threading.Event | None = None,
             on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train the experiment's model on its data; returns the run's result."""
    callback = on_log
    if progress:
        bar = TerminalProgress()
        callback = (lambda e: (bar(e), on_log(e))) if on_log else bar
    if get_task(cfg.model.task).whole_source:  # pretraining: all of the corpus, from scratch or continued
        corpus = load_dataset(cfg.data.source, **cfg.data.load_kwargs())
        return pretrain(corpus, cfg.train.output_dir, cfg.train, vocab_size=cfg.pretrain.vocab_size,
                        preset=cfg.pretrain.preset, base=cfg.model.name_or_path or None, stop=stop, on_log=callback)
    splits = experiment_splits(cfg)
    return run_training(splits["train"], splits.parts.get("validation"), cfg.model, cfg.train, cfg.lora, cfg.quant,
                        stop=stop, on_log=callback)
