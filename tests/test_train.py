"""Fine-tuning on tiny models built here: full, LoRA, QLoRA (bitsandbytes NF4 on the CPU), resume, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tiny import bpe_tokenizer
from workbench import presets
from workbench.config import ExperimentConfig, LoraConfig, ModelConfig, QuantConfig, TrainConfig, from_dict
from workbench.data import load_dataset, split_dataset
from workbench.models import load_causal_lm, merge_and_export
from workbench.pipeline import finetune
from workbench.train import (
    COMPLETE,
    TrainingError,
    complete_checkpoints,
    load_log,
    pack,
    read_status,
    run_training,
)

ROOT = Path(__file__).resolve().parent.parent
TICKETS = ROOT / "datasets" / "it_support" / "tickets.jsonl"


@pytest.fixture(scope="session")
def tok():
    return bpe_tokenizer(vocab_size=600)


@pytest.fixture(scope="session")
def base(tmp_path_factory, tok):
    """A tiny Llama with random weights, saved and loaded back through from_pretrained."""
    cfg = presets.tiny_llama(len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    return presets.save_base_model(cfg, tok, tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="session")
def splits():
    ds = load_dataset(TICKETS)
    short = ds.frame[ds.frame.prompt.str.len() < 160]  # keeps every prompt well inside max_length=128
    small = ds.with_frame(short.groupby("category").head(8))
    return split_dataset(small, test=0, validation=0.2, stratify="category")


def _losses(run_dir) -> list[float]:
    return [e["loss"] for e in load_log(run_dir) if "loss" in e]


def test_full_sft_loss_falls_and_run_folder_is_complete(tmp_path, base, splits):
    r = run_training(splits["train"], splits["validation"], ModelConfig(name_or_path=str(base), task="causal-lm"),
                     TrainConfig(output_dir=str(tmp_path / "run"), max_steps=30, learning_rate=3e-3, batch_size=8,
                                 max_length=256, logging_steps=5, save_steps=10))
    losses = _losses(r.run_dir)
    assert r.status == "succeeded" and r.global_step == 30
    assert losses[-1] < losses[0] - 0.5
    names = {p.name for p in r.run_dir.iterdir()}
    assert {"config.yaml", "train_log.jsonl", "model", "metrics.json", "status.json", "checkpoints"} <= names
    entry = next(e for e in load_log(r.run_dir) if e["step"] == 10)
    assert {"loss", "learning_rate", "tokens_per_s", "memory_mb", "epoch"} <= set(entry)
    assert json.loads((r.run_dir / "metrics.json").read_text())["eval_loss"] > 0
    assert (r.model_dir / "model.safetensors").exists() and not list(r.model_dir.glob("*.bin"))
    assert read_status(r.run_dir)["status"] == "succeeded"
    assert all((c / COMPLETE).exists() for c in complete_checkpoints(r.run_dir / "checkpoints"))


def test_qlora_on_cpu_trains_saves_reloads_and_merges(tmp_path, base, splits):
    import bitsandbytes as bnb

    cfg = ModelConfig(name_or_path=str(base), task="causal-lm", method="qlora", device="cpu")
    r = run_training(splits["train"], None, cfg,
                     TrainConfig(output_dir=str(tmp_path / "q"), max_steps=30, learning_rate=1e-2, batch_size=8,
                                 max_length=256, logging_steps=5),
                     LoraConfig(r=8, alpha=16), QuantConfig())
    losses = _losses(r.run_dir)
    assert losses[-1] < losses[0] - 0.05, losses                       # it learns
    assert (r.model_dir / "adapter_model.safetensors").exists()       # only the adapter is saved
    assert not (r.model_dir / "model.safetensors").exists()

    x = torch.tensor([splits["train"].to_hf()[0]["prompt"] and [1, 40, 41, 42, 43, 44]])
    q = QuantConfig()
    a, _ = load_causal_lm(r.model_dir, quant=q)                        # fresh 4-bit base + adapter
    b, _ = load_causal_lm(r.model_dir, quant=q)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in a.modules())
    with torch.no_grad():
        la, lb = a(x).logits, b(x).logits
    assert torch.equal(la, lb)                                          # identical outputs on reload

    merged = merge_and_export(r.model_dir, tmp_path / "merged")
    m, _ = load_causal_lm(merged)
    assert not any(isinstance(mod, bnb.nn.Linear4bit) for mod in m.modules())
    assert all(p.dtype == torch.float32 for p in m.parameters())      # merged into a full-precision base
    fp, _ = load_causal_lm(r.model_dir)                                 # fp32 base + adapter, unmerged
    with torch.no_grad():
        assert torch.allclose(m(x).logits, fp(x).logits, atol=1e-4)
        assert (m(x).logits - la).abs().max() < 0.5                      # close to the 4-bit model it came from


def test_lora_adapter_and_merge_match(tmp_path, base, splits):
    r = run_training(splits["train"], None, ModelConfig(name_or_path=str(base), task="causal-lm", method="lora"),
                     TrainConfig(output_dir=str(tmp_path / "l"), max_steps=10, learning_rate=1e-2, batch_size=8,
                                 max_length=128))
    x = torch.tensor([[1, 50, 51, 52]])
    adapter, _ = load_causal_lm(r.model_dir)
    merged, _ = load_causal_lm(merge_and_export(r.model_dir, tmp_path / "m"))
    with torch.no_grad():
        assert torch.allclose(adapter(x).logits, merged(x).logits, atol=1e-5)


def test_packing_keeps_examples_apart(base):
    packed = pack([[1, 5, 6, 7], [1, 8, 9], [1, 10]], [[-100, 5, 6, 7], [-100, 8, 9], [1, 10]], max_length=8)
    assert packed["position_ids"] == [[0, 1, 2, 3, 0, 1, 2], [0, 1]]
    assert packed["labels"][0] == [-100, 5, 6, 7, -100, 8, 9]          # first label of each example masked
    assert all(len(r) <= 8 for r in packed["input_ids"])
    from workbench.models import load_model

    model = load_model(ModelConfig(name_or_path=str(base), task="causal-lm", device="cpu")).model.eval()
    with torch.no_grad():
        together = model(input_ids=torch.tensor([packed["input_ids"][0]]),
                         position_ids=torch.tensor([packed["position_ids"][0]])).logits[0]
        first = model(input_ids=torch.tensor([[1, 5, 6, 7]])).logits[0]
        second = model(input_ids=torch.tensor([[1, 8, 9]])).logits[0]
    assert torch.allclose(together[:4], first, atol=1e-5)
    assert torch.allclose(together[4:], second, atol=1e-5)             # no attention across the boundary


def test_fully_masked_examples_stop_training_before_it_starts(tmp_path, base):
    ds = load_dataset(pd.DataFrame({"prompt": ["word " * 300, "short"], "completion": ["answer", "answer"]}))
    with pytest.raises(TrainingError, match=r"1 examples would train on nothing.*row 0"):
        run_training(ds, None, ModelConfig(name_or_path=str(base), task="causal-lm"),
                     TrainConfig(output_dir=str(tmp_path / "x"), max_steps=2, max_length=64))
    assert read_status(tmp_path / "x")["status"] == "failed"


def test_nan_loss_stops_with_a_message(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from workbench.train import _callbacks

    cb = _callbacks(tmp_path, "cpu", None, None, 0)
    state = TrainerState()
    state.global_step = 7
    with pytest.raises(TrainingError, match="the loss became nan at step 7. Lower the learning rate"):
        cb.on_log(TrainingArguments(output_dir=str(tmp_path), report_to="none"), state, TrainerControl(),
                  logs={"loss": float("nan")})


def test_stop_then_resume_finishes_the_planned_steps(tmp_path, base, splits):
    stop = threading.Event()
    cfg = TrainConfig(output_dir=str(tmp_path / "s"), max_steps=20, learning_rate=3e-3, batch_size=8, max_length=128,
                      logging_steps=1)
    model = ModelConfig(name_or_path=str(base), task="causal-lm", method="lora")

    def on_log(entry):
        if entry["step"] >= 6:
            stop.set()

    first = run_training(splits["train"], None, model, cfg, stop=stop, on_log=on_log)
    assert first.status == "stopped" and 6 <= first.global_step < 20
    assert complete_checkpoints(tmp_path / "s" / "checkpoints")[-1].name == f"checkpoint-{first.global_step}"
    assert read_status(tmp_path / "s")["status"] == "stopped"
    second = run_training(splits["train"], None, model, cfg)
    assert second.status == "succeeded" and second.global_step == 20
    steps = [e["step"] for e in load_log(tmp_path / "s") if "loss" in e]
    assert steps == sorted(set(steps)) and steps[-1] == 20              # one log entry per step, no repeats


def test_out_of_memory_retries_with_half_the_batch(tmp_path, base, splits, monkeypatch):
    from transformers import Trainer

    real = Trainer.train
    calls = []

    def flaky(self, *a, **kw):
        calls.append(self.args.per_device_train_batch_size)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, *a, **kw)

    monkeypatch.setattr(Trainer, "train", flaky)
    r = run_training(splits["train"], None, ModelConfig(name_or_path=str(base), task="causal-lm"),
                     TrainConfig(output_dir=str(tmp_path / "o"), max_steps=4, batch_size=8, grad_accum=1,
                                 max_length=128))
    assert calls == [8, 4]
    assert r.metrics["oom_retries"] == [{"batch_size": 4, "grad_accum": 2}]
    calls.clear()
    with pytest.raises(TrainingError, match="out of GPU memory at batch_size=8.*Lower batch_size"):
        run_training(splits["train"], None, ModelConfig(name_or_path=str(base), task="causal-lm"),
                     TrainConfig(output_dir=str(tmp_path / "o2"), max_steps=4, batch_size=8, max_length=128,
                                 oom_retry=False))


def test_pretrain_from_scratch_on_the_knowledge_base(tmp_path):
    corpus = load_dataset(ROOT / "datasets" / "it_support" / "kb", reader="text", text_unit="paragraph")
    assert corpus.format == "corpus" and len(corpus) > 200
    from workbench.train import pretrain

    r = pretrain(corpus, tmp_path / "pre", TrainConfig(max_steps=15, learning_rate=3e-3, batch_size=8, max_length=128,
                                                       logging_steps=5), vocab_size=500, preset="tiny")
    losses = _losses(r.run_dir)
    assert losses[-1] < losses[0] - 0.5
    assert (tmp_path / "pre" / "base" / "tokenizer.json").exists() and (r.model_dir / "model.safetensors").exists()


KILL_STEPS, CHECKPOINT_EVERY = 40, 10


def _experiment(base, out) -> dict:
    return {"name": "kill", "data": {"source": str(TICKETS), "validation": 0.1, "test": 0.0, "stratify": "category"},
            "model": {"name_or_path": str(base), "task": "causal-lm", "method": "full"},
            "train": {"output_dir": str(out), "max_steps": KILL_STEPS, "save_steps": CHECKPOINT_EVERY,
                      "learning_rate": 3e-3, "batch_size": 8, "max_length": 256, "logging_steps": 5,
                      "save_total_limit": 10, "num_threads": 1}}


def test_kill_minus_nine_then_resume_matches_an_uninterrupted_run(tmp_path, base):
    spec = _experiment(base, tmp_path / "killed")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", str(path), "--quiet"], cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = tmp_path / "killed" / "checkpoints" / "checkpoint-20" / COMPLETE
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached its second checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_status(tmp_path / "killed")["status"] == "died"         # running, said by a process that is gone

    resumed = finetune(from_dict(ExperimentConfig, spec))
    assert resumed.metrics["resumed_from"].endswith(("checkpoint-20", "checkpoint-30"))
    assert resumed.status == "succeeded" and resumed.global_step == KILL_STEPS

    clean = finetune(from_dict(ExperimentConfig, _experiment(base, tmp_path / "clean")))
    # Stated tolerance: evaluation loss within 1e-4 (relative); CPU runs are deterministic here.
    assert resumed.metrics["eval_loss"] == pytest.approx(clean.metrics["eval_loss"], rel=1e-4)
    steps = [e["step"] for e in load_log(tmp_path / "killed") if "loss" in e]
    assert steps == sorted(set(steps)) and steps[-1] == KILL_STEPS


def test_headline_metrics_and_the_curves_file(tmp_path):
    import json

    from workbench.train import headline_metrics, write_training_curves

    metrics = {"train_loss": 1.5, "eval_loss": 1.2, "eval_note": "text", "global_step": 6, "device": "cpu",
               "trainable_params": 10}
    assert headline_metrics(metrics) == {"train_loss": 1.5, "eval_loss": 1.2, "eval_note": "text"}
    assert headline_metrics(metrics, numbers=True) == {"train_loss": 1.5, "eval_loss": 1.2}
    assert list(headline_metrics(metrics, extra=("device", "trainable_params"))) == [
        "train_loss", "eval_loss", "eval_note", "device", "trainable_params"]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0, "eval_loss": 2.5}]))
    png = write_training_curves(tmp_path)
    assert png.startswith(b"\x89PNG") and (tmp_path / "training_curves.png").read_bytes() == png
