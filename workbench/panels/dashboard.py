"""Dashboard: the Dataset, Token, Train, Compare and Runs panels in tabs, over one dataset."""

from __future__ import annotations

import html
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import ipywidgets as widgets

from ..compare import model_set
from ..config import ModelConfig, TokenConfig, TrainConfig
from ..data import load_dataset
from ..pipeline import quick_splits
from ..presets import resolve_tokenizer
from ..tasks import task_for
from .base import Panel
from .compare import compare_panel
from .dataset import DatasetPanel
from .runs import RunsPanel
from .tokens import TokenPanel
from .train import TrainPanel


class Dashboard(Panel):
    """Load a dataset, explore it, look at its tokens, train on it, compare models, browse runs.

    Args:
        source: The dataset to load first (the Load box changes it).
        tokenizers: Tokenizer names or folders for the Token tab (see ``workbench.presets``).
        model, train_cfg: What the Train tab trains; runs go to ``runs_root/dashboard/<time>``.
        runs_root: The runs folder the Runs tab shows.
        compare_models: Name to model folder for the Compare tab.
        split, task, models: The core decisions, ``quick_splits`` (how a loaded dataset is split for
            the Train tab), ``task_for`` (what the model learns from it) and ``model_set`` (how
            ``compare_models`` load for its format); tests pass stand-ins.
    """

    def __init__(self, source: str = "", tokenizers: list[str] | None = None, model: ModelConfig = ModelConfig(),
                 train_cfg: TrainConfig = TrainConfig(), runs_root: str | Path = "runs",
                 compare_models: dict[str, str] | None = None, split: Callable = quick_splits,
                 task: Callable = task_for, models: Callable = model_set):
        self._split, self._task, self._models = split, task, models
        self.tokenizers = tokenizers or ["kb-bpe"]
        self.model, self.train_cfg, self.runs_root = model, train_cfg, Path(runs_root)
        self.compare_models = compare_models or {}
        self.source = widgets.Text(value=source, description="Dataset", placeholder="file, folder or hub name",
                                   layout=widgets.Layout(width="60%"))
        self.source.add_class("wb-source")
        self.load_btn = widgets.Button(description="Load", button_style="primary")
        self.load_btn.add_class("wb-load")
        self.status = widgets.HTML()
        self.status.add_class("wb-dashboard-status")
        self.runs = RunsPanel(self.runs_root)
        # The tabs keep these boxes for good and Load swaps what is inside them: replacing a Tab's
        # children makes the front end rebuild its tab bar, which then stops switching tabs.
        self.slots = [widgets.VBox([widgets.HTML("<i>Load a dataset.</i>")]) for _ in range(4)]
        self.tabs = widgets.Tab(children=self.slots + [self.runs.widget])
        for i, t in enumerate(["Dataset", "Tokens", "Train", "Compare", "Runs"]):
            self.tabs.set_title(i, t)
        self.load_btn.on_click(lambda _: self.load())
        self.widget = widgets.VBox([widgets.HBox([self.source, self.load_btn]), self.status, self.tabs])
        self.widget.add_class("wb-dashboard")
        self.dataset_panel = self.token_panel = self.train_panel = self.compare_panel = None
        if source:
            self.load()

    def _new_run_dir(self) -> str:
        return str(self.runs_root / "dashboard" / time.strftime("%Y%m%d-%H%M%S"))

    def load(self) -> None:
        """Load the dataset in the box and build the panels over it."""
        try:
            ds = load_dataset(self.source.value.strip(), strict=False)
            splits = self._split(ds)
        except Exception as e:  # noqa: BLE001 - bad data shows its problems in the dashboard
            self.status.value = self.error_html(e)
            return
        self.status.value = (f"<b>{html.escape(ds.source)}</b>: {ds.format}, {len(ds):,} rows, "
                             f"{len(ds.report.problems)} problems")
        self.dataset_panel = DatasetPanel(ds)
        toks = {name: (lambda n=name: resolve_tokenizer(n)) for name in self.tokenizers}
        self.token_panel = TokenPanel(ds, toks, TokenConfig(max_length=self.train_cfg.max_length, sample=5000),
                                      train_rows=len(splits["train"]))
        self.train_panel = TrainPanel(splits["train"], splits.parts.get("validation"),
                                      replace(self.model, task=self._task(ds).name), self.train_cfg,
                                      run_dirs=self._new_run_dir)
        compare = widgets.HTML("<i>No models to compare: pass compare_models.</i>")
        if self.compare_models:
            try:
                self.compare_panel = compare_panel(self._models(ds, self.compare_models), ds)
                compare = self.compare_panel.widget
            except Exception as e:  # noqa: BLE001 - a folder that is not a classifier says so in its tab
                compare = widgets.HTML(self.error_html(e))
        for slot, content in zip(self.slots, [self.dataset_panel.widget, self.token_panel.widget,
                                              self.train_panel.widget, compare]):
            slot.children = [content]
