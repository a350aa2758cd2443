"""Benchmark: SmolLM2 from its GGUF preset into the cache, and checked exports back to GGUF.

1. Conversion of ``SmolLM2-135M-Instruct.Q4_1.gguf`` into a cached safetensors folder (into a
   fresh temporary cache each run), against the baseline in the same run: transformers' bare
   de-quantizing load of the same file (``from_pretrained(folder, gguf_file=...)``), which is
   most of the conversion. Then a cache hit in a fresh process's terms (hash + record check).
2. Exports of a LoRA adapter on SmolLM2 (random small B weights standing in for a fine-tune)
   and on the tests' tiny Llama: the agreement figures of each check, F16 and Q8_0.

    .venv/bin/python benchmarks/gguf_export.py [--runs 3] [--exports-only] [--skip-smollm2-export]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from timing import timed  # noqa: E402
from workbench import model_sources, presets  # noqa: E402
from workbench.export import ExportCheckFailed, export_model  # noqa: E402
from workbench.models import Loaded, save_trained  # noqa: E402
from workbench.tokenizer import load_tokenizer  # noqa: E402


def adapter_run(base: str, base_folder: str, out: Path, targets: list[str], std: float | None) -> Path:
    """A saved LoRA adapter on ``base``: B drawn with ``std`` (None: peft's random init of both matrices)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM",
                                      init_lora_weights=std is not None))
    if std is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, std)
    save_trained(Loaded(model, load_tokenizer(base_folder), "cpu", "causal-lm", base), out / "model", "lora")
    return out


def report_exports(label: str, run: Path, out_root: Path) -> None:
    for gguf in ("f16", "q8_0"):
        started = time.perf_counter()
        try:
            result = export_model(run, out_root / f"{label}-{gguf}", gguf=gguf)
        except ExportCheckFailed as e:
            result = e.result
        print(f"\n{label}, {gguf} ({time.perf_counter() - started:.0f} s):")
        print(result.to_text())
        print("  first prompt's answers:", result.answers)


def conversion_timings(gguf: Path, work: Path, runs: int) -> Path:
    from transformers import AutoModelForCausalLM

    bare, _ = timed(lambda: AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name), runs)

    def convert_fresh():
        cache = work / f"cache-{time.perf_counter_ns()}"
        folder = model_sources.convert_gguf(gguf, cache)
        shutil.rmtree(cache)
        return folder

    convert, _ = timed(convert_fresh, runs)
    folder = model_sources.convert_gguf(gguf, work / "cache")

    def hit():
        model_sources._HASHES.clear()  # as a fresh process: hash the file, check the record
        return model_sources.convert_gguf(gguf, work / "cache")

    reuse, _ = timed(hit, runs)
    print(f"SmolLM2 Q4_1 ({gguf.stat().st_size / 1e6:.0f} MB), median of {runs}:")
    print(f"  baseline: transformers' de-quantizing load from GGUF  {bare:6.1f} s  1x")
    print(f"  convert_gguf into a fresh cache (load, rebuild, save)  {convert:6.1f} s  {convert / bare:.2f}x")
    print(f"  cache hit (sha256 of the file + record check)           {reuse:6.2f} s")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exports-only", action="store_true", help="skip the conversion timings")
    ap.add_argument("--skip-smollm2-export", action="store_true")
    args = ap.parse_args()
    gguf = model_sources.SMOLLM2.gguf_file(model_sources.SMOLLM2.name)
    work = Path(tempfile.mkdtemp(prefix="gguf-bench-"))
    try:
        if args.exports_only:
            folder = model_sources.convert_gguf(gguf)  # the project cache
        else:
            folder = conversion_timings(gguf, work, args.runs)

        tok = presets.kb_tokenizer(600)  # the tests' tiny Llama, with weights large enough for varied greedy tokens
        tiny = presets.save_base_model(presets.tiny_llama(len(tok), bos_token_id=tok.bos_token_id,
                                                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                                          initializer_range=0.2), tok, work / "tiny-base")
        report_exports("tiny Llama", adapter_run(str(tiny), str(tiny), work / "tiny-run",
                                                  ["q_proj", "v_proj", "down_proj"], None), work)
        if not args.skip_smollm2_export:
            report_exports("SmolLM2", adapter_run("smollm2-135m-instruct", str(folder), work / "smol-run",
                                                  ["q_proj", "v_proj"], 0.01), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
