"""Benchmark: multi-process training (issue #17): tokens/s, memory per device and scaling, 1 to 8 processes.

Every run goes through ``workbench.launch.launch_training`` (torchrun starts the processes, a fresh
set per run, so each starts with empty GPU memory), with the same global batch whatever the count
(``distributed.per_device_batch`` divides the accumulation first, so the per-device batch, and with
it the memory an activation needs, stays the same). Figures come from the run's ``train_log.jsonl``:

- tokens/s: tokens through the model on all processes (``num_input_tokens_seen``, padding included,
  summed over the processes by the Trainer) per second, from the end of step ``--warmup`` to the
  end of the last step: loading, the warm-up steps (allocations, first kernels, NCCL set-up) and the
  final save are outside it;
- peak memory per device: rank 0's ``memory_mb`` (CUDA max_memory_allocated on a GPU, RSS on the CPU),
  the largest logged;
- scaling efficiency: tokens/s(N) / (N x tokens/s(1)), 1 process measured in the same run.

Modes:

- GPU (the default; needs CUDA): the Llama-3.2-1B shape (``presets.llama_shape("1b")``, random weights,
  128256-token vocabulary), full fine-tune (fp32 weights and AdamW state, bf16 autocast where the GPU
  supports it, as ``methods.Full`` sets it), on the IT help-desk tickets packed into rows of
  ``--max-length`` tokens; backends ddp and fsdp (FSDP2), 1, 2, 4 and 8 processes (those the GPUs allow).
- ``--smoke``: a tiny Llama on the CPU, ddp, 1 and 2 processes, a few steps: checks the script (a minute).
- ``--cpu-compare``: the CPU comparison of docs/benchmarks.md: the same small fine-tune on 1 process
  (in this process, ``run_training``) and on 2 (``launch_training``, gloo), each ``--repeats`` times
  alternately; medians of wall time and tokens/s, their ratios, and how far apart the loss curves are.

    .venv/bin/python benchmarks/multi_gpu.py                            # GPUs: ddp and fsdp, 1-8 processes
    .venv/bin/python benchmarks/multi_gpu.py --smoke                    # CPU, about a minute
    .venv/bin/python benchmarks/multi_gpu.py --cpu-compare --repeats 3  # CPU, 1 against 2 processes

Run folders go in a temporary directory (``--tmp-dir`` chooses where; never the project), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from workbench import presets  # noqa: E402
from workbench.config import ConfigError, LaunchConfig, ModelConfig, TrainConfig  # noqa: E402
from workbench.data import load_dataset  # noqa: E402
from workbench.devices import cores  # noqa: E402
from workbench.distributed import per_device_batch  # noqa: E402
from workbench.errors import TrainingError  # noqa: E402
from workbench.launch import launch_training  # noqa: E402
from workbench.tokenizer import train_tokenizer  # noqa: E402
from workbench.train import load_log, run_training  # noqa: E402

TICKETS = ROOT / "datasets" / "it_support" / "tickets.jsonl"
KB = ROOT / "datasets" / "it_support" / "kb"
PROCESS_COUNTS = (1, 2, 4, 8)


@dataclass
class Run:
    """One training run's figures, read back from its log."""

    processes: int
    wall_s: float
    tokens_per_s: float
    memory_mb: float
    losses: dict[int, float] = field(default_factory=dict)
    threads: int | None = None
    params: int | None = None


# --------------------------------------------------------------------------- what trains


def tokenizer(vocab_size: int):
    """A byte-level BPE trained on the shipped knowledge base and tickets (seconds, offline)."""
    texts = [p.read_text() for p in sorted(KB.glob("*.md"))] + TICKETS.read_text().splitlines()
    return train_tokenizer(texts, vocab_size=vocab_size)


def build_base(shape: str, out: Path) -> Path:
    """A Llama with seeded random weights and its tokenizer, saved to ``out``.

    ``shape``: ``1b`` (the Llama-3.2-1B shape of ``presets.llama_shape``, vocabulary 128256 as the real
    model's: the embedding and head weigh what they weigh there), ``tiny`` or ``small`` (the scratch presets).
    """
    tok = tokenizer(2000 if shape == "1b" else 600)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    cfg = presets.llama_shape("1b", **ids) if shape == "1b" else presets.llama_preset(shape, len(tok), **ids)
    return presets.save_base_model(cfg, tok, out, seed=0)


def tickets(per_category: int | None):
    """The help-desk tickets, all of them or the first ``per_category`` of each category."""
    ds = load_dataset(TICKETS)
    return ds if per_category is None else ds.with_frame(ds.frame.groupby("category").head(per_category))


def train_config(args, out: Path, packing: bool) -> TrainConfig:
    # save_steps past the end: no checkpoint inside the timed steps (the Trainer still saves once at the end).
    return TrainConfig(output_dir=str(out), max_steps=args.steps, batch_size=args.batch_size,
                       grad_accum=args.grad_accum, max_length=args.max_length, learning_rate=args.learning_rate,
                       warmup=0.0, logging_steps=1, save_steps=args.steps + 1, save_total_limit=1,
                       packing=packing, num_threads=args.threads, seed=42)


# --------------------------------------------------------------------------- measuring


def read_run(run_dir: Path, processes: int, wall_s: float, warmup: int, metrics: dict) -> Run:
    """Tokens/s after ``warmup`` steps, the peak memory and the loss curve, from a finished run's log.

    Raises:
        SystemExit: the log has too few steps to time (``--steps`` must exceed ``--warmup``).
    """
    steps = [e for e in load_log(run_dir) if "loss" in e and "num_input_tokens_seen" in e]
    start = next((e for e in steps if e["step"] == warmup), None)
    end = steps[-1] if steps else None
    if start is None or end is None or end["step"] <= warmup:
        raise SystemExit(f"{run_dir}: the log has steps {[e['step'] for e in steps]}, none past the warm-up step "
                         f"{warmup}: raise --steps above --warmup")
    tokens = end["num_input_tokens_seen"] - start["num_input_tokens_seen"]
    return Run(processes, wall_s, tokens / (end["time"] - start["time"]),
               max(e.get("memory_mb", float("nan")) for e in load_log(run_dir)),
               {e["step"]: e["loss"] for e in steps}, metrics.get("cpu_threads"), metrics.get("total_params"))


def show_failure(run_dir: Path, error: Exception) -> None:
    print(f"  failed: {error}", flush=True)
    log = run_dir / "launch.log"
    if log.exists():
        print("  last lines of launch.log:\n    " + "\n    ".join(log.read_text().splitlines()[-25:]), flush=True)


def launched(train, model_cfg: ModelConfig, args, out: Path, processes: int, backend: str, packing: bool) -> Run | None:
    """One run of ``processes`` processes through ``launch_training``; None when it failed (said why)."""
    t = time.perf_counter()
    try:
        result = launch_training(train, None, model_cfg, train_config(args, out, packing),
                                 launch=LaunchConfig(processes=processes, backend=backend))
    except (ConfigError, TrainingError) as e:
        show_failure(out, e)
        return None
    return read_run(out, processes, time.perf_counter() - t, args.warmup, result.metrics)


def in_process(train, model_cfg: ModelConfig, args, out: Path, packing: bool) -> Run:
    """One run on this process (``run_training``), as a single-process fine-tune runs in a notebook."""
    t = time.perf_counter()
    result = run_training(train, None, model_cfg, train_config(args, out, packing))
    return read_run(out, 1, time.perf_counter() - t, args.warmup, result.metrics)


# --------------------------------------------------------------------------- reporting


def machine() -> str:
    """This machine in one line: CPU, cores, GPUs, library versions."""
    import transformers

    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
               platform.processor() or platform.machine())
    gpus = (f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
            else "no CUDA GPU")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {cores()} cores (load average {load:.2f}), {gpus}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}")


def command() -> str:
    """The command that ran this script, as typed from the project root."""
    exe = Path(sys.executable)
    exe_text = os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else str(exe)
    script = Path(sys.argv[0]).resolve()
    script_text = os.path.relpath(script, ROOT) if script.is_relative_to(ROOT) else str(script)
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    return env + shlex.join([exe_text, script_text, *sys.argv[1:]])


def scaling_table(rows: list[tuple[str, int, Run | None]], args, memory: str) -> str:
    """The markdown table of backends x process counts, efficiency against the same backend's 1 process."""
    lines = ["| backend | processes | batch per process x accumulation | tokens/s (all processes) | "
             f"peak memory per device (MB, {memory}) | scaling efficiency |",
             "|---|---:|---:|---:|---:|---:|"]
    for backend, n, run in rows:
        base = next((r for b, _, r in rows if b == backend and r is not None and r.processes == 1), None)
        batch, accum = per_device_batch(args.batch_size, args.grad_accum, n)
        if run is None:
            lines.append(f"| {backend} | {n} | {batch} x {accum} | failed (above) | | |")
            continue
        eff = f"{run.tokens_per_s / (run.processes * base.tokens_per_s):.0%}" if base else "n/a"
        lines.append(f"| {backend} | {run.processes} | {batch} x {accum} | {run.tokens_per_s:,.0f} | "
                     f"{run.memory_mb:,.0f} | {eff} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- modes


def scaling(args, tmp: Path, smoke: bool) -> None:
    """GPU mode (or its CPU smoke version): each backend at each process count the machine allows."""
    shape, backends = ("tiny", ["ddp"]) if smoke else ("1b", ["ddp", "fsdp"])
    counts = [1, 2] if smoke else [n for n in PROCESS_COUNTS if n <= torch.cuda.device_count()]
    device = "cpu" if smoke else "cuda"
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()  # what methods.Full asks of TrainingArguments
    print(f"machine: {machine()}")
    print(f"command: {command()}")
    base = build_base(shape, tmp / "base")
    train = tickets(8 if smoke else None)
    model_cfg = ModelConfig(name_or_path=str(base), task="causal-lm", method="full", device=device)
    print(f"model: Llama {shape} shape, random weights, full fine-tune, "
          f"{'bf16 autocast on fp32 weights' if bf16 else 'fp32'}; {len(train)} tickets packed into rows of "
          f"{args.max_length} tokens; global batch {args.batch_size} x {args.grad_accum} = "
          f"{args.batch_size * args.grad_accum} rows; {args.steps} steps, the first {args.warmup} untimed; "
          f"median of {args.repeats} run(s)", flush=True)
    if len(counts) < 2:
        print(f"note: {torch.cuda.device_count()} GPU(s): only {counts} process(es) can run here", flush=True)
    single: Run | None = None
    rows: list[tuple[str, int, Run | None]] = []
    for backend in backends:
        for n in counts:
            if n == 1 and single is not None:
                # A launch of one process takes no backend settings (train._backend_args): one baseline for all.
                rows.append((backend, 1, single))
                continue
            runs = []
            for r in range(args.repeats):
                out = tmp / f"{backend}-{n}-{r}"
                run = launched(train, model_cfg, args, out, n, backend, packing=True)
                shutil.rmtree(out, ignore_errors=True)  # a 1B run folder holds ~20 GB (model, last checkpoint)
                if run is None:
                    break
                runs.append(run)
                print(f"  {backend} x {n} run {r + 1}: {run.tokens_per_s:,.0f} tokens/s, peak {run.memory_mb:,.0f} MB, "
                      f"{run.wall_s:.0f} s in all", flush=True)
            run = median_run(runs) if len(runs) == args.repeats else None
            rows.append((backend, n, run))
            if n == 1:
                single = run
    print()
    print(scaling_table(rows, args, "rank 0's CUDA max allocated" if device == "cuda" else "rank 0's RSS"))
    params = next((r.params for _, _, r in rows if r is not None and r.params), None)
    if params:
        print(f"\nparameters trained: {params:,}")
    print()
    if len(backends) > 1:
        print("1 process trains without a DDP or FSDP wrapper (a launch of one process takes no backend settings), "
              "so both backends share its row as their baseline.")
    if smoke:
        print("Smoke run: a tiny model's steps take milliseconds, so these figures check the script, they measure "
              "nothing.")


def median_run(runs: list[Run]) -> Run:
    """The median tokens/s and wall time of repeated runs, their largest memory, the first run's losses."""
    return Run(runs[0].processes, statistics.median(r.wall_s for r in runs),
               statistics.median(r.tokens_per_s for r in runs), max(r.memory_mb for r in runs), runs[0].losses,
               runs[0].threads, runs[0].params)


def cpu_compare(args, tmp: Path) -> None:
    """One process (in-process) against two (launched, gloo), the same fine-tune, repeated alternately."""
    print(f"machine: {machine()}")
    print(f"command: {command()}")
    base = build_base(args.model, tmp / "base")
    train = tickets(8)
    model_cfg = ModelConfig(name_or_path=str(base), task="causal-lm", method="full", device="cpu")
    print(f"model: {args.model} Llama (presets.{args.model}_llama), random weights, full fine-tune, fp32; "
          f"{len(train)} tickets (8 per category), max_length {args.max_length}, global batch "
          f"{args.batch_size} x {args.grad_accum}; {args.steps} steps, tokens/s after the first {args.warmup}; "
          f"{args.repeats} run(s) of each, alternating", flush=True)
    one, two = [], []
    for r in range(args.repeats):
        out = tmp / f"one-{r}"
        one.append(in_process(train, model_cfg, args, out, packing=False))
        shutil.rmtree(out, ignore_errors=True)
        out = tmp / f"two-{r}"
        run = launched(train, model_cfg, args, out, 2, "ddp", packing=False)
        shutil.rmtree(out, ignore_errors=True)
        if run is None:
            raise SystemExit("the 2-process run failed (above); nothing to compare")
        two.append(run)
        print(f"  run {r + 1}: 1 process {one[-1].wall_s:.1f} s, {one[-1].tokens_per_s:,.0f} tokens/s; "
              f"2 processes {run.wall_s:.1f} s, {run.tokens_per_s:,.0f} tokens/s", flush=True)
    a, b = median_run(one), median_run(two)
    steps = sorted(set(a.losses) & set(b.losses))
    diffs = [abs(a.losses[s] - b.losses[s]) for s in steps]
    worst = max(diffs) if diffs else float("nan")
    worst_rel = max((d / abs(a.losses[s]) for d, s in zip(diffs, steps) if a.losses[s]), default=float("nan"))
    print()
    print("| processes | how | threads per process | median wall time (s) | median tokens/s | final loss |")
    print("|---:|---|---:|---:|---:|---:|")
    for run, how in ((a, "in-process `run_training`"), (b, "`launch_training`, gloo")):
        print(f"| {run.processes} | {how} | {run.threads} | {run.wall_s:.1f} | {run.tokens_per_s:,.0f} | "
              f"{run.losses[max(run.losses)]:.4f} |")
    print()
    print(f"2 processes / 1 process: wall time {b.wall_s / a.wall_s:.2f}x, "
          f"tokens/s {b.tokens_per_s / a.tokens_per_s:.2f}x")
    print(f"loss curves over {len(steps)} steps: max abs difference {worst:.2e} (relative {worst_rel:.2e})")


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Run from the project root: .venv/bin/python benchmarks/multi_gpu.py "
        "[--smoke | --cpu-compare]; the GPU mode (no flag) needs CUDA.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true",
                      help="tiny Llama on the CPU, ddp, 1 and 2 processes, a few steps: checks the script (~1 min)")
    mode.add_argument("--cpu-compare", action="store_true",
                      help="CPU: the same fine-tune on 1 process (in-process) and on 2 (launched, gloo)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each configuration; medians are reported")
    ap.add_argument("--steps", type=int, help="optimiser steps per run (default: 20 GPU, 6 smoke, 40 cpu-compare)")
    ap.add_argument("--warmup", type=int, help="untimed first steps (default: 5 GPU, 2 smoke, 3 cpu-compare)")
    ap.add_argument("--batch-size", type=int, help="rows per batch of the spec (default: 4 GPU, 4 smoke, 8 "
                    "cpu-compare); with --grad-accum it makes the global batch every process count keeps")
    ap.add_argument("--grad-accum", type=int, help="accumulation of the spec (default: 8 GPU, 1 otherwise)")
    ap.add_argument("--max-length", type=int, help="tokens per row (default: 512 GPU, 256 smoke, 384 cpu-compare)")
    ap.add_argument("--learning-rate", type=float, help="peak learning rate (default: 2e-5 GPU, 3e-3 otherwise)")
    ap.add_argument("--model", choices=["tiny", "small"], default="small",
                    help="--cpu-compare's model: presets.tiny_llama or small_llama (~3M parameters)")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads per process; 0: the free cores, shared out between the processes")
    ap.add_argument("--tmp-dir", help="where the temporary run folders go (default: the system's temp directory)")
    args = ap.parse_args(argv)
    mode_name = "smoke" if args.smoke else "cpu" if args.cpu_compare else "gpu"
    defaults = {"gpu": dict(steps=20, warmup=5, batch_size=4, grad_accum=8, max_length=512, learning_rate=2e-5),
                "smoke": dict(steps=6, warmup=2, batch_size=4, grad_accum=1, max_length=256, learning_rate=3e-3),
                "cpu": dict(steps=40, warmup=3, batch_size=8, grad_accum=1, max_length=384,
                            learning_rate=3e-3)}[mode_name]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.steps <= args.warmup or args.warmup < 1 or args.repeats < 1:
        ap.error(f"need --steps ({args.steps}) > --warmup ({args.warmup}) >= 1 and --repeats >= 1")
    if args.tmp_dir and Path(args.tmp_dir).resolve().is_relative_to(ROOT):
        ap.error(f"--tmp-dir {args.tmp_dir} is inside the project; run folders go outside it (e.g. /tmp)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (args.smoke or args.cpu_compare) and not torch.cuda.is_available():
        sys.exit(f"multi_gpu.py measures GPUs, and torch {torch.__version__} sees no CUDA GPU here. Run it on a "
                 "machine with CUDA GPUs, or use --smoke (checks the script on the CPU in about a minute) or "
                 "--cpu-compare (the CPU comparison of docs/benchmarks.md, 1 against 2 processes).")
    with tempfile.TemporaryDirectory(prefix="workbench-multi-gpu-", dir=args.tmp_dir) as tmp:
        if args.cpu_compare:
            cpu_compare(args, Path(tmp))
        else:
            scaling(args, Path(tmp), smoke=args.smoke)


if __name__ == "__main__":
    main()
