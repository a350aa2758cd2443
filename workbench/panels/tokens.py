"""TokenPanel: token statistics for one or more tokenizers, and the loss-mask viewer."""

from __future__ import annotations

import html
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable

import ipywidgets as widgets

from ..config import TokenConfig
from ..data.dataset import LoadedDataset
from ..tokens import loss_mask_view, token_report
from .base import CheckboxGroup, Panel, form_field
from .charts import HistogramChart


#: The statistics table's columns, in order, with the title a reader sees and how a value is written.
COLUMNS = {
    "rows": ("rows measured", "{:,.0f}"), "train_rows": ("rows per epoch", "{:,.0f}"),
    "median": ("median tokens", "{:,.0f}"), "p95": ("95th percentile", "{:,.0f}"), "max": ("longest", "{:,.0f}"),
    "truncated_share": ("truncated", "{:.1%}"), "tokens_per_word": ("tokens per word", "{:.2f}"),
    "unk_rate": ("unknown tokens", "{:.2%}"), "total_tokens": ("tokens in all", "{:,.0f}"),
    "padding_waste": ("padding", "{:.1%}"), "packing_efficiency": ("packed rows filled", "{:.1%}"),
    "steps_per_epoch": ("steps per epoch", "{:,.0f}"), "steps_per_epoch_packed": ("steps per epoch, packed", "{:,.0f}"),
    "vocab_size": ("vocabulary", "{:,.0f}"),
}


def readable_table(table) -> str:
    """The tokenizers' statistics as HTML, one column per tokenizer and one row per figure (narrow enough for
    any screen, however many figures), with titles and units a reader understands."""
    rows = []
    for key, (title, fmt) in COLUMNS.items():
        if key in table.columns:
            cells = "".join(f"<td style='text-align:right'>{_cell(v, fmt)}</td>" for v in table[key])
            rows.append(f"<tr><th style='text-align:left'>{html.escape(title)}</th>{cells}</tr>")
    head = "".join(f"<th title='{html.escape(str(name))}'>{html.escape(Path(str(name)).name or str(name))}</th>"
                   for name in table.index)  # a folder's name, not its whole path
    return f"<table class='wb-table'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(value, fmt: str) -> str:
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return html.escape(str(value))


class TokenPanel(Panel):
    """Pick tokenizers and a max length; statistics, histograms and the loss mask follow.

    Args:
        ds: The dataset.
        tokenizers: Name to a tokenizer, or to a zero-argument function that loads one (loaded
            when first chosen).
        cfg: Starting settings; ``sample`` bounds the rows measured so large data stays responsive.
            The form edits some fields; ``current_cfg`` keeps the others as they are here.
        report, mask: The core functions, ``token_report`` and ``loss_mask_view`` (tests pass stubs).
        train_rows: Rows one epoch trains on (the train split's), for steps per epoch; None for all of ``ds``.
    """

    def __init__(self, ds: LoadedDataset, tokenizers: dict[str, object], cfg: TokenConfig = TokenConfig(sample=5000),
                 report: Callable = token_report, mask: Callable = loss_mask_view, train_rows: int | None = None):
        if not tokenizers:
            raise ValueError("TokenPanel needs at least one tokenizer")
        self.ds, self.cfg = ds, cfg
        self._sources = dict(tokenizers)
        self._loaded: dict[str, object] = {}
        self._report = report if train_rows is None else partial(report, train_rows=train_rows)
        self._mask = mask
        names = list(tokenizers)
        self.choose = CheckboxGroup(names, tuple(names[:1]), description="Tokenizers")
        self.choose.add_class("wb-tokenizers")
        self.max_length = form_field(widgets.IntSlider, TokenConfig, "max_length", cfg.max_length, label="max_length",
                                     min=16, max=max(4096, cfg.max_length), step=16, continuous_update=False)
        self.max_length.add_class("wb-max-length")
        self.batch = form_field(widgets.BoundedIntText, TokenConfig, "batch_size", cfg.batch_size, label="batch",
                                min=1, max=4096)
        self.template = form_field(widgets.ToggleButtons, TokenConfig, "template", cfg.template,
                                   options=["auto", "chat", "fallback"])
        self.inputs = form_field(widgets.Checkbox, TokenConfig, "train_on_inputs", cfg.train_on_inputs)
        self.form = {(TokenConfig, "max_length"): self.max_length, (TokenConfig, "batch_size"): self.batch,
                     (TokenConfig, "template"): self.template, (TokenConfig, "train_on_inputs"): self.inputs}
        self.table = widgets.HTML()
        self.table.add_class("wb-token-table")
        self.fields = widgets.HTML()
        self.warnings = widgets.HTML()
        self.warnings.add_class("wb-token-warnings")
        self.hist = HistogramChart("Tokens per formatted example, one histogram per tokenizer", "tokens", "examples",
                                   empty="No example measured.", css="wb-token-hist")
        self.row = widgets.BoundedIntText(value=0, min=0, max=max(len(ds) - 1, 0), description="Row")
        self.mask_tok = widgets.Dropdown(options=names, value=names[0], description="Tokenizer")
        self.mask = widgets.HTML()
        self.mask.add_class("wb-loss-mask")

        for w in (self.choose, *self.form.values()):
            w.observe(lambda _: self.refresh(), names="value")
        for w in (self.row, self.mask_tok):
            w.observe(lambda _: self.refresh_mask(), names="value")

        self.busy = widgets.HTML()
        self.busy.add_class("wb-token-busy")
        stats_box = widgets.VBox([self.busy, self.table, self.warnings, self.fields, self.hist.widget])
        # The template and the loss mask are about answers a model generates; a label's data has neither.
        generative = ds.spec.generative
        mask_box = (widgets.VBox([widgets.HBox([self.row, self.mask_tok]), self.mask]) if generative else
                    widgets.HTML(f"<i>{html.escape(ds.format)} data: the model reads each text whole and learns its "
                                 "label, so no token is masked; the statistics tab shows lengths and truncation.</i>"))
        tabs = widgets.Tab(children=[stats_box, mask_box])
        tabs.set_title(0, "Statistics")
        tabs.set_title(1, "Loss mask")
        self.widget = widgets.VBox([
            widgets.HBox([self.choose, widgets.VBox([self.max_length, self.batch])]),
            *([widgets.HBox([self.template, self.inputs])] if generative else []),
            tabs,
        ])
        self.widget.add_class("wb-token-panel")
        self.results = None
        self.refresh()
        if generative:
            self.refresh_mask()

    def tokenizer(self, name: str):
        if name not in self._loaded:
            src = self._sources[name]
            self._loaded[name] = src() if callable(src) and not hasattr(src, "encode") else src
        return self._loaded[name]

    def current_cfg(self) -> TokenConfig:
        """The starting settings with the form's fields as they are now."""
        return replace(self.cfg, **self.form_values(TokenConfig))

    def refresh(self) -> None:
        """Recompute statistics for the chosen tokenizers and settings."""
        cfg = self.current_cfg()
        names = list(self.choose.value) or [self.choose.options[0]]
        self.busy.value = f"<i>Measuring {html.escape(', '.join(names))}…</i>"
        self.table.layout.opacity = "0.4"  # the old figures stay visible, marked as old, until the new ones land
        try:
            report = self._report(self.ds, {n: self.tokenizer(n) for n in names}, cfg)
        except Exception as e:  # noqa: BLE001 - a bad tokenizer or template shows as a message
            self.table.value = self.error_html(e)
            return
        finally:
            self.busy.value, self.table.layout.opacity = "", "1"
        self.results = per = report.stats
        self.table.value = readable_table(report.table)
        first = per[names[0]]
        self.fields.value = (f"<b>{html.escape(names[0])}</b> per field (template: {first.template}; "
                             f"measured {first.rows:,} of {first.rows_total:,} rows)" + first.table().to_html(border=0))
        warn = [f"<li><b>{html.escape(n)}</b>: {html.escape(w)}</li>" for n, w in report.warnings]
        self.warnings.value = (f"<ul style='color:#a60'>{''.join(warn)}</ul>" if warn
                               else "<span style='color:#2e7d32'>No warnings.</span>")
        self.hist.set_bins(report.length_bins, ("max_length", report.max_length))

    def refresh_mask(self) -> None:
        """Show the chosen row token by token, trained tokens highlighted."""
        cfg = self.current_cfg()
        try:
            tok = self.tokenizer(self.mask_tok.value)
            view = self._mask(self.ds, self.row.value, tok, cfg)
        except Exception as e:  # noqa: BLE001
            self.mask.value = self.error_html(e)
            return
        self.mask.value = (f"<div>{view.length} tokens, <b class='wb-trained-count'>{view.trained}</b> trained"
                           f"{' (after truncation to max_length)' if view.truncated else ''}</div>" + view.html())
