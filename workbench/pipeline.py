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

import numpy as np
import pandas as pd

from .config import ExperimentConfig
from .data import DatasetError, data_report, load_dataset, split_dataset
from .data.dataset import LoadedDataset
from .data.split import Splits
from .launch import launch_training
from .presets import model_fingerprint
from .progress import TerminalProgress
from .tasks import get_task
from .train import TrainResult, pretrain, run_training


def experiment_splits(cfg: ExperimentConfig, out_dir=None) -> Splits:
    """Load, clean and split the experiment's data as ``data_report`` does, and write the splits to ``out_dir``.

    A validation or test split the source provides (or ``eval_split`` names) is used as that split, cleaned
    like train, its repeats of train dropped unless ``keep_overlap``; the others are carved out of train.
    """
    return data_report(cfg.data.source, **cfg.data.report_kwargs(), out_dir=out_dir).splits


def quick_splits(ds: LoadedDataset, test: float = 0.0) -> Splits:
    """How a dataset loaded by hand (the dashboard) is split for training: a tenth for validation, ``test`` for a
    held-out test split (the dashboard holds one out when the data provides none), rare labels kept in train,
    stratified by label when the data has labels."""
    return split_dataset(ds, test=test, validation=0.1, rare="train", stratify="auto" if ds.spec.has_label else None)


def pretraining_corpus(cfg: ExperimentConfig) -> LoadedDataset:
    """All of the corpus a pretraining step trains on: ``cfg.data.source`` as the data section says.

    In a run, the pretraining step's data section is made from the ``pretrain:`` section (its
    ``source`` and ``text_column``; see ``notebook_runner``), which has no ``columns`` key: a table
    whose text column is not found is then reported with the fix in that section's terms.
    """
    try:
        corpus = load_dataset(cfg.data.source, **cfg.data.load_kwargs())
    except DatasetError as e:
        pre = cfg.pretrain
        if not pre.source or pre.source != cfg.data.source or pre.text_column:
            raise
        fix = ("Say which column holds the text in the pretrain section: text_column: <column> (on the command "
               "line: -p pretrain.text_column=<column>).")
        raise DatasetError([replace(p, fix=fix) if p.kind == "unknown_format" else p for p in e.problems]) from None
    if cfg.pretrain.source and cfg.pretrain.source == cfg.data.source:
        return held_out_split(corpus, cfg.pretrain.held_out, cfg.data.seed)[0]
    return corpus


def held_out_split(corpus: LoadedDataset, share: float, seed: int) -> tuple[LoadedDataset, LoadedDataset]:
    """(kept, held out): about ``share`` of the corpus's documents held out whole, chosen by ``seed``.

    Rows of one document (the same ``path``; a table without one: each row) stay together, so the held-out
    text is unseen, not neighbouring sections of documents trained on.
    """
    frame = corpus.frame
    groups = frame["path"].astype(str) if "path" in frame.columns else pd.Series(range(len(frame)), index=frame.index)
    names = sorted(groups.unique())
    n = int(round(share * len(names)))
    if share > 0 and len(names) > 1:
        n = min(max(n, 1), len(names) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(names))[:n].tolist())
    out = groups.isin([names[i] for i in chosen]).to_numpy()
    return (corpus.with_frame(frame[~out].reset_index(drop=True)),
            corpus.with_frame(frame[out].reset_index(drop=True)))


def pretraining_held_out(cfg: ExperimentConfig) -> LoadedDataset | None:
    """The corpus documents the experiment's pretraining step kept out (``pretrain.held_out``), or None."""
    pre = cfg.pretrain
    if not (pre.source and pre.held_out):
        return None
    corpus = pretraining_corpus(replace(cfg, data=corpus_section(cfg), pretrain=replace(pre, held_out=0.0)))
    return held_out_split(corpus, pre.held_out, cfg.data.seed)[1]


def corpus_section(cfg: ExperimentConfig):
    """The data section a pretraining step reads its corpus with, made from the ``pretrain:`` section: running
    text from ``pretrain.source`` (a table's text column from ``pretrain.text_column``), no splits."""
    pre = cfg.pretrain
    columns = {"text": pre.text_column} if pre.text_column else {}
    return replace(cfg.data, source=pre.source, format="corpus", columns=columns, split=None, eval_split=None,
                   validation=0.0, test=0.0, stratify=None)


def input_fingerprints(cfg: ExperimentConfig) -> dict:
    """What a run reads besides its data splits, fingerprinted: the base model (``presets.model_fingerprint``;
    None for a hub id) and the pretraining corpus (all of it, held-out documents included). A rerun
    (``repeat.rerun``) refuses when one of them changed since."""
    out = {"base_model": model_fingerprint(cfg.model.name_or_path)}
    if cfg.pretrain.source:
        whole = replace(cfg, data=corpus_section(cfg), pretrain=replace(cfg.pretrain, held_out=0.0))
        out["pretraining_corpus"] = pretraining_corpus(whole).fingerprint()
    return out


def finetune(cfg: ExperimentConfig, progress: bool = False, stop: threading.Event | None = None,
             on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train the experiment's model on its data (the train split, or ``data.max_train_rows`` of it); returns the result.

    One process trains here; a ``launch`` of more (``launch.processes``, ``launch.machines``) trains through
    ``workbench.launch.launch_training``, this process watching. Ctrl-C leaves the training folder's status
    ``stopped`` (``run_training``), then goes on up.
    """
    callback = on_log
    if progress:
        bar = TerminalProgress()
        callback = (lambda e: (bar(e), on_log(e))) if on_log else bar
    run = run_training
    if cfg.launch.world_size > 1:
        def run(*args, **kw):
            return launch_training(*args, launch=cfg.launch, **kw)
    if get_task(cfg.model.task).whole_source:  # pretraining: all of the corpus, from scratch or continued
        corpus = pretraining_corpus(cfg)
        return pretrain(corpus, cfg.train.output_dir, cfg.train, vocab_size=cfg.pretrain.vocab_size,
                        preset=cfg.pretrain.preset, base=cfg.model.name_or_path or None, model=cfg.model, stop=stop,
                        on_log=callback, run=run)
    splits = experiment_splits(cfg)
    train = splits["train"]
    if 0 < cfg.data.max_train_rows < len(train):  # a subset: the first N rows of the train split shuffled with the seed
        train = train.with_frame(train.frame.sample(n=cfg.data.max_train_rows, random_state=cfg.data.seed))
    return run(train, splits.parts.get("validation"), cfg.model, cfg.train, cfg.lora, cfg.quant,
               stop=stop, on_log=callback)
