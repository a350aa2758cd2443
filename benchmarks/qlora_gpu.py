"""Benchmark: QLoRA tokens/s and peak memory on a GPU, our settings versus the plain peft + Trainer recipe.

Llama-architecture models are built from config with random weights (Llama-3.2-1B and
Llama-3.1-8B shapes), saved once, and loaded in 4-bit by both recipes in the same run:

- ours: ``workbench.models.load_model`` with the project's defaults: NF4 with double
  quantization, bf16 compute, ``prepare_model_for_kbit_training``, LoRA r=16 on all linear
  layers, gradient checkpointing, paged 8-bit AdamW, bf16 autocast;
- plain: the recipe most tutorials show: NF4 without double quantization, fp32 compute,
  LoRA r=8 on q_proj/v_proj, Trainer defaults (adamw_torch, fp32).

Each recipe trains ``--steps`` steps (after ``--warmup`` untimed ones) on random token
sequences of ``--seq-len`` tokens; the script prints tokens/s, peak allocated memory and
trainable parameters per recipe and size, and the ratios ours/plain.

    python benchmarks/qlora_gpu.py                     # 1b and 8b at 2048 tokens (needs a CUDA GPU)
    python benchmarks/qlora_gpu.py --sizes 1b --steps 20
    python benchmarks/qlora_gpu.py --smoke             # tiny shapes on the CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench import presets  # noqa: E402
from workbench.config import LoraConfig, ModelConfig, QuantConfig  # noqa: E402
from workbench.models import load_model  # noqa: E402


def build(size: str, out: Path, smoke: bool) -> Path:
    from transformers import AutoModelForCausalLM

    cfg = presets.tiny_llama(32000) if smoke else presets.llama_shape(size)
    device = "cpu" if smoke else "cuda"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32 if smoke else torch.bfloat16)
    model.save_pretrained(out)
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def ours(path: Path, device: str):
    cfg = ModelConfig(name_or_path=str(path), task="causal-lm", method="qlora", device=device,
                      gradient_checkpointing=True)
    loaded = load_model(cfg, QuantConfig(), LoraConfig(), tokenizer=SimpleNamespace(pad_token_id=0))
    optim = "paged_adamw_8bit" if device == "cuda" else "adamw_torch"
    return loaded.model, {"optim": optim, "bf16": device == "cuda", "gradient_checkpointing": False}


def plain(path: Path, device: str):
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, device_map={"": device})
    model = get_peft_model(model, PeftLora(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                           task_type="CAUSAL_LM"))
    return model, {"optim": "adamw_torch", "bf16": False, "gradient_checkpointing": False}


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int, seq_len: int, vocab: int):
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(3, vocab, (n, seq_len), generator=g)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return {"input_ids": self.data[i], "labels": self.data[i]}


def measure(recipe, path: Path, args, device: str) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, extra = recipe(path, device)
    model.config.use_cache = False
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps = args.warmup + args.steps
    data = Tokens(steps * args.batch_size, args.seq_len, model.config.vocab_size)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            if state.global_step > args.warmup:
                times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=args.batch_size,
                                  learning_rate=1e-4, logging_steps=10_000, save_strategy="no", report_to="none",
                                  disable_tqdm=True, use_cpu=device == "cpu", dataloader_num_workers=0,
                                  remove_unused_columns=False, **extra)
        Trainer(model=model, args=targs, train_dataset=data, callbacks=[Clock()]).train()
    tokens = args.batch_size * args.seq_len * len(times)
    result = {
        "tokens_per_s": tokens / sum(times) if times else float("nan"),
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
        "trainable_params": trainable,
        "timed_steps": len(times),
    }
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["1b", "8b"], choices=["1b", "8b"])
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, to check the script itself")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.seq_len, args.steps, args.warmup = ["1b"], 64, 3, 1
        device = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("qlora_gpu.py needs a CUDA GPU (bitsandbytes' paged optimisers and the timings are GPU-only); "
                 "use --smoke to check the script on the CPU.")
    else:
        device = "cuda"
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = build(size, Path(tmp) / size, args.smoke)
            for name, recipe in (("ours", ours), ("plain", plain)):
                results[f"{size}/{name}"] = r = measure(recipe, path, args, device)
                print(f"{size:>3} {name:<6} {r['tokens_per_s']:10,.0f} tokens/s   peak {r['peak_memory_gb']:6.2f} GB   "
                      f"trainable {r['trainable_params']:,}", flush=True)
            o, p = results[f"{size}/ours"], results[f"{size}/plain"]
            print(f"{size:>3} ours/plain: speed {o['tokens_per_s'] / p['tokens_per_s']:.2f}x, "
                  f"memory {o['peak_memory_gb'] / p['peak_memory_gb']:.2f}x" if device == "cuda" else
                  f"{size:>3} ours/plain: speed {o['tokens_per_s'] / p['tokens_per_s']:.2f}x (CPU smoke run)")
            import shutil

            shutil.rmtree(path, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
