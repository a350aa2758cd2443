"""The ``workbench`` command.

    workbench demo                       the main job on the shipped datasets
    workbench data report SOURCE         load, validate, duplicates, personal data, splits
    workbench data validate SOURCE       problems only; exit 1 when there are errors
    workbench data split SOURCE --out D  write reproducible splits with fingerprints

Bad data ends in a list of problems (file, line, field, fix) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data import DatasetError, data_report, load_dataset

#: The shipped datasets and how the demo reports on them.
DEMO_DATASETS = (
    {"name": "banking77", "source": "datasets/banking77", "split": "train", "test": 0.0, "validation": 0.1,
     "stratify": "auto"},
    {"name": "it_support", "source": "datasets/it_support/tickets.jsonl", "test": 0.15, "validation": 0.1,
     "stratify": "category",
     # The company's role mailboxes and address pattern appear in answers; they are not personal.
     "pii_allow": ("security@northwind.example", "scan@northwind.example", "firstname.lastname@northwind.example")},
)


def _columns(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        canon, sep, source = pair.partition("=")
        if not sep:
            raise SystemExit(f"--column takes FIELD=COLUMN (e.g. text=utterance), not {pair!r}")
        out[canon.strip()] = source.strip()
    return out


def _add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="file, folder, or hub dataset name")
    p.add_argument("--format", default="auto", help="auto, prompt_completion, instruction, chat, classification, corpus")
    p.add_argument("--column", action="append", metavar="FIELD=COLUMN",
                   help="map a canonical field to a column, e.g. --column text=utterance (repeatable)")
    p.add_argument("--split", help="which split of a folder or saved dataset (default: train)")
    p.add_argument("--reader", help="force a reader: csv, json, jsonl, parquet, text")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--field", help="JSON: the key holding the records (dotted for nested)")


def _load_kwargs(args) -> dict:
    return {"format": args.format, "columns": _columns(args.column), "split": args.split, "reader": args.reader,
            "encoding": args.encoding, "field": args.field}


def cmd_report(args) -> int:
    report = data_report(args.source, **_load_kwargs(args), strict=False, test=args.test,
                         validation=args.validation, seed=args.seed,
                         stratify=None if args.stratify == "none" else args.stratify, out_dir=args.out)
    print(report.to_text())
    return 0


def cmd_validate(args) -> int:
    ds = load_dataset(args.source, **_load_kwargs(args), strict=False)
    rep = ds.report
    print(f"{ds.source}: {ds.format}, {rep.rows_read} records read, {rep.rows_kept} valid")
    for p in rep.problems[: args.limit]:
        print(f"  {p.severity}: {p}")
    if len(rep.problems) > args.limit:
        print(f"  ... and {len(rep.problems) - args.limit} more")
    return 1 if rep.errors else 0


def cmd_demo(args) -> int:
    out_root = Path(args.out)
    for spec in DEMO_DATASETS:
        report = data_report(spec["source"], split=spec.get("split"), test=spec["test"],
                             validation=spec["validation"], stratify=spec["stratify"], seed=args.seed,
                             pii_allow=spec.get("pii_allow", ()),
                             out_dir=out_root / spec["name"] / "splits")
        print(report.to_text())
        print()
    print(f"Data report done. Splits and fingerprints are in {out_root}/.")
    return 0


def cmd_train(args) -> int:
    from .config import ConfigError, ExperimentConfig, load_yaml
    from .experiment import finetune
    from .train import TrainingError

    try:
        cfg = load_yaml(ExperimentConfig, args.config)
    except ConfigError as e:
        print(f"workbench: {args.config}: {e}", file=sys.stderr)
        return 2
    if args.output_dir:
        from dataclasses import replace

        cfg = replace(cfg, train=replace(cfg.train, output_dir=args.output_dir))
    try:
        result = finetune(cfg, progress=not args.quiet)
    except TrainingError as e:
        print(f"workbench: training failed: {e}", file=sys.stderr)
        return 1
    print(f"{result.status}: step {result.global_step}/{result.max_steps}; run folder {result.run_dir}")
    shown = {k: v for k, v in result.metrics.items() if k.startswith("eval_") or k == "train_loss"}
    print("  " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items() if isinstance(v, (int, float))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job on the shipped datasets")
    demo.add_argument("--out", default="runs/data-report", help="where to write splits")
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="fine-tune as an experiment YAML says (resumes an interrupted run)")
    train.add_argument("config", help="experiment YAML: data, model, lora, quant, train sections")
    train.add_argument("--output-dir", help="override train.output_dir")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="dataset commands").add_subparsers(dest="data_command", required=True)
    rep = data.add_parser("report", help="load, validate, find duplicates and personal data, split")
    _add_load_args(rep)
    rep.add_argument("--test", type=float, default=0.1)
    rep.add_argument("--validation", type=float, default=0.1)
    rep.add_argument("--seed", type=int, default=42)
    rep.add_argument("--stratify", default="auto", help="auto, none, or a column name")
    rep.add_argument("--out", help="write the cleaned splits here")
    rep.set_defaults(func=cmd_report)
    val = data.add_parser("validate", help="list problems; exit 1 if there are errors")
    _add_load_args(val)
    val.add_argument("--limit", type=int, default=50)
    val.set_defaults(func=cmd_validate)
    spl = data.add_parser("split", help="write reproducible splits with fingerprints")
    _add_load_args(spl)
    spl.add_argument("--out", required=True)
    spl.add_argument("--test", type=float, default=0.1)
    spl.add_argument("--validation", type=float, default=0.1)
    spl.add_argument("--seed", type=int, default=42)
    spl.add_argument("--stratify", default="auto")
    spl.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DatasetError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
