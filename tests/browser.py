"""Serving notebooks on 127.0.0.1 and driving Debian's chromium with playwright (for the browser tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def serve(args: list[str], log_name: str, ready_path: str = "", timeout: float = 60, cwd: Path = ROOT,
          env: dict | None = None, stop_wait: float = 10):
    """Run the server ``python -m <args> --port=N`` on 127.0.0.1 until it answers; yields its base URL.

    Its output goes to ``test-artifacts/<log_name>`` when that folder exists; it is stopped on exit.
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    log = open(ARTIFACTS / log_name, "w") if ARTIFACTS.exists() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", *args, f"--port={port}"], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url + ready_path, proc, timeout)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(stop_wait)
        except subprocess.TimeoutExpired:
            proc.kill()


def voila(notebook: str | Path, timeout: float = 60):
    """Serve ``notebook`` with Voila on 127.0.0.1 and the dashboard's template (as ``make dashboard``, without its
    token: a test server); yields the page's URL."""
    return serve(["voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1", "--show_tracebacks=True",
                  "--template=workbench"], f"voila-{Path(notebook).stem}.log", timeout=timeout,
                 env={"JUPYTER_PATH": str(ROOT / "share" / "jupyter")})


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A chromium page that records page errors in ``page.errors`` and every URL it requests in ``page.requests``."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors, page.requests = [], []
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            page.on("request", lambda r: page.requests.append(r.url))
            yield page
        finally:
            browser.close()


def jupyterlab(root: Path = ROOT, timeout: float = 90):
    """JupyterLab on 127.0.0.1 without a token (a test server only); yields its base URL."""
    return serve(["jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
                  "--ServerApp.password=", "--allow-root", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
                  "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                 "jupyterlab.log", ready_path="api", timeout=timeout, cwd=root,
                 env={"JUPYTER_CONFIG_DIR": str(ARTIFACTS / "jupyter-config")}, stop_wait=15)


def assert_clean(page, screenshot: str, full_page: bool = True) -> None:
    """Save a screenshot of ``page``, then check it shows no widget error and raised no page error."""
    page.screenshot(path=screenshot, full_page=full_page)
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
    assert page.errors == [], f"page errors: {page.errors}"
    away = [u for u in page.requests if not u.startswith(("http://127.0.0.1", "data:", "blob:", "ws://127.0.0.1"))]
    assert away == [], f"requests that left 127.0.0.1: {away}"


@contextlib.contextmanager
def voila_page(notebook: str | Path, selector: str, timeout: float = 120, width: int = 1400, height: int = 1000):
    """A chromium page on ``notebook`` served by Voila, once ``selector`` has rendered; yields the page."""
    with voila(notebook, timeout=timeout) as url, browser_page(width, height) as page:
        page.goto(url, timeout=timeout * 1500)
        page.wait_for_selector(selector, timeout=timeout * 1500)
        yield page


def parameterized_copy(name: str, target: Path, parameters: dict) -> Path:
    """``notebooks/<name>`` with its parameters replaced, written to ``target`` (papermill, not executed)."""
    import papermill as pm

    nb = pm.parameterize.parameterize_notebook(pm.iorw.load_notebook_node(str(ROOT / "notebooks" / name)), parameters)
    pm.iorw.write_ipynb(nb, str(target))
    return target
