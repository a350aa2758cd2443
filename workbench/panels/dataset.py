"""DatasetPanel: browse, search and filter a dataset; distributions; duplicates and personal data; examples."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..data.dataset import LoadedDataset
from ..explore import Explorer, Query, distribution_data, table_html
from ..templates import TextOnly, example_html, format_example
from .base import Panel
from .charts import BarChart, HistogramChart

ALL = "(all)"
NONE = "(none)"


class DatasetPanel(Panel):
    """A paged, searchable view of one dataset.

    Args:
        ds: The dataset.
        tokenizer: Formats the example viewer with its chat template; None for the fallback template.
        page_size: Rows per page.
        explorer: Builds the query engine (a test can pass a stub).
        pii_allow: Values that are not personal data (role mailboxes).
        distributions: The Distributions tab's data from the explorer (``distribution_data``; a test can pass a
            stub).
    """

    def __init__(self, ds: LoadedDataset, tokenizer=None, page_size: int = 20, explorer=Explorer,
                 pii_allow: tuple[str, ...] = (), distributions=distribution_data):
        self.ds = ds
        self._distributions = distributions
        self.tokenizer = tokenizer
        self.pii_allow = pii_allow
        self.ex = explorer(ds)
        self.query = Query(page_size=page_size)
        self.page = None

        rep = ds.report
        self.header = widgets.HTML(
            f"<b>{html.escape(ds.source)}</b> · {ds.format} · {len(ds):,} rows"
            f" ({rep.rows_read:,} read) · columns {html.escape(', '.join(f'{k}←{v}' for k, v in ds.columns.items()))}"
            f" · {len(rep.errors)} errors, {len(rep.warnings)} warnings")
        self.search = widgets.Text(placeholder="search text…", description="Search", continuous_update=False)
        self.search.add_class("wb-search")
        labels = [ALL] + (sorted(map(str, self.ex.labels.categories)) if self.ex.labels is not None else [])
        self.label = widgets.Dropdown(options=labels, value=ALL, description=self.ex.label_column or "label",
                                      disabled=self.ex.labels is None)
        self.label.add_class("wb-label")
        top = int(max(self.ex.lengths["input"].max(initial=0), self.ex.lengths["output"].max(initial=0)))
        answers = ds.spec.target == "text"  # an answer to measure, not a label or nothing
        self.length_field = widgets.Dropdown(options=["input", "output"] if answers else ["input"], value="input",
                                             description="Length of")
        self.length = widgets.IntRangeSlider(value=(0, top), min=0, max=max(top, 1), description="chars",
                                             continuous_update=False)
        self.finding = widgets.Dropdown(options=[NONE], value=NONE, description="Finding", disabled=True)
        self.finding.add_class("wb-finding")
        self.prev = widgets.Button(description="◀ Prev", layout=widgets.Layout(width="90px"))
        self.next = widgets.Button(description="Next ▶", layout=widgets.Layout(width="90px"))
        self.prev.add_class("wb-prev")
        self.next.add_class("wb-next")
        self.status = widgets.HTML()
        self.status.add_class("wb-status")
        self.table = widgets.HTML()
        self.table.add_class("wb-rows")

        self.scan = widgets.Button(description="Find duplicates & personal data", layout=widgets.Layout(width="260px"))
        self.scan.add_class("wb-scan")
        self.findings_html = widgets.HTML("<i>Not scanned yet.</i>")
        self.row = widgets.BoundedIntText(value=0, min=0, max=max(len(ds) - 1, 0), description="Row")
        self.example = widgets.HTML()
        self.plots = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.charts: list = []  # the Distributions tab's charts, once drawn
        self.problems = widgets.HTML(self._problems_html())

        for w in (self.search, self.label, self.length_field, self.length, self.finding):
            w.observe(self._on_filter, names="value")
        self.prev.on_click(lambda _: self.goto(self.query.page - 1))
        self.next.on_click(lambda _: self.goto(self.query.page + 1))
        self.scan.on_click(lambda _: self.start_scan())
        self.row.observe(lambda ch: self.show_example(ch["new"]), names="value")

        rows_tab = widgets.VBox([
            widgets.HBox([self.search, self.label]),
            widgets.HBox([self.length_field, self.length, self.finding]),
            widgets.HBox([self.prev, self.next, self.status]),
            self.table,
        ])
        tabs = widgets.Tab(children=[rows_tab, self.plots, widgets.VBox([self.scan, self.findings_html]),
                                     widgets.VBox([self.row, self.example]), self.problems])
        for i, title in enumerate(["Rows", "Distributions", "Findings", "Example", "Problems"]):
            tabs.set_title(i, title)
        self.tabs = tabs
        self.widget = widgets.VBox([self.header, tabs])
        self.widget.add_class("wb-dataset-panel")
        # Distributions cost a moment on large data: drawn when their tab is first opened, not on first render.
        tabs.observe(lambda ch: ch["new"] == 1 and not self.plots.children and self._render_plots(),
                     names="selected_index")
        self.refresh()
        self.show_example(0)

    # ------------------------------------------------------------------ handlers

    def _current_query(self, page: int = 0) -> Query:
        lo, hi = self.length.value
        full = (lo == self.length.min and hi == self.length.max)
        return Query(
            text=self.search.value,
            label=None if self.label.value == ALL else self.label.value,
            length_field=self.length_field.value,
            min_chars=None if full else lo,
            max_chars=None if full else hi,
            finding=None if self.finding.value == NONE else self.finding.value,
            page=page,
            page_size=self.query.page_size,
        )

    def _on_filter(self, _change=None):
        self.query = self._current_query(0)
        self.refresh()

    def goto(self, page: int) -> None:
        """Show page ``page`` (clamped) of the current matches."""
        self.query = self._current_query(page)
        self.refresh()

    def refresh(self) -> None:
        self.page = self.ex.page(self.query)
        p = self.page
        self.query = p.query
        self.status.value = (f'<span class="wb-page">Page {p.page + 1} of {p.pages}</span> · '
                             f'<span class="wb-matches">{p.matches:,}</span> matching rows')
        self.prev.disabled = p.page == 0
        self.next.disabled = p.page >= p.pages - 1
        self.table.value = table_html(p.rows) if len(p.rows) else "<i>No rows match.</i>"

    def start_scan(self):
        """Find duplicates and personal data in a worker thread (seconds on large data)."""
        self.scan.disabled = True
        self.findings_html.value = "<i>Scanning…</i>"
        return self._start(self._scan, "dataset-scan")

    def _scan(self):
        try:
            f = self.ex.findings(self.pii_allow)
        except Exception as e:  # noqa: BLE001 - shown in the panel, not raised in a thread
            self.findings_html.value = self.error_html(e)
            self.scan.disabled = False
            return
        lines = [f"<b>{f.duplicate_groups}</b> duplicate groups ({len(f.by_kind['duplicate'])} rows), "
                 f"<b>{f.conflicting_groups}</b> conflicting groups ({len(f.by_kind['conflicting'])} rows)"]
        pii = ", ".join(f"{n} {k}" for k, n in f.pii_counts.items()) or "none"
        lines.append(f"personal data: {pii} ({len(f.by_kind['personal data'])} rows)")
        for kind, rows in f.by_kind.items():
            if len(rows):
                sample = ", ".join(self.ds.where(int(r)) for r in rows[:5])
                lines.append(f"{html.escape(kind)}: {html.escape(sample)}{' …' if len(rows) > 5 else ''}")
        self.findings_html.value = "<br>".join(lines) + "<br><i>Choose a finding in the Rows tab to see its rows.</i>"
        self.finding.options = [NONE] + [k for k, rows in f.by_kind.items() if len(rows)]
        self.finding.disabled = False

    def show_example(self, row: int) -> None:
        """The formatted training example of ``row``, trained spans highlighted."""
        if not len(self.ds):
            return
        record = self.ds.frame[list(self.ds.fields)].iloc[row].to_dict()
        try:
            fe = format_example(record, self.ds.spec, self.tokenizer or TextOnly())
        except Exception as e:  # noqa: BLE001
            self.example.value = self.error_html(e)
            return
        note = ("loss on the label (sequence classification)" if self.ds.spec.has_label
                else "highlighted: the tokens the loss is computed on")
        self.example.value = (f"<div>{html.escape(self.ds.where(row))} · {note}</div>" + example_html(fe))

    def _render_plots(self) -> bool:
        """Fill the Distributions tab: rows per label (when the data has labels), then character lengths."""
        d = self._distributions(self.ex)
        charts = []
        if len(d.label_counts):
            bars = BarChart(f"rows per {d.label_column}", "rows", "labels", css="wb-distribution")
            bars.set_counts(d.label_counts, d.labels)
            charts.append(bars)
        lengths = HistogramChart(f"{' and '.join(d.lengths)} lengths in characters", "characters", "rows",
                                 empty="No rows to measure.", css="wb-distribution")
        lengths.set_samples(d.lengths)
        self.charts = charts + [lengths]
        self.plots.children = [c.widget for c in self.charts]
        return True

    def _problems_html(self) -> str:
        probs = self.ds.report.problems
        if not probs:
            return "<i>No problems found while loading.</i>"
        items = "".join(f"<li>{html.escape(p.severity)}: {html.escape(str(p))}</li>" for p in probs[:200])
        more = f"<li>… {len(probs) - 200} more</li>" if len(probs) > 200 else ""
        return f"<ul class='wb-problems'>{items}{more}</ul>"
