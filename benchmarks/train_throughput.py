"""Benchmark: the engine's training throughput against a plain peft + torch loop, in the same run.

SmolLM2-135M-Instruct (the ``smollm2-135m-instruct`` preset), LoRA as ``experiments/it-support-smollm2.yaml``
trains it (r 16, alpha 32, dropout 0.05, the engine's target modules, read back from its adapter), on the
IT help-desk tickets' training split, 8 tickets per batch of at most 320 tokens, grouped by length:

- engine: ``workbench.train.run_training`` (Trainer, our callbacks and log, checkpoints), ``--steps`` steps;
- plain: ``AutoModelForCausalLM`` + ``peft.get_peft_model``, ``torch.optim.AdamW``, a linear schedule,
  gradient clipping at 1.0 (Trainer's default) and a bare loop over the same tokenized examples, collated by
  the same collator and batched by the same length-grouped sampler kind.

Throughput is tokens through the model per second of training steps, padding included (both sides count
every input token, as Trainer's ``include_num_input_tokens_seen="all"`` does), from the end of the first
step (warm-up: allocations, first kernels) to the end of the last; model loading, tokenization and saving
are outside it. Each run is a fresh process (nothing a previous run left in memory or in torch's state
carries over), and runs alternate engine / plain so the machine's load falls on both alike; medians of
``--runs``, and their ratio.

    .venv/bin/python benchmarks/train_throughput.py [--runs 3] [--steps 8] [--threads 0] [--method lora]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from workbench import presets  # noqa: E402
from workbench.config import LoraConfig, ModelConfig, TrainConfig  # noqa: E402
from workbench.data import load_dataset, split_dataset  # noqa: E402
from workbench.devices import thread_count  # noqa: E402
from workbench.tasks import get_task  # noqa: E402
from workbench.tokenizer import load_tokenizer  # noqa: E402
from workbench.train import load_log, run_training  # noqa: E402

LORA = LoraConfig(r=16, alpha=32, dropout=0.05)


def train_split():
    ds = load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl")
    return split_dataset(ds, test=0.15, validation=0.1, seed=42, stratify="category")["train"]


def engine(train, base: str, cfg: TrainConfig, out: Path) -> dict:
    """One engine run: throughput from its own training log (steps 1 to N)."""
    t = time.perf_counter()
    result = run_training(train, None, ModelConfig(name_or_path=base, task="causal-lm", method="lora"),
                          replace(cfg, output_dir=str(out)), LORA)
    wall = time.perf_counter() - t
    log = [e for e in load_log(out) if "loss" in e and "num_input_tokens_seen" in e]
    first, last = log[0], log[-1]
    assert first["step"] == 1 and last["step"] == cfg.max_steps, (first["step"], last["step"])
    tokens = last["num_input_tokens_seen"] - first["num_input_tokens_seen"]
    adapter = json.loads((result.model_dir / "adapter_config.json").read_text())
    return {"tokens_per_s": tokens / (last["time"] - first["time"]), "tokens": tokens, "wall_s": wall,
            "targets": sorted(adapter["target_modules"]), "loss": last["loss"]}


def plain(train, base: str, cfg: TrainConfig, targets: list[str], seed: int = 0) -> dict:
    """One plain peft + torch run over the same examples, collator and sampler kind."""
    from peft import LoraConfig as PeftLora, get_peft_model
    from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup
    from transformers.trainer_pt_utils import LengthGroupedSampler

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tok = load_tokenizer(base)
    task = get_task("causal-lm")
    data = task.batches(train, tok, cfg, None)
    collate = task.collator(tok, cfg)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           PeftLora(r=LORA.r, lora_alpha=LORA.alpha, lora_dropout=LORA.dropout,
                                    target_modules=targets, task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, 0, cfg.max_steps)
    sampler = LengthGroupedSampler(cfg.batch_size, dataset=data, lengths=data["length"] if "length" in data.column_names
                                   else None, generator=torch.Generator().manual_seed(seed))
    order = list(sampler)
    keep = [c for c in data.column_names if c in ("input_ids", "labels", "attention_mask", "position_ids")]
    marks, tokens = [], []
    for step in range(cfg.max_steps):
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        batch = collate([{k: data[i][k] for k in keep} for i in idx])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        tokens.append(batch["input_ids"].numel())
    return {"tokens_per_s": sum(tokens[1:]) / (marks[-1] - marks[0]), "tokens": sum(tokens[1:]),
            "wall_s": time.perf_counter() - t0, "loss": loss.item()}


def one_side(side: str, steps: int, threads: int, targets: list[str] | None) -> dict:
    """One run of ``side`` in this process (a fresh one each time: no state carries from run to run)."""
    torch.set_num_threads(threads)
    base = presets.resolve_path("smollm2-135m-instruct")
    train = train_split()
    cfg = TrainConfig(max_steps=steps, learning_rate=1e-3, batch_size=8, max_length=320, warmup=0.0,
                      logging_steps=1, group_by_length=True, num_threads=threads, save_steps=0)
    if side == "engine":
        with tempfile.TemporaryDirectory() as tmp:
            return engine(train, base, cfg, Path(tmp) / "engine")
    return plain(train, base, cfg, targets)


def run_side(side: str, args, threads: int, targets: list[str] | None = None) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--steps", str(args.steps), "--threads", str(threads)]
    if targets:
        cmd += ["--targets", ",".join(targets)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{side} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both; 0: from the machine's load")
    ap.add_argument("--side", choices=["engine", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--targets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:  # a child process: one run, its figures as the last line
        targets = args.targets.split(",") if args.targets else None
        print(json.dumps(one_side(args.side, args.steps, args.threads, targets)))
        return
    threads = thread_count(args.threads)
    print(f"SmolLM2-135M-Instruct LoRA r16, {len(train_split())} training tickets, {args.steps} steps of 8, "
          f"{threads} torch thread(s), load average {open('/proc/loadavg').read().split()[0]}; "
          "each run in a fresh process")
    results = {"engine": [], "plain": []}
    for run in range(args.runs):
        e = run_side("engine", args, threads)
        results["engine"].append(e)
        p = run_side("plain", args, threads, e["targets"])
        results["plain"].append(p)
        print(f"run {run + 1}: engine {e['tokens_per_s']:.0f} tokens/s ({e['tokens']} tokens, {e['wall_s']:.0f} s "
              f"in all), plain {p['tokens_per_s']:.0f} tokens/s ({p['tokens']} tokens, {p['wall_s']:.0f} s in all)",
              flush=True)
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in results.items()}
    print(f"median tokens/s: engine {med['engine']:.0f}, plain peft + torch {med['plain']:.0f}; "
          f"the plain loop is {med['plain'] / med['engine']:.2f}x the engine (bound 1.2x)")


if __name__ == "__main__":
    main()
