"""Interactive line charts for the panels: bqplot figures (SVG drawn in the page, sized to their container).

bqplot ships its front end with the wheel (``share/jupyter/labextensions/bqplot``), so Voila and JupyterLab serve
it from 127.0.0.1: the page makes no request off the machine. The figure's toolbar is off: its buttons use
Font Awesome icons, whose CDN stylesheet the dashboard's template removes.
"""

from __future__ import annotations

import html
import math

import bqplot
import ipywidgets as widgets

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
"""Series colours, in order (matplotlib's tab10, as the PNG plots use); the legend shows the same ones."""


class LineChart:
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
        self.alt, self.lines = alt, {}
        self._x, self._y = bqplot.LinearScale(), bqplot.LinearScale()
        axes = [bqplot.Axis(scale=self._x, label=x_label, grid_lines="dashed"),
                bqplot.Axis(scale=self._y, label=y_label, side="left", grid_lines="dashed")]
        self.figure = bqplot.Figure(
            axes=axes, marks=[], display_toolbar=False, padding_y=0.05, padding_x=0.02,
            fig_margin=dict(top=15, bottom=45, left=65, right=20),
            layout=widgets.Layout(width="100%", height=height, min_width="200px"))
        self.caption = widgets.HTML(f'<div role="note"><b>{html.escape(alt)}</b></div>')
        self.caption.add_class("wb-chart-caption")
        self.legend = widgets.HTML()
        self.legend.add_class("wb-chart-legend")
        self.empty = widgets.HTML(f"<i>{html.escape(empty)}</i>" if empty else "")
        self.empty.add_class("wb-chart-empty")
        self.widget = widgets.VBox([self.caption, self.empty], layout=widgets.Layout(width="100%"))
        self.widget.add_class("wb-chart")
        if css:
            self.widget.add_class(css)

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
        self.figure.marks = list(marks.values())
        self.legend.value = self._legend_html()
        self.widget.children = ((self.caption, self.figure, self.legend) if marks else (self.caption, self.empty))

    def _legend_html(self) -> str:
        """One coloured swatch and name per drawn series, on a line below the figure."""
        items = [f'<span role="listitem" style="margin-right:1.2em;white-space:nowrap"><span aria-hidden="true" '
                 f'style="color:{mark.colors[0]}">&#9644;&#9679;</span> {html.escape(name)}</span>'
                 for name, mark in self.lines.items()]
        return f'<div role="list" aria-label="legend" style="padding-left:65px">{"".join(items)}</div>' if items else ""

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
