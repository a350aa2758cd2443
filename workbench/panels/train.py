"""TrainPanel: a form for a run, Start / Stop / Resume, live progress, curves and throughput."""

from __future__ import annotations

import html
import threading
import time
from dataclasses import replace
from typing import Callable

import ipywidgets as widgets

from ..config import ConfigError, LoraConfig, ModelConfig, QuantConfig, TrainConfig
from ..data.dataset import LoadedDataset
from ..methods import METHODS
from ..plots import to_png, training_curves
from ..presets import LICENCES, model_note
from ..progress import duration
from ..train import headline_metrics, run_training
from .base import Panel, PlotView, TypedField, form_field


class TrainPanel(Panel):
    """Train a model on a split and watch it learn.

    Args:
        train, eval: The splits.
        model, train_cfg, lora, quant: Starting settings; the form edits a copy.
        run: The training function (``workbench.train.run_training``; tests pass a stub).
        plot_every: Seconds between curve redraws while training.
        run_dirs: Gives a fresh run folder for each Start (Resume continues the last one);
            None to always use ``train_cfg.output_dir``.
    """

    def __init__(self, train: LoadedDataset, eval: LoadedDataset | None, model: ModelConfig = ModelConfig(),
                 train_cfg: TrainConfig = TrainConfig(), lora: LoraConfig = LoraConfig(),
                 quant: QuantConfig = QuantConfig(), run: Callable = run_training, plot_every: float = 2.0,
                 run_dirs: Callable[[], str] | None = None):
        self.train_ds, self.eval_ds = train, eval
        self.model_cfg, self.train_cfg, self.lora_cfg, self.quant_cfg = model, train_cfg, lora, quant
        self._run, self.plot_every, self._run_dirs = run, plot_every, run_dirs
        self.output_dir = train_cfg.output_dir
        self.stop_event = threading.Event()
        self.log: list[dict] = []
        self.result = None
        self.error: BaseException | None = None
        self._started = 0.0
        self._last_plot = 0.0

        # The base: a preset (its licence shown as it is chosen), a folder, a .gguf file or a hub id.
        self.base = form_field(widgets.Combobox, ModelConfig, "name_or_path", model.name_or_path, label="model",
                               options=list(LICENCES), ensure_option=False, placeholder="preset, folder, .gguf or hub id",
                               layout=widgets.Layout(width="60%"))
        self.base.add_class("wb-model")
        self.licence = widgets.HTML(self._licence_html(model.name_or_path))
        self.licence.add_class("wb-licence")
        self.base.observe(lambda ch: setattr(self.licence, "value", self._licence_html(ch["new"])), names="value")
        self.method = form_field(widgets.ToggleButtons, ModelConfig, "method", model.method, options=list(METHODS))
        # Typed boxes, checked as the config checks them: a bad value shows its problem and disables Start.
        def typed(cls, name, value, label=None):
            return TypedField(cls, name, value, label=label, base=lambda: self._good(cls, name),
                              on_change=self._validate)

        self.rank = typed(LoraConfig, "r", lora.r, label="LoRA rank")
        self.lr = typed(TrainConfig, "learning_rate", train_cfg.learning_rate, label="learning rate")
        self.epochs = typed(TrainConfig, "epochs", train_cfg.epochs)
        self.max_steps = typed(TrainConfig, "max_steps", train_cfg.max_steps, label="max steps")
        self.batch = typed(TrainConfig, "batch_size", train_cfg.batch_size, label="batch size")
        self.max_length = typed(TrainConfig, "max_length", train_cfg.max_length, label="max length")
        self.typed = [self.rank, self.lr, self.epochs, self.max_steps, self.batch, self.max_length]
        self.length_note = widgets.HTML("<small>Training stops after <b>max steps</b> optimiser steps when it is set; "
                                        "with max steps -1 it runs for the <b>epochs</b> (passes over the data).</small>")
        self.form = {(ModelConfig, "name_or_path"): self.base, (ModelConfig, "method"): self.method, (LoraConfig, "r"): self.rank,
                     (TrainConfig, "learning_rate"): self.lr, (TrainConfig, "epochs"): self.epochs,
                     (TrainConfig, "max_steps"): self.max_steps, (TrainConfig, "batch_size"): self.batch,
                     (TrainConfig, "max_length"): self.max_length}
        self.start_btn = widgets.Button(description="Start", button_style="success")
        self.stop_btn = widgets.Button(description="Stop", button_style="danger", disabled=True)
        self.resume_btn = widgets.Button(description="Resume")
        for b, cls in ((self.start_btn, "wb-start"), (self.stop_btn, "wb-stop"), (self.resume_btn, "wb-resume")):
            b.add_class(cls)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="steps")
        self.progress_text = widgets.HTML()
        self.progress_text.add_class("wb-train-progress")
        self.status = widgets.HTML("<i>Not started.</i>")
        self.status.add_class("wb-train-status")
        self.curves = PlotView("training and evaluation loss by step", "The loss curves appear once training logs.",
                               "wb-curves")

        self.start_btn.on_click(lambda _: self.start(resume=False))
        self.resume_btn.on_click(lambda _: self.start(resume=True))
        self.stop_btn.on_click(lambda _: self.stop())
        form = widgets.VBox([self.base, self.licence, self.method, widgets.HBox([self.rank.widget, self.lr.widget]),
                             widgets.HBox([self.epochs.widget, self.max_steps.widget]), self.length_note,
                             widgets.HBox([self.batch.widget, self.max_length.widget])])
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>Train</b> a model ({model.task}) on "
                         f"{len(train):,} rows of {html.escape(train.source)}"
                         + (f", evaluating on {len(eval):,}" if eval is not None else "")),
            form, widgets.HBox([self.start_btn, self.stop_btn, self.resume_btn]),
            widgets.HBox([self.progress, self.progress_text]), self.status, self.curves.widget,
        ])
        self.widget.add_class("wb-train-panel")

    def _good(self, cls: type, name: str):
        """The config of ``cls`` from the form's good values other than ``name`` (for a field's cross-checks)."""
        start = {TrainConfig: self.train_cfg, LoraConfig: self.lora_cfg}[cls]
        values = {n: f.value for (owner, n), f in self.form.items()
                  if owner is cls and n != name and isinstance(f, TypedField) and not f.problem}
        try:
            return replace(start, **values)
        except ConfigError:
            return start

    def _validate(self) -> None:
        """Check every typed field again (one may make another's value wrong or right); Start only when all hold."""
        problems = [f.check(notify=False) for f in self.typed]
        if not self.running:
            self.start_btn.disabled = self.resume_btn.disabled = any(problems)

    @property
    def problems(self) -> list[str]:
        """What is wrong with the form now (empty: Start can run)."""
        return [f.problem for f in self.typed if f.problem]

    @staticmethod
    def _licence_html(name: str) -> str:
        return f"<small>{html.escape(model_note(name))}</small>"

    # ------------------------------------------------------------------ actions

    def configs(self) -> tuple[ModelConfig, TrainConfig, LoraConfig]:
        """The settings the form holds now."""
        return (replace(self.model_cfg, **self.form_values(ModelConfig)),
                replace(self.train_cfg, **self.form_values(TrainConfig)),
                replace(self.lora_cfg, **self.form_values(LoraConfig)))

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in getattr(self, "_threads", []))

    def start(self, resume: bool = False):
        """Train in a worker thread (the kernel stays free, so Stop can be clicked)."""
        if self.running:
            return None
        self._validate()
        if self.problems:
            self.status.value = self.error_html(ConfigError("; ".join(self.problems)))
            return None
        model, train, lora = self.configs()
        if self._run_dirs is not None and not resume:
            self.output_dir = self._run_dirs()
        train = replace(train, resume=resume, output_dir=self.output_dir)
        self.stop_event.clear()
        self.error, self.result = None, None
        if not resume:
            self.log = []
        self.progress.value, self.progress_text.value = 0, ""  # nothing of the previous run stays on screen
        self._started = time.time()
        self.start_btn.disabled = self.resume_btn.disabled = True
        self.stop_btn.disabled = False
        self.status.value = "<i>Loading the model…</i>" if not resume else "<i>Resuming from the last checkpoint…</i>"

        def work():
            try:
                self.result = self._run(self.train_ds, self.eval_ds, model, train, lora, self.quant_cfg,
                                        stop=self.stop_event, on_log=self.on_log)
                r = self.result
                shown = ", ".join(f"{k} {v:.4g}" for k, v in headline_metrics(r.metrics, numbers=True).items())
                self.status.value = (f"<b class='wb-run-status'>{r.status}</b> at step {r.global_step}/{r.max_steps}"
                                     f" · {html.escape(shown)} · run folder <code>{html.escape(str(r.run_dir))}</code>")
            except BaseException as e:  # noqa: BLE001 - shown in the panel; a thread must not die silently
                self.error = e
                self.status.value = self.error_html(e)
            finally:
                self.stop_btn.disabled = True
                self.start_btn.disabled = self.resume_btn.disabled = bool(self.problems)
                self._plot(force=True)

        return self._start(work, "train")

    def stop(self) -> None:
        """Ask the run to stop at the next step (it writes a checkpoint; Resume continues)."""
        self.stop_event.set()
        self.stop_btn.disabled = True
        self.status.value = "<i>Stopping at the next step…</i>"

    # ------------------------------------------------------------------ progress

    def on_log(self, entry: dict) -> None:
        """Called from the training thread for every step (progress) and every logging step."""
        step, total = int(entry.get("step", 0)), int(entry.get("max_steps") or 0)
        if total:
            self.progress.max = total
        self.progress.value = min(step, self.progress.max)
        if not entry.get("progress"):
            self.log.append(entry)
        elapsed = time.time() - self._started
        rate = step / elapsed if elapsed > 0 and step else 0
        eta = (total - step) / rate if rate else float("nan")
        last = next((e for e in reversed(self.log) if "loss" in e), {})
        stopping = self.stop_event.is_set()
        if step and not stopping and ("Loading" in self.status.value or "Resuming" in self.status.value):
            self.status.value = "<i>Training…</i>"
        parts = [f"step {step}/{total}", "stopping" if stopping else f"ETA {duration(eta)}" if eta == eta else "ETA …"]
        if "loss" in last:
            parts.append(f"loss {last['loss']:.4f}")
        if last.get("tokens_per_s"):
            parts.append(f"{last['tokens_per_s']:,.0f} tokens/s")
        if last.get("memory_mb"):
            parts.append(f"memory {last['memory_mb']:,.0f} MB")
        self.progress_text.value = " · ".join(parts)
        self._plot()

    def _plot(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_plot < self.plot_every:
            return
        self._last_plot = now
        if any("loss" in e or "eval_loss" in e for e in self.log):
            self.curves.value = to_png(training_curves(self.log))
