"""Runs and smaller fixes (issue #13): rerun from anywhere, runs compare of a failed run, Ctrl-C,
steps per epoch of the rows that train, readable tokenizer names, the comparison probe's C,
data.max_train_rows, adapter columns, exit codes, the label summary after cleaning, thread warnings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tiny import tiny_base, word_tokenizer
from workbench import devices, pipeline, repeat
from workbench import train as train_module
from workbench import notebook_runner as runner
from workbench.cli import EXIT_CODES, main
from workbench.config import ConfigError, DataConfig, ExperimentConfig, ModelConfig, TokenConfig, TrainConfig, \
    dump_yaml, from_dict
from workbench.data import DatasetError, data_report, load_dataset
from workbench.pipeline import experiment_splits
from workbench.run_folders import RunRecord, manifest, write_config, write_manifest
from workbench.run_status import STOPPED_BY_USER
from workbench.runs_table import RunComparison, compare_runs, list_runs
from workbench.tokenizer import load_tokenizer, tokenizer_name
from workbench.tokens import length_stats

ROOT = Path(__file__).resolve().parent.parent
WORDS = "a b c d e hello there hi".split()


def intents(folder: Path, per_label: dict[str, int]) -> Path:
    """A folder holding ``train.csv``: ``per_label[label]`` distinct texts of each label."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(f"{label} message number {i}", label) for label, n in per_label.items() for i in range(n)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / "train.csv", index=False)
    return folder


def fake_run(root: Path, name: str, status: dict, cfg: dict, metrics: dict | None = None) -> Path:
    run = root / "exp" / name
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps(status))
    (run / "config.yaml").write_text(dump_yaml(from_dict(ExperimentConfig, cfg)))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


# --------------------------------------------------------------------------- 1. rerun from another folder


def test_rerun_finds_the_data_from_any_working_directory(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    intents(project / "datasets" / "intents", {"a": 12, "b": 12})
    monkeypatch.chdir(project)
    cfg = ExperimentConfig(name="x", data=DataConfig(source="datasets/intents", test=0.25, validation=0.25))
    run = project / "runs" / "x" / "1"
    run.mkdir(parents=True)
    write_config(run, cfg)
    man = manifest(cfg, run)
    man["data"] = {"splits": dict(experiment_splits(cfg).fingerprints)}
    write_manifest(run, man)
    assert man["paths"] == {"data.source": {"given": "datasets/intents",
                                            "absolute": str(project / "datasets" / "intents"),
                                            "relative": "datasets/intents"}}  # minilm is a preset, not a path
    assert man["cwd"] == str(project)
    seen = []
    monkeypatch.setattr(repeat, "run_experiment",
                        lambda c, root, **kw: seen.append((c, root)) or RunRecord(root, "succeeded", {}, 0.0))

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    repeat.rerun(run)  # by its absolute path
    assert seen[-1][0].data.source == str(project / "datasets" / "intents")

    moved = tmp_path / "moved"
    shutil.move(project, moved)  # neither the absolute path nor the recorded working directory holds it now
    monkeypatch.chdir(moved)
    repeat.rerun("runs/x/1")  # relative to the current folder
    assert seen[-1][0].data.source == str(moved / "datasets" / "intents")

    shutil.rmtree(moved / "datasets")
    with pytest.raises(DatasetError) as err:
        repeat.rerun("runs/x/1")
    message = str(err.value)
    for tried in (project / "datasets" / "intents", moved / "datasets" / "intents"):
        assert str(tried) in message
    assert "Hub" not in message and "hub" not in message

    assert main(["rerun", "runs/x/1", "--quiet"]) == 2
    err_text = capsys.readouterr().err
    assert "datasets/intents" in err_text and "Hub" not in err_text and "Traceback" not in err_text
    assert main(["rerun", str(tmp_path), "--quiet"]) == 2
    assert "not a run folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- 2. runs compare, failures included


def test_runs_compare_says_how_a_failed_run_differs(tmp_path, capsys):
    failed = fake_run(tmp_path, "1", {"status": "failed", "reason": "03-finetune-full.ipynb: cell 5: boom"},
                      {"train": {"learning_rate": 1e-4}})
    ok = fake_run(tmp_path, "2", {"status": "succeeded", "reason": ""}, {"train": {"learning_rate": 3e-4}},
                  {"train-full": {"eval_loss": 0.5, "eval_accuracy": 0.9}})
    diff = compare_runs(failed, ok)
    assert diff.status == ("failed", "succeeded") and diff.only_b == ["train-full.eval_accuracy",
                                                                      "train-full.eval_loss"]
    config, metrics = diff  # unpacks as before
    assert ("train.learning_rate", 1e-4, 3e-4) in config and metrics == []
    assert main(["runs", "compare", str(failed), str(ok)]) == 0
    out = capsys.readouterr().out
    assert "status: failed -> succeeded" in out and "boom" in out
    assert "metrics only in B (2; A failed): train-full.eval_accuracy, train-full.eval_loss" in out
    assert "identical" not in out.split("config")[-1]

    twin = fake_run(tmp_path, "3", {"status": "succeeded"}, {"train": {"learning_rate": 3e-4}},
                    {"train-full": {"eval_loss": 0.5, "eval_accuracy": 0.9}})
    assert compare_runs(ok, twin).lines() == ["status: both succeeded", "config: identical", "metrics: identical"]
    assert main(["runs", "compare", str(ok), str(tmp_path)]) == 2  # not a run folder: a message, not a traceback


def test_runs_panel_shows_status_and_the_metrics_one_run_lacks(tmp_path):
    from workbench.panels import RunsPanel

    fake_run(tmp_path, "1", {"status": "failed", "reason": "cell 5: boom"}, {})
    fake_run(tmp_path, "2", {"status": "succeeded"}, {}, {"train-full": {"eval_loss": 0.5}})
    p = RunsPanel(tmp_path)
    p.select.value = tuple(v for _, v in p.select.options)
    p.diff_btn.click()
    assert "cell 5: boom" in p.diff.value and "only in" in p.diff.value and "train-full.eval_loss" in p.diff.value


# --------------------------------------------------------------------------- 3. Ctrl-C


def test_ctrl_c_marks_the_run_and_its_training_step_stopped(tmp_path, monkeypatch):
    intents(tmp_path / "data", {"a": 8, "b": 8})
    cfg = ExperimentConfig(name="x", data=DataConfig(source=str(tmp_path / "data"), test=0.25, validation=0.25),
                           notebooks=["03_finetune.ipynb"])

    def execute(path, out, params, timeout):  # training started, then the user pressed Ctrl-C
        step = Path(params["output_dir"])
        step.mkdir(parents=True)
        (step / "status.json").write_text(json.dumps({"status": "running", "reason": "", "time": 0}))
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_execute", execute)
    monkeypatch.setattr(runner, "notebook_parameters", lambda path, step_cfg, extra: dict(extra))  # papermill is slow
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(cfg, tmp_path / "runs")
    run = next((tmp_path / "runs" / "x").iterdir())
    status = json.loads((run / "status.json").read_text())
    assert (status["status"], status["reason"], status["step"]) == ("stopped", STOPPED_BY_USER, "1/1 finetune-full")
    assert "Ctrl-C" in STOPPED_BY_USER
    step = json.loads((run / "train-full" / "status.json").read_text())
    assert (step["status"], step["reason"]) == ("stopped", STOPPED_BY_USER) and "finished" in step


def test_ctrl_c_in_workbench_train_leaves_the_folder_stopped(tmp_path, monkeypatch):
    intents(tmp_path / "data", {"a": 8, "b": 8})
    out = tmp_path / "train"

    def training(*args, **kw):  # the training loop itself, interrupted after run_training said running
        (out / "status.json").write_text(json.dumps({"status": "running", "reason": ""}))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_run", training)
    cfg = ExperimentConfig(data=DataConfig(source=str(tmp_path / "data")), train=TrainConfig(output_dir=str(out)))
    with pytest.raises(KeyboardInterrupt):
        pipeline.finetune(cfg)
    assert json.loads((out / "status.json").read_text())["status"] == "stopped"


# --------------------------------------------------------------------------- 4. steps per epoch of the rows that train


def test_steps_per_epoch_count_the_rows_that_train():
    tok = word_tokenizer(WORDS)
    ds = load_dataset(pd.DataFrame({"text": ["a b c d"] * 50 + ["hello there"] * 50, "label": ["x", "y"] * 50}))
    cfg = TokenConfig(max_length=8, batch_size=10, sample=None)
    everything = length_stats(ds, tok, cfg)
    assert (everything.train_rows, everything.steps_per_epoch_padded) == (100, 10)
    trained = length_stats(ds, tok, cfg, train_rows=70)
    assert (trained.train_rows, trained.steps_per_epoch_padded) == (70, 7)
    assert trained.summary()["steps_per_epoch"] == 7 and trained.summary()["train_rows"] == 70
    assert trained.steps_per_epoch_packed == 3  # 70 rows of 3 tokens on average, 8 per packed row, 10 rows a step
    assert trained.run_tokens == 210 and trained.total_tokens == 300  # the cost counts what trains


def test_the_token_panel_passes_the_train_rows_on():
    from workbench.panels import TokenPanel
    from workbench.tokens import token_report

    asked = []

    def report(ds, toks, cfg, train_rows=None):
        asked.append(train_rows)
        return token_report(ds, toks, cfg, train_rows=train_rows)

    ds = load_dataset(pd.DataFrame({"text": ["a b", "c d", "e"], "label": ["x", "y", "x"]}))
    p = TokenPanel(ds, {"words": word_tokenizer(WORDS)}, TokenConfig(sample=None, batch_size=1), report=report,
                   train_rows=2)
    assert asked == [2] and "rows per epoch" in p.table.value


# --------------------------------------------------------------------------- 5. readable tokenizer names


def test_tokenizers_are_named_readably(tmp_path):
    folder = tmp_path / "lib" / "site-packages" / "some_pkg" / "model"
    word_tokenizer(WORDS).save_pretrained(folder)
    tok = load_tokenizer(folder)
    assert tokenizer_name(tok) == "some_pkg/model"  # a generic folder name comes with its parent, no path
    assert tokenizer_name(tok, "my-preset") == "my-preset"
    gguf = tmp_path / "gguf" / "SmolLM2-135M-Instruct-Q4_K_M-0123456789abcdef"
    gguf.mkdir(parents=True)
    assert tokenizer_name(tok, gguf) == "SmolLM2-135M-Instruct-Q4_K_M"
    unnamed = word_tokenizer(WORDS)
    assert tokenizer_name(unnamed) == f"unnamed WordLevel ({len(unnamed)} tokens)"
    ds = load_dataset(pd.DataFrame({"text": ["a b"], "label": ["x"]}))
    assert length_stats(ds, tok, TokenConfig(sample=None)).tokenizer == "some_pkg/model"


def test_a_model_specific_tokenizer_class_is_named():
    from workbench.presets import resolve_tokenizer

    tok = resolve_tokenizer("minilm")
    assert tokenizer_name(tok, "minilm") == "minilm (BertTokenizer)"
    assert "site-packages" not in tokenizer_name(tok) and tokenizer_name(tok).endswith("/model (BertTokenizer)")


# --------------------------------------------------------------------------- 6. the comparison probe's C


def test_the_comparison_probe_takes_the_configured_c():
    from workbench.compare import model_set

    asked = []

    def fit(train, encoder, C=10.0):
        asked.append(C)
        return lambda texts: ["a"] * len(texts)

    ds = load_dataset(pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "y"]}))
    model_set(ds, {}, train=ds, probe=True, fit=fit, probe_c=TrainConfig(probe_c=7.0).probe_c)
    model_set(ds, {}, train=ds, probe=True, fit=fit)
    assert asked == [7.0, 10.0]
    import inspect

    from workbench.probe import fit_probe
    # the probe a comparison fits without a spec is the one LP-FT starts from: one default C
    assert inspect.signature(fit_probe).parameters["C"].default == TrainConfig().probe_c


# --------------------------------------------------------------------------- 7. data.max_train_rows


def test_max_train_rows_trains_on_a_seeded_subset_of_the_train_split(tmp_path, monkeypatch):
    intents(tmp_path / "data", {"a": 20, "b": 20})
    got = []
    monkeypatch.setattr(pipeline, "run_training", lambda train, *a, **kw: got.append(train))
    cfg = ExperimentConfig(data=DataConfig(source=str(tmp_path / "data"), max_train_rows=6),
                           train=TrainConfig(output_dir=str(tmp_path / "t")))
    pipeline.finetune(cfg)
    pipeline.finetune(cfg)
    pipeline.finetune(from_dict(ExperimentConfig, {"data": {"source": str(tmp_path / "data")},
                                                   "train": {"output_dir": str(tmp_path / "t")}}))
    whole = set(experiment_splits(cfg)["train"].frame["text"])
    assert len(got[0]) == 6 and set(got[0].frame["text"]) <= whole
    assert got[0].frame["text"].tolist() == got[1].frame["text"].tolist()  # the same rows every time
    assert len(got[2]) == len(whole)  # 0: every row
    with pytest.raises(ConfigError, match="max_train_rows must be 0"):
        DataConfig(max_train_rows=-1)


# --------------------------------------------------------------------------- 8. adapter columns


def test_the_runs_table_shows_adapter_settings_for_adapter_methods_only(tmp_path):
    fake_run(tmp_path, "1", {"status": "succeeded"}, {"model": {"method": "full"}})
    only_full = list_runs(tmp_path)
    assert "r" not in only_full.columns and "lr" in only_full.columns
    fake_run(tmp_path, "2", {"status": "succeeded"}, {"model": {"method": "lora"}, "lora": {"r": 8}})
    table = list_runs(tmp_path).set_index("run")
    assert table.loc["2", "r"] == 8 and pd.isna(table.loc["1", "r"])


# --------------------------------------------------------------------------- 9. exit codes


def test_exit_codes_are_those_the_readme_lists(tmp_path, capsys):
    assert EXIT_CODES in (ROOT / "README.md").read_text()
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"prompt": "q", "completion": ""}\n')
    assert main(["data", "validate", str(empty)]) == 1  # no valid row: a validation result, as errors are
    assert main(["data", "validate", str(tmp_path / "missing.csv")]) == 1
    assert main(["data", "validate", "tests/fixtures/formats/cls.tsv", "--format", "clasification"]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["no-such-command"])
    assert usage.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "130  interrupted (Ctrl-C)" in capsys.readouterr().out


# --------------------------------------------------------------------------- 10. label summary after cleaning


def test_the_label_summary_counts_rows_after_cleaning_and_flags_imbalance():
    rows = [(f"alpha {i}", "a") for i in range(20)] + [("alpha 0", "a")] * 10 + [(f"beta {i}", "b") for i in range(5)]
    report = data_report(pd.DataFrame(rows, columns=["text", "label"]), test=0.0, validation=0.2, stratify="auto")
    assert report.label_counts() == {"a": 20, "b": 5}  # the ten duplicates are gone
    text = report.to_text()
    assert "labels        2 (rows per label after cleaning: min 5, max 20; 10 rows removed by cleaning)" in text
    assert "WARNING       imbalanced labels: 'a' has 20 rows, 'b' 5 (4.0x)" in text and "macro-F1" in text
    balanced = data_report(pd.DataFrame([(f"t {i}", "ab"[i % 2]) for i in range(20)], columns=["text", "label"]),
                           test=0.0, validation=0.2)
    assert "WARNING" not in balanced.to_text()


def test_labels_joined_from_several_say_the_workbench_is_single_label():
    """A multi-label file (``billing;refund`` beside ``billing`` and ``refund``) is not read silently as classes."""
    rows = [(f"text {i}", lab) for i, lab in enumerate(["billing", "refund", "billing;refund", "login"] * 6)]
    text = data_report(pd.DataFrame(rows, columns=["text", "label"]), test=0.0, validation=0.0).to_text()
    assert "WARNING       1 labels join others with ';' (e.g. 'billing;refund')" in text
    assert "single-label classifiers" in text
    plain = [(f"text {i}", lab) for i, lab in enumerate(["a/b testing", "billing", "refund"] * 6)]
    assert "join others" not in data_report(pd.DataFrame(plain, columns=["text", "label"]), test=0.0,
                                            validation=0.0).to_text()
    with pytest.raises(DatasetError, match="single-label classifiers"):
        load_dataset(pd.DataFrame({"text": ["a", "b"], "label": [["x", "y"], ["x"]]}))


# --------------------------------------------------------------------------- 11. threads on a busy machine


@pytest.fixture
def busy(monkeypatch):
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(devices, "busy_elsewhere", lambda: 1.6)


def test_an_explicit_thread_count_above_the_free_cores_warns(busy, monkeypatch):
    note = devices.thread_warning(2)
    assert "other work keeps 1.6 of the 2 cores busy, leaving 1 free" in note and "num_threads to 0" in note
    assert devices.thread_warning(1) == "" and devices.thread_warning(0) == ""
    monkeypatch.setattr(devices, "busy_elsewhere", lambda: 0.0)
    assert devices.thread_warning(2) == ""


def test_the_thread_warning_reaches_the_training_output(busy, tmp_path, capsys):
    import torch

    from workbench.train import run_training

    base = tiny_base(tmp_path / "base")
    ds = load_dataset(pd.DataFrame({"prompt": ["hello there"] * 4, "completion": ["hi"] * 4}))
    before = torch.get_num_threads()
    try:
        result = run_training(ds, None, ModelConfig(name_or_path=str(base), task="causal-lm", method="full"),
                              TrainConfig(output_dir=str(tmp_path / "run"), max_steps=1, batch_size=2, max_length=32,
                                          num_threads=2))
    finally:
        torch.set_num_threads(before)
    assert "WARNING: num_threads=2, but other work keeps 1.6" in capsys.readouterr().err
    assert any("num_threads=2" in w for w in result.metrics["warnings"])
