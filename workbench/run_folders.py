"""Run folders: claiming one, its manifest, and the files that say what a run was and how it ended.

A run of an experiment lives in ``runs/<name>/<run-id>/``::

    config.yaml        the resolved experiment (what ``workbench.repeat.rerun`` repeats)
    manifest.json      package versions, git commit and dirty flag, data fingerprints, hardware,
                       seeds, command line (values of secret-looking keys are redacted), the working
                       directory and each local path of the config as given, absolute and relative to
                       it (``paths``: what rerun finds the data by), and for a GGUF base its file,
                       sha256 and de-quantization (workbench.model_sources)
    status.json        running / succeeded / failed / stopped (Ctrl-C), with a one-line reason, the runner's pid,
                       host and heartbeat (workbench.run_status: a killed run reads as died); written atomically
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
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .config import ExperimentConfig, dump_yaml, to_dict
from .data import DatasetError, Problem
from .data.pii import REDACTED, kinds_for
from .data.pii import redact_secrets as redact
from .files import atomic_write_json, atomic_write_text
from . import run_status
from .model_sources import manifest_entry

ROOT = Path(__file__).resolve().parent.parent
#: Config fields that may name a local file or folder (otherwise a hub id or a preset).
PATH_FIELDS = ("data.source", "pretrain.source", "model.name_or_path", "launch.config_file")
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


def redacted_yaml(cfg: ExperimentConfig) -> str:
    """The resolved experiment as YAML, its secrets redacted (``redact``): what a run folder keeps."""
    return dump_yaml(redact(to_dict(cfg)))


def redacted_fields(cfg: ExperimentConfig) -> list[str]:
    """``section.field`` names of a config read back from a run folder that hold a redaction (``REDACTED``):
    their secrets were not kept, so a rerun cannot restore them."""
    return [f"{s}.{k}" for s, fields in to_dict(cfg).items() if isinstance(fields, dict)
            for k, v in fields.items() if any(mark in str(v) for mark in REDACTED)]


def _joined(text) -> str:
    return text if isinstance(text, str) else "".join(text)


def redact_step_files(*paths: Path) -> None:
    """Redact the secrets in files a notebook step was handed or wrote (its executed notebook, with the
    parameters papermill injected, and its step YAML) once the step is over, atomically."""
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".ipynb":
            try:
                nb = json.loads(text)
            except ValueError:  # a notebook cut short (full disk): redact it as text
                kept = redact(text)
            else:
                for cell in nb.get("cells", []):
                    if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                        cell["source"] = redact(_joined(cell["source"]))
                    for output in cell.get("outputs", []):  # text a cell printed or displayed
                        if "text" in output:
                            output["text"] = redact(_joined(output["text"]))
                        for mime, data in output.get("data", {}).items():
                            if mime.startswith("text/"):
                                output["data"][mime] = redact(_joined(data))
                kept = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        else:
            kept = redact(text)
        if kept != text:
            atomic_write_text(path, kept)


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
        # What was done with personal data before training (the pseudonym key itself is never recorded).
        "personal_data": {"redact": cfg.data.redact_pii, "action": cfg.data.pii_action if cfg.data.redact_pii else
                          "kept (reported only)", "kinds": list(kinds_for(ner=cfg.data.pii_ner)),
                          "region": cfg.data.pii_region, "min_confidence": cfg.data.pii_min_confidence,
                          "pseudonym_key": ("WORKBENCH_PII_SALT" if os.environ.get("WORKBENCH_PII_SALT") else
                                            "this machine's key file") if cfg.data.pii_action == "pseudonyms" else None},
        # How training ran: in the notebook's process, or launched on world_size processes (workbench.launch).
        "launch": {"world_size": cfg.launch.world_size, "processes": cfg.launch.processes,
                   "machines": cfg.launch.machines, "backend": cfg.launch.backend,
                   "launcher": "torch.distributed.run" if cfg.launch.world_size > 1 else "in-process",
                   "trackers": list(cfg.train.report_to)},
        # A GGUF base: its file, sha256 and de-quantization (None for a folder or hub id).
        "model_source": manifest_entry(cfg.model.name_or_path),
        "cwd": str(Path.cwd()),
        "paths": local_paths(cfg),
        "data": {},
    }


# --------------------------------------------------------------------------- local paths, found again


def _get(cfg: ExperimentConfig, key: str) -> str:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _set(cfg: ExperimentConfig, key: str, value: str) -> ExperimentConfig:
    section, name = key.split(".")
    return replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})


def local_paths(cfg: ExperimentConfig, cwd: str | Path | None = None) -> dict:
    """Each local path of ``cfg`` (``PATH_FIELDS``) as given, absolute, and relative to the working directory.

    A value that names nothing on disk there (a hub id, a preset) is left out.
    """
    cwd = Path(cwd or Path.cwd()).resolve()
    out = {}
    for key in PATH_FIELDS:
        given = _get(cfg, key)
        if not given:
            continue
        path = Path(given).expanduser()
        path = path if path.is_absolute() else cwd / path
        if path.exists():
            absolute = path.resolve()
            out[key] = {"given": given, "absolute": str(absolute), "relative": os.path.relpath(absolute, cwd)}
    return out


def locate_paths(cfg: ExperimentConfig, man: dict, run_dir: Path) -> ExperimentConfig:
    """``cfg`` with each local path its run recorded found again from here, made absolute.

    A recorded path is looked for at its absolute path, then relative to the run's working
    directory, then relative to the current one. A run recorded before paths were (no
    ``paths`` in its manifest) has its relative paths looked for from here, then from the
    folder holding its runs folder (``<project>/runs/<name>/<run-id>``); what is found nowhere
    is left as it is (it may be a hub id or a preset).

    Raises:
        DatasetError: a recorded path found nowhere; the message names every place tried.
    """
    recorded = man.get("paths")
    if recorded is None:
        recorded = {key: {"given": _get(cfg, key), "relative": _get(cfg, key), "optional": True}
                    for key in PATH_FIELDS if _get(cfg, key) and not Path(_get(cfg, key)).expanduser().is_absolute()}
        bases = [Path.cwd(), run_dir.resolve().parent.parent.parent]
    else:
        bases = [Path(man.get("cwd") or Path.cwd()), Path.cwd()]
    for key, rec in recorded.items():
        tried = ([Path(rec["absolute"])] if rec.get("absolute") else []) + [b / rec["relative"] for b in bases]
        tried = list(dict.fromkeys(p.resolve() for p in tried))
        found = next((p for p in tried if p.exists()), None)
        if found is not None:
            cfg = _set(cfg, key, str(found))
        elif not rec.get("optional"):
            raise DatasetError(Problem(
                kind="not_found", file=rec["given"], field=key,
                message=(f"{key} of run {run_dir.name} ({rec['given']!r}, a local path when it ran) is not there "
                         f"any more; tried {', '.join(map(str, tried))}."),
                fix=(f"Put it back at one of those paths, or start a new run with `workbench run` and "
                     f"-p {key}=<its new path>.")))
    return cfg


# --------------------------------------------------------------------------- the run's files


def write_config(run_dir: Path, cfg: ExperimentConfig) -> None:
    """``config.yaml``: the resolved experiment, its secrets redacted (``redact``)."""
    atomic_write_text(run_dir / "config.yaml", redacted_yaml(cfg))


def write_manifest(run_dir: Path, man: dict) -> None:
    """``manifest.json`` (see ``manifest``)."""
    atomic_write_json(run_dir / "manifest.json", redact(man))


def write_status(run_dir: Path, status: str, started: float, reason: str = "", **extra) -> None:
    """``status.json``: ``{"status", "reason", "started", **extra}`` (``step``, ``finished``), with this process's
    pid, host and heartbeat (``workbench.run_status.write_status``), written atomically."""
    run_status.write_status(run_dir, status, reason, started=started, **extra)


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
