"""The runs table: every run folder under a runs root, two runs compared, their training logs and reports.

``workbench runs`` and ``workbench.panels.RunsPanel`` both read runs through these functions.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ConfigError, ExperimentConfig, load_yaml, to_dict
from .train import load_log


def list_runs(runs_root: str | Path = "runs"):
    """A table of runs: experiment, run id, status, key parameters and headline metrics."""
    import pandas as pd

    rows = []
    for status_file in sorted(Path(runs_root).glob("*/*/status.json")):
        run_dir = status_file.parent
        status = json.loads(status_file.read_text())
        row = {"experiment": run_dir.parent.name, "run": run_dir.name, "status": status.get("status"),
               "reason": status.get("reason", ""), "path": str(run_dir)}
        cfg_file = run_dir / "config.yaml"
        if cfg_file.exists():
            try:
                c = load_yaml(ExperimentConfig, cfg_file)
                row.update({"model": c.model.name_or_path, "methods": ",".join(c.method_list()),
                            "lr": c.train.learning_rate, "epochs": c.train.epochs, "r": c.lora.r})
            except ConfigError:
                pass
        m_file = run_dir / "metrics.json"
        if m_file.exists():
            m = json.loads(m_file.read_text())
            for step, values in m.items():
                if step.startswith("train-") and isinstance(values, dict):
                    for key in ("eval_accuracy", "eval_loss"):
                        if key in values:
                            row[f"{step}:{key}"] = values[key]
        rows.append(row)
    return pd.DataFrame(rows)


def compare_runs(a: str | Path, b: str | Path) -> tuple[list[tuple[str, object, object]], list[tuple[str, float, float, float]]]:
    """Config differences (key, a, b) and metric differences (key, a, b, b - a) between two runs."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    ca = flat(to_dict(load_yaml(ExperimentConfig, Path(a) / "config.yaml")))
    cb = flat(to_dict(load_yaml(ExperimentConfig, Path(b) / "config.yaml")))
    config = [(k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
    ma = flat({k: v for k, v in json.loads((Path(a) / "metrics.json").read_text()).items() if k != "differences"}) \
        if (Path(a) / "metrics.json").exists() else {}
    mb = flat({k: v for k, v in json.loads((Path(b) / "metrics.json").read_text()).items() if k != "differences"}) \
        if (Path(b) / "metrics.json").exists() else {}
    metrics = [(k, ma[k], mb[k], mb[k] - ma[k]) for k in sorted(set(ma) & set(mb))
               if isinstance(ma[k], (int, float)) and isinstance(mb[k], (int, float)) and ma[k] != mb[k]]
    return config, metrics


def train_logs(run: Path) -> dict[str, list[dict]]:
    """Training logs of a run: its own (a training run folder) or those of its train-* and pretrain steps.

    Keys are ``<run>`` or ``<run>/<step folder>``; values the entries of each ``train_log.jsonl``.
    """
    logs = {}
    if (run / "train_log.jsonl").exists():
        logs[run.name] = load_log(run)
    for sub in sorted(run.glob("train-*")) + sorted(run.glob("pretrain")):
        if (sub / "train_log.jsonl").exists():
            logs[f"{run.name}/{sub.name}"] = load_log(sub)
    return logs


def loss_curves(runs: list[Path]) -> list[tuple[str, list[tuple[int, float]]]]:
    """(name, (step, training loss) points) for every training log of ``runs`` that has a loss, in order.

    A list, not a dict: runs of two experiments may share a run id, and each keeps its curve.
    """
    curves = []
    for run in runs:
        for name, log in train_logs(run).items():
            points = [(e["step"], e["loss"]) for e in log if "loss" in e]
            if points:
                curves.append((name, points))
    return curves


def run_report(run_dir: str | Path) -> Path | None:
    """The comparison report (``compare/report.html``) of a run, or None when it has none."""
    report = Path(run_dir) / "compare" / "report.html"
    return report if report.exists() else None
