"""Real-browser tests: Voila serves a notebook on 127.0.0.1, playwright drives Debian's chromium."""

from __future__ import annotations

import re

import pytest

from browser import ARTIFACTS, ROOT, browser_page, needs_chromium, voila

pytestmark = [pytest.mark.browser, needs_chromium]


def _matches(page) -> int:
    return int(page.locator(".wb-matches").first.inner_text().replace(",", ""))


def test_explorer_in_voila_search_filter_page(tmp_path):
    with voila(ROOT / "notebooks" / "01_explore_dataset.ipynb") as url, browser_page() as page:
        page.goto(url, timeout=120_000)
        page.wait_for_selector(".wb-dataset-panel", timeout=120_000)
        assert _matches(page) == 10003  # banking77's training rows, rendered by the panel

        page.fill(".wb-search input", "refund")
        page.press(".wb-search input", "Enter")
        page.wait_for_function("() => document.querySelector('.wb-matches').innerText !== '10,003'", timeout=20_000)
        after_search = _matches(page)
        assert 0 < after_search < 10003

        page.select_option(".wb-label select", "Refund_not_showing_up")
        page.wait_for_function(f"() => document.querySelector('.wb-matches').innerText !== '{after_search:,}'",
                               timeout=20_000)
        after_label = _matches(page)
        assert 0 < after_label < after_search
        assert re.fullmatch(r"Page 1 of \d+", page.locator(".wb-page").inner_text())

        page.click("button.wb-next")
        page.wait_for_function("() => document.querySelector('.wb-page').innerText.startsWith('Page 2')",
                               timeout=20_000)
        rows = page.locator(".wb-rows tbody tr")
        assert rows.count() > 0
        first = rows.first.inner_text()
        assert "refund" in first.lower() and "train.csv:" in first

        page.screenshot(path=str(ARTIFACTS / "explorer-voila.png"), full_page=True)
        assert page.locator(".jupyter-widgets-error-widget").count() == 0
        assert page.errors == []
