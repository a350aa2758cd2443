"""TrainPanel: a form for a run, Start / Stop / Resume, live progress, curves and throughput."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import threading
import time
import typing
from dataclasses import replace
from pathlib import Path
from typing import Callable

import ipywidgets as widgets

from ..config import (ConfigError, DataConfig, ExperimentConfig, LaunchConfig, LoraConfig, ModelConfig, QuantConfig,
                      TrainConfig, choices, dump_changes)
from ..data.dataset import LoadedDataset
from ..distributed import per_device_batch
from ..errors import TrainingError
from ..files import atomic_write_text
from ..launch import launch_training
from ..methods import METHODS
from ..plots import curve_points
from ..presets import LICENCES, describe_model, model_note
from ..progress import duration
from ..tasks import task_for_model
from ..train import headline_metrics, run_training
from .base import Panel, TypedField, form_field
from .charts import LineChart

#: The fields the form shows up front; every other field of these configs is in the Advanced section, except
#: those the panel decides itself (where the run goes, whether it resumes, the task).
MAIN_FIELDS = {(ModelConfig, "name_or_path"), (ModelConfig, "method"), (LoraConfig, "r"),
               (TrainConfig, "learning_rate"), (TrainConfig, "epochs"), (TrainConfig, "max_steps"),
               (TrainConfig, "batch_size"), (TrainConfig, "max_length"), (TrainConfig, "evaluate_on_stop"),
               (LaunchConfig, "processes")}
PANEL_FIELDS = {(ModelConfig, "task"), (TrainConfig, "output_dir"), (TrainConfig, "resume")}


class TrainPanel(Panel):
    """Train a model on a split and watch it learn.

    Args:
        train, eval: The splits.
        model, train_cfg, lora, quant: Starting settings; the form edits a copy. ``model.task`` is kept when it suits
            the data and the base, else the task is inferred from them (``infer_task``).
        run: The training function (``workbench.train.run_training``; tests pass a stub).
        launch, launch_run: How many processes train (``LaunchConfig``; the form's *processes*), and the function that
            trains on more than one (``workbench.launch.launch_training``: they run as subprocesses the kernel
            watches, streaming into the same progress bar and curves; Stop reaches every one).
        plot_every: Seconds between curve redraws while training.
        run_dirs: Gives a fresh run folder for each Start (Resume continues the last one);
            None to always use ``train_cfg.output_dir``.
        choices: The bases the model picker offers (``workbench.export.model_choices``); default the presets.
        describe, infer_task: What a base is (``presets.describe_model``) and which task the data trains with it
            (``tasks.task_for_model``, raising ``TrainingError`` for a pair that makes no sense).
        data: The data section of the experiment YAML the panel shows (default: the train split's source).
        experiments_dir: Where Save writes that YAML.
        root: The folder the shown command runs in (the project folder; default the current folder).
        after_run: Called with the result (or the error) when a run ends (the dashboard refreshes its lists).
    """

    def __init__(self, train: LoadedDataset, eval: LoadedDataset | None, model: ModelConfig = ModelConfig(),
                 train_cfg: TrainConfig = TrainConfig(), lora: LoraConfig = LoraConfig(),
                 quant: QuantConfig = QuantConfig(), run: Callable = run_training, plot_every: float = 2.0,
                 run_dirs: Callable[[], str] | None = None, choices: Callable[[], list[str]] | None = None,
                 describe: Callable = describe_model, infer_task: Callable = task_for_model,
                 data: DataConfig | None = None, experiments_dir: str | Path = "experiments",
                 after_run: Callable | None = None, root: str | Path | None = None,
                 launch: LaunchConfig = LaunchConfig(), launch_run: Callable = launch_training):
        self.train_ds, self.eval_ds = train, eval
        self.launch_cfg, self._launch_run = launch, launch_run
        self.model_cfg, self.train_cfg, self.lora_cfg, self.quant_cfg = model, train_cfg, lora, quant
        self._run, self.plot_every, self._run_dirs = run, plot_every, run_dirs
        self._choices, self._describe, self._infer = choices or (lambda: list(LICENCES)), describe, infer_task
        self._after_run = after_run
        self.data_cfg = data or DataConfig(source=train.source)
        self.experiments_dir, self.root = Path(experiments_dir), Path(root) if root is not None else Path.cwd()
        self.output_dir = train_cfg.output_dir
        self.stop_event = threading.Event()
        self.log: list[dict] = []
        self.result = None
        self.error: BaseException | None = None
        self.task_name, self.model_problem = model.task, ""
        self._first = None  # (time, step) of the first step: the ETA counts training, not loading
        self._last_plot = 0.0

        # The base: a preset (its licence shown as it is chosen), a folder, a .gguf file, a trained run's model.
        self.base = form_field(widgets.Combobox, ModelConfig, "name_or_path", model.name_or_path, label="model",
                               options=self._offered(model.name_or_path), ensure_option=False,
                               placeholder="preset, folder, .gguf file or a trained run's model",
                               layout=widgets.Layout(width="70%"))
        self.base.add_class("wb-model")
        self.licence = widgets.HTML(self._licence_html(model.name_or_path))
        self.licence.add_class("wb-licence")
        self.model_check = widgets.HTML()
        self.model_check.add_class("wb-model-check")
        # Radio buttons: the selected method is announced as checked (toggle buttons did not say which).
        self.method = form_field(widgets.RadioButtons, ModelConfig, "method", model.method, options=list(METHODS))
        self.method.add_class("wb-method")
        # Typed boxes, checked as the config checks them: a bad value shows its problem and disables Start.
        self.rank = self._typed(LoraConfig, "r", lora.r, label="LoRA rank")
        self.lr = self._typed(TrainConfig, "learning_rate", train_cfg.learning_rate, label="learning rate")
        self.epochs = self._typed(TrainConfig, "epochs", train_cfg.epochs)
        self.max_steps = self._typed(TrainConfig, "max_steps", train_cfg.max_steps, label="max steps")
        self.batch = self._typed(TrainConfig, "batch_size", train_cfg.batch_size, label="batch size")
        self.max_length = self._typed(TrainConfig, "max_length", train_cfg.max_length, label="max length")
        self.processes = self._typed(LaunchConfig, "processes", launch.processes)
        self.launch_check = widgets.HTML()  # the global batch must divide among the processes
        self.launch_check.add_class("wb-launch-check")
        self.evaluate_on_stop = form_field(widgets.Checkbox, TrainConfig, "evaluate_on_stop",
                                           train_cfg.evaluate_on_stop, label="evaluate when stopped", indent=False)
        self.evaluate_on_stop.add_class("wb-evaluate-on-stop")
        if eval is None:  # nothing to evaluate on: say so rather than promise it
            self.evaluate_on_stop.value, self.evaluate_on_stop.disabled = False, True
            self.evaluate_on_stop.description = "evaluate when stopped (no validation split)"
        self._evaluates_on_stop = False  # what the run in progress was started with
        self.length_note = widgets.HTML("<small>Training stops after <b>max steps</b> optimiser steps when it is set; "
                                        "with max steps -1 it runs for the <b>epochs</b> (passes over the data).</small>")
        self.form = {(ModelConfig, "name_or_path"): self.base, (ModelConfig, "method"): self.method,
                     (LoraConfig, "r"): self.rank, (TrainConfig, "learning_rate"): self.lr,
                     (TrainConfig, "epochs"): self.epochs, (TrainConfig, "max_steps"): self.max_steps,
                     (TrainConfig, "batch_size"): self.batch, (TrainConfig, "max_length"): self.max_length,
                     (TrainConfig, "evaluate_on_stop"): self.evaluate_on_stop, (LaunchConfig, "processes"): self.processes}
        self.advanced = self._advanced_section()
        self.typed = [f for f in self.form.values() if isinstance(f, TypedField)]

        self.start_btn = widgets.Button(description="Start", button_style="success")
        self.stop_btn = widgets.Button(description="Stop", button_style="danger", disabled=True)
        self.resume_btn = widgets.Button(description="Resume")
        for b, cls in ((self.start_btn, "wb-start"), (self.stop_btn, "wb-stop"), (self.resume_btn, "wb-resume")):
            b.add_class(cls)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="steps")
        self.progress_text = widgets.HTML()
        self.progress_text.add_class("wb-train-progress")
        self.eval_progress = widgets.IntProgress(value=0, min=0, max=1, description="evaluation",
                                                 layout=widgets.Layout(visibility="hidden"))
        self.eval_progress.add_class("wb-eval-progress")
        self.status = widgets.HTML("<i>Not started.</i>")
        self.status.add_class("wb-train-status")
        self.curves = LineChart("Training and evaluation loss by step", y_label="loss",
                                empty="The loss curves appear once training logs.", css="wb-curves")
        self.accuracy = LineChart("Evaluation accuracy by step", y_label="accuracy", css="wb-accuracy-curve",
                                  height="220px")
        self.spec_section = self._spec_section()

        self.start_btn.on_click(lambda _: self.start(resume=False))
        self.resume_btn.on_click(lambda _: self.start(resume=True))
        self.stop_btn.on_click(lambda _: self.stop())
        self.base.observe(lambda ch: self._model_changed(ch["new"]), names="value")
        for w in self.form.values():
            if not isinstance(w, TypedField):
                w.observe(lambda _: self._validate(), names="value")
        form = widgets.VBox([self.base, self.licence, self.model_check, self.method,
                             widgets.HBox([self.rank.widget, self.lr.widget]),
                             widgets.HBox([self.epochs.widget, self.max_steps.widget]), self.length_note,
                             widgets.HBox([self.batch.widget, self.max_length.widget]),
                             widgets.HBox([self.processes.widget, self.evaluate_on_stop]), self.launch_check,
                             self.advanced, self.spec_section])
        self.title = widgets.HTML()
        self.widget = widgets.VBox([
            self.title, form, widgets.HBox([self.start_btn, self.stop_btn, self.resume_btn]),
            widgets.HBox([self.progress, self.progress_text]), self.eval_progress, self.status, self.curves.widget,
            self.accuracy.widget,
        ])
        self.widget.add_class("wb-train-panel")
        self._model_changed(model.name_or_path)
        if self.model_problem:  # a default that cannot train this data: offer the first base that can
            self._pick_suitable(model.name_or_path)

    def _pick_suitable(self, refused: str) -> None:
        for name in self.base.options:
            info = self._describe(self.model_path(name))
            if info.kind is None:  # not on this machine (a preset not installed): no default to offer
                continue
            try:
                self._infer(self.train_ds, info, self.model_cfg.task)
            except TrainingError:
                continue
            self.base.value = name
            self.model_check.value += (f"<br><small class='wb-model-picked'>{html.escape(refused)} cannot train this "
                                       f"data, so {html.escape(name)} is picked; choose another above.</small>")
            return

    def _typed(self, cls, name, value, label=None, width: str = "250px") -> TypedField:
        field = TypedField(cls, name, value, label=label, base=lambda: self._good(cls, name),
                           on_change=self._validate, width=width)
        field.box.style.description_width = "100px"  # "learning rate" whole
        return field

    def _offered(self, current: str) -> list[str]:
        offered = list(self._choices())
        return offered if current in offered or not current else [current] + offered

    def refresh_choices(self) -> None:
        """Offer the bases there are now (a run that just finished adds its model)."""
        self.base.options = self._offered(self.base.value)

    def _advanced_section(self) -> widgets.Accordion:
        """Every other field of the model, adapter, quantization and training configs, each with its docstring
        as the tooltip: what a YAML file can set, the form can set."""
        starts = {ModelConfig: self.model_cfg, LoraConfig: self.lora_cfg, QuantConfig: self.quant_cfg,
                  TrainConfig: self.train_cfg, LaunchConfig: self.launch_cfg}
        sections = []
        for cls, start in starts.items():
            rows = []
            for f in dataclasses.fields(cls):
                key = (cls, f.name)
                if key in MAIN_FIELDS or key in PANEL_FIELDS:
                    continue
                hint = typing.get_type_hints(cls)[f.name]
                value = getattr(start, f.name)
                if hint is bool:
                    w = form_field(widgets.Checkbox, cls, f.name, value, indent=False)
                elif typing.get_origin(hint) is typing.Literal:
                    w = form_field(widgets.Dropdown, cls, f.name, value, options=list(choices(hint)),
                                   layout=widgets.Layout(width="95%"))
                else:
                    w = self._typed(cls, f.name, value, width="95%")
                (w.box if isinstance(w, TypedField) else w).style.description_width = "initial"  # whole names
                self.form[key] = w
                rows.append(w.widget if isinstance(w, TypedField) else w)
            sections.append(widgets.VBox([widgets.HTML(f"<b>{html.escape(cls.__doc__.splitlines()[0])}</b>"),
                                          widgets.GridBox(rows, layout=widgets.Layout(
                                              grid_template_columns="repeat(auto-fill, minmax(240px, 1fr))"))]))
        box = widgets.Accordion(children=[widgets.VBox(sections)], selected_index=None)
        box.set_title(0, "Advanced settings (every field an experiment YAML can set; hover a name for its meaning)")
        box.add_class("wb-advanced")
        return box

    def _spec_section(self) -> widgets.Accordion:
        """The experiment YAML and ``workbench run`` command of the form as it is now, and a Save button."""
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(self.data_cfg.source).stem).strip("-.") or "experiment"
        self.spec_name = widgets.Text(value=f"{stem}-dashboard", description="name",
                                      tooltip="The experiment's name: its file in experiments/ and its runs folder")
        self.spec_name.add_class("wb-spec-name")
        self.spec_yaml = widgets.Textarea(layout=widgets.Layout(width="95%", height="220px"), disabled=True)
        self.spec_yaml.add_class("wb-spec-yaml")
        self.spec_command = widgets.HTML()
        self.spec_command.add_class("wb-spec-command")
        self.save_btn = widgets.Button(description="Save YAML", tooltip="Write it to experiments/<name>.yaml")
        self.save_btn.add_class("wb-save-spec")
        self.save_note = widgets.HTML()
        self.save_note.add_class("wb-save-note")
        self.save_btn.on_click(lambda _: self.save_spec())
        self.spec_name.observe(lambda _: self._show_spec(), names="value")
        box = widgets.Accordion(children=[widgets.VBox([self.spec_command, self.spec_name, self.spec_yaml,
                                                        widgets.HBox([self.save_btn, self.save_note])])],
                                selected_index=None)
        box.set_title(0, "The same run from the command line: experiment YAML and workbench command")
        box.add_class("wb-spec")
        return box
    def _good(self, cls: type, name: str):
        """The config of ``cls`` from the form's good values other than ``name`` (for a field's cross-checks)."""
        start = {TrainConfig: self.train_cfg, LoraConfig: self.lora_cfg, QuantConfig: self.quant_cfg,
                 ModelConfig: self.model_cfg, LaunchConfig: self.launch_cfg}[cls]
        values = {n: f.value for (owner, n), f in self.form.items()
                  if owner is cls and n != name and not getattr(f, "problem", "")}
        try:
            return replace(start, **values)
        except ConfigError:
            return start

    def _validate(self) -> None:
        """Check every typed field again (one may make another's value wrong or right); Start only when all hold."""
        for f in getattr(self, "typed", []):
            f.check(notify=False)
        if hasattr(self, "launch_check"):
            problem = self.launch_problem
            self.launch_check.value = (f'<span style="color:#b00" role="alert">{html.escape(problem)}</span>'
                                       if problem else "")
        if not self.running and hasattr(self, "start_btn"):
            self.start_btn.disabled = self.resume_btn.disabled = bool(self.problems)
        if hasattr(self, "spec_yaml"):
            self._show_spec()

    @property
    def problems(self) -> list[str]:
        """What is wrong with the form now (empty: Start can run)."""
        return [p for p in [self.model_problem, self.launch_problem] + [f.problem for f in getattr(self, "typed", [])]
                if p]

    @property
    def launch_problem(self) -> str:
        """Why the form's settings cannot train on its number of processes ("" when they can)."""
        if not hasattr(self, "typed") or any(f.problem for f in self.typed):
            return ""
        train, launch = self._good(TrainConfig, ""), self._good(LaunchConfig, "")
        try:
            per_device_batch(train.batch_size, train.grad_accum, launch.world_size)
        except ValueError as e:
            return str(e)
        return ""

    def _model_changed(self, name: str) -> None:
        """Say what the base is and which task the data trains with it; refuse a pair that makes no sense."""
        self.licence.value = self._licence_html(name)
        info = self._describe(self.model_path(name))
        try:
            task = self._infer(self.train_ds, info, self.model_cfg.task)
            self.task_name, self.model_problem = task.name, ""
            self.model_check.value = (f"<small>{html.escape(info.describe())} · trains <b>{html.escape(task.name)}"
                                      f"</b> ({html.escape(task.description)}) on {html.escape(self.train_ds.format)}"
                                      " data</small>")
        except TrainingError as e:
            self.model_problem = str(e)
            self.model_check.value = f'<span style="color:#b00" role="alert">{html.escape(str(e))}</span>'
        self.title.value = (f"<b>Train</b> a model ({html.escape(self.task_name)}) on {len(self.train_ds):,} rows of "
                            f"{html.escape(self.train_ds.source)}" + (
                                f", evaluating on {len(self.eval_ds):,}" if self.eval_ds is not None else ""))
        self._validate()

    @staticmethod
    def _licence_html(name: str) -> str:
        return f"<small>{html.escape(model_note(name))}</small>"

    # ------------------------------------------------------------------ the same run as a file

    def spec(self) -> ExperimentConfig:
        """The experiment the form describes (raises ``ConfigError`` while a field is wrong)."""
        if self.problems:
            raise ConfigError("; ".join(self.problems))
        model, train, lora = self.configs()
        model = replace(model, name_or_path=self.base.value.strip())  # as the project folder names it
        return ExperimentConfig(name=self.spec_name.value.strip() or "experiment", data=self.data_cfg, model=model,
                                methods=[model.method], lora=lora, quant=self.quant_config(),
                                train=replace(train, output_dir=TrainConfig.output_dir), launch=self.launch_config())

    def spec_path(self) -> Path:
        return self.experiments_dir / f"{self.spec_name.value.strip()}.yaml"

    def _show_spec(self) -> None:
        name = self.spec_name.value.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            self.spec_yaml.value, self.save_btn.disabled = "", True
            self.spec_command.value = ("<span style='color:#b00' role='alert'>name: letters, digits, '-', '_' and '.'"
                                       " only (it names a file and a folder)</span>")
            return
        try:
            self.spec_yaml.value = dump_changes(self.spec(), {"data": ("source",), "model": ("name_or_path", "task",
                                                                                             "method")})
        except ConfigError as e:
            self.spec_yaml.value, self.save_btn.disabled = "", True
            self.spec_command.value = f"<span style='color:#b00' role='alert'>{html.escape(str(e))}</span>"
            return
        self.save_btn.disabled = False
        path = html.escape(os.path.relpath(self.spec_path(), self.root))
        self.spec_command.value = (f"From the project folder, <code>workbench run {path}</code> (after Save) runs "
                                   f"the experiment's notebooks (explore, "
                                   f"tokens, train, compare) into runs/{html.escape(name)}/; <code>workbench train "
                                   f"{path}</code> only trains. The run splits the data as the data section says.")

    def save_spec(self) -> Path | None:
        """Write the YAML to ``experiments/<name>.yaml``; never over another file."""
        self._show_spec()
        if self.save_btn.disabled:
            return None
        path = self.spec_path()
        if path.exists() and path.read_text() != self.spec_yaml.value:
            self.save_note.value = (f"<span style='color:#b00' role='alert'>{html.escape(str(path))} exists: choose "
                                    "another name (it is not overwritten)</span>")
            return None
        atomic_write_text(path, self.spec_yaml.value)
        self.save_note.value = f"saved <code>{html.escape(str(path))}</code>"
        return path

    # ------------------------------------------------------------------ actions

    def model_path(self, name: str | None = None) -> str:
        """The model box's name (or ``name``) as this process reaches it: a path under the project folder (the
        picker offers ``models/x`` and ``runs/.../model``) from here, anything else as typed."""
        name = (self.base.value if name is None else name).strip()
        path = Path(name).expanduser()
        if name and not path.is_absolute() and (self.root / path).exists():
            return str(self.root / path)
        return name

    def configs(self) -> tuple[ModelConfig, TrainConfig, LoraConfig]:
        """The settings the form holds now (the model's task as inferred for the base and the data, its path as
        this process reaches it)."""
        return (replace(self.model_cfg, **{**self.form_values(ModelConfig), "task": self.task_name,
                                           "name_or_path": self.model_path()}),
                replace(self.train_cfg, **self.form_values(TrainConfig)),
                replace(self.lora_cfg, **self.form_values(LoraConfig)))

    def quant_config(self) -> QuantConfig:
        return replace(self.quant_cfg, **self.form_values(QuantConfig))

    def launch_config(self) -> LaunchConfig:
        return replace(self.launch_cfg, **self.form_values(LaunchConfig))

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
        quant, launch = self.quant_config(), self.launch_config()
        run = self._run
        if launch.world_size > 1:
            def run(*args, **kw):
                return self._launch_run(*args, launch=launch, **kw)
        self._evaluates_on_stop = bool(train.evaluate_on_stop and self.eval_ds is not None)
        if self._run_dirs is not None and not resume:
            self.output_dir = self._run_dirs()
        train = replace(train, resume=resume, output_dir=self.output_dir)
        self.stop_event.clear()
        self.error, self.result = None, None
        if not resume:
            self.log = []
        self.progress.value, self.progress_text.value = 0, ""  # nothing of the previous run stays on screen
        self.eval_progress.layout.visibility = "hidden"
        self._first = None
        self.start_btn.disabled = self.resume_btn.disabled = True
        self.stop_btn.disabled = False
        self.status.value = ("<i class='wb-phase'>Loading the model…</i>" if not resume
                             else "<i class='wb-phase'>Resuming from the last checkpoint…</i>")

        def work():
            try:
                self.result = run(self.train_ds, self.eval_ds, model, train, lora, quant, stop=self.stop_event,
                                  on_log=self.on_log)
                r = self.result
                shown = ", ".join(f"{k} {v:.4g}" for k, v in headline_metrics(r.metrics, numbers=True).items())
                when = " (evaluated when stopped)" if r.metrics.get("evaluated_at_stop") else ""
                self.status.value = (f"<b class='wb-run-status'>{r.status}</b> at step {r.global_step}/{r.max_steps}"
                                     f" · {html.escape(shown)}{when} · run folder "
                                     f"<code>{html.escape(str(r.run_dir))}</code>")
                kept = [p for p in self.progress_text.value.split(" · ") if p and not p.startswith(("step ", "ETA",
                                                                                                   "stopping"))]
                self.progress_text.value = " · ".join([f"step {r.global_step}/{r.max_steps}", r.status] + kept)
            except BaseException as e:  # noqa: BLE001 - shown in the panel; a thread must not die silently
                self.error = e
                self.status.value = self.error_html(e)
            finally:
                self.eval_progress.layout.visibility = "hidden"
                self.stop_btn.disabled = True
                self.start_btn.disabled = self.resume_btn.disabled = bool(self.problems)
                self._plot(force=True)
                if self._after_run is not None:
                    try:
                        self._after_run(self.result if self.error is None else self.error)
                    except Exception as e:  # noqa: BLE001 - a refresh that fails must not hide the run's outcome
                        self.status.value += self.error_html(e)

        return self._start(work, "train")

    def stop(self) -> None:
        """Ask the run to stop at the next step (it writes a checkpoint; Resume continues)."""
        self.stop_event.set()
        self.stop_btn.disabled = True
        then = ("evaluates on the validation split, then saves" if self._evaluates_on_stop
                else "saves the model (no evaluation: tick 'evaluate when stopped' before Start to have one)")
        self.status.value = f"<i class='wb-phase'>Stopping: the run ends after the step in progress and {then}…</i>"

    # ------------------------------------------------------------------ progress

    def on_log(self, entry: dict) -> None:
        """Called from the training thread for every step (progress), every logging step, and each phase
        (``evaluating`` with its batches, ``saving``)."""
        step, total = int(entry.get("step", 0)), int(entry.get("max_steps") or 0)
        if total:
            self.progress.max = total
        self.progress.value = min(step, self.progress.max)
        stopping = self.stop_event.is_set()
        phase = entry.get("phase")
        if entry.get("launch"):  # a launch of several processes starting: what they are, before the model loads
            self.status.value = (f"<i class='wb-phase'>Starting {html.escape(entry['launch'])}; loading the model…"
                                 "</i>")
            return
        if phase == "evaluating":
            done, of = int(entry.get("eval_step", 0)), int(entry.get("eval_steps") or 0)
            self.eval_progress.max = max(of, 1)
            self.eval_progress.value = min(done, self.eval_progress.max)
            self.eval_progress.layout.visibility = "visible"
            what = "Stopping: evaluating before the save" if stopping else "Evaluating on the validation split"
            self.status.value = f"<i class='wb-phase'>{what}… batch {done}/{of or '?'}</i>"
            return
        if phase == "saving":
            self.eval_progress.layout.visibility = "hidden"
            self.status.value = "<i class='wb-phase'>Saving the model…</i>"
            return
        if not entry.get("progress"):
            self.log.append(entry)
        now = entry.get("time") or time.time()
        if self._first is None and step:
            self._first = (now, step)
        t0, s0 = self._first or (now, step)
        rate = (step - s0) / (now - t0) if now > t0 and step > s0 else 0
        if step and not stopping and "wb-phase" in self.status.value:
            self.eval_progress.layout.visibility = "hidden"
            self.status.value = "<i>Training…</i>"
        eta = f"ETA {duration((total - step) / rate)}" if rate and total else "ETA …"
        parts = [f"step {step}/{total}", "stopping" if stopping else eta]
        last = next((e for e in reversed(self.log) if "loss" in e), {})
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
        series = curve_points(self.log)
        self.curves.set_lines({name: series[key] for key, name in (("loss", "training loss"),
                                                                  ("eval_loss", "evaluation loss"))})
        self.accuracy.set_lines({"evaluation accuracy": series["eval_accuracy"]})
        self.accuracy.widget.layout.display = None if series["eval_accuracy"] else "none"
