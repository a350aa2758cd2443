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


def test_compare_panel_in_voila_generates_with_two_models(tmp_path):
    import sys

    import papermill as pm

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import bpe_tokenizer
    from workbench import presets

    tok = bpe_tokenizer(vocab_size=600)
    paths = {}
    for seed, name in ((0, "alpha"), (1, "beta")):  # two different random tiny models: different outputs
        cfg = presets.tiny_llama(len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)
        paths[name] = presets.save_base_model(cfg, tok, tmp_path / name, seed=seed)
    notebook = ROOT / "notebooks" / "zz_browser_compare.ipynb"  # beside the others: Voila runs it from notebooks/
    pm.inspect_notebook(str(ROOT / "notebooks" / "04_compare.ipynb"))
    nb = pm.parameterize.parameterize_notebook(
        pm.iorw.load_notebook_node(str(ROOT / "notebooks" / "04_compare.ipynb")),
        # Random weights with tied embeddings greedily repeat the last prompt token (a newline); sampling
        # makes them write visible text.
        {"models": f"alpha={paths['alpha']}, beta={paths['beta']}", "max_examples": 4, "max_new_tokens": 6,
         "do_sample": True, "temperature": 1.0, "top_p": 1.0,
         "bootstrap_resamples": 100, "report_dir": str(tmp_path / "report")})
    pm.iorw.write_ipynb(nb, str(notebook))
    try:
        with voila(notebook, timeout=120) as url, browser_page() as page:
            page.goto(url, timeout=180_000)
            page.wait_for_selector(".wb-compare-panel", timeout=180_000)
            page.fill(".wb-prompt textarea", "My VPN keeps dropping every few minutes")
            page.click("button.wb-generate")
            page.wait_for_function("() => document.querySelectorAll('.wb-output').length === 2", timeout=120_000)
            outputs = page.locator(".wb-output")
            first, second = outputs.nth(0).inner_text(), outputs.nth(1).inner_text()
            assert first.startswith("alpha") and second.startswith("beta")
            assert first[len("alpha"):].strip() and second[len("beta"):].strip()   # both models wrote something
            page.wait_for_function("() => !document.querySelector('.wb-compare-status').innerText.includes('Generating')")
            page.screenshot(path=str(ARTIFACTS / "compare-voila.png"), full_page=True)
            assert page.locator(".jupyter-widgets-error-widget").count() == 0
            assert page.errors == []
    finally:
        notebook.unlink(missing_ok=True)
