"""Dashboard: the Dataset, Token, Train, Compare and Runs panels in tabs, over one dataset."""

from __future__ import annotations

import html
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import ipywidgets as widgets

from ..compare import model_set
from ..export import model_choices, trained_models
from ..config import ConfigError, DataConfig, ExperimentConfig, ModelConfig, TokenConfig, TrainConfig, load_yaml
from ..data import load_dataset, split_names
from ..pipeline import quick_splits
from ..presets import BUILTIN_TOKENIZERS, describe_model, resolve_tokenizer
from ..tasks import task_for
from .base import CheckboxGroup, Panel
from .compare import compare_panel
from .dataset import DatasetPanel
from .runs import RunsPanel
from .tokens import TokenPanel
from .train import TrainPanel


def local_model(name: str) -> bool:
    """Whether ``name`` is a model this machine has (a preset, a ``.gguf`` file, a folder), not a hub id."""
    if not name:
        return False
    return name in BUILTIN_TOKENIZERS or describe_model(name).kind is not None  # looked at, never converted


class Dashboard(Panel):
    """Load a dataset, explore it, look at its tokens, train on it, compare models, browse runs.

    Args:
        source: The dataset to load first (the Load box changes it).
        tokenizers: Tokenizer names or folders for the Token tab (see ``workbench.presets``).
        model, train_cfg: What the Train tab trains; runs go to ``runs_root/dashboard/<time>``.
        runs_root: The runs folder the Runs tab shows.
        root: The project folder: a path typed in the Load box is read from here (``datasets/banking77``), or
            from the current folder when it is not found there; default the current folder.
        compare_models: Name to model folder for the Compare tab.
        poll: Seconds between looks at the runs folder for the Runs tab's live refresh (0: only on Refresh).
        split, task, models: The core decisions, ``quick_splits`` (how a loaded dataset is split for
            the Train tab), ``task_for`` (what the model learns from it) and ``model_set`` (how
            ``compare_models`` load for its format); tests pass stand-ins.
    """

    def __init__(self, source: str = "", tokenizers: list[str] | None = None, model: ModelConfig = ModelConfig(),
                 train_cfg: TrainConfig = TrainConfig(), runs_root: str | Path = "runs",
                 compare_models: dict[str, str] | None = None, split: Callable = quick_splits,
                 task: Callable = task_for, models: Callable = model_set, root: str | Path | None = None,
                 poll: float = 5.0):
        self._split, self._task, self._models, self._describe = split, task, models, describe_model
        self.root = Path(root) if root is not None else Path.cwd()
        self.test_ds = self.ds = None
        # The Tokens tab measures the model's own tokenizer first (what training will use), then the others asked for.
        own = [model.name_or_path] if local_model(model.name_or_path) else []
        self.tokenizers = list(dict.fromkeys(own + list(tokenizers or []))) or ["kb-bpe"]
        self.model, self.train_cfg, self.runs_root = model, train_cfg, Path(runs_root)
        self.compare_models = compare_models or {}
        self.source = widgets.Text(value=source, description="Dataset", continuous_update=False,
                                   placeholder="file or folder in the project (datasets/banking77), or a hub name",
                                   tooltip="A path from the project folder; Enter or Load reads it",
                                   layout=widgets.Layout(width="60%"))
        self.source.add_class("wb-source")
        self.load_btn = widgets.Button(description="Load", button_style="primary")
        self.load_btn.add_class("wb-load")
        self.status = widgets.HTML()
        self.status.add_class("wb-dashboard-status")
        self.runs = RunsPanel(self.runs_root, on_compare=self.compare_runs, poll=poll)
        # The tabs keep these boxes for good and Load swaps what is inside them: replacing a Tab's
        # children makes the front end rebuild its tab bar, which then stops switching tabs.
        self.slots = [widgets.VBox([widgets.HTML("<i>Load a dataset.</i>")]) for _ in range(4)]
        self.tabs = widgets.Tab(children=self.slots + [self.runs.widget])
        for i, t in enumerate(["Dataset", "Tokens", "Train", "Compare", "Runs"]):
            self.tabs.set_title(i, t)
        self._loaded = ("", 0.0)  # the text last loaded, and when
        # Enter (or leaving the box) loads; a Load click right after (the click that left the box) does not reload.
        self.source.observe(lambda _: self._fresh() and self.load(), names="value")
        self.load_btn.on_click(lambda _: self._fresh(within=3.0) and self.load())
        self.compare_btn = widgets.Button(description="Compare", button_style="primary",
                                          tooltip="Load the ticked models side by side")
        self.compare_btn.add_class("wb-compare-build")
        self.refresh_btn = widgets.Button(description="Refresh", tooltip="List the models trained since")
        self.compare_btn.on_click(lambda _: self.build_compare())
        self.refresh_btn.on_click(lambda _: self.refresh_choices())
        self.widget = widgets.VBox([widgets.HBox([self.source, self.load_btn]), self.status, self.tabs])
        self.widget.add_class("wb-dashboard")
        self.dataset_panel = self.token_panel = self.train_panel = self.compare_panel = None
        if source:
            self.load()

    def _new_run_dir(self) -> str:
        return str(self.runs_root / "dashboard" / time.strftime("%Y%m%d-%H%M%S"))

    def resolve(self, text: str) -> str:
        """What the Load box names: a path from the project folder, else from the current folder, else as typed
        (a hub name)."""
        path = Path(text).expanduser()
        if path.is_absolute():
            return str(path)
        for base in (self.root, Path.cwd()):
            if (base / path).exists():
                return str(base / path)
        return text

    def _fresh(self, within: float = float("inf")) -> bool:
        """Whether the box holds something other than what was loaded ``within`` seconds ago."""
        text, when = self._loaded
        return self.source.value.strip() != text or time.time() - when > within

    def load(self) -> None:
        """Load the dataset in the box and build the panels over it.

        A folder or file that provides a test split (``test.csv`` beside ``train.csv``) loads its train split
        into the tabs and keeps the test split for the Compare tab's scores; the status says so.
        """
        text = self.source.value.strip()
        if not text:
            self.status.value = ("<span class='wb-error' style='color:#b00'>Type a dataset: a file or folder of the "
                                 "project (e.g. <code>datasets/banking77</code>) or a hub name, then Enter.</span>")
            return
        self._loaded = (text, time.time())
        self.load_btn.disabled = True
        try:
            self._load(text)
        finally:  # a dataset that fails to load, or a panel that fails to build, never leaves Load disabled
            self.load_btn.disabled = False
            self._loaded = (text, time.time())

    def _load(self, text: str) -> None:
        source = self.resolve(text)
        self.status.value = f"<i class='wb-busy'>Loading {html.escape(text)}…</i>"
        for slot in self.slots:  # the old dataset's views go: nothing on screen belongs to another dataset
            slot.children = [widgets.HTML(f"<i>Loading {html.escape(text)}…</i>")]
        try:
            named = split_names(source) if Path(source).exists() else ()
            test_name = next((n for n in ("test", "testing") if n in named), None)
            ds = load_dataset(source, strict=False, **({"split": "train"} if "train" in named else {}))
            self.test_ds = load_dataset(source, strict=False, split=test_name) if test_name else None
            splits = self._split(ds, test=0.0 if test_name else 0.1)
            if not test_name:  # no test file: a tenth is held out, never trained on, for the Compare tab
                self.test_ds = splits.parts.get("test")
        except Exception as e:  # noqa: BLE001 - bad data shows its problems in the dashboard
            self.status.value = self.error_html(e)
            for slot in self.slots:
                slot.children = [widgets.HTML("<i>Load a dataset.</i>")]
            return
        parts = f" ({', '.join(named)} provided)" if named else ""
        if test_name:
            held = f"; its {test_name} split ({len(self.test_ds):,} rows) is kept for the Compare tab's scores"
        elif self.test_ds is not None:
            held = (f"; no test split provided, so {len(self.test_ds):,} rows are held out (never trained on) for "
                    "the Compare tab's scores")
        else:
            held = ""
        self.status.value = (f"<b>{html.escape(text)}</b>{html.escape(parts)}: {ds.format}, {len(ds):,} rows"
                             f"{' of train' if named else ''}, {len(ds.report.problems)} problems{held}")
        self.dataset_panel = DatasetPanel(ds)
        self.train_panel = TrainPanel(
            splits["train"], splits.parts.get("validation"), replace(self.model, task=self._task(ds).name),
            self.train_cfg, run_dirs=self._new_run_dir, choices=lambda: model_choices(self.root, self.runs_root),
            data=self.data_config(text, source, test_name), experiments_dir=self.root / "experiments",
            after_run=self._after_run, root=self.root)
        # The Tokens tab measures the tokenizer of the model the Train tab starts with (it may have picked another
        # than the dashboard's for this data), then the others asked for.
        picked = self.train_panel.model_path()
        names = list(dict.fromkeys(([picked] if local_model(picked) else []) + self.tokenizers))
        toks = {name: (lambda n=name: resolve_tokenizer(n)) for name in names}
        self.token_panel = TokenPanel(ds, toks, TokenConfig(max_length=self.train_cfg.max_length, sample=5000),
                                      train_rows=len(splits["train"]))
        self.ds = ds
        self.compare_pick = CheckboxGroup([], description="Models to compare",
                                          empty="No trained models yet: train one in the Train tab, then Refresh.")
        self.compare_pick.add_class("wb-compare-pick")
        self.compare_area = widgets.VBox()
        self.refresh_choices(selected=list(self.compare_models))
        if self.compare_models:
            self.build_compare()
        else:
            self.compare_area.children = [widgets.HTML(
                "<i>Tick models (trained runs appear here; Refresh after training) and press Compare. Scores use "
                + ("the test split." if self.test_ds is not None else "the loaded rows (no test split was found)."
                   ) + "</i>")]
        compare = widgets.VBox([self.compare_pick, widgets.HBox([self.compare_btn, self.refresh_btn]),
                                self.compare_area])
        for slot, content in zip(self.slots, [self.dataset_panel.widget, self.token_panel.widget,
                                              self.train_panel.widget, compare]):
            slot.children = [content]

    def data_config(self, text: str, source: str, test_name: str | None) -> DataConfig:
        """The data section that makes the same splits from the command line: the source as the project folder
        names it, rows kept as loaded here (no de-duplication or redaction: the tabs show the data as it is), a
        tenth for validation and, without a test file, a tenth held out for testing."""
        relative = os.path.relpath(source, self.root) if Path(source).exists() else text
        return DataConfig(source=text if relative.startswith("..") else relative, dedupe=False, redact_pii=False,
                          validation=0.1, test=0.0 if test_name else 0.1, eval_split=test_name)

    def _after_run(self, outcome) -> None:
        """A run ended: the runs table, the Compare tab and the model picker list what it made."""
        self.runs.refresh()
        self.refresh_choices()
        self.train_panel.refresh_choices()

    def compare_runs(self, paths: list[str]) -> None:
        """Tick the models of runs chosen in the Runs tab (with the bases they were trained from, for generative
        data), and open the Compare tab on them."""
        if self.ds is None:
            self.runs.diff.value = "<i>Load a dataset first: models are compared on its test split.</i>"
            return
        self.refresh_choices()
        wanted = [Path(p).resolve() for p in paths]
        picked = [name for name, folder in self._choices.items()
                  if any(w == Path(folder).resolve() or w in Path(folder).resolve().parents for w in wanted)]
        bases = []
        if not self.ds.spec.has_label:  # a generator is compared with the base it started from
            for run in wanted:
                try:
                    base = load_yaml(ExperimentConfig, run / "config.yaml").model.name_or_path
                except (OSError, ConfigError):
                    continue
                if local_model(base):
                    self._choices.setdefault(f"base: {Path(base).name}", base)
                    bases.append(f"base: {Path(base).name}")
        self.compare_pick.set_options(list(self._choices), tuple(dict.fromkeys(bases + picked)))
        self.tabs.selected_index = 3
        if not picked:
            self.compare_area.children = [widgets.HTML(
                "<span class='wb-error' style='color:#b00'>The selected runs have no trained model for this data "
                "(a run that failed before saving, or one trained on another kind of data).</span>")]
            return
        self.build_compare()

    def compare_choices(self) -> dict[str, str]:
        """What the Compare tab offers for the loaded data: the models passed in, the base model (generative data:
        how the fine-tunes did against it), and every model trained under ``runs_root`` for this kind of data."""
        choices = {name: str(path) for name, path in self.compare_models.items()}
        classifiers = bool(self.ds.spec.has_label)
        base = self.train_panel.model_path() if self.train_panel is not None else self.model.name_or_path
        if not classifiers and local_model(base) and self._describe(base).kind == "causal-lm":
            choices.setdefault(f"base: {Path(base).name}", base)
        for name, path in trained_models(self.runs_root, classifiers=classifiers).items():
            choices.setdefault(name, str(path))
        return choices

    def refresh_choices(self, selected: list[str] | None = None) -> None:
        """Offer the models there are now (a run that just finished appears), keeping what was ticked."""
        self._choices = self.compare_choices()
        keep = selected if selected is not None else self.compare_pick.value
        self.compare_pick.set_options(list(self._choices), tuple(keep))

    def build_compare(self) -> None:
        """The side-by-side panel for the ticked models, scored on the test split when the data has one."""
        names = list(self.compare_pick.value)
        if not names:
            self.compare_area.children = [widgets.HTML(
                "<span class='wb-error' style='color:#b00'>Tick at least one model to compare.</span>")]
            return
        test = self.test_ds if self.test_ds is not None else self.ds
        try:
            self.compare_panel = compare_panel(self._models(self.ds, {n: self._choices[n] for n in names}), test)
            self.compare_area.children = [self.compare_panel.widget]
        except Exception as e:  # noqa: BLE001 - a folder that is not a classifier says so in its tab
            self.compare_panel = None
            self.compare_area.children = [widgets.HTML(self.error_html(e))]
