"""The runs table: every run folder under a runs root, two runs compared, their training logs and reports.

``workbench runs`` and ``workbench.panels.RunsPanel`` both read runs through these functions. A
run is listed as its ``status.json`` says, except that a run saying ``running`` whose process
is gone (or whose heartbeat stopped) is listed as ``died``, with the last step it reached and
the last line it logged (``workbench.run_status``). Training folders of ``workbench train``
(``runs/train/<name>``) are listed too, as experiment ``train``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, ExperimentConfig, load_yaml, to_dict
from .methods import get_method
from .run_folders import PATH_FIELDS, collect_metrics
from .run_status import DIED, read_status
from .train import load_log


def _last_line(path: Path, limit: int = 200) -> str:
    """The last non-empty line of a text file (its end only is read)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 8192))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _entry_text(entry: dict) -> str:
    """A training-log entry in one line: step, loss, evaluation figures."""
    shown = [f"step {entry.get('step')}/{entry.get('max_steps')}"]
    shown += [f"{k} {v:.4g}" for k, v in entry.items()
              if (k in ("loss", "learning_rate") or k.startswith("eval_")) and isinstance(v, (int, float))]
    return ", ".join(shown)


def last_activity(run_dir: str | Path) -> tuple[str, str]:
    """(last step, last log line) of a run or training folder: where it was when it last wrote.

    The step is the runner's step (``2/3 finetune-lora``) and the training step its newest
    training log reached; the log line is the newest line of the training logs and notebook
    kernel logs, whichever was written last.
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    logs = [p for p in [run_dir / "train_log.jsonl", *sorted(run_dir.glob("train-*/train_log.jsonl")),
                        run_dir / "pretrain" / "train_log.jsonl"] if p.exists()]
    kernel_logs = [p for p in sorted((run_dir / "notebooks").glob("*.kernel.log")) if p.stat().st_size]
    steps = [str(status["step"])] if status.get("step") else []
    newest_train = max(logs, key=lambda p: p.stat().st_mtime, default=None)
    entries = load_log(newest_train.parent) if newest_train else []
    if entries:
        steps.append(f"training step {entries[-1]['step']}/{entries[-1].get('max_steps', '?')}")
    newest = max(logs + kernel_logs, key=lambda p: p.stat().st_mtime, default=None)
    if newest is None:
        line = ""
    elif newest.suffix == ".jsonl":
        line = _entry_text(entries[-1]) if entries else ""
    else:
        line = f"{newest.name}: {_last_line(newest)}"
    return ", ".join(steps), line


def list_runs(runs_root: str | Path = "runs"):
    """A table of runs: experiment, run id, status, key parameters and headline metrics."""
    import pandas as pd

    rows = []
    for status_file in sorted(Path(runs_root).glob("*/*/status.json")):
        run_dir = status_file.parent
        status = read_status(run_dir)
        row = {"experiment": run_dir.parent.name, "run": run_dir.name, "status": status.get("status"),
               "reason": status.get("reason", ""), "path": str(run_dir)}
        if status["status"] == DIED:
            step, line = last_activity(run_dir)
            row["reason"] = status["died_because"] + (f"; last step {step}" if step else "") + (
                f"; last log: {line}" if line else "")
        cfg_file = run_dir / "config.yaml"
        if cfg_file.exists():
            try:
                c = load_yaml(ExperimentConfig, cfg_file)
                row.update({"model": c.model.name_or_path, "methods": ",".join(c.method_list()),
                            "lr": c.train.learning_rate, "epochs": c.train.epochs})
                if any(get_method(m).adapter for m in c.method_list()):  # adapter settings mean nothing otherwise
                    row["r"] = c.lora.r
            except ConfigError:
                pass
        row.update(headline_columns(run_dir))
        rows.append(row)
    return pd.DataFrame(rows)


#: The metrics the runs table shows as columns, when a run has them.
HEADLINE = ("train_loss", "eval_loss", "eval_accuracy", "eval_macro_f1", "eval_perplexity")


def headline_columns(run_dir: Path) -> dict:
    """A run's headline metrics as table columns: a training folder's own (``eval_accuracy``...), an experiment
    run's per training step (``train-lora:eval_loss``) and its comparison's first metric per model
    (``compare:lora:rouge_l``). A run still going (or stopped before its metrics) shows its last logged loss
    and the step it reached."""
    m_file = run_dir / "metrics.json"
    m = _read_json(m_file) if m_file.exists() else {}
    out = {}
    for step, values in m.items():
        if step.startswith("train-") and isinstance(values, dict):
            out.update({f"{step}:{k}": values[k] for k in HEADLINE if isinstance(values.get(k), (int, float))})
    if isinstance(m.get("compare"), dict):
        for model, values in m["compare"].items():
            first = next(((k, v) for k, v in (values or {}).items() if isinstance(v, (int, float))), None)
            if first:
                out[f"compare:{model}:{first[0]}"] = first[1]
    out.update({k: m[k] for k in HEADLINE if isinstance(m.get(k), (int, float))})
    if "global_step" in m:
        out["steps"] = f"{m['global_step']}/{m.get('max_steps', '?')}"
    elif (log := load_log(run_dir)):
        out["steps"] = f"{log[-1]['step']}/{log[-1].get('max_steps', '?')}"
        losses = [e["loss"] for e in log if "loss" in e]
        if losses:
            out["train_loss"] = losses[-1]
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class RunComparison:
    """What differs between two runs A and B: how each ended, their configs, their metrics.

    Unpacks as ``config, metrics``.
    """

    runs: tuple[str, str]
    status: tuple[str, str]
    """Each run's status (``succeeded``, ``failed``, ``stopped``, ``running``, ``died``; ``unknown`` without
    status.json)."""
    reasons: tuple[str, str]
    """Each run's one-line failure reason (empty when it has none)."""
    config: list[tuple[str, object, object]]
    """(key, A, B) for every config value that differs; local paths compared as the runs resolved them."""
    metrics: list[tuple[str, float, float, float]]
    """(key, A, B, B - A) for every numeric metric both runs have and that differs."""
    only_a: list[str]
    """Metrics A has and B lacks."""
    only_b: list[str]
    """Metrics B has and A lacks."""
    shared: int
    """How many metrics both runs have, equal or not."""

    def __iter__(self):
        return iter((self.config, self.metrics))

    def lines(self) -> list[str]:
        """The comparison as text (``workbench runs compare``): how each run ended, then config, then metrics."""
        out = [f"status: {self.status[0]} -> {self.status[1]}" if self.status[0] != self.status[1]
               else f"status: both {self.status[0]}"]
        out += [f"  {side} {status}: {reason}" for side, status, reason in zip("AB", self.status, self.reasons)
                if reason]
        out.append("config differences:" if self.config else "config: identical")
        out += [f"  {k}: {x} -> {y}" for k, x, y in self.config]
        for side, keys, other, status in (("A", self.only_a, "B", self.status[1]),
                                          ("B", self.only_b, "A", self.status[0])):
            if keys:
                shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
                out.append(f"metrics only in {side} ({len(keys)}; {other} {status}): {shown}")
        if self.metrics:
            out.append("metric differences:")
            out += [f"  {k}: {x:.4g} -> {y:.4g} ({d:+.4g})" for k, x, y, d in self.metrics]
        elif self.shared and not (self.only_a or self.only_b):
            out.append("metrics: identical")
        elif self.shared:
            out.append(f"the {self.shared} metrics both have are identical")
        elif not (self.only_a or self.only_b):
            out.append("metrics: neither run has any")
        return out


def _resolved_config(run: Path) -> dict:
    """A run's config, flattened, with its local paths as the run resolved them (its manifest's record)."""
    cfg = _flat(to_dict(load_yaml(ExperimentConfig, run / "config.yaml")))
    for key, rec in (_read_json(run / "manifest.json").get("paths") or {}).items():
        if key in PATH_FIELDS and rec.get("absolute"):
            cfg[key] = rec["absolute"]
    return cfg


def compare_runs(a: str | Path, b: str | Path) -> RunComparison:
    """How two runs differ: status and failure reason, config values, metrics (those one side lacks included).

    Raises:
        ConfigError: a folder that is not a run folder.
    """
    a, b = Path(a), Path(b)
    for run in (a, b):
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"{run}: not a run folder (no config.yaml); `workbench runs` lists them.")
    ca, cb = _resolved_config(a), _resolved_config(b)
    config = [(k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]

    def numbers(run: Path) -> dict:  # a run that stopped early has no metrics.json: what its finished steps wrote
        m = _read_json(run / "metrics.json") if (run / "metrics.json").exists() else collect_metrics(run)
        m = _flat({k: v for k, v in m.items() if k != "differences"})
        return {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    ma, mb = numbers(a), numbers(b)
    metrics = [(k, ma[k], mb[k], mb[k] - ma[k]) for k in sorted(set(ma) & set(mb)) if ma[k] != mb[k]]
    sa, sb = read_status(a), read_status(b)
    ra, rb = (s["died_because"] if s["status"] == DIED else s.get("reason", "") for s in (sa, sb))
    return RunComparison((str(a), str(b)), (sa["status"], sb["status"]), (ra, rb), config, metrics,
                         sorted(set(ma) - set(mb)), sorted(set(mb) - set(ma)), len(set(ma) & set(mb)))


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
