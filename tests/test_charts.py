"""LineChart, BarChart and HistogramChart (bqplot) in plain pytest, and LineChart once in a real browser: Voila on
127.0.0.1, Debian's chromium."""

from __future__ import annotations

import html
import math
import shutil

import nbformat
import pandas as pd
import pytest

from browser import ARTIFACTS, assert_clean, browser_page, needs_chromium, voila
from workbench.panels.charts import MARKER_COLOUR, PALETTE, BarChart, HistogramChart, LineChart


def _chart(**kwargs) -> LineChart:
    return LineChart("Loss by training step", "step", "loss", empty="No training steps yet.", css="wb-curves",
                     **kwargs)


def test_the_empty_sentence_shows_until_there_is_a_point():
    chart = _chart()
    assert chart.widget.children == (chart.caption, chart.empty)
    assert "No training steps yet." in chart.empty.value and "Loss by training step" in chart.caption.value
    for lines in ({}, {"train": []}, {"train": [(1, math.nan)]}):  # nothing drawable: still the sentence
        chart.set_lines(lines)
        assert chart.widget.children == (chart.caption, chart.empty) and chart.figure.marks == []
        assert chart.legend.value == ""
    chart.set_lines({"train": [(1, 2.0)]})
    assert chart.widget.children == (chart.caption, chart.figure, chart.legend)
    chart.set_lines({})  # cleared again: the sentence comes back
    assert chart.widget.children == (chart.caption, chart.empty)


@pytest.mark.parametrize("points", [[(3, 1.5)], [(i, 1 / (i + 1)) for i in range(200)]], ids=["one", "many"])
def test_a_series_is_drawn_with_markers_whatever_its_length(points):
    chart = _chart()
    chart.set_lines({"train": points})
    (mark,) = chart.figure.marks
    assert mark.marker == "circle"  # a single point is a marker: a line of one point draws nothing
    assert list(mark.x) == [p[0] for p in points] and list(mark.y) == [p[1] for p in points]


def test_several_series_each_named_in_its_own_colour_below_the_figure():
    chart = _chart()
    chart.set_lines({"train": [(1, 3.0), (2, 2.5), (3, 2.0)], "eval": [(2, 2.8)], "a<b": [(1, 1.0), (3, 1.0)]})
    assert [m.labels for m in chart.figure.marks] == [["train"], ["eval"], ["a<b"]]
    assert [m.colors[0] for m in chart.figure.marks] == list(PALETTE[:3])
    legend = chart.legend.value
    assert legend.index("train") < legend.index("eval") < legend.index("a&lt;b")  # names escaped, in order
    assert all(f"color:{c}" in legend for c in PALETTE[:3])
    assert not any(m.display_legend for m in chart.figure.marks)  # no legend box drawn over the data


def test_a_redraw_keeps_the_marks_of_series_that_stay_and_drops_the_others():
    chart = _chart()
    chart.set_lines({"train": [(1, 3.0)], "eval": [(1, 3.1)]})
    train = chart.lines["train"]
    chart.set_lines({"train": [(1, 3.0), (2, 2.0), (3, math.inf)]})  # a non-finite value is left out
    assert chart.figure.marks == [train] and list(train.x) == [1.0, 2.0] and list(train.y) == [3.0, 2.0]
    assert "eval" not in chart.legend.value


def test_the_chart_fills_its_container_width_at_a_fixed_height():
    chart = _chart(height="280px")
    assert chart.widget.layout.width == "100%" and chart.figure.layout.width == "100%"
    assert chart.figure.layout.height == "280px"
    assert chart.figure.display_toolbar is False  # its icons come from Font Awesome, which the page does not load
    assert "wb-curves" in chart.widget._dom_classes


def _bars() -> BarChart:
    return BarChart("rows per label", "rows", "labels", empty="No labels.", css="wb-distribution")


def test_a_bar_chart_shows_its_sentence_until_there_is_a_category():
    chart = _bars()
    chart.set_counts({})
    assert chart.widget.children == (chart.caption, chart.empty) and chart.figure.marks == []
    assert "No labels." in chart.empty.value and chart.legend.value == ""


@pytest.mark.parametrize("n", [1, 3, 30], ids=["one", "some", "thirty"])
def test_bars_largest_on_top_one_row_each_all_of_them_said_in_the_caption(n):
    chart = _bars()
    counts = {f"label {i}": 100 - i for i in range(n)}  # most frequent first, as label_counts gives them
    chart.set_counts(counts, total=n)
    assert chart.widget.children == (chart.caption, chart.figure, chart.legend)
    assert list(chart.bars.x) == list(counts)[::-1] and list(chart.bars.y) == list(counts.values())[::-1]
    assert chart.bars.orientation == "horizontal"  # names on their own lines, however long
    assert "most frequent" not in chart.caption.value and "rows per label" in chart.caption.value
    assert int(chart.figure.layout.height.removesuffix("px")) >= 22 * n  # grows with the bars, never squeezed
    assert chart.figure.display_toolbar is False and chart.figure.layout.width == "100%"
    assert "rows" in chart.legend.value and "wb-distribution" in chart.widget._dom_classes


def test_the_caption_says_when_only_the_most_frequent_are_shown():
    chart = _bars()
    chart.set_counts(pd.Series({f"intent {i}": 100 - i for i in range(30)}), total=77)
    assert "rows per label: the 30 most frequent of 77 labels" in chart.caption.value
    chart.set_counts({"a": 1, "b": 2})  # redrawn with all of them: the statement goes
    assert "most frequent" not in chart.caption.value


def test_long_names_are_cut_on_the_axis_and_given_in_full_below():
    chart = _bars()
    long = "a customer asking to change the billing address of an account <b>"
    chart.set_counts({long: 5, "short": 2})
    assert long in list(chart.bars.x)  # the data (and the tooltip) keep the full name
    (cut,) = chart._names.tick_labels.values()
    assert "…" in cut and cut.endswith("<b>") and len(cut) == chart.shorten  # names that start alike still differ
    assert html.escape(long) in chart.legend.value and "<b>" not in chart.legend.value
    assert chart.figure.fig_margin["left"] >= 7 * chart.shorten  # room for the cut names left of the bars


def _hist() -> HistogramChart:
    return HistogramChart("Tokens per example", "tokens", empty="Nothing measured.", css="wb-token-hist", bins=10)


def test_a_histogram_shows_its_sentence_until_a_sample_has_a_value():
    chart = _hist()
    for samples in ({}, {"input": []}, {"input": [math.nan]}):
        chart.set_samples(samples, marker=("max_length", 64))  # a marker alone is no histogram
        assert chart.widget.children == (chart.caption, chart.empty) and chart.figure.marks == []
    chart.set_bins({"a": ((), ())})
    assert chart.widget.children == (chart.caption, chart.empty)


def test_samples_share_bins_each_drawn_whole_in_its_own_colour_with_the_marker_named():
    chart = _hist()
    chart.set_samples({"input": [1, 2, 2, 9, 10], "output": [3, 4]}, marker=("max_length", 20))
    inputs, outputs, marker = chart.figure.marks
    assert (inputs, outputs) == (chart.hists["input"], chart.hists["output"]) and marker is chart.marker
    assert sum(inputs.y[1::2]) == 5 and sum(outputs.y[1::2]) == 2  # every value in one bin, once
    assert list(inputs.x) == list(outputs.x) and inputs.x[0] == 0 and inputs.x[-1] == pytest.approx(21)  # past it
    assert inputs.y[0] == inputs.y[-1] == 0  # the steps start and end on the axis
    assert [m.colors[0] for m in (inputs, outputs)] == list(PALETTE[:2]) and marker.colors == [MARKER_COLOUR]
    assert list(marker.x) == [20, 20] and marker.line_style == "dashed"
    legend = chart.legend.value
    assert legend.index("input") < legend.index("output") < legend.index("max_length 20")
    assert f"color:{MARKER_COLOUR}" in legend and chart.figure.display_toolbar is False


def test_binned_histograms_keep_their_own_edges_and_a_wrong_shape_says_so():
    chart = _hist()
    chart.set_bins({"words": ((0, 5, 10), (3, 1)), "bytes": ((0, 20), (4,))}, marker=("max_length", 2048))
    assert list(chart.hists["words"].x) == [0, 0, 5, 5, 10, 10] and list(chart.hists["words"].y) == [0, 3, 3, 1, 1, 0]
    assert "max_length 2,048" in chart.legend.value
    chart.set_bins({"words": ((0, 5, 10), (3, 1))})  # no marker: no line, not in the legend
    assert chart.figure.marks == [chart.hists["words"]] and "max_length" not in chart.legend.value
    with pytest.raises(ValueError, match="3 bin edges for 3 counts"):
        chart.set_bins({"words": ((0, 5, 10), (3, 1, 2))})


def test_the_png_label_bar_says_what_it_leaves_out_from_the_top_alone():
    from workbench import plots

    fig = plots.label_bar(pd.Series({f"intent {i}": 100 - i for i in range(30)}), "rows per label", of=77)
    assert fig.axes[0].get_title() == "rows per label: the 30 most frequent of 77 labels"


CELLS = [  # shown empty, then filled by a later cell (as a panel fills its chart), beside one that stays empty
    """\
from IPython.display import display
from workbench.panels.charts import LineChart

chart = LineChart("Loss by training step", "step", "loss", empty="No training steps yet.", css="wb-test-chart")
idle = LineChart("Evaluation loss", "step", "loss", empty="No evaluation yet.", css="wb-test-idle")
display(chart.widget, idle.widget)""",
    """chart.set_lines({"train": [(s, 3 / (1 + 0.1 * s)) for s in range(0, 101, 5)], "eval": [(50, 1.4)]})"""]


@pytest.mark.browser
@needs_chromium
def test_line_chart_renders_in_voila_offline():
    folder = ARTIFACTS / "charts-notebook"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    notebook = folder / "chart.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebook)
    with voila(notebook, timeout=120) as url, browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(url, timeout=180_000)
        page.wait_for_selector(".wb-test-chart .bqplot svg .curve path.line", timeout=180_000)
        page.wait_for_function(  # both series drawn: two curves, 21 + 1 markers
            "() => document.querySelectorAll('.wb-test-chart .bqplot .dot').length === 22", timeout=30_000)
        assert page.locator(".wb-test-chart .bqplot .curve path.line").count() == 2
        assert page.locator(".wb-test-chart .bqplot .axis").count() == 2
        figure = page.locator(".wb-test-chart .bqplot").first.bounding_box()
        chart = page.locator(".wb-test-chart").first.bounding_box()
        assert figure["width"] == pytest.approx(chart["width"], abs=2) and chart["width"] > 1000  # the page's width
        assert 250 <= figure["height"] <= 350
        below = page.locator(".wb-test-chart .wb-chart-legend").first.bounding_box()
        assert below["y"] >= figure["y"] + figure["height"] - 1  # the legend is under the figure, off the data
        legend = page.locator(".wb-test-chart .wb-chart-legend").inner_text()
        assert "train" in legend and "eval" in legend
        assert "Loss by training step" in page.locator(".wb-test-chart .wb-chart-caption").inner_text()
        assert page.locator(".wb-test-chart .wb-chart-empty").count() == 0
        assert page.locator(".wb-test-idle .bqplot").count() == 0
        assert page.locator(".wb-test-idle .wb-chart-empty").inner_text() == "No evaluation yet."
        assert_clean(page, str(ARTIFACTS / "charts.png"), full_page=True)
