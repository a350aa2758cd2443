"""Reproducible experiments: papermill runs notebooks into run folders; reruns, sweeps, the runs table.

``run_experiment`` executes the experiment's notebooks in order with papermill, each with
parameters taken from the experiment's config sections (a notebook's metadata says which
config dataclasses its parameters mirror), into ``runs/<name>/<run-id>/``::

    config.yaml        the resolved experiment (what ``rerun`` repeats)
    manifest.json      package versions, git commit and dirty flag, data fingerprints, hardware,
                       seeds, command line (values of secret-looking keys are redacted)
    status.json        running / succeeded / failed, with a one-line reason; written atomically
    notebooks/         the executed notebooks, errors shown in them; each step's config (.yaml)
                       and its kernel's stderr (.kernel.log)
    data/              the splits and their fingerprints (made by the runner, as training makes them)
    train-<method>/    each fine-tuning run folder (see workbench.train)
    compare/           the comparison report (HTML, Markdown, CSV)
    metrics.json       headline figures of every step

A failing cell or a dead kernel (killed, out of memory) marks the run failed, keeps the
executed notebook, and raises ``RunFailed`` with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .config import ConfigError, ExperimentConfig, dump_yaml, from_dict, load_yaml, to_dict
from .files import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SECRET = re.compile(r"(token|secret|password|passwd|api[_-]?key|auth|credential)", re.I)
PACKAGES = ("workbench", "torch", "transformers", "tokenizers", "datasets", "peft", "bitsandbytes", "accelerate",
            "pandas", "numpy", "scikit-learn", "sacrebleu", "papermill", "ipywidgets")
SECTION_OF = {"DataConfig": "data", "ModelConfig": "model", "LoraConfig": "lora", "QuantConfig": "quant",
              "TrainConfig": "train", "TokenConfig": "tokens", "CompareConfig": "compare",
              "DocumentConfig": "documents"}


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


# --------------------------------------------------------------------------- overrides and secrets


ALIASES = {"lr": "train.learning_rate", "epochs": "train.epochs", "batch_size": "train.batch_size",
           "max_steps": "train.max_steps", "method": "model.method", "r": "lora.r", "seed": "train.seed"}


def apply_overrides(cfg: ExperimentConfig, overrides: list[str] | dict) -> ExperimentConfig:
    """``["train.learning_rate=1e-4", "lora.r=16"]`` applied to ``cfg`` (values parsed as YAML)."""
    import yaml

    pairs = overrides.items() if isinstance(overrides, dict) else (o.split("=", 1) for o in overrides)
    data = to_dict(cfg)
    for key, value in pairs:
        key = ALIASES.get(key.strip(), key.strip())
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"-p {key}: '{part}' is not a section of the experiment")
            node = node[part]
        node[parts[-1]] = yaml.safe_load(value) if isinstance(value, str) else value
    return from_dict(ExperimentConfig, data)


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


# --------------------------------------------------------------------------- manifest


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
    from importlib.metadata import PackageNotFoundError, version

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
    return {
        "experiment": cfg.name,
        "run_id": run_dir.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": redact(" ".join(argv if argv is not None else sys.argv)),
        "git": _git(),
        "packages": _versions(),
        "hardware": _hardware(),
        "seeds": {"data": cfg.data.seed, "train": cfg.train.seed, "compare": cfg.compare.seed},
        "data": {},
    }


# --------------------------------------------------------------------------- notebooks


def notebook_path(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p.resolve()
    if (NOTEBOOKS / name).exists():
        return NOTEBOOKS / name
    raise ConfigError(f"notebook {name!r} not found in {NOTEBOOKS} or as a path")


def _absolute(value: str) -> str:
    """Paths in a config are relative to where the command runs; notebooks run in notebooks/."""
    if value and not value.startswith(("/", "~")) and (Path.cwd() / value).exists():
        return str((Path.cwd() / value).resolve())
    return value


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with its local paths (data, pretraining corpus, model folder) made absolute.

    Step configs are read by notebooks that run in notebooks/, not where the command ran.
    """
    return replace(cfg, data=replace(cfg.data, source=_absolute(cfg.data.source)),
                   pretrain=replace(cfg.pretrain, source=_absolute(cfg.pretrain.source)),
                   model=replace(cfg.model, name_or_path=_absolute(cfg.model.name_or_path)))


def _primitive(value, default):
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if value is None:
        return 0 if isinstance(default, (int, float)) and not isinstance(default, bool) else ""
    return value


def notebook_parameters(path: Path, cfg: ExperimentConfig, extra: dict) -> dict:
    """Parameters for one notebook: its declared config sections' values, then ``extra``."""
    import nbformat
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("workbench", {})
    declared = pm.inspect_notebook(str(path))
    sections = [SECTION_OF[c] for c in meta.get("configs", []) if c in SECTION_OF]
    out = {}
    for name, info in declared.items():
        default = eval(info["default"]) if info.get("default") else None  # noqa: S307 - our own notebooks' literals
        if name in extra:
            out[name] = extra[name]
            continue
        for section in sections:
            obj = getattr(cfg, section, None)
            if obj is not None and name in {f.name for f in dataclasses.fields(obj)}:
                out[name] = _primitive(getattr(obj, name), default)
                break
    return out


def _kernel_manager(log: Path):
    """A kernel manager whose kernel writes its stderr to ``log`` (kept in the run folder), not the terminal."""
    from jupyter_client.manager import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            handle = open(log, "ab")  # noqa: SIM115 - the kernel process holds it; closed with the manager
            self._stderr_log = handle
            return await super().start_kernel(**{**kw, "stderr": handle})

        async def shutdown_kernel(self, *args, **kw):
            try:
                return await super().shutdown_kernel(*args, **kw)
            finally:
                getattr(self, "_stderr_log", None) and self._stderr_log.close()

    return KernelManager


def _execute(path: Path, out: Path, params: dict, timeout: int | None) -> None:
    import papermill as pm

    pm.execute_notebook(str(path), str(out), parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS),
                        progress_bar=False, execution_timeout=timeout, log_output=False,
                        kernel_manager_class=_kernel_manager(out.with_suffix(".kernel.log")))


class LogTail(threading.Thread):
    """Follows a JSONL log another process appends to, handing each new entry to ``on_entry``."""

    def __init__(self, path: Path, on_entry, interval: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.on_entry, self.interval = Path(path), on_entry, interval
        self.offset, self.done = 0, threading.Event()

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self.offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "step" in entry:
                self.on_entry(entry)

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.poll()


def _headline(message: str, limit: int = 400) -> str:
    """One line of an error message; "1 problem:"-style headers keep the line they introduce."""
    lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    text = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException, notebook: Path) -> str:
    name = type(exc).__name__
    if name == "PapermillExecutionError":
        return f"{notebook.name}: cell {exc.exec_count}: {exc.ename}: {_headline(str(exc.evalue))}"
    if name in ("DeadKernelError",) or "died" in str(exc).lower() or "dead" in str(exc).lower():
        return (f"{notebook.name}: the kernel died (killed, or out of memory) while running; its stderr is in "
                f"{notebook.with_suffix('.kernel.log').name}")
    if name in ("CellTimeoutError", "TimeoutError"):
        return f"{notebook.name}: a cell ran past the time limit"
    return f"{notebook.name}: {name}: {_headline(str(exc))}"


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


def _step_plan(cfg: ExperimentConfig, run_dir: Path) -> list[tuple[str, str, dict, ExperimentConfig]]:
    """(notebook, label, extra parameters, config) for each notebook execution."""
    plan = []
    model_path = cfg.model.name_or_path
    if cfg.pretrain.source:
        pre = cfg.pretrain
        pre_cfg = replace(cfg, data=replace(cfg.data, source=pre.source, format="corpus", columns={}, split=None,
                                            eval_split=None, validation=0.0, test=0.0, stratify=None),
                          model=replace(cfg.model, name_or_path=f"scratch:{pre.preset}", method="full"),
                          train=replace(cfg.train, epochs=pre.epochs, max_steps=pre.max_steps,
                                        learning_rate=pre.learning_rate, batch_size=pre.batch_size,
                                        max_length=pre.max_length, packing=True, save_steps=0))
        plan.append(("03_finetune.ipynb", "pretrain", {"output_dir": str(run_dir / "pretrain"), "train_now": True,
                                                       "eval_split": "", "test": 0.0, "validation": 0.0}, pre_cfg))
        model_path = str(run_dir / "pretrain" / "model")
    models = {}
    if cfg.pretrain.source or cfg.model.task == "causal-lm":
        models["base"] = model_path
    for name in cfg.notebooks:
        stem = Path(name).stem
        if stem.startswith("03_finetune"):
            for method in cfg.method_list():
                step_cfg = replace(cfg, model=replace(cfg.model, name_or_path=model_path, method=method))
                out = run_dir / f"train-{method}"
                plan.append((name, f"finetune-{method}", {"output_dir": str(out), "train_now": True}, step_cfg))
                models[method] = str(out / "model")
        elif stem.startswith("04_compare"):
            plan.append((name, "compare", {"models": ", ".join(f"{k}={v}" for k, v in models.items()),
                                           "reference": "" , "report_dir": str(run_dir / "compare"),
                                           "probe": True}, cfg))
        elif stem.startswith("01_explore"):
            plan.append((name, "data", {"out_dir": ""}, cfg))  # the runner writes the splits itself
        elif stem.startswith("02_tokenization"):
            tok = model_path if not model_path.startswith("scratch") else "kb-bpe"
            if cfg.pretrain.source:
                tok = "kb-bpe"  # the pretrained tokenizer does not exist until the pretraining step has run
            plan.append((name, "tokens", {"tokenizers": tok, "sample": cfg.tokens.sample or 0}, cfg))
        else:
            plan.append((name, stem, {}, cfg))
    return plan


def _collect_metrics(run_dir: Path) -> dict:
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


def run_experiment(cfg: ExperimentConfig, runs_root: str | Path = "runs", run_dir: Path | None = None,
                   argv: list[str] | None = None, timeout: int | None = None, echo=None,
                   progress: bool = False) -> RunRecord:
    """Run every notebook of the experiment into a new run folder (see the module docstring).

    Args:
        cfg: The experiment.
        runs_root: Where ``<name>/<run-id>`` folders go.
        argv: The command line to record (redacted); default ``sys.argv``.
        timeout: Seconds a single cell may run; None for no limit.
        echo: Called with a one-line message per step (the terminal progress).
        progress: Draw a progress bar on stderr while a training step runs (from its training log).

    Raises:
        RunFailed: a cell failed or the kernel died; the run folder keeps the executed notebook.
    """
    start = time.time()
    # Absolute: notebooks run in notebooks/, and every path handed to them derives from this one.
    run_dir = (run_dir or new_run_dir(cfg, Path(runs_root))).resolve()
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    man = manifest(cfg, run_dir, argv)
    atomic_write_json(run_dir / "manifest.json", man)
    atomic_write_json(run_dir / "status.json", {"status": "running", "reason": "", "started": start})
    # The data fingerprints come from the same splitting the training uses, so rerun can check them.
    from .experiment import experiment_splits

    splits = experiment_splits(cfg, out_dir=run_dir / "data" / "splits")
    man["data"] = {"source": cfg.data.source, "source_fingerprint": splits.source_fingerprint,
                   "splits": dict(splits.fingerprints)}
    atomic_write_json(run_dir / "manifest.json", man)
    plan = _step_plan(cfg, run_dir)
    for i, (name, label, extra, step_cfg) in enumerate(plan, start=1):
        path = notebook_path(name)
        out = run_dir / "notebooks" / f"{i:02d}-{label}.ipynb"
        if echo:
            echo(f"[{i}/{len(plan)}] {label}: {path.name}")
        atomic_write_json(run_dir / "status.json", {"status": "running", "reason": "", "started": start,
                                                    "step": f"{i}/{len(plan)} {label}"})
        step_cfg = absolute_paths(step_cfg)
        params = notebook_parameters(path, step_cfg, {**extra, "experiment": ""})
        if "experiment" in params:  # notebooks that take the whole resolved step config, not only their form
            step_file = run_dir / "notebooks" / f"{i:02d}-{label}.yaml"
            atomic_write_text(step_file, dump_yaml(step_cfg))
            params["experiment"] = str(step_file)
        tail = None
        if progress and extra.get("train_now") and extra.get("output_dir"):
            from .experiment import TerminalProgress

            bar = TerminalProgress(label=f"  {label}")
            tail = LogTail(Path(extra["output_dir"]) / "train_log.jsonl", bar)
            tail.start()
        try:
            _execute(path, out, params, timeout)
        except BaseException as e:  # noqa: BLE001 - every failure is recorded, then re-raised as RunFailed
            reason = _reason(e, out)
            atomic_write_json(run_dir / "status.json", {"status": "failed", "reason": reason, "started": start,
                                                        "finished": time.time(), "step": f"{i}/{len(plan)} {label}"})
            if isinstance(e, KeyboardInterrupt):
                raise
            raise RunFailed(run_dir, reason) from None
        finally:
            if tail is not None:
                tail.stop()
                bar.close()
    metrics = _collect_metrics(run_dir)
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_write_json(run_dir / "status.json", {"status": "succeeded", "reason": "", "started": start,
                                                "finished": time.time()})
    return RunRecord(run_dir, "succeeded", metrics, time.time() - start)


# --------------------------------------------------------------------------- rerun, sweep, runs table


def rerun(run_dir: str | Path, runs_root: str | Path | None = None, echo=None,
          progress: bool = False) -> RunRecord:
    """Repeat a run from its resolved config; refuse when its data changed since."""
    from .data import DatasetError, Problem
    from .experiment import experiment_splits

    run_dir = Path(run_dir)
    cfg = load_yaml(ExperimentConfig, run_dir / "config.yaml")
    recorded = json.loads((run_dir / "manifest.json").read_text()).get("data", {})
    if recorded.get("splits"):
        now = experiment_splits(cfg).fingerprints
        changed = {k: (v, now.get(k)) for k, v in recorded["splits"].items() if now.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {a} then, {b} now" for k, (a, b) in changed.items())
            raise DatasetError(Problem(
                kind="fingerprint_mismatch", file=cfg.data.source,
                message=f"the data changed since {run_dir.name} ran ({detail}), so the run cannot be repeated.",
                fix="Restore the data the run used, or start a new run with `workbench run`."))
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
