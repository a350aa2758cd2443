"""Tasks as registered descriptors: what a model learns, from which data, how it is measured.

A ``Task`` answers what training asks: whether a dataset's format suits it (``data_problem``),
the label names, which model class loads (``load``), how rows become batches (``batches``,
``collator``), and what is measured (``compute_metrics``, ``final_metrics``). Nothing else
compares task names. To add one, subclass ``Task`` and ``register_task`` an instance.

- ``causal-lm``: supervised fine-tuning of a causal LM on prompt/completion, instruction,
  chat (or running text); loss on the answers unless ``train_on_inputs``; optional packing.
- ``sequence-classification``: one label per text; pooled head for sentence encoders.
- ``pretraining``: a causal LM on running text, packed, every token trained; from scratch
  (``workbench.train.pretrain`` builds the base) or continued from a model.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, ClassVar

import numpy as np

from .data.dataset import LoadedDataset
from .errors import ConfigError, TrainingError
from .registry import Registry
from .metrics import accuracy, macro_f1
from .templates import format_example, tokenize_example


class Task:
    """What a model learns.

    Attributes:
        name: The name users write (``task: causal-lm``).
        description: One line for choosers (panels, CLI help).
        best_metric: Evaluation metric that picks the best checkpoint (``loss`` or ``accuracy``).
        greater_is_better: Whether a higher ``best_metric`` is better.
        masks_labels: Training text has untrained (masked) tokens; examples with none trained
            are checked for before training.
        train_overrides: ``TrainConfig`` fields this task fixes (pretraining packs and trains every token).
        whole_source: Trains on all of its source, unsplit, and builds its base from scratch when
            no model is named (``workbench.train.pretrain``).
        compares_base: The untrained base belongs in the comparison (a generator's base answers too;
            a classifier's untrained head does not, the probe is its baseline).
        model_kinds: The kinds of base model it trains (``presets.MODEL_KINDS``).
        suggested_models: What to pick instead of a model it cannot train, in a sentence's words.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    best_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False
    masks_labels: ClassVar[bool] = False
    train_overrides: ClassVar[dict] = {}
    whole_source: ClassVar[bool] = False
    compares_base: ClassVar[bool] = False
    model_kinds: ClassVar[tuple[str, ...]] = ("causal-lm",)
    suggested_models: ClassVar[str] = "a generative model: smollm2-135m-instruct, or a causal LM folder or .gguf file"

    def data_problem(self, ds: LoadedDataset) -> str | None:
        """Why ``ds`` cannot train this task, or None."""
        return None

    def model_problem(self, info) -> str | None:
        """Why the base ``info`` (a ``presets.ModelInfo``) cannot train this task, and what to pick; None when it
        can or when it is not on this machine to tell."""
        if getattr(info, "problem", ""):
            return f"{info.name}: {info.problem}."
        if info.adapter:
            merge = (f", or merge it first (workbench export {info.name}) and train from the merged folder"
                     if info.kind == "causal-lm" else "")
            return (f"{info.name} is a LoRA adapter from an earlier run, not a whole model: train from its base "
                    f"({info.base or 'named in its adapter_config.json'}){merge}.")
        if info.kind is None or info.kind in self.model_kinds:
            return None
        from_base = f", or its base {info.base}" if info.base and info.base_kind in self.model_kinds else ""
        return (f"{info.name} is {info.what}, which cannot learn {self.name} ({self.description}). "
                f"Pick {self.suggested_models}{from_base}.")

    def labels(self, train: LoadedDataset, eval: LoadedDataset | None) -> list[str] | None:
        """Class names (classification tasks), else None."""
        return None

    def load(self, path: str, labels: list[str] | None, common: dict, cfg, tokenizer, label_smoothing: float = 0.0):
        """``(model, kind)``: the base at ``path`` built for this task.

        Args:
            common: ``from_pretrained`` arguments (remote code, the method's quantization).
            cfg: The ``ModelConfig``.
        """
        raise NotImplementedError

    def batches(self, ds: LoadedDataset, tokenizer, cfg, labels: list[str] | None, evaluation: bool = False):
        """``ds`` as a tokenized ``datasets.Dataset`` (``cfg``: a ``TrainConfig``)."""
        raise NotImplementedError

    def collator(self, tokenizer, cfg) -> Callable:
        raise NotImplementedError

    compute_metrics: ClassVar[Callable | None] = None

    def final_metrics(self, metrics: dict) -> dict:
        """Figures derived from the final evaluation (perplexity from loss)."""
        return {}

    def __repr__(self) -> str:
        return f"<task {self.name}>"


#: Every known task by name, in registration order.
TASKS: Registry[Task] = Registry("task", lambda message, fix: ConfigError(f"{message} {fix}"))
#: Make a task known to the config, the panels and training.
register_task = TASKS.register
#: The descriptor of a task by name; an unknown name says which exist.
get_task = TASKS.lookup


def task_for(ds: LoadedDataset) -> Task:
    """The task a dataset trains by default: the first registered task its format suits
    (prompt/completion, instruction, chat and corpus: ``causal-lm``; text+label: ``sequence-classification``)."""
    for task in TASKS.values():
        if task.data_problem(ds) is None:
            return task
    raise TrainingError(f"no registered task trains on {ds.format} data ({ds.source}).")


def task_for_model(ds: LoadedDataset, info, preferred: str | None = None) -> Task:
    """The task ``ds`` trains with the base ``info`` (a ``presets.ModelInfo``): ``preferred`` when the data and the
    model suit it, else ``task_for``'s, checked against the model.

    Raises:
        TrainingError: the pair makes no sense (an encoder cannot learn to write answers), saying what to pick.
    """
    if preferred in TASKS:
        task = get_task(preferred)
        if task.data_problem(ds) is None and task.model_problem(info) is None:
            return task
    task = task_for(ds)
    if (problem := task.model_problem(info)):
        raise TrainingError(f"{ds.format} data trains {task.name}, but {problem}")
    return task


# --------------------------------------------------------------------------- data preparation


def label_names(train: LoadedDataset, *others: LoadedDataset | None) -> list[str]:
    """Sorted class names of the training split; other splits may not bring new ones."""
    names = sorted({str(x) for x in train.frame["label"]})
    if len(names) < 2:
        raise TrainingError(f"{train.source}: every training example has the label {names[0] if names else '(none)'}"
                            "; a classifier needs at least two classes to learn anything (it would score 100% by "
                            "always answering that label). Add examples of the other classes, or check the label column.")
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


def untrained_error(ds: LoadedDataset, rows: list[int] | tuple[int, ...], max_length: int) -> TrainingError:
    """The error for examples with no trained token within ``max_length`` (their prompts fill the window)."""
    where = ", ".join(ds.where(r) for r in rows[:5])
    return TrainingError(
        f"{len(rows)} examples would train on nothing: every label is masked within max_length={max_length} "
        f"({where}{' ...' if len(rows) > 5 else ''}). Raise max_length, shorten those prompts, or drop them.")


def prepare_sft(ds: LoadedDataset, tokenizer, cfg):
    """Tokenized SFT or corpus examples (input_ids, labels, length), packed when ``cfg.packing``.

    ``cfg`` is a ``TrainConfig`` (max_length, packing, train_on_inputs; template ``auto``).
    """
    import datasets

    records = ds.frame[list(ds.fields)].to_dict("records")
    ids, labels, untrained = [], [], []
    for row, rec in enumerate(records):
        if ds.spec.raw_text:
            # Documents are cut into max_length pieces, not truncated: pretraining sees all of the text.
            ex = tokenize_example(format_example(rec, ds.spec, tokenizer, cfg), tokenizer, None)
            for i in range(0, len(ex.input_ids), cfg.max_length):
                piece = ex.input_ids[i:i + cfg.max_length]
                if len(piece) > 1:
                    ids.append(piece)
                    labels.append(list(piece))
            continue
        ex = tokenize_example(format_example(rec, ds.spec, tokenizer, cfg), tokenizer, cfg.max_length)
        ids.append(ex.input_ids)
        labels.append(ex.labels)
        if all(x == -100 for x in ex.labels):
            untrained.append(row)
    if untrained:  # every row is checked here, where training tokenizes them anyway (statistics sample)
        raise untrained_error(ds, untrained, cfg.max_length)
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


def classification_metrics(eval_pred) -> dict:
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": accuracy(labels, pred), "macro_f1": macro_f1(labels, pred)}


# --------------------------------------------------------------------------- the tasks


class CausalLM(Task):
    name = "causal-lm"
    description = "supervised fine-tuning: the model learns to write the answers"
    masks_labels = True
    compares_base = True

    def data_problem(self, ds):
        if ds.spec.has_label:
            return (f"{ds.source} is classification data: use task sequence-classification, or "
                    "reformat it as prompt/completion for a causal LM.")
        return None

    def load(self, path, labels, common, cfg, tokenizer, label_smoothing=0.0):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, **common)
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
        # Training needs no KV cache, and with one transformers skips packed-sequence detection:
        # packed examples would attend to each other.
        model.config.use_cache = False
        return model, "causal-lm"

    def batches(self, ds, tokenizer, cfg, labels, evaluation=False):
        return prepare_sft(ds, tokenizer, replace(cfg, packing=False) if evaluation else cfg)

    def collator(self, tokenizer, cfg):
        return SFTCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0, cfg.packing)

    def final_metrics(self, metrics):
        return {"eval_perplexity": math.exp(min(metrics["eval_loss"], 50))} if "eval_loss" in metrics else {}


class Pretraining(CausalLM):
    name = "pretraining"
    description = "a causal LM on running text, every token trained (from scratch or continued)"
    masks_labels = False
    train_overrides = {"packing": True, "train_on_inputs": True}
    whole_source = True

    def data_problem(self, ds):
        return None if ds.spec.raw_text else f"pretraining needs a text corpus; {ds.source} is {ds.format}."

    def model_problem(self, info):
        return None if not info.name else super().model_problem(info)  # no model: built from scratch


class SequenceClassification(Task):
    name = "sequence-classification"
    description = "one label per text (a pooled head on sentence encoders)"
    best_metric = "accuracy"
    greater_is_better = True
    compute_metrics = staticmethod(classification_metrics)
    model_kinds = ("encoder", "causal-lm")
    suggested_models = "a text encoder such as minilm, or a causal LM (a classification head is added)"

    def data_problem(self, ds):
        return None if ds.spec.has_label else \
            f"sequence classification needs text+label data; {ds.source} is {ds.format}."

    def labels(self, train, eval):
        return label_names(train, eval)

    def load(self, path, labels, common, cfg, tokenizer, label_smoothing=0.0):
        from transformers import AutoModel, AutoModelForSequenceClassification

        # heads holds an nn.Module subclass, so it imports torch: loaded with the model, not with the config.
        from .heads import PooledClassifier, pooling_mode

        if not labels:
            raise ValueError("sequence classification needs the label names")
        pool = pooling_mode(path, cfg.pooling)
        if pool:
            encoder = AutoModel.from_pretrained(path, **common)
            return PooledClassifier(encoder, len(labels), pool, label_smoothing=label_smoothing,
                                    normalize=cfg.normalize), "pooled-classifier"
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)}, **common)
        return model, "classifier"

    def batches(self, ds, tokenizer, cfg, labels, evaluation=False):
        return prepare_classification(ds, tokenizer, labels, cfg.max_length)

    def collator(self, tokenizer, cfg):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)


for _cls in (CausalLM, SequenceClassification, Pretraining):
    register_task(_cls())
