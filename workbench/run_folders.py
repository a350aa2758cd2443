"""Run folders: claiming one, its manifest, and the files that say what a run was and how it ended.

A run of an experiment lives in ``runs/<name>/<run-id>/``::

    config.yaml        the resolved experiment (what ``workbench.repeat.rerun`` repeats)
    manifest.json      package versions, git commit and dirty flag, data fingerprints, hardware,
                       seeds, command line (values of secret-looking keys are redacted), and for a
                       GGUF base its file, sha256 and de-quantization (workbench.model_sources)
    status.json        running / succeeded / failed, with a one-line reason; written atomically
    notebooks/         the executed notebooks, errors shown in them; each step's config (.yaml)
                       and its kernel's stderr (.kernel.log)
    data/              the splits and their fingerprints (made by the runner, as training makes them)
    train-<method>/    each fine-tuning run folder (see workbench.train)
    compare/           the comparison report (HTML, Markdown, CSV)
    metrics.json       headline figures of every step

``workbench.notebook_runner`` fills it; ``workbench.runs_table`` reads it back.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .config import ExperimentConfig, dump_yaml
from .files import atomic_write_json, atomic_write_text
from .model_sources import manifest_entry

ROOT = Path(__file__).resolve().parent.parent
SECRET = re.compile(r"(token|secret|password|passwd|api[_-]?key|auth|credential)", re.I)
PACKAGES = ("workbench", "torch", "transformers", "tokenizers", "datasets", "peft", "bitsandbytes", "accelerate",
            "pandas", "numpy", "scikit-learn", "sacrebleu", "papermill", "ipywidgets", "gguf")


class RunFailed(RuntimeError):
    """An experiment run failed; ``run_dir`` keeps everything it did."""

    def __init__(self, run_dir: Path, reason: str):
        self.run_dir, self.reason = run_dir, reason
        super().__init__(f"{run_dir}: {reason}")


@dataclass(frozen=True)
class RunRecord:
    """A finished run."""

    run_dir: Path
    status: str
    metrics: dict
    seconds: float


def new_run_dir(cfg: ExperimentConfig, runs_root: Path) -> Path:
    """Claim a fresh ``runs_root/<name>/<time>[-n]`` folder; mkdir is atomic, so parallel runs never share one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (runs_root / cfg.name).mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        run_dir = runs_root / cfg.name / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1


# --------------------------------------------------------------------------- secrets and the manifest


def redact(value, key: str = ""):
    """Replace values under secret-looking keys (token, password, api_key...) with ``***``."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and SECRET.search(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return re.sub(r"((?:token|secret|password|api[_-]?key)=)[^\s,]+", r"\1***", value, flags=re.I)
    return value


def _git() -> dict:
    def run(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)

    try:
        commit = run("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty)}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def _hardware() -> dict:
    import torch

    hw = {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
          "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name()
    return hw


def manifest(cfg: ExperimentConfig, run_dir: Path, argv: list[str] | None = None) -> dict:
    """What a run was made of: command (redacted), git state, package versions, hardware, seeds.

    ``data`` starts empty; the runner fills it with the fingerprints of the splits it makes.
    """
    return {
        "experiment": cfg.name,
        "run_id": run_dir.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": redact(" ".join(argv if argv is not None else sys.argv)),
        "git": _git(),
        "packages": _versions(),
        "hardware": _hardware(),
        "seeds": {"data": cfg.data.seed, "train": cfg.train.seed, "compare": cfg.compare.seed},
        # A GGUF base: its file, sha256 and de-quantization (None for a folder or hub id).
        "model_source": manifest_entry(cfg.model.name_or_path),
        "data": {},
    }


# --------------------------------------------------------------------------- the run's files


def write_config(run_dir: Path, cfg: ExperimentConfig) -> None:
    """``config.yaml``: the resolved experiment."""
    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))


def write_manifest(run_dir: Path, man: dict) -> None:
    """``manifest.json`` (see ``manifest``)."""
    atomic_write_json(run_dir / "manifest.json", man)


def write_status(run_dir: Path, status: str, started: float, reason: str = "", **extra) -> None:
    """``status.json``: ``{"status", "reason", "started", **extra}`` (``step``, ``finished``), written atomically."""
    atomic_write_json(run_dir / "status.json", {"status": status, "reason": reason, "started": started, **extra})


def collect_metrics(run_dir: Path) -> dict:
    """Headline figures of every step: each training folder's numeric metrics, the comparison table, its differences."""
    out: dict = {}
    for train in sorted(run_dir.glob("train-*")) + ([run_dir / "pretrain"] if (run_dir / "pretrain").exists() else []):
        f = train / "metrics.json"
        if f.exists():
            m = json.loads(f.read_text())
            out[train.name] = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    cmp_dir = run_dir / "compare"
    if (cmp_dir / "metrics.csv").exists():
        import pandas as pd

        table = pd.read_csv(cmp_dir / "metrics.csv", index_col=0)
        out["compare"] = {str(model): {k: (None if v != v else float(v)) for k, v in row.items()
                                       if isinstance(v, (int, float))} for model, row in table.iterrows()}
        diffs = pd.read_csv(cmp_dir / "differences.csv")
        out["differences"] = diffs.to_dict("records")
    return out


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """``metrics.json`` (see ``collect_metrics``)."""
    atomic_write_json(run_dir / "metrics.json", metrics)
