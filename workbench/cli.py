"""The ``workbench`` command.

    workbench demo                       the main job: banking77 fine-tune vs the frozen-encoder baseline
    workbench run EXPERIMENT.yaml        an experiment's notebooks into runs/<name>/<run-id>/
    workbench rerun | sweep | runs       repeat a run, run a grid, list and compare runs
    workbench export RUN [--gguf f16]    merged safetensors (and GGUF) of a fine-tune, checked on fixed prompts
    workbench models                     the preset models, what they are and their licences
    workbench data report SOURCE         load, validate, duplicates, personal data, splits
    workbench data validate SOURCE       problems only; exit 1 when there are errors
    workbench data split SOURCE --out D  write reproducible splits with fingerprints

Bad data ends in a list of problems (file, line, field, fix), never a traceback.

Exit codes:
    0    done
    1    it ran and the outcome is a failure: data validate found errors (or no readable data),
         a run, rerun or training failed, an export failed its check, a sweep had a failed point
    2    it could not start: a usage error (argparse's convention), or a bad config, option, data
         source or run folder, said in one message naming the file, line, field and fix
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from .config import (ConfigError, DataConfig, ExperimentConfig, LaunchConfig, TrainConfig, add_config_arguments,
                     apply_overrides, config_from_args, field_help, from_dict, load_yaml)
from .data import DatasetError, data_report, load_dataset
from .errors import os_error_message
from .export import GGUF_TYPES, ExportCheckFailed, ExportError, export_model
from .launch import global_batch_note
from .metrics import degeneracy_note, format_p
from .notebook_runner import run_experiment
from .pipeline import finetune
from .presets import LICENCES, SUMMARIES, model_note
from .repeat import rerun, sweep
from .run_folders import RunFailed
from .runs_table import compare_runs, list_runs
from .train import FolderRefused, TrainingError, headline_metrics

ROOT = Path(__file__).resolve().parent.parent
#: The main job: fine-tuned MiniLM vs the frozen-encoder baseline on banking77.
DEMO_EXPERIMENT = ROOT / "experiments" / "banking77-minilm.yaml"
#: The shipped datasets and how ``workbench demo --data-report`` reports on them.
DEMO_DATASETS = (
    {"name": "banking77", "source": "datasets/banking77", "split": "train", "test": 0.0, "validation": 0.1,
     "stratify": "auto"},
    {"name": "it_support", "source": "datasets/it_support/tickets.jsonl", "test": 0.15, "validation": 0.1,
     "stratify": "category",
     # The company's role mailboxes and address pattern appear in answers; they are not personal.
     "pii_allow": ("security@northwind.example", "scan@northwind.example", "firstname.lastname@northwind.example")},
)


#: The exit codes, as the module docstring (and README.md) list them; ``workbench --help`` ends with them.
EXIT_CODES = __doc__[__doc__.index("Exit codes:"):].rstrip()

#: The DataConfig fields the data commands take as options (help: the fields' docstrings).
LOAD_FIELDS = ("source", "format", "columns", "split", "reader", "encoding", "header", "delimiter", "quotechar",
               "field")
SPLIT_FIELDS = ("test", "validation", "seed", "stratify", "pii_allow", "eval_split", "keep_overlap", "pii_action",
                "pii_region", "pii_min_confidence", "pii_ner")


def _add_load_args(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, DataConfig, LOAD_FIELDS, positional=("source",))


def cmd_report(args) -> int:
    cfg = config_from_args(DataConfig, args, LOAD_FIELDS + SPLIT_FIELDS)
    report = data_report(cfg.source, **cfg.report_kwargs(), out_dir=args.out)
    print(report.to_text())
    return 0


def cmd_validate(args) -> int:
    cfg = config_from_args(DataConfig, args, LOAD_FIELDS)
    try:
        ds = load_dataset(cfg.source, **cfg.load_kwargs())
    except DatasetError as e:  # nothing valid to load is a validation result too: exit 1, as for errors
        print(f"workbench: {e}", file=sys.stderr)
        return 1
    rep = ds.report
    print(f"{ds.source}: {ds.format}, {rep.rows_read} records read, {rep.rows_kept} valid")
    for p in rep.problems[: args.limit]:
        print(f"  {p.severity}: {p}")
    if len(rep.problems) > args.limit:
        print(f"  ... and {len(rep.problems) - args.limit} more")
    return 1 if rep.errors else 0


def cmd_demo(args) -> int:
    if args.data_report:
        return _shipped_data_report(args)
    args.config = str(DEMO_EXPERIMENT)
    return cmd_run(args)


def _shipped_data_report(args) -> int:
    out_root = Path(args.out)
    for spec in DEMO_DATASETS:
        cfg = from_dict(DataConfig, {**{k: v for k, v in spec.items() if k != "name"}, "seed": args.seed})
        report = data_report(ROOT / cfg.source, **cfg.report_kwargs(), out_dir=out_root / spec["name"] / "splits")
        print(report.to_text())
        print()
    print(f"Data report done. Splits and fingerprints are in {out_root}/.")
    return 0


def train_folder(cfg: ExperimentConfig, spec: str | Path, output_dir: str | None = None) -> str:
    """Where ``workbench train`` trains: ``--output-dir``, the spec's ``train.output_dir``, or, when the spec leaves
    the shared default, ``runs/train/<experiment name>`` (the spec file's name for a spec without a name)."""
    if output_dir:
        return output_dir
    if cfg.train.output_dir != TrainConfig.output_dir:
        return cfg.train.output_dir
    name = cfg.name if cfg.name != ExperimentConfig.name else Path(spec).stem
    return str(Path(TrainConfig.output_dir) / name)


#: LaunchConfig fields ``workbench train`` takes as options (``--processes 4``); given ones override the spec's.
LAUNCH_FIELDS = ("processes", "machines", "machine_rank", "main_process_ip", "main_process_port", "backend",
                 "config_file")


def _add_launch_args(p: argparse.ArgumentParser) -> None:
    for name in LAUNCH_FIELDS:
        default = getattr(LaunchConfig, name)
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"launch_{name}", default=argparse.SUPPRESS,
                       type=type(default) if default is not None else str, metavar=name.upper(),
                       help=field_help(LaunchConfig, name) + " (launch section)")


def _launch_overrides(args) -> list[str]:
    return [f"launch.{name}={getattr(args, 'launch_' + name)}" for name in LAUNCH_FIELDS
            if hasattr(args, "launch_" + name)]


def cmd_train(args) -> int:
    try:
        cfg = _load_experiment(args.config, [*(args.param or []), *_launch_overrides(args)])
    except (ConfigError, OSError) as e:
        print(f"workbench: {args.config}: {e}", file=sys.stderr)
        return 2
    cfg = replace(cfg, train=replace(cfg.train, output_dir=train_folder(cfg, args.config, args.output_dir),
                                     resume_anyway=cfg.train.resume_anyway or args.resume_anyway))
    if cfg.launch.world_size > 1 and not args.quiet:
        try:
            print(f"launch: {cfg.launch.world_size} processes ({cfg.launch.backend}); "
                  f"{global_batch_note(cfg.train, cfg.launch)}", flush=True)
        except ValueError as e:
            print(f"workbench: {e}", file=sys.stderr)
            return 2
    try:
        result = finetune(cfg, progress=not args.quiet)
    except FolderRefused as e:  # another run's folder, or one in use: nothing started, nothing changed
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"workbench: training failed: {e}", file=sys.stderr)
        return 1
    print(f"{result.status}: step {result.global_step}/{result.max_steps}; run folder {result.run_dir}")
    print("  " + ", ".join(f"{k} {v:.4g}" for k, v in headline_metrics(result.metrics, numbers=True).items()))
    return 0


def _load_experiment(path: str, overrides: list[str] | None):
    cfg = load_yaml(ExperimentConfig, path)
    return apply_overrides(cfg, overrides or [])


def _figure(metric: str, value: float) -> str:
    return f"{100 * value:.2f}%" if metric in ("accuracy", "macro_f1") else f"{value:.4g}"


def _headline(metrics: dict, run_dir: Path | None = None) -> list[str]:
    """The figures a run is judged by: each training step, each compared model, each difference."""
    lines = []
    for step, values in metrics.items():
        if step.startswith(("train-", "pretrain")) and isinstance(values, dict):
            shown = {k: v for k, v in values.items() if k in ("eval_accuracy", "eval_macro_f1", "eval_loss",
                                                              "train_loss", "global_step", "train_seconds")}
            lines.append(f"  {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    compared = metrics.get("compare") or {}
    if compared:
        lines.append("  on the test split:")
    for model, values in compared.items():
        parts = []
        for k in ("accuracy", "macro_f1", "rouge_l", "reference_perplexity"):
            if values.get(k) is None:
                continue
            low, high = values.get(f"{k}_low"), values.get(f"{k}_high")
            ci = f" [{_figure(k, low)}, {_figure(k, high)}]" if low is not None and high is not None else ""
            parts.append(f"{k} {_figure(k, values[k])}{ci}")
        for k in ("in_scope_accuracy", "oos_recall", "oos_precision"):  # open-set data: compare.out_of_scope
            if values.get(k) is not None:
                parts.append(f"{k} {100 * values[k]:.2f}%")
        lines.append(f"    {model}: " + ", ".join(parts))
        if note := degeneracy_note(values, values.get("examples")):
            lines.append(f"      WARNING: {note}; read the answers before trusting these figures")
    for d in metrics.get("differences", []):
        if d["metric"] not in ("accuracy", "macro_f1", "rouge_l", "reference_nll"):
            continue  # macro-F1 too: on imbalanced labels the report's verdict is about it
        scale, unit = (100, " pp") if d["metric"] in ("accuracy", "macro_f1") else (1, "")
        verdict = "a real gain" if d.get("significant") and d["difference"] > 0 else (
            "a real loss" if d.get("significant") else "not significant at this level")
        lines.append(f"  {d['model']} vs {d['versus']} on {d['metric']}: {scale * d['difference']:+.2f}{unit} "
                     f"[{scale * d['ci_low']:+.2f}, {scale * d['ci_high']:+.2f}] (paired bootstrap, "
                     f"{format_p(d.get('p_value', float('nan')), d.get('resamples', 2000))}; {verdict}; "
                     f"{d.get('wins')} wins, "
                     f"{d.get('losses')} losses)")
    if run_dir is not None and (Path(run_dir) / "compare" / "report.html").exists():
        lines.append(f"  report: {Path(run_dir) / 'compare' / 'report.html'}")
    return lines


def cmd_run(args) -> int:
    try:
        cfg = _load_experiment(args.config, args.param)
    except (ConfigError, OSError) as e:
        print(f"workbench: {args.config}: {e}", file=sys.stderr)
        return 2
    echo = None if args.quiet else (lambda msg: print(msg, flush=True))
    if echo:
        echo(f"model {model_note(cfg.model.name_or_path)}")
    try:
        record = run_experiment(cfg, args.runs, timeout=args.cell_timeout, echo=echo, progress=not args.quiet)
    except RunFailed as e:
        print(f"workbench: run failed: {e.reason}\n  the executed notebooks are in {e.run_dir}/notebooks",
              file=sys.stderr)
        return 1
    print(f"succeeded in {record.seconds:.0f} s; run folder {record.run_dir}")
    print("\n".join(_headline(record.metrics, record.run_dir)))
    return 0


def cmd_models(args) -> int:
    for name in LICENCES:
        print(f"{name}\n    {SUMMARIES[name]}\n    licence: {LICENCES[name]}")
    print("Any other model.name_or_path (a folder, a .gguf file, a hub id) carries the licence on its model card.")
    return 0


def cmd_rerun(args) -> int:
    try:
        record = rerun(args.run_dir, echo=None if args.quiet else print, progress=not args.quiet)
    except RunFailed as e:
        print(f"workbench: rerun failed: {e.reason}", file=sys.stderr)
        return 1
    print(f"succeeded in {record.seconds:.0f} s; run folder {record.run_dir}")
    print("\n".join(_headline(record.metrics, record.run_dir)))
    return 0


def cmd_sweep(args) -> int:
    results = sweep(args.config, args.grid, parallel=args.parallel, runs_root=args.runs)
    print(f"{'status':<7} {'parameters':<40} run folder")
    for r in results:
        print(f"{'ok' if r['returncode'] == 0 else 'failed':<7} {str(r['params']):<40} {r['run_dir']}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


def cmd_runs(args) -> int:
    if args.action == "compare":
        if len(args.runs_to_compare) != 2:
            print("workbench: runs compare takes two run folders", file=sys.stderr)
            return 2
        print("\n".join(compare_runs(*args.runs_to_compare).lines()))
        return 0
    table = list_runs(args.runs)
    if table.empty:
        print(f"no runs under {args.runs}/")
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        print(table.drop(columns=["path"]).to_string(index=False))
    ended = table[table.status.isin(["died", "failed"])]  # their reasons in full: the table cuts them
    for row in ended.itertuples():
        print(f"{row.experiment}/{row.run} {row.status}: {row.reason}")
    return 0


def cmd_export(args) -> int:
    try:
        result = export_model(args.run, args.out, gguf=args.gguf, method=args.method,
                              min_agreement=args.min_agreement)
    except ExportCheckFailed as e:
        print(e.result.to_text(), file=sys.stderr)
        print(f"workbench: export failed: {e}", file=sys.stderr)
        return 1
    except ExportError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    print(result.to_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n\n")[0],
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job: MiniLM fine-tuned on banking77 vs the frozen-encoder baseline")
    demo.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="override a config value")
    demo.add_argument("--runs", default="runs", help="the runs folder")
    demo.add_argument("--cell-timeout", type=int, default=None, help="seconds one cell may run")
    demo.add_argument("--quiet", action="store_true")
    demo.add_argument("--data-report", action="store_true",
                      help="only the data report on the shipped datasets (seconds)")
    demo.add_argument("--out", default="runs/data-report", help="with --data-report: where to write splits")
    demo.add_argument("--seed", type=int, default=42, help="with --data-report: the split seed")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="fine-tune as an experiment YAML says (resumes an interrupted run)")
    train.add_argument("config", help="experiment YAML: data, model, lora, quant, train sections")
    train.add_argument("--output-dir", help="override train.output_dir (default: runs/train/<experiment name>)")
    train.add_argument("--resume-anyway", action="store_true",
                       help="resume the output folder's checkpoint even if another config or data made it")
    train.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                       help="override a config value, e.g. -p train.learning_rate=1e-4 -p launch.processes=2")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_launch_args(train)
    train.set_defaults(func=cmd_train)

    run = sub.add_parser("run", help="run an experiment's notebooks with papermill into runs/<name>/<run-id>")
    run.add_argument("config", help="experiment YAML")
    run.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                     help="override a config value, e.g. -p train.learning_rate=1e-4 -p lora.r=16 (repeatable)")
    run.add_argument("--runs", default="runs", help="the runs folder")
    run.add_argument("--cell-timeout", type=int, default=None, help="seconds one cell may run")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(func=cmd_run)
    rr = sub.add_parser("rerun", help="repeat a run from its manifest (refused if its data changed)")
    rr.add_argument("run_dir")
    rr.add_argument("--quiet", action="store_true")
    rr.set_defaults(func=cmd_rerun)
    sw = sub.add_parser("sweep", help="run an experiment over a grid of values")
    sw.add_argument("config")
    sw.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                    help="e.g. --grid lr=1e-4,3e-4 --grid lora.r=8,16")
    sw.add_argument("--parallel", type=int, default=1, help="runs at once (separate processes)")
    sw.add_argument("--runs", default="runs")
    sw.set_defaults(func=cmd_sweep)
    rs = sub.add_parser("runs", help="list runs, or compare two")
    rs.add_argument("action", nargs="?", choices=["list", "compare"], default="list")
    rs.add_argument("runs_to_compare", nargs="*", help="two run folders, with 'compare'")
    rs.add_argument("--runs", default="runs")
    rs.set_defaults(func=cmd_runs)
    ex = sub.add_parser("export", help="merge a fine-tune into its base, write safetensors (and GGUF), check it")
    ex.add_argument("run", help="a run folder, a training run, or a trained model folder")
    ex.add_argument("--gguf", choices=GGUF_TYPES, help="also write a GGUF of this type and check it read back")
    ex.add_argument("--out", help="where the export goes (default: export/ beside the model)")
    ex.add_argument("--method", help="which train-<method> of a run that trained several")
    ex.add_argument("--min-agreement", type=float, default=None,
                    help="share of greedy tokens that must agree (default: 0.99, 0.85 for q8_0)")
    ex.set_defaults(func=cmd_export)

    models = sub.add_parser("models", help="the preset models (model.name_or_path), what they are, their licences")
    models.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="dataset commands").add_subparsers(dest="data_command", required=True)
    rep = data.add_parser("report", help="load, validate, find duplicates and personal data, split")
    _add_load_args(rep)
    add_config_arguments(rep, DataConfig, SPLIT_FIELDS)
    rep.add_argument("--out", help="write the cleaned splits here")
    rep.set_defaults(func=cmd_report)
    val = data.add_parser("validate", help="list problems; exit 1 if there are errors")
    _add_load_args(val)
    val.add_argument("--limit", type=int, default=50)
    val.set_defaults(func=cmd_validate)
    spl = data.add_parser("split", help="write reproducible splits with fingerprints")
    _add_load_args(spl)
    spl.add_argument("--out", required=True)
    add_config_arguments(spl, DataConfig, SPLIT_FIELDS)
    spl.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DatasetError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a permission: the file and the fix, not a traceback
        print(f"workbench: {os_error_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
