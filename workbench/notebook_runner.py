"""The papermill runner: an experiment's notebooks, executed in order into a run folder.

``run_experiment`` executes the experiment's notebooks in order with papermill, each with
parameters taken from the experiment's config sections (a notebook's metadata says which
config dataclasses its parameters mirror), into ``runs/<name>/<run-id>/`` (the layout is in
``workbench.run_folders``). The step plan turns the experiment's notebook list into
executions: one fine-tuning step per method, a pretraining step first when the experiment
pretrains, the comparison over every model made before it.

A failing cell or a dead kernel (killed, out of memory) marks the run failed, keeps the
executed notebook, and raises ``RunFailed`` with a one-line reason; so does a failure before
the first notebook (the data, a full disk). Ctrl-C marks it stopped. While it runs, its
``status.json`` carries the runner's pid and a heartbeat, so a killed runner reads as died
(``workbench.run_status``). Each executed notebook is written to ``NN-step.partial.ipynb``
while its step runs (papermill saves it after every cell) and renamed to ``NN-step.ipynb``
once complete, so that name never holds a notebook cut short by a kill or a full disk.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from .config import ConfigError, ExperimentConfig, dump_yaml, section_names
from .files import atomic_write_text
from .pipeline import corpus_section, experiment_splits, input_fingerprints
from .progress import LogTail, TerminalProgress
from .run_folders import (
    RunFailed,
    RunRecord,
    collect_metrics,
    manifest,
    new_run_dir,
    redact_step_files,
    write_config,
    write_manifest,
    write_metrics,
    write_status,
)
from .run_status import FAILED, RUNNING, STOPPED, STOPPED_BY_USER, SUCCEEDED, close_status, disk_full, \
    disk_full_message
from .tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
#: A notebook's config class (``metadata.workbench.configs``) to its experiment section, from ExperimentConfig.
SECTION_OF = section_names()
#: What to do after a run failed for want of disk space.
RERUN = "run it again (`workbench rerun <run folder>` repeats it)"


# --------------------------------------------------------------------------- notebooks and their parameters


def notebook_path(name: str) -> Path:
    """A notebook given as a path, or by name in notebooks/."""
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
        # A parameters cell holds primitives only, so its defaults are literals.
        default = ast.literal_eval(info["default"]) if info.get("default") else None
        if name in extra:
            out[name] = extra[name]
            continue
        for section in sections:
            obj = getattr(cfg, section, None)
            if obj is not None and name in {f.name for f in dataclasses.fields(obj)}:
                out[name] = _primitive(getattr(obj, name), default)
                break
    return out


# --------------------------------------------------------------------------- executing one notebook


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


def partial_path(out: Path) -> Path:
    """Where the notebook of a step that is running (or was cut short) is: ``NN-step.partial.ipynb``."""
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def _settle(partial: Path, out: Path) -> None:
    """Rename a step's notebook to its final name when it is whole JSON; one cut short keeps its partial name."""
    try:
        json.loads(partial.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    os.replace(partial, out)


def _execute(path: Path, out: Path, params: dict, timeout: int | None) -> None:
    import papermill as pm

    partial = partial_path(out)
    try:
        pm.execute_notebook(str(path), str(partial), parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS),
                            progress_bar=False, execution_timeout=timeout, log_output=False,
                            kernel_manager_class=_kernel_manager(out.with_suffix(".kernel.log")))
    finally:  # papermill wrote the notebook, errors shown, before raising a cell's failure
        _settle(partial, out)


def _headline(message: str, limit: int = 400) -> str:
    """One line of an error message; "1 problem:"-style headers keep the line they introduce."""
    lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    text = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException, notebook: Path) -> str:
    name = type(exc).__name__
    if disk_full(exc, notebook.parent):
        return f"{notebook.name}: {disk_full_message(exc, notebook.parent, then=RERUN)}"
    if name == "PapermillExecutionError":
        return f"{notebook.name}: cell {exc.exec_count}: {exc.ename}: {_headline(str(exc.evalue))}"
    if name in ("DeadKernelError",) or "died" in str(exc).lower() or "dead" in str(exc).lower():
        return (f"{notebook.name}: the kernel died (killed, or out of memory) while running; its stderr is in "
                f"{notebook.with_suffix('.kernel.log').name}")
    if name in ("CellTimeoutError", "TimeoutError"):
        return f"{notebook.name}: a cell ran past the time limit"
    return f"{notebook.name}: {name}: {_headline(str(exc))}"


# --------------------------------------------------------------------------- the step plan and the run


def _step_plan(cfg: ExperimentConfig, run_dir: Path) -> list[tuple[str, str, dict, ExperimentConfig]]:
    """(notebook, label, extra parameters, config) for each notebook execution."""
    cfg = absolute_paths(cfg)  # model folders handed to notebooks as parameters too (tokens, compare)
    plan = []
    base = cfg.model.name_or_path
    model_path = base
    models = {}
    if cfg.pretrain.source:
        pre = cfg.pretrain
        # The pretraining step reads pre.source as running text (pipeline.corpus_section): from scratch, or
        # continuing the named base; pipeline.finetune words a table's errors in the pretrain section's terms.
        pre_cfg = replace(cfg, data=corpus_section(cfg),
                          model=replace(cfg.model, name_or_path=base, task="pretraining", method="full"),
                          train=replace(cfg.train, epochs=pre.epochs, max_steps=pre.max_steps,
                                        learning_rate=pre.learning_rate, batch_size=pre.batch_size,
                                        max_length=pre.max_length, packing=True, save_steps=0))
        plan.append(("03_finetune.ipynb", "pretrain", {"output_dir": str(run_dir / "pretrain"), "train_now": True,
                                                       "eval_split": "", "test": 0.0, "validation": 0.0}, pre_cfg))
        model_path = str(run_dir / "pretrain" / "model")
    bases = {"": model_path}  # prefix of the fine-tunes' names -> the base they start from
    if cfg.pretrain.source and base:  # continued: the base as it was, then the base continued on the corpus
        models["base"] = base
        models["continued"] = model_path
        bases = {"": base, "continued-": model_path} if cfg.pretrain.finetune_plain else {"continued-": model_path}
    elif cfg.pretrain.source or get_task(cfg.model.task).compares_base:  # generators are judged against their base
        models["base"] = model_path
    for name in cfg.notebooks:
        stem = Path(name).stem
        if stem.startswith("03_finetune"):
            for prefix, start in bases.items():
                for method in cfg.method_list():
                    step_cfg = replace(cfg, model=replace(cfg.model, name_or_path=start, method=method))
                    out = run_dir / f"train-{prefix}{method}"
                    plan.append((name, f"finetune-{prefix}{method}", {"output_dir": str(out), "train_now": True},
                                 step_cfg))
                    models[f"{prefix}{method}"] = str(out / "model")
        elif stem.startswith("04_compare"):
            # A fine-tune of the continued base is also compared with the same fine-tune of the base as it was.
            pairs = [f"{prefix}{m}={m}" for prefix in bases if prefix and "" in bases for m in cfg.method_list()]
            plan.append((name, "compare", {"models": ", ".join(f"{k}={v}" for k, v in models.items()),
                                           "reference": "", "pairs": ", ".join(pairs),
                                           "report_dir": str(run_dir / "compare"), "probe": True}, cfg))
        elif stem.startswith("01_explore"):
            plan.append((name, "data", {"out_dir": ""}, cfg))  # the runner writes the splits itself
        elif stem.startswith("02_tokenization"):
            # A base pretrained in this run has no tokenizer until its step has run: measure with the
            # knowledge-base BPE it is trained like.
            tok = "kb-bpe" if cfg.pretrain.source and not base else base
            plan.append((name, "tokens", {"tokenizers": tok, "sample": cfg.tokens.sample or 0}, cfg))
        else:
            plan.append((name, stem, {}, cfg))
    return plan


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
        RunFailed: a cell failed, the kernel died, or the disk filled; the run folder keeps the executed notebook.
        KeyboardInterrupt: Ctrl-C, after the run's status (and a training step's own) says ``stopped``.
        DatasetError, ConfigError: the data or the config, before the first notebook; the run says failed.
    """
    start = time.time()
    # Absolute: notebooks run in notebooks/, and every path handed to them derives from this one.
    run_dir = (run_dir or new_run_dir(cfg, Path(runs_root))).resolve()
    try:
        write_status(run_dir, RUNNING, start)
        return _run_steps(cfg, run_dir, start, argv, timeout, echo, progress)
    except RunFailed:
        raise
    except BaseException as e:  # noqa: BLE001 - outside the notebooks (the data, the disk): recorded, re-raised
        if getattr(e, "recorded", False):  # Ctrl-C in a step: its handler wrote it
            raise
        stopped = isinstance(e, KeyboardInterrupt)
        reason = STOPPED_BY_USER if stopped else disk_full_message(e, run_dir, then=RERUN) if disk_full(e, run_dir) else (
            f"{type(e).__name__}: {_headline(str(e))}")
        _record(run_dir, STOPPED if stopped else FAILED, start, reason)
        if disk_full(e, run_dir):
            raise RunFailed(run_dir, reason) from None
        raise


def _record(run_dir: Path, status: str, start: float, reason: str, **extra) -> None:
    """Write how a run ended; a disk too full for it leaves the status running, which readers call died."""
    try:
        write_status(run_dir, status, start, reason, finished=time.time(), **extra)
    except OSError:
        pass


def _run_steps(cfg: ExperimentConfig, run_dir: Path, start: float, argv, timeout, echo, progress) -> RunRecord:
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)
    man = manifest(cfg, run_dir, argv)
    write_manifest(run_dir, man)
    # The data fingerprints come from the same splitting the training uses, so rerun can check them.
    splits = experiment_splits(cfg, out_dir=run_dir / "data" / "splits")
    man["data"] = {"source": cfg.data.source, "source_fingerprint": splits.source_fingerprint,
                   "splits": dict(splits.fingerprints), "inputs": input_fingerprints(cfg)}
    write_manifest(run_dir, man)
    plan = _step_plan(cfg, run_dir)
    for i, (name, label, extra, step_cfg) in enumerate(plan, start=1):
        path = notebook_path(name)
        out = run_dir / "notebooks" / f"{i:02d}-{label}.ipynb"
        if echo:
            echo(f"[{i}/{len(plan)}] {label}: {path.name}")
        write_status(run_dir, RUNNING, start, step=f"{i}/{len(plan)} {label}")
        step_cfg = absolute_paths(step_cfg)
        params = notebook_parameters(path, step_cfg, {**extra, "experiment": ""})
        if "experiment" in params:  # notebooks that take the whole resolved step config, not only their form
            step_file = run_dir / "notebooks" / f"{i:02d}-{label}.yaml"
            atomic_write_text(step_file, dump_yaml(step_cfg))
            params["experiment"] = str(step_file)
        tail = None
        if progress and extra.get("train_now") and extra.get("output_dir"):
            bar = TerminalProgress(label=f"  {label}")
            tail = LogTail(Path(extra["output_dir"]) / "train_log.jsonl", bar)
            tail.start()
        try:
            _execute(path, out, params, timeout)
        except BaseException as e:  # noqa: BLE001 - every failure is recorded, then re-raised as RunFailed
            status, reason = (STOPPED, STOPPED_BY_USER) if isinstance(e, KeyboardInterrupt) else (FAILED,
                                                                                                 _reason(e, out))
            _record(run_dir, status, start, reason, step=f"{i}/{len(plan)} {label}")
            if extra.get("output_dir"):  # a kernel shut down mid-training leaves its folder saying running
                try:
                    close_status(Path(extra["output_dir"]), status, reason)
                except OSError:
                    pass
            if isinstance(e, KeyboardInterrupt):
                e.recorded = True
                raise
            raise RunFailed(run_dir, reason) from None
        finally:
            if tail is not None:
                tail.stop()
                bar.close()
            redact_step_files(out, partial_path(out), run_dir / "notebooks" / f"{i:02d}-{label}.yaml")
    metrics = collect_metrics(run_dir)
    write_metrics(run_dir, metrics)
    write_status(run_dir, SUCCEEDED, start, finished=time.time())
    return RunRecord(run_dir, SUCCEEDED, metrics, time.time() - start)
