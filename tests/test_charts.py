"""LineChart (bqplot) in plain pytest, and once in a real browser: Voila on 127.0.0.1, Debian's chromium."""

from __future__ import annotations

import math
import shutil

import nbformat
import pytest

from browser import ARTIFACTS, assert_clean, browser_page, needs_chromium, voila
from workbench.panels.charts import PALETTE, LineChart


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
