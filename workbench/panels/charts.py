"""Interactive charts for the panels: bqplot figures (SVG drawn in the page, sized to their container).

``LineChart`` (series of points), ``BarChart`` (a count per category) and ``HistogramChart`` (one histogram per
named sample, with an optional marker line) share one frame (``_Chart``): a caption above saying what the chart
shows, the figure at 100% of the container's width, a text legend below it (clear of the data), and a sentence in
place of the figure until there is something to draw.

bqplot ships its front end with the wheel (``share/jupyter/labextensions/bqplot``), so Voila and JupyterLab serve
it from 127.0.0.1: the page makes no request off the machine. The figure's toolbar is off: its buttons use
Font Awesome icons, whose CDN stylesheet the dashboard's template removes.
"""

from __future__ import annotations

import html
import math
from typing import Mapping, Sequence

import bqplot
import ipywidgets as widgets
import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
"""Series colours, in order (matplotlib's tab10, as the PNG plots use); the legend shows the same ones."""

MARKER_COLOUR = "#c00"
"""The colour of a histogram's marker line (``max_length``), as the PNG plots draw it."""

LINE, BLOCK, DASHES = "&#9644;&#9679;", "&#9632;", "&#9476;&#9476;"
"""Legend swatches: a line with a marker, a filled block (bars, histograms), a dashed line (a marker line)."""


def _figure(axes: list, height: str, left: int = 65, bottom: int = 45, **kwargs) -> bqplot.Figure:
    """A figure 100% of its container's width, ``height`` tall, without the toolbar (see the module docstring)."""
    return bqplot.Figure(axes=axes, marks=[], display_toolbar=False, fig_margin=dict(top=15, bottom=bottom,
                                                                                     left=left, right=20),
                         layout=widgets.Layout(width="100%", height=height, min_width="200px"), **kwargs)


class _Chart:
    """The frame every chart shares: ``caption`` (the alt text, as text a screen reader reads), then ``figure`` and
    ``legend`` once there is data, or the ``empty`` sentence until then. ``widget`` is the root widget.

    Args:
        alt: What the chart shows, in words (caption and accessible description).
        figure: The bqplot figure.
        empty: What the chart says before there is anything to draw.
        css: The CSS class of the root widget.
    """

    def __init__(self, alt: str, figure: bqplot.Figure, empty: str = "", css: str = ""):
        self.alt, self.figure = alt, figure
        self.caption = widgets.HTML()
        self.caption.add_class("wb-chart-caption")
        self._set_caption(alt)
        self.legend = widgets.HTML()
        self.legend.add_class("wb-chart-legend")
        self.empty = widgets.HTML(f"<i>{html.escape(empty)}</i>" if empty else "")
        self.empty.add_class("wb-chart-empty")
        self.widget = widgets.VBox([self.caption, self.empty], layout=widgets.Layout(width="100%"))
        self.widget.add_class("wb-chart")
        if css:
            self.widget.add_class(css)

    def _set_caption(self, text: str) -> None:
        self.caption.value = f'<div role="note"><b>{html.escape(text)}</b></div>'

    def _show(self, marks: list, legend: list[tuple[str, str, str]], note: str = "") -> None:
        """Draw ``marks`` with ``legend`` (name, colour, swatch) and ``note`` (HTML) below, or the empty sentence
        when there are no marks."""
        self.figure.marks = marks
        self.legend.value = self._legend_html(legend, note) if marks else ""
        self.widget.children = (self.caption, self.figure, self.legend) if marks else (self.caption, self.empty)

    def _legend_html(self, items: list[tuple[str, str, str]], note: str = "") -> str:
        """One coloured swatch and name per item, on a line below the figure, aligned with the plot area."""
        spans = [f'<span role="listitem" style="margin-right:1.2em;white-space:nowrap"><span aria-hidden="true" '
                 f'style="color:{colour}">{swatch}</span> {html.escape(name)}</span>' for name, colour, swatch in items]
        pad = f'style="padding-left:{self.figure.fig_margin["left"]}px"'
        out = f'<div role="list" aria-label="legend" {pad}>{"".join(spans)}</div>' if spans else ""
        return out + (f"<div {pad}>{note}</div>" if note else "")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class LineChart(_Chart):
    """Named series of (x, y) points as lines with markers (a series of one point still shows), 100% of its
    container's width. A caption above says what the chart shows (its alt text, as text a screen reader reads);
    a text legend below names each series in its colour, clear of the data. Until there is a point to
    draw, ``empty``'s sentence stands in for the figure. ``widget`` is the root widget.

    Args:
        alt: What the chart shows, in words (caption and accessible description).
        x_label, y_label: The axes' labels.
        empty: What the chart says before the first point.
        css: The CSS class of the root widget.
        height: The figure's height (CSS).
    """

    def __init__(self, alt: str, x_label: str = "step", y_label: str = "value", empty: str = "", css: str = "",
                 height: str = "300px"):
        self.lines = {}
        self._x, self._y = bqplot.LinearScale(), bqplot.LinearScale()
        axes = [bqplot.Axis(scale=self._x, label=x_label, grid_lines="dashed"),
                bqplot.Axis(scale=self._y, label=y_label, side="left", grid_lines="dashed")]
        super().__init__(alt, _figure(axes, height, padding_y=0.05, padding_x=0.02), empty, css)

    def set_lines(self, lines: dict[str, list[tuple[float, float]]]) -> None:
        """Draw ``lines`` (series name -> its (x, y) points), replacing what was drawn. Points with a value that is
        not finite (a NaN loss) are left out; a series left with no point is not drawn nor named in the legend.
        A series drawn before keeps its mark, so a chart redrawn during training only sends new data; colours go
        by position in ``lines``.
        """
        kept = {name: [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]
                for name, points in lines.items()}
        kept = {name: points for name, points in kept.items() if points}
        marks = {}
        for i, (name, points) in enumerate(kept.items()):
            mark = self.lines.get(name) or bqplot.Lines(scales={"x": self._x, "y": self._y}, marker="circle",
                                                         marker_size=28, stroke_width=2, labels=[name])
            with mark.hold_sync():
                mark.x, mark.y = [p[0] for p in points], [p[1] for p in points]
                mark.colors = [PALETTE[i % len(PALETTE)]]
            marks[name] = mark
        self.lines = marks
        self._show(list(marks.values()), [(name, mark.colors[0], LINE) for name, mark in marks.items()])


class BarChart(_Chart):
    """A count per category as horizontal bars, the first category at the top, so 30 long names stay readable
    (each name on its own line, left of its bar). The figure grows with the number of bars. Names longer than
    ``shorten`` characters are cut in the middle on the axis; hovering a bar shows its full name and count, and the
    legend below lists the full names that were cut. When the counts are the top N of M categories, the caption
    says so.

    Args:
        alt: What the chart shows, in words (caption and accessible description).
        value_label: What is counted (the value axis and the legend: ``rows``).
        noun: What the categories are, in the plural, for the caption (``labels``).
        empty: What the chart says when there is nothing to count.
        css: The CSS class of the root widget.
        shorten: The most characters of a name shown on the axis.
        bar_height: Pixels per bar.
    """

    def __init__(self, alt: str, value_label: str = "count", noun: str = "categories", empty: str = "",
                 css: str = "", shorten: int = 32, bar_height: int = 22):
        self.value_label, self.noun, self.shorten, self.bar_height = value_label, noun, shorten, bar_height
        self._x, self._y = bqplot.OrdinalScale(), bqplot.LinearScale(min=0)
        self._names = bqplot.Axis(scale=self._x, side="left", grid_lines="none")
        axes = [self._names, bqplot.Axis(scale=self._y, label=value_label, grid_lines="dashed")]
        self.bars = bqplot.Bars(scales={"x": self._x, "y": self._y}, orientation="horizontal", padding=0.25,
                                colors=[PALETTE[0]], tooltip=bqplot.Tooltip(
                                    fields=["x", "y"], labels=["name", value_label], formats=["", ",.0f"]))
        super().__init__(alt, _figure(axes, "160px", padding_x=0.02), empty, css)

    def set_counts(self, counts: Mapping[str, float], total: int | None = None) -> None:
        """Draw ``counts`` (category -> count, largest first; a pandas Series works), replacing what was drawn.

        Args:
            counts: The categories shown, in the order to show them from the top.
            total: How many categories there are in all, when ``counts`` holds only the most frequent ones; the
                caption then says "the N most frequent of M".
        """
        pairs = list(counts.items())
        names, values = [str(k) for k, _ in pairs], [float(v) for _, v in pairs]
        shown, total = len(names), max(len(names), total or 0)
        self._set_caption(f"{self.alt}: the {shown} most frequent of {total:,} {self.noun}" if total > shown
                          else self.alt)
        head = self.shorten * 2 // 3  # cut in the middle: names that share a start still differ by their ends
        short = {n: n[:head] + "…" + n[head + 1 - self.shorten:] for n in names if len(n) > self.shorten}
        widest = max((len(short.get(n, n)) for n in names), default=0)
        with self.bars.hold_sync():  # bqplot draws the first category at the bottom: reversed, the largest is on top
            self.bars.x, self.bars.y = names[::-1], values[::-1]
        self._names.tick_labels = short
        self.figure.fig_margin = dict(self.figure.fig_margin, left=16 + 7 * widest)  # room for the names
        self.figure.layout.height = f"{max(120, self.bar_height * shown + 60)}px"
        cut = "; ".join(f"{html.escape(s)} = {html.escape(n)}" for n, s in short.items())
        self._show([self.bars] if names else [], [(self.value_label, PALETTE[0], BLOCK)],
                   f"<small>Names cut on the axis: {cut}</small>" if cut else "")


class HistogramChart(_Chart):
    """One histogram per named sample, overlaid as filled steps (each sample's own colour, see-through so every
    one stays visible), with an optional dashed vertical marker line (``max_length``) named in the legend.
    ``set_samples`` bins raw values on shared edges; ``set_bins`` draws histograms binned already (edges per
    sample may differ).

    Args:
        alt: What the chart shows, in words (caption and accessible description).
        x_label: What is measured (``characters``, ``tokens``).
        y_label: What is counted per bin.
        empty: What the chart says when there is no value to draw.
        css: The CSS class of the root widget.
        height: The figure's height (CSS).
        bins: Bins of ``set_samples``.
    """

    def __init__(self, alt: str, x_label: str = "value", y_label: str = "examples", empty: str = "",
                 css: str = "", height: str = "300px", bins: int = 40):
        self.bins, self.hists = bins, {}
        self._x, self._y, self._unit = bqplot.LinearScale(), bqplot.LinearScale(min=0), bqplot.LinearScale(min=0, max=1)
        axes = [bqplot.Axis(scale=self._x, label=x_label, grid_lines="dashed"),
                bqplot.Axis(scale=self._y, label=y_label, side="left", grid_lines="dashed")]
        self.marker = bqplot.Lines(scales={"x": self._x, "y": self._unit}, colors=[MARKER_COLOUR], stroke_width=1.5,
                                   line_style="dashed")
        super().__init__(alt, _figure(axes, height, padding_y=0.02, padding_x=0.02), empty, css)

    def set_samples(self, samples: Mapping[str, Sequence[float]], marker: tuple[str, float] | None = None) -> None:
        """Bin each of ``samples`` (name -> values) on the same ``bins`` edges, from 0 (or the least value) to the
        greatest value or just past the marker, and draw them (``set_bins``). Values that are not finite are left
        out; a sample left empty is not drawn nor named.
        """
        kept = {name: a[np.isfinite(a)] for name, a in ((n, np.asarray(v, dtype=float)) for n, v in samples.items())}
        kept = {name: a for name, a in kept.items() if a.size}
        lo = min([0.0] + [float(a.min()) for a in kept.values()])
        hi = max([lo + 1.0] + [float(a.max()) for a in kept.values()] + ([marker[1] * 1.05] if marker else []))
        edges = np.linspace(lo, hi, self.bins + 1)
        self.set_bins({name: (edges, np.histogram(a, bins=edges)[0]) for name, a in kept.items()}, marker)

    def set_bins(self, hists: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                 marker: tuple[str, float] | None = None) -> None:
        """Draw ``hists`` (name -> (bin edges, counts), ``len(edges) == len(counts) + 1``), replacing what was drawn;
        colours go by position. ``marker`` (name, x) draws a dashed vertical line at x, named "name x" in the
        legend. A histogram with no bin is not drawn; with none to draw, the empty sentence shows.
        """
        marks, legend = {}, []
        for i, (name, (edges, counts)) in enumerate((n, h) for n, h in hists.items() if len(h[0]) > 1):
            if len(edges) != len(counts) + 1:
                raise ValueError(f"histogram {name!r}: {len(edges)} bin edges for {len(counts)} counts; "
                                 "pass one edge more than counts (numpy.histogram's (counts, edges), swapped)")
            mark = self.hists.get(name) or bqplot.Lines(scales={"x": self._x, "y": self._y}, fill="bottom",
                                                         fill_opacities=[0.25], stroke_width=1.5, labels=[name])
            colour = PALETTE[i % len(PALETTE)]
            with mark.hold_sync():  # steps: up and across each bin, down to 0 after the last
                mark.x = np.repeat(np.asarray(edges, dtype=float), 2)
                mark.y = np.concatenate([[0.0], np.repeat(np.asarray(counts, dtype=float), 2), [0.0]])
                mark.colors, mark.fill_colors = [colour], [colour]
            marks[name] = mark
            legend.append((name, colour, BLOCK))
        self.hists = marks
        drawn = list(marks.values())
        if marks and marker is not None:
            with self.marker.hold_sync():
                self.marker.x, self.marker.y, self.marker.labels = [marker[1]] * 2, [0.0, 1.0], [marker[0]]
            drawn.append(self.marker)
            legend.append((f"{marker[0]} {marker[1]:,g}", MARKER_COLOUR, DASHES))
        self._show(drawn, legend)
