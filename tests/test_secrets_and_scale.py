"""Secrets and access (issue #14, point 9) and checks that stay bounded on large data (point 10).

Credentials given on the command line, in a spec or printed by a notebook never reach a run folder's
manifest.json, config.yaml, step files or executed notebooks; a rerun refuses what it cannot restore and
fingerprints every input (base model, pretraining corpus); the dashboard asks for a token unless opted
out. Masking checks measure a sample, and training still checks every row it tokenizes.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from tiny import tiny_base, word_tokenizer
from workbench import repeat
from workbench import tokens as tokens_module
from workbench.config import ConfigError, DataConfig, ExperimentConfig, ModelConfig, PretrainConfig, TrainConfig
from workbench.data import DatasetError, load_dataset
from workbench.pipeline import experiment_splits, input_fingerprints
from workbench.run_folders import (
    RunRecord,
    manifest,
    redact,
    redact_step_files,
    redacted_fields,
    write_config,
    write_manifest,
)
from workbench.tasks import prepare_sft
from workbench.train import TrainingError, check_masking

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("hunter22", "s3cr3t-value", "AKIAIOSFODNN7EXAMPLE", "abc123xyz", "x9pass")


def intents(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(f"{label} message number {i}", label) for label in "ab" for i in range(12)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / "train.csv", index=False)
    return folder


def leaked(folder: Path) -> list[str]:
    """``file: secret`` for every secret of ``SECRETS`` found in a file under ``folder``."""
    return [f"{p.name}: {s}" for p in folder.rglob("*") if p.is_file() for s in SECRETS
            if s in p.read_text(errors="replace")]


# --------------------------------------------------------------------------- manifest, config, step files


@pytest.mark.parametrize("text, kept", [
    ("-p data.source=https://bob:hunter22@example.com/d.csv", "https://[CREDENTIALS]@example.com/d.csv"),
    ("password:x", "password:***"),                        # too short to look like a secret: redacted anyway
    ("--param train.hub_token=s3cr3t-value", "hub_token=***"),
    ("key AKIAIOSFODNN7EXAMPLE in a note", "key [API_KEY] in a note"),
    ("https://x.org/a?api_key=abc123xyz", "api_key=***"),
    ("token: x9pass and more", "token: *** and more"),
])
def test_secrets_in_strings_are_redacted_whatever_their_shape(text, kept):
    out = redact(text)
    assert kept in out
    assert not any(s in out for s in SECRETS)
    assert redact(out) == out  # redacting twice changes nothing


def test_ordinary_values_are_kept():
    for text in ("datasets/banking77", "max_new_tokens=128", "tokenizer=kb-bpe", 'hf_token = ""', "lr 3e-4"):
        assert redact(text) == text


def test_run_folder_files_hold_no_secret_from_the_spec_or_the_command_line(tmp_path):
    cfg = ExperimentConfig(name="x", data=DataConfig(source="https://bob:hunter22@example.com/d.csv",
                                                     pii_allow=("password:x9pass",)))
    run = tmp_path / "runs" / "x" / "1"
    run.mkdir(parents=True)
    write_config(run, cfg)
    write_manifest(run, manifest(cfg, run, argv=["workbench", "run", "x.yaml", "-p",
                                                  "data.source=https://bob:hunter22@example.com/d.csv",
                                                  "-p", "train.hub_token=s3cr3t-value"]))
    assert leaked(run) == []
    man = json.loads((run / "manifest.json").read_text())
    assert "[CREDENTIALS]" in man["command"] and "hub_token=***" in man["command"]
    assert "https://[CREDENTIALS]@example.com/d.csv" in (run / "config.yaml").read_text()


def test_executed_notebook_and_step_yaml_are_redacted_after_the_step(tmp_path):
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
         "source": ['source = "https://bob:hunter22@example.com/d.csv"\n', 'max_length = 128\n']},
        {"cell_type": "code", "metadata": {}, "source": "print(cfg)", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": ["loading https://bob:hunter22@example.com\n"]},
            {"output_type": "display_data", "data": {"text/plain": "token=s3cr3t-value", "image/png": "iVBOR"}}]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "01-x.ipynb"
    path.write_text(json.dumps(nb))
    step = tmp_path / "01-x.yaml"
    step.write_text("data:\n  source: https://bob:hunter22@example.com/d.csv\n")
    redact_step_files(path, step, tmp_path / "missing.yaml")
    assert leaked(tmp_path) == []
    back = json.loads(path.read_text())  # still a notebook
    assert "max_length = 128" in back["cells"][0]["source"]
    assert back["cells"][1]["outputs"][1]["data"]["image/png"] == "iVBOR"


def test_a_cut_notebook_is_redacted_as_text(tmp_path):
    path = tmp_path / "cut.ipynb"
    path.write_text('{"cells": [{"source": "source = \\"https://bob:hunter22@example.com/x')
    redact_step_files(path)
    assert leaked(tmp_path) == []


# --------------------------------------------------------------------------- rerun: what it cannot restore, every input


def recorded_run(project: Path, cfg: ExperimentConfig) -> Path:
    run = project / "runs" / cfg.name / "1"
    run.mkdir(parents=True)
    write_config(run, cfg)
    man = manifest(cfg, run)
    man["data"] = {"splits": dict(experiment_splits(cfg).fingerprints), "inputs": input_fingerprints(cfg)}
    write_manifest(run, man)
    return run


def test_rerun_refuses_a_config_whose_secret_was_redacted(tmp_path, monkeypatch):
    cfg = ExperimentConfig(name="x", data=DataConfig(source="https://bob:hunter22@example.com/d.csv"))
    run = tmp_path / "run"
    run.mkdir()
    write_config(run, cfg)
    write_manifest(run, manifest(cfg, run))
    assert redacted_fields(repeat.load_yaml(ExperimentConfig, run / "config.yaml")) == ["data.source"]
    with pytest.raises(ConfigError, match=r"data.source held a secret.*workbench run"):
        repeat.rerun(run)


def test_rerun_fingerprints_the_base_model_and_the_pretraining_corpus(tmp_path, monkeypatch):
    project = tmp_path / "project"
    intents(project / "datasets" / "intents")
    corpus = project / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The VPN client needs a restart after the update.\n")
    (corpus / "b.txt").write_text("Printers on floor two use the new queue.\n")
    base = tiny_base(project / "base")
    monkeypatch.chdir(project)
    cfg = ExperimentConfig(name="x", data=DataConfig(source="datasets/intents", test=0.25, validation=0.25),
                           model=ModelConfig(name_or_path=str(base), task="causal-lm"),
                           pretrain=PretrainConfig(source=str(corpus)))
    run = recorded_run(project, cfg)
    inputs = json.loads((run / "manifest.json").read_text())["data"]["inputs"]
    assert len(inputs["base_model"]) == 16 and len(inputs["pretraining_corpus"]) > 0
    monkeypatch.setattr(repeat, "run_experiment", lambda c, root, **kw: RunRecord(root, "succeeded", {}, 0.0))
    repeat.rerun(run)  # nothing changed: repeated

    (corpus / "b.txt").write_text("Printers on floor three use the old queue.\n")
    with pytest.raises(DatasetError, match=r"the pretraining corpus changed since 1"):
        repeat.rerun(run)
    (corpus / "b.txt").write_text("Printers on floor two use the new queue.\n")
    repeat.rerun(run)

    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5 + 1e-9}))
    with pytest.raises(DatasetError, match=r"the base model changed since 1.*Restore the base model"):
        repeat.rerun(run)


def test_a_hub_id_base_is_recorded_as_not_checkable():
    cfg = ExperimentConfig(model=ModelConfig(name_or_path="someone/some-model"))
    assert input_fingerprints(cfg) == {"base_model": None}


# --------------------------------------------------------------------------- the dashboard behind a token


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(url: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        return urllib.request.build_opener(NoRedirect).open(url, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code


def test_make_dashboard_serves_behind_a_token_printed_on_start(tmp_path):
    out = subprocess.run(["make", "--no-print-directory", "-n", "-o", "venv", "dashboard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.replace("\\\n", " ")
    command = next(line for line in out.splitlines() if "voila" in line)  # under `make test`, make says more
    args = shlex.split(command)
    env = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
    args = [a for a in args if a.startswith("-") or "=" not in a]
    assert env["HF_HUB_OFFLINE"] == "1" and "--token" in args and "--Voila.ip=127.0.0.1" in args
    port = free_port()
    args = [sys.executable, "-m", "voila", *[a if not a.startswith("--port=") else f"--port={port}" for a in args[1:]]]
    log = tmp_path / "voila.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        deadline = time.time() + 60
        while "token=" not in log.read_text() and time.time() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        url = next(w for w in log.read_text().split() if "token=" in w)
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        assert status_of(f"http://127.0.0.1:{port}/") in (302, 401, 403)  # no token: sent to log in
        assert status_of(url) == 200
    finally:
        proc.terminate()
        proc.wait(15)


# --------------------------------------------------------------------------- large data: sample, then check every row


def test_masking_check_measures_a_sample_of_a_large_dataset(monkeypatch):
    n = 25_000
    ds = load_dataset(pd.DataFrame({"prompt": [f"hello there {i % 7}" for i in range(n)],
                                    "completion": ["hi"] * n}))
    tok = word_tokenizer(["hello", "there", "hi"] + [str(i) for i in range(7)])
    measured = []

    def measure(d, rows, *args):  # what tokenizing the rows would give (4 tokens, 1 trained), without the time
        measured.append(len(rows))
        k = len(rows)
        return {"len_prompt": [3] * k, "len_completion": [1] * k, "len_example": [4] * k, "trained": [1] * k,
                "eos_ok": [True] * k, "unk": [0] * k, "boundary": [False] * k, "words": 4 * k}

    monkeypatch.setattr(tokens_module, "_measure", measure)
    assert check_masking(ds, tok, TrainConfig(max_length=16)) == []
    assert measured == [20_000]  # TokenConfig.sample, not every row


def test_training_still_checks_every_row_for_trained_tokens():
    tok = word_tokenizer(["a", "b", "hi"])
    prompts = ["a b"] * 30 + ["a " * 40] + ["a b"] * 30  # row 30 fills the window
    ds = load_dataset(pd.DataFrame({"prompt": prompts, "completion": ["hi"] * len(prompts)}))
    with pytest.raises(TrainingError, match=r"^1 examples would train on nothing.*row 30"):
        prepare_sft(ds, tok, replace(TrainConfig(max_length=16), packing=False))
    ok = prepare_sft(ds.with_frame(ds.frame.drop(index=30).reset_index(drop=True)), tok, TrainConfig(max_length=16))
    assert len(ok) > 0


def test_a_one_class_training_split_is_refused_before_training():
    from workbench.tasks import label_names

    ds = load_dataset(pd.DataFrame({"text": ["spam offer", "win money", "cheap pills"], "label": ["spam"] * 3}),
                      strict=False)
    with pytest.raises(TrainingError, match=r"every training example has the label spam.*at least two classes"):
        label_names(ds)


def test_workbench_train_config_yaml_is_redacted_too(tmp_path):
    """``run_training`` writes its own config.yaml (no experiment around it): a credential in a path is redacted."""
    from tiny import full_model, quick_train, ticket_splits
    from workbench.train import run_training

    base = tiny_base(tmp_path / "password=hunter22" / "base")
    out = tmp_path / "out"
    run_training(ticket_splits(longest_prompt=160)["train"], None, full_model(base),
                 quick_train(out, max_steps=1, save_steps=1))
    text = (out / "config.yaml").read_text()
    assert "hunter22" not in text and "password=***" in text
