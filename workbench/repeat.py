"""Running an experiment again: a rerun of a finished run, and a sweep over a grid of values."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from .config import ConfigError, ExperimentConfig, load_yaml
from .data import DatasetError, Problem
from .notebook_runner import run_experiment
from .pipeline import experiment_splits, input_fingerprints
from .run_folders import RunRecord, locate_paths, redacted_fields


def rerun(run_dir: str | Path, runs_root: str | Path | None = None, echo=None,
          progress: bool = False) -> RunRecord:
    """Repeat a run from its resolved config, from any working directory; refuse when its data changed since.

    The run's local paths (data, pretraining corpus, model folder) are found again from the
    manifest's record (``run_folders.locate_paths``), so the repeat reads the same files
    wherever it is started.

    Raises:
        ConfigError: ``run_dir`` is not a run folder.
        DatasetError: the data is not found (naming every place tried), or it changed since.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "manifest.json").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (it needs config.yaml and manifest.json); name a folder "
                          "runs/<experiment>/<run-id> that `workbench run` made (`workbench runs` lists them).")
    man = json.loads((run_dir / "manifest.json").read_text())
    cfg = locate_paths(load_yaml(ExperimentConfig, run_dir / "config.yaml"), man, run_dir)
    secret = redacted_fields(cfg)
    if secret:
        raise ConfigError(f"{run_dir}: {', '.join(secret)} held a secret, which the run folder does not keep, so "
                          "the run cannot be repeated from it. Run the experiment again with `workbench run`, "
                          "giving the secret with -p (it is redacted from the new run folder too).")
    recorded = man.get("data", {})
    if recorded.get("splits"):
        now = experiment_splits(cfg).fingerprints
        changed = {k: (v, now.get(k)) for k, v in recorded["splits"].items() if now.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {a} then, {b} now" for k, (a, b) in changed.items())
            raise DatasetError(Problem(
                kind="fingerprint_mismatch", file=cfg.data.source,
                message=f"the data changed since {run_dir.name} ran ({detail}), so the run cannot be repeated.",
                fix="Restore the data the run used, or start a new run with `workbench run`."))
    if recorded.get("inputs"):
        now = input_fingerprints(cfg)
        what = {"base_model": ("the base model", cfg.model.name_or_path),
                "pretraining_corpus": ("the pretraining corpus", cfg.pretrain.source)}
        for key, then in recorded["inputs"].items():
            if then is not None and now.get(key) != then:
                name, where = what.get(key, (key, ""))
                raise DatasetError(Problem(
                    kind="fingerprint_mismatch", file=str(where),
                    message=f"{name} changed since {run_dir.name} ran ({then} then, {now.get(key)} now), so the "
                            "run cannot be repeated.",
                    fix=f"Restore {name} the run used, or start a new run with `workbench run`."))
    root = Path(runs_root) if runs_root else run_dir.parent.parent
    return run_experiment(cfg, root, echo=echo, progress=progress)


def grid(options: list[str]) -> list[dict]:
    """``["lr=1e-4,3e-4", "lora.r=8,16"]`` to the list of all combinations."""
    axes = []
    for opt in options:
        key, sep, values = opt.partition("=")
        if not sep or not values:
            raise ConfigError(f"--grid takes KEY=V1,V2,..., not {opt!r}")
        axes.append([(key.strip(), v.strip()) for v in values.split(",") if v.strip()])
    return [dict(combo) for combo in itertools.product(*axes)]


def sweep(cfg_path: str | Path, options: list[str], parallel: int = 1, runs_root: str | Path = "runs",
          echo=print) -> list[dict]:
    """Run the experiment once per grid point (each a ``workbench run`` process, at most ``parallel`` at once)."""
    points = grid(options)
    procs: list[tuple[dict, subprocess.Popen]] = []
    results = []
    pending = list(points)
    while pending or procs:
        while pending and len(procs) < max(1, parallel):
            point = pending.pop(0)
            cmd = [sys.executable, "-m", "workbench.cli", "run", str(cfg_path), "--runs", str(runs_root), "--quiet"]
            for k, v in point.items():
                cmd += ["-p", f"{k}={v}"]
            procs.append((point, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        still = []
        for point, proc in procs:
            if proc.poll() is None:
                still.append((point, proc))
                continue
            output = proc.stdout.read() if proc.stdout else ""
            m = re.search(r"run folder (\S+)", output)
            results.append({"params": point, "returncode": proc.returncode, "run_dir": m.group(1) if m else None,
                            "output": output.strip().splitlines()[-1] if output.strip() else ""})
            if echo:
                echo(f"{'ok  ' if proc.returncode == 0 else 'FAIL'} {point} -> {results[-1]['run_dir']}")
        procs = still
        time.sleep(0.2)
    return results
