"""An experiment in-process: its data split the way training splits it, and fine-tuning.

``finetune`` is what ``workbench train`` and the fine-tuning notebook call;
``experiment_splits`` is what the papermill runner (``workbench.notebook_runner``) fingerprints
a run's data with, and what ``workbench.repeat.rerun`` checks the data against.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .config import ExperimentConfig
from .data import DatasetError, data_report, load_dataset, split_dataset
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


def pretraining_corpus(cfg: ExperimentConfig) -> LoadedDataset:
    """All of the corpus a pretraining step trains on: ``cfg.data.source`` as the data section says.

    In a run, the pretraining step's data section is made from the ``pretrain:`` section (its
    ``source`` and ``text_column``; see ``notebook_runner``), which has no ``columns`` key: a table
    whose text column is not found is then reported with the fix in that section's terms.
    """
    try:
        return load_dataset(cfg.data.source, **cfg.data.load_kwargs())
    except DatasetError as e:
        pre = cfg.pretrain
        if not pre.source or pre.source != cfg.data.source or pre.text_column:
            raise
        fix = ("Say which column holds the text in the pretrain section: text_column: <column> (on the command "
               "line: -p pretrain.text_column=<column>).")
        raise DatasetError([replace(p, fix=fix) if p.kind == "unknown_format" else p for p in e.problems]) from None


def finetune(cfg: ExperimentConfig, progress: bool = False, stop: threading.Event | None = None,
             on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train the experiment's model on its data; returns the run's result."""
    callback = on_log
    if progress:
        bar = TerminalProgress()
        callback = (lambda e: (bar(e), on_log(e))) if on_log else bar
    if get_task(cfg.model.task).whole_source:  # pretraining: all of the corpus, from scratch or continued
        corpus = pretraining_corpus(cfg)
        return pretrain(corpus, cfg.train.output_dir, cfg.train, vocab_size=cfg.pretrain.vocab_size,
                        preset=cfg.pretrain.preset, base=cfg.model.name_or_path or None, stop=stop, on_log=callback)
    splits = experiment_splits(cfg)
    return run_training(splits["train"], splits.parts.get("validation"), cfg.model, cfg.train, cfg.lora, cfg.quant,
                        stop=stop, on_log=callback)
