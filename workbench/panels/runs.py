"""RunsPanel: the runs table, loss curves of selected runs overlaid, config diff, a run's report.

The table is ``runs_table.list_runs``: a run whose process was killed shows as ``died`` (in red, like
``failed``), its reason naming the last step and log line.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Callable

import ipywidgets as widgets

from ..runs_table import RunComparison, compare_runs, list_runs, loss_curves, run_report
from .base import Panel
from .charts import LineChart


class RunsPanel(Panel):
    """Every run under ``runs_root``: sort, filter, overlay curves, diff configs, open reports.

    Args:
        runs_root: The runs folder.
        lister: Builds the table (``workbench.runs_table.list_runs``; tests pass a stub).
        comparer: How two runs differ (``workbench.runs_table.compare_runs``; a ``(config, metrics)`` pair will do).
        curves: Loss curves of the selected runs (``workbench.runs_table.loss_curves``).
        report: A run's comparison report, or None (``workbench.runs_table.run_report``).
    """

    def __init__(self, runs_root: str | Path = "runs", lister: Callable = list_runs,
                 comparer: Callable = compare_runs, curves: Callable = loss_curves, report: Callable = run_report,
                 on_compare: Callable[[list[str]], None] | None = None, poll: float = 0.0):
        self.root = Path(runs_root)
        self._list, self._compare, self._curves, self._report = lister, comparer, curves, report
        self._on_compare = on_compare
        self.table_df = None
        self.refresh_btn = widgets.Button(description="Refresh")
        self.refresh_btn.add_class("wb-refresh-runs")
        self.live = widgets.Checkbox(value=poll > 0, description="live", indent=False, disabled=poll <= 0,
                                     tooltip=f"Read the runs folder again every {poll:g} s while a run is going")
        self.live.add_class("wb-runs-live")
        self.filter = widgets.Text(placeholder="filter: experiment, status, model…", description="Filter",
                                   continuous_update=False)
        self.sort = widgets.Dropdown(options=["run"], value="run", description="Sort by")
        self.descending = widgets.Checkbox(value=True, description="descending")
        self.table = widgets.HTML()
        self.table.add_class("wb-runs-table")
        self.select = widgets.SelectMultiple(options=[], description="Runs", rows=6,
                                             layout=widgets.Layout(width="70%"))
        self.select.add_class("wb-runs-select")
        self.curves = LineChart("Training loss of the selected runs by step", y_label="training loss",
                                empty="Select runs to overlay their training loss.", css="wb-runs-curves")
        self.diff = widgets.HTML()
        self.report = widgets.HTML()
        self.diff_btn = widgets.Button(description="Diff two runs")
        self.report_btn = widgets.Button(description="Open report")
        self.compare_btn = widgets.Button(description="Compare models", disabled=on_compare is None,
                                          tooltip="Open the selected runs' models side by side in the Compare tab")
        self.compare_btn.add_class("wb-runs-compare")
        self.refresh_btn.on_click(lambda _: self.refresh())
        for w in (self.filter, self.sort, self.descending):
            w.observe(lambda _: self.render(), names="value")
        self.select.observe(lambda _: self.plot(), names="value")
        self.diff_btn.on_click(lambda _: self.show_diff())
        self.report_btn.on_click(lambda _: self.show_report())
        self.compare_btn.on_click(lambda _: self.compare_selected())
        self.widget = widgets.VBox([
            widgets.HBox([self.refresh_btn, self.live, self.filter, self.sort, self.descending]), self.table,
            self.select, widgets.HBox([self.diff_btn, self.report_btn, self.compare_btn]), self.curves.widget,
            self.diff, self.report])
        self.widget.add_class("wb-runs-panel")
        self.closed = threading.Event()
        self._seen = None
        self._refreshing = threading.RLock()
        self.refresh()
        if poll > 0:
            self._start(lambda: self._follow(poll), "runs-live")

    def _signature(self) -> tuple:
        """What changes when a run starts, logs, ends or is removed: the runs' status and log files' times."""
        files = sorted(self.root.glob("*/*/status.json")) + sorted(self.root.glob("*/*/metrics.json")) + sorted(
            self.root.glob("*/*/train_log.jsonl"))
        out = []
        for f in files:
            try:
                out.append((str(f), f.stat().st_mtime_ns))
            except OSError:  # removed between the listing and the look
                pass
        return tuple(out)

    def _follow(self, poll: float) -> None:
        """Refresh when the runs folder changes, while ``live`` is ticked (a worker thread; ``close`` ends it)."""
        while not self.closed.wait(poll):
            if not self.live.value:
                continue
            try:
                signature = self._signature()
                if signature != self._seen:
                    self.refresh()
            except Exception:  # noqa: BLE001 - a folder mid-write is read again at the next look
                continue

    def close(self) -> None:
        """Stop following the runs folder."""
        self.closed.set()

    def refresh(self) -> None:
        """Read the runs folder again. The live look and a finished run may both refresh: one at a time, and the
        lists are only replaced when they changed (a new list of options resets what was chosen in it)."""
        with self._refreshing:
            self._seen = self._signature()
            self.table_df = self._list(self.root)
            if self.table_df is not None and len(self.table_df):
                cols = [c for c in self.table_df.columns if c not in ("path", "reason")]
                if tuple(cols) != tuple(self.sort.options):
                    chosen = self.sort.value  # keep the user's column (default: newest first)
                    with self.sort.hold_trait_notifications():
                        self.sort.options = cols
                        self.sort.value = chosen if chosen in cols else "run"
                options = [(f"{r.experiment}/{r.run} ({r.status})", r.path) for r in self.table_df.itertuples()]
                if [tuple(o) for o in options] != [tuple(o) for o in self.select.options]:
                    kept = self.select.value
                    paths = set(self.table_df["path"])
                    with self.select.hold_trait_notifications():
                        self.select.options = options
                        self.select.value = tuple(p for p in kept if p in paths)  # the selection stays
            self.render()

    def visible(self):
        df = self.table_df
        if df is None or not len(df):
            return df
        q = self.filter.value.strip().lower()
        if q:
            text = df.astype(str).agg(" ".join, axis=1).str.lower()
            df = df[text.str.contains(q, regex=False)]
        if self.sort.value in df.columns:
            df = df.sort_values(self.sort.value, ascending=not self.descending.value, na_position="last")
        return df

    def render(self) -> None:
        df = self.visible()
        if df is None or not len(df):
            self.table.value = f"<i>No runs under {html.escape(str(self.root))}/ yet.</i>"
            return
        shown = df.drop(columns=[c for c in ("path",) if c in df.columns])
        table = shown.to_html(index=False, classes="wb-table", na_rep="", float_format=lambda v: f"{v:.4g}")
        for status in ("died", "failed"):  # a run that ended badly stands out; its reason says how, and where
            table = table.replace(f"<td>{status}</td>", f"<td class='wb-status-{status}' style='color:#b00020'>"
                                                        f"{status}</td>")
        self.table.value = table

    def plot(self) -> None:
        """Overlay the selected runs' training loss (a run of a few steps shows as its points)."""
        runs = [Path(p) for p in self.select.value]
        curves = self._curves(runs) if runs else []
        named: dict[str, list] = {}
        for name, points in curves:  # two experiments may share a run id: each keeps its own line
            key, n = name, 2
            while key in named:
                key, n = f"{name} ({n})", n + 1
            named[key] = points
        self.curves.set_lines(named)
        if runs and not named:
            self.curves.empty.value = ("<i>The selected runs logged no training loss yet (a run logs every "
                                       "logging_steps steps, and at its first).</i>")

    def compare_selected(self) -> None:
        """Hand the selected runs to the Compare tab."""
        runs = list(self.select.value)
        if not runs:
            self.diff.value = "<i>Select the runs whose models to compare.</i>"
            return
        self._on_compare(runs)

    def show_diff(self) -> None:
        runs = list(self.select.value)
        if len(runs) != 2:
            self.diff.value = "<i>Select exactly two runs.</i>"
            return
        try:
            diff = self._compare(*runs)
        except (OSError, ValueError) as e:
            self.diff.value = self.error_html(e)
            return
        config, metrics = diff
        status = ""
        if isinstance(diff, RunComparison):  # how each run ended, and the metrics only one of them has
            srows = "".join(f"<tr><td>{side}</td><td>{html.escape(st)}</td><td>{html.escape(reason)}</td></tr>"
                            for side, st, reason in zip("AB", diff.status, diff.reasons))
            only = "".join(f"<li>only in {side}: {html.escape(', '.join(keys))}</li>"
                           for side, keys in (("A", diff.only_a), ("B", diff.only_b)) if keys)
            status = (f"<h4>Status</h4><table class='wb-table'><tr><th>run</th><th>status</th><th>reason</th></tr>"
                      f"{srows}</table>" + (f"<ul class='wb-missing-metrics'>{only}</ul>" if only else ""))
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td></tr>"
                       for k, a, b in config) or "<tr><td colspan=3>identical</td></tr>"
        mrows = "".join(f"<tr><td>{html.escape(k)}</td><td>{a:.4g}</td><td>{b:.4g}</td><td>{d:+.4g}</td></tr>"
                        for k, a, b, d in metrics) or "<tr><td colspan=4>no numeric differences</td></tr>"
        self.diff.value = (status + f"<h4>Config</h4><table class='wb-table'><tr><th>key</th><th>A</th><th>B</th>"
                           f"</tr>{rows}</table><h4>Metrics</h4><table class='wb-table'><tr><th>metric</th><th>A</th>"
                           f"<th>B</th><th>B - A</th></tr>{mrows}</table>")

    def show_report(self) -> None:
        runs = list(self.select.value)
        report = self._report(runs[0]) if runs else None
        if report is None:
            self.report.value = "<i>Select a run with a comparison report.</i>"
            return
        self.report.value = (f'<iframe class="wb-report" style="width:100%;height:600px;border:1px solid #ccc" '
                             f'srcdoc="{html.escape(report.read_text())}"></iframe>')
