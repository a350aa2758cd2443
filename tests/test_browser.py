"""Real-browser tests: Voila serves a notebook on 127.0.0.1, playwright drives Debian's chromium."""

from __future__ import annotations

import re

import pytest

from browser import (ARTIFACTS, ROOT, assert_clean, browser_page, jupyterlab, needs_chromium, parameterized_copy,
                     serve, voila_page)

pytestmark = [pytest.mark.browser, needs_chromium]


def _matches(page) -> int:
    return int(page.locator(".wb-matches").first.inner_text().replace(",", ""))


def test_explorer_in_voila_search_filter_page(tmp_path):
    with voila_page(ROOT / "notebooks" / "01_explore_dataset.ipynb", ".wb-dataset-panel", timeout=80) as page:
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

        assert_clean(page, str(ARTIFACTS / "explorer-voila.png"), full_page=True)


def test_compare_panel_in_voila_generates_with_two_models(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_base

    # two different random tiny models: different outputs
    paths = {name: tiny_base(tmp_path / name, seed=seed) for seed, name in ((0, "alpha"), (1, "beta"))}
    notebook = parameterized_copy(
        "04_compare.ipynb", ROOT / "notebooks" / "zz_browser_compare.ipynb",  # beside the others: same cwd
        # Random weights with tied embeddings greedily repeat the last prompt token (a newline); sampling
        # makes them write visible text.
        {"models": f"alpha={paths['alpha']}, beta={paths['beta']}", "max_examples": 4, "max_new_tokens": 6,
         "do_sample": True, "temperature": 1.0, "top_p": 1.0,
         "bootstrap_resamples": 100, "report_dir": str(tmp_path / "report")})
    try:
        with voila_page(notebook, ".wb-compare-panel") as page:
            page.fill(".wb-prompt textarea", "My VPN keeps dropping every few minutes")
            page.click("button.wb-generate")
            page.wait_for_function("() => document.querySelectorAll('.wb-output').length === 2", timeout=120_000)
            outputs = page.locator(".wb-output")
            first, second = outputs.nth(0).inner_text(), outputs.nth(1).inner_text()
            assert first.startswith("alpha") and second.startswith("beta")
            assert first[len("alpha"):].strip() and second[len("beta"):].strip()   # both models wrote something
            page.wait_for_function("() => !document.querySelector('.wb-compare-status').innerText.includes('Generating')")
            assert_clean(page, str(ARTIFACTS / "compare-voila.png"), full_page=True)
    finally:
        notebook.unlink(missing_ok=True)


def _tab(page, title: str):
    page.locator(".lm-TabBar-tab", has_text=re.compile(f"^{title}$")).first.click()


#: Point 4 of issue #15: each value the Train tab once changed silently, and the message it shows now.
BAD_INPUTS = [("max-steps", "0", "max_steps must be -1 (train for the epochs) or at least 1, got 0"),
              ("learning-rate", "abc", "expected a number, got 'abc'"),
              ("learning-rate", "-1", "learning_rate must be positive"),
              ("learning-rate", "", "enter a value"),
              ("batch-size", "0", "batch_size and grad_accum must be at least 1"),
              ("epochs", "-1", "epochs must be positive"),
              ("max-length", "1", "max_length must be at least 8, got 1")]


def _load_tickets(page) -> None:
    """Type the shipped tickets' project path into the dashboard's source box, press Enter, wait for the splits."""
    page.fill(".wb-source input", "datasets/it_support/tickets.jsonl")
    page.press(".wb-source input", "Enter")
    page.wait_for_function("() => document.querySelector('.wb-dashboard-status').innerText.includes('held out')",
                           timeout=60_000)


def _field(page, name: str):
    return page.locator(f".wb-field-{name} input").first


def test_a_new_user_s_whole_path_in_the_dashboard(tmp_path):
    """Open the dashboard, load the tickets by their project path, pick a model, get every bad value refused, train
    a few steps, stop (evaluating), see the run with its metrics in the Runs tab, compare it with its base on the
    held-out test split and side by side; screenshots of each tab at 1280x800 (docs/screenshots)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_base

    base = tiny_base(tmp_path / "models" / "tiny-llama")
    runs = tmp_path / "runs"
    # The shipped dashboard notebook as it is, but for where runs go (kept out of the project's runs/).
    notebook = parameterized_copy("dashboard.ipynb", ROOT / "notebooks" / "zz_browser_dashboard.ipynb",
                                  {"source": "", "runs_root": str(runs)})
    shots = ARTIFACTS / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with voila_page(notebook, ".wb-dashboard", width=1280, height=800) as page:
            _load_tickets(page)
            status = page.locator(".wb-dashboard-status").inner_text()
            assert "335 rows" in status and "34 rows are held out" in status
            # The Tokens tab reads the tokenizer of the model the Train tab starts with (SmolLM2 here: converted
            # from its GGUF once per machine, which can take a minute the first time).
            page.wait_for_selector(".wb-dataset-panel", timeout=180_000)
            page.screenshot(path=str(shots / "1-dataset.png"))
            _tab(page, "Distributions")  # interactive charts, drawn in the page
            page.wait_for_selector(".wb-distribution .bqplot svg", timeout=60_000)
            assert "lengths in characters" in page.locator(".wb-dataset-panel").inner_text()
            page.screenshot(path=str(shots / "1-dataset-distributions.png"))
            _tab(page, "Tokens")
            page.wait_for_selector(".wb-token-table", timeout=120_000)
            page.screenshot(path=str(shots / "2-tokens.png"))
            # Controls name themselves and say their state to assistive technology (the page's template)
            page.wait_for_selector(".widget-toggle-button[aria-pressed='true']", timeout=10_000)
            assert page.locator(".widget-toggle-buttons[role=group][aria-label]").count() >= 1

            _tab(page, "Train")
            # The notebook's default base (minilm, an encoder) cannot write answers: another is picked, and saying
            # so; the user's own choice of an encoder is refused with what to pick.
            assert "cannot train this data" in page.locator(".wb-model-check").inner_text()
            page.fill(".wb-model input", "minilm")
            page.wait_for_function("() => document.querySelector('.wb-model-check').innerText.includes("
                                   "'cannot write text')", timeout=20_000)
            page.wait_for_function("() => document.querySelector('button.wb-start').disabled", timeout=10_000)
            page.fill(".wb-model input", str(base))
            page.wait_for_function("() => document.querySelector('.wb-model-check').innerText.includes("
                                   "'trains causal-lm')", timeout=20_000)
            page.wait_for_function("() => !document.querySelector('button.wb-start').disabled", timeout=20_000)

            for name, text, message in BAD_INPUTS:
                good = _field(page, name).input_value()
                _field(page, name).fill(text)
                error = page.locator(f".wb-field-{name}").locator("xpath=..").locator(".wb-field-error")
                error.filter(has_text=message).wait_for(timeout=20_000)
                page.wait_for_function("() => document.querySelector('button.wb-start').disabled", timeout=10_000)
                assert _field(page, name).input_value() == text  # never changed behind the user's back
                _field(page, name).fill(good)
                page.wait_for_function("() => !document.querySelector('button.wb-start').disabled", timeout=20_000)
            assert _field(page, "learning-rate").get_attribute("aria-label") == "learning rate"
            assert page.locator(".wb-method [role=radiogroup] input[type=radio]:checked").count() == 1
            _field(page, "learning-rate").fill("3e-3")  # scientific notation, kept as typed
            _field(page, "max-steps").fill("400")
            _field(page, "batch-size").fill("4")
            page.get_by_text("Advanced settings").first.click()
            _field(page, "logging-steps").fill("1")
            page.screenshot(path=str(shots / "3-train-advanced.png"))
            page.get_by_text("Advanced settings").first.click()  # closed again
            page.locator(".wb-evaluate-on-stop input").check()
            page.get_by_text("The same run from the command line").first.click()
            page.wait_for_function("() => document.querySelector('.wb-spec-yaml textarea').value.includes("
                                   "'logging_steps: 1')", timeout=20_000)
            spec = page.locator(".wb-spec-yaml textarea").input_value()
            assert "learning_rate: 0.003" in spec and "max_steps: 400" in spec and str(base) in spec
            assert "workbench run experiments/" in page.locator(".wb-spec-command").inner_text()
            page.get_by_text("The same run from the command line").first.click()

            page.click("button.wb-start")
            page.wait_for_function(
                "() => document.querySelector('.wb-train-progress').innerText.includes('loss')", timeout=120_000)
            page.wait_for_selector(".wb-curves .bqplot svg .curve path.line", timeout=60_000)
            assert "Training" in page.locator(".wb-train-status").inner_text()
            page.locator(".wb-train-status").scroll_into_view_if_needed()
            page.mouse.wheel(0, 250)
            page.screenshot(path=str(shots / "3-train.png"))
            page.click("button.wb-stop")
            page.wait_for_function(  # acknowledged at once
                "() => document.querySelector('.wb-train-status').innerText.includes('Stopping')", timeout=5_000)
            page.wait_for_function(
                "() => document.querySelector('.wb-train-status').innerText.includes('stopped')", timeout=180_000)
            status = page.locator(".wb-train-status").inner_text()
            step = int(re.search(r"at step (\d+)/400", status).group(1))
            assert 0 < step < 400 and "eval_loss" in status and "evaluated when stopped" in status

            _tab(page, "Runs")  # the finished run is there without a Refresh, with its metrics
            page.wait_for_function(
                "() => document.querySelector('.wb-runs-table').innerText.includes('stopped')", timeout=30_000)
            table = page.locator(".wb-runs-table").inner_text()
            assert "eval_loss" in table and "train_loss" in table and f"{step}/400" in table
            page.locator(".wb-runs-select select").first.select_option(index=0)
            page.wait_for_selector(".wb-runs-curves .bqplot svg .curve path.line", timeout=30_000)
            page.screenshot(path=str(shots / "5-runs.png"))
            page.click("button.wb-runs-compare")

            page.wait_for_selector(".wb-compare-panel", timeout=120_000)  # the Compare tab, its models loaded
            ticked = page.locator(".wb-compare-pick input[type=checkbox]:checked").count()
            assert ticked == 2, "the run's model and the base it was trained from"
            _tab(page, "Metrics")
            page.click("button.wb-score")
            page.wait_for_function(
                "() => document.querySelector('.wb-metrics').innerText.includes('rouge')", timeout=300_000)
            assert "Scores the 34 rows" in page.locator(".wb-compare-panel").first.inner_text()
            page.screenshot(path=str(shots / "4-compare-metrics.png"))
            _tab(page, "Side by side")
            page.fill(".wb-prompt textarea", "My laptop will not connect to the office wifi")
            page.click("button.wb-generate")
            page.wait_for_function("() => document.querySelectorAll('.wb-output').length === 2", timeout=120_000)
            outputs = [page.locator(".wb-output").nth(i).inner_text() for i in range(2)]
            assert outputs[0].startswith("base: tiny-llama") and outputs[1].startswith("dashboard/")
            page.screenshot(path=str(shots / "4-compare.png"))
            assert_clean(page, str(ARTIFACTS / "dashboard-whole-path.png"), full_page=True)
    finally:
        notebook.unlink(missing_ok=True)


def _workers() -> list:
    """The training processes of a launch running on this machine (the dashboard kernel's grandchildren)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "workbench.worker" in " ".join(p.info["cmdline"] or []) and "torch.distributed.run" not in " ".join(
                    p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_a_two_process_run_from_the_dashboard_shows_one_progress_bar_and_stop_ends_both(tmp_path):
    """Issue #17: processes 2 in the Train tab trains on two processes (gloo on this CPU machine) that the kernel
    watches: one progress bar and one loss curve, and Stop ends both processes."""
    import json
    import sys
    import time

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_base

    base = tiny_base(tmp_path / "models" / "tiny-llama")
    runs = tmp_path / "runs"
    notebook = parameterized_copy("dashboard.ipynb", ROOT / "notebooks" / "zz_browser_launch.ipynb",
                                  {"source": "", "runs_root": str(runs)})
    try:
        with voila_page(notebook, ".wb-dashboard", width=1280, height=800) as page:
            _load_tickets(page)
            _tab(page, "Train")
            page.fill(".wb-model input", str(base))
            page.wait_for_function("() => document.querySelector('.wb-model-check').innerText.includes("
                                   "'trains causal-lm')", timeout=60_000)
            _field(page, "max-steps").fill("400")
            _field(page, "batch-size").fill("4")
            _field(page, "learning-rate").fill("3e-3")
            _field(page, "processes").fill("3")  # a batch of 4 does not divide among 3: refused before Start
            page.wait_for_function("() => document.querySelector('.wb-launch-check').innerText.includes("
                                   "'does not divide among 3 processes')", timeout=20_000)
            page.wait_for_function("() => document.querySelector('button.wb-start').disabled", timeout=10_000)
            _field(page, "processes").fill("2")
            page.get_by_text("Advanced settings").first.click()
            _field(page, "logging-steps").fill("1")
            page.get_by_text("Advanced settings").first.click()
            page.wait_for_function("() => !document.querySelector('button.wb-start').disabled", timeout=20_000)
            page.click("button.wb-start")
            page.wait_for_function(
                "() => document.querySelector('.wb-train-progress').innerText.includes('loss')", timeout=180_000)
            page.wait_for_selector(".wb-curves .bqplot svg .curve path.line", timeout=60_000)
            # One progress bar (the evaluation one stays hidden) fed by the main process alone.
            bars = page.locator(".wb-train-panel .widget-hprogress")
            visible = [i for i in range(bars.count()) if bars.nth(i).is_visible()]
            assert bars.count() == 2 and len(visible) == 1  # the steps bar; the evaluation one hidden
            assert page.locator(".wb-train-progress").count() == 1
            ranks = sorted(int(p.environ().get("RANK", "-1")) for p in _workers())
            assert ranks == [0, 1], f"the training processes running: ranks {ranks}"
            first = re.search(r"step (\d+)/400", page.locator(".wb-train-progress").inner_text())
            assert first and int(first.group(1)) >= 1
            page.click("button.wb-stop")
            page.wait_for_function(
                "() => document.querySelector('.wb-train-status').innerText.includes('Stopping')", timeout=5_000)
            page.wait_for_function(
                "() => document.querySelector('.wb-train-status').innerText.includes('stopped at step')", timeout=120_000)
            status = page.locator(".wb-train-status").inner_text()
            found = re.search(r"at step (\d+)/400", status)
            assert found and 0 < int(found.group(1)) < 400, status
            step = int(found.group(1))
            deadline = time.monotonic() + 10
            while _workers() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _workers(), "a training process outlived Stop"
            metrics = [json.loads(p.read_text()) for p in runs.rglob("metrics.json")]
            assert [m["world_size"] for m in metrics] == [2] and metrics[0]["global_step"] == step
            assert_clean(page, str(ARTIFACTS / "dashboard-two-processes.png"), full_page=True)
    finally:
        notebook.unlink(missing_ok=True)


def test_dashboard_chat_in_voila_two_models_answer_side_by_side_and_stop(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_base
    from transformers import GenerationConfig

    paths = {name: tiny_base(tmp_path / name, seed=seed) for seed, name in ((0, "alpha"), (1, "beta"))}
    for path in paths.values():  # neither model ends an answer by itself: only max new tokens or Stop end one
        gen = GenerationConfig.from_pretrained(path)
        gen.suppress_tokens = [gen.eos_token_id]
        gen.save_pretrained(path)
    notebook = parameterized_copy("dashboard.ipynb", ROOT / "notebooks" / "zz_browser_dashboard_chat.ipynb", {
        "source": "../datasets/it_support/tickets.jsonl", "tokenizers": "kb-bpe", "name_or_path": str(paths["alpha"]),
        "method": "full", "runs_root": str(tmp_path / "runs"),
        "compare_models": f"alpha={paths['alpha']}, beta={paths['beta']}"})
    shots = ARTIFACTS / "dashboard"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with voila_page(notebook, ".wb-dashboard") as page:
            page.wait_for_function(
                "() => document.querySelector('.wb-dashboard-status').innerText.includes('335 rows')", timeout=60_000)
            _tab(page, "Compare")
            _tab(page, "Chat")
            # Sampling (random weights with tied embeddings greedily write newlines only), 8 new tokens.
            page.locator(".wb-chat-decoding button", has_text="sampling").click()
            page.fill(".wb-chat-max-new-tokens input", "8")
            page.press(".wb-chat-max-new-tokens input", "Enter")
            page.fill(".wb-chat-input input", "My VPN keeps dropping every few minutes")
            page.click("button.wb-send")
            page.wait_for_function(
                "() => document.querySelectorAll('.wb-chat-answer[data-state=\"done\"]').length === 2", timeout=120_000)
            answers = page.locator(".wb-chat-answer")
            alpha, beta = answers.nth(0).inner_text(), answers.nth(1).inner_text()
            assert alpha.startswith("alpha") and beta.startswith("beta")
            for text in (alpha, beta):  # the answer itself, then its settings
                body = text.split("\n", 1)[1]
                assert "8 tokens in" in body and "sampling, temperature 0.7, top-p 0.9, at most 8 new tokens" in body
                assert body.split("8 tokens in")[0].strip()                       # visible text was written
            assert "You: My VPN keeps dropping every few minutes" in page.locator(".wb-chat-user").first.inner_text()
            page.screenshot(path=str(shots / "5-chat.png"), full_page=True)

            # A long answer, stopped while it streams: alpha ends early, beta never starts.
            page.fill(".wb-chat-max-new-tokens input", "3000")
            page.press(".wb-chat-max-new-tokens input", "Enter")
            page.fill(".wb-chat-input input", "Tell me everything about the VPN")
            page.click("button.wb-send")
            page.wait_for_function(
                "() => { const a = document.querySelector('.wb-chat-answer[data-state=\"answering\"]');"
                " return a !== null && /[1-9][0-9]* tokens so far/.test(a.innerText); }", timeout=120_000)
            page.screenshot(path=str(shots / "6-chat-streaming.png"), full_page=True)
            page.click("button.wb-chat-stop")
            page.wait_for_function(
                "() => document.querySelector('.wb-chat-status').innerText.includes('Stopped')", timeout=60_000)
            turn = page.locator(".wb-chat-turn").nth(1)
            stopped = [turn.locator(".wb-chat-answer").nth(i).inner_text() for i in range(2)]
            n = int(re.search(r"stopped after (\d+) tokens", stopped[0]).group(1))
            assert stopped[0].startswith("alpha") and 0 < n < 3000
            assert stopped[1].startswith("beta") and "stopped after 0 tokens" in stopped[1]
            # The answer's "stopped" line is drawn before Send comes back (Stop is disabled first): wait for it.
            page.wait_for_selector("button.wb-send:not([disabled])", timeout=15_000)
            assert page.locator("button.wb-chat-stop").is_disabled()
            assert_clean(page, str(shots / "7-chat-stopped.png"), full_page=True)
    finally:
        notebook.unlink(missing_ok=True)


def test_a_kernel_left_by_a_tab_that_died_is_culled(tmp_path):
    """``make dashboard`` culls kernels whose page went away without closing them (a crashed tab): here with
    seconds instead of its ten minutes."""
    import time

    import psutil

    def kernels() -> int:
        alive = 0
        for p in psutil.Process().children(recursive=True):
            try:
                alive += p.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(p.cmdline())
            except psutil.Error:  # ended (or a zombie) while we looked: not running
                pass
        return alive

    args = ["voila", str(ROOT / "notebooks" / "01_explore_dataset.ipynb"), "--no-browser", "--Voila.ip=127.0.0.1",
            "--template=workbench", "--MappingKernelManager.cull_idle_timeout=4",
            "--MappingKernelManager.cull_interval=2"]
    with serve(args, "voila-cull.log", env={"JUPYTER_PATH": str(ROOT / "share" / "jupyter")}) as url, \
            browser_page() as page:
        page.goto(url, timeout=120_000)
        page.wait_for_selector(".wb-dataset-panel", timeout=120_000)
        assert kernels() >= 1  # the page's (and the readiness probe's: Voila renders, so starts one, per request)
        page.close(run_before_unload=False)  # gone without saying so: Voila's own shutdown on unload never runs
        deadline = time.time() + 60
        while kernels() and time.time() < deadline:
            time.sleep(1)
        assert kernels() == 0, "the dead tab's kernel is still running"


def test_jupyterlab_runs_the_explorer_notebook(tmp_path):
    with jupyterlab() as url, browser_page() as page:
        page.goto(url + "lab/tree/notebooks/01_explore_dataset.ipynb", timeout=120_000)
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        try:
            for _ in range(60):  # a fresh server may ask first (kernel choice, news): accept, then wait for idle
                if page.locator(".jp-Dialog").count():
                    page.locator(".jp-Dialog .jp-mod-accept").first.click()
                status = page.locator(".jp-Notebook-ExecutionIndicator").first
                if status.count() and status.get_attribute("data-status") == "idle":
                    break
                page.wait_for_timeout(1000)
            for attempt in range(3):  # a fresh server can drop the first request: restart the kernel and run all
                page.locator('[data-command="notebook:restart-run-all"]').first.click()
                page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=30_000)
                page.locator(".jp-Dialog .jp-mod-accept").first.click()
                try:
                    page.wait_for_selector(".jp-OutputArea .wb-dataset-panel", timeout=150_000)
                    break
                except Exception:
                    if attempt == 2:
                        raise
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-failure.png"), full_page=False)
            raise
        panel = page.locator(".jp-OutputArea .wb-dataset-panel").first
        assert "10,003 rows" in panel.inner_text()
        # The test restarts the kernel, which cancels whatever requests are still pending (the startup
        # kernel_info_request, or execute_request on a retry): JupyterLab's own message, not ours.
        page.errors[:] = [e for e in page.errors
                          if not re.fullmatch(r"Canceled future for \w+ message before replies were done", e)]
        assert_clean(page, str(ARTIFACTS / "jupyterlab-explorer.png"), full_page=False)
