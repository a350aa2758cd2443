"""Experiments: spec validation, papermill runs into run folders, failures, rerun, sweep, the runs table.

Covers workbench.notebook_runner, run_folders, repeat, runs_table and config.apply_overrides.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from tiny import tiny_base
from workbench.config import ExperimentConfig, apply_overrides, from_dict
from workbench.data import DatasetError
from workbench.notebook_runner import _headline, run_experiment
from workbench.repeat import grid, rerun, sweep
from workbench.run_folders import RunFailed, redact
from workbench.runs_table import compare_runs, list_runs, loss_curves, run_report, train_logs

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "notebooks"


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("exp") / "base")


def spec(base, tickets: Path = ROOT / "datasets" / "it_support" / "tickets.jsonl", **changes) -> dict:
    s = {"name": "tiny-sft",
         # pii_allow changes what redaction leaves, and so the content-ordered split: every step must get it.
         "data": {"source": str(tickets), "stratify": "category", "validation": 0.1, "test": 0.05,
                  "pii_allow": ["security@northwind.example", "scan@northwind.example"]},
         "model": {"name_or_path": str(base), "task": "causal-lm", "method": "lora"},
         "train": {"max_steps": 6, "learning_rate": 3e-3, "batch_size": 4, "max_length": 512, "logging_steps": 2},
         "tokens": {"max_length": 512, "sample": 100},
         "compare": {"max_new_tokens": 6, "max_examples": 4, "bootstrap_resamples": 100, "batch_size": 4}}
    s.update(changes)
    return s


@pytest.mark.parametrize("body,expected", [
    ({"trian": {}}, "unknown key 'trian' for ExperimentConfig. Did you mean 'train'?"),
    ({"train": {"learnig_rate": 1e-4}}, "unknown key 'train.learnig_rate' for TrainConfig. Did you mean 'learning_rate'?"),
    ({"train": {"batch_size": "big"}}, "train.batch_size: expected an integer, got 'big'"),
    ({"model": {"method": "qlor"}}, "model.method: 'qlor' is not one of 'full', 'lora', 'qlora'. Did you mean 'qlora'?"),
    ({"data": {"validation": 0.7, "test": 0.5}}, "validation + test must be below 1"),
    ({"methods": ["lora", "dora"]}, "methods: dora not one of full, lora, qlora"),
])
def test_spec_errors_name_the_key_and_what_is_allowed(tmp_path, body, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    proc = cli("run", path, "--runs", tmp_path / "runs")
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_overrides_and_aliases():
    cfg = apply_overrides(ExperimentConfig(), ["lr=1e-4", "lora.r=8", "train.epochs=2"])
    assert (cfg.train.learning_rate, cfg.lora.r, cfg.train.epochs) == (1e-4, 8, 2.0)
    assert grid(["lr=1e-4,3e-4", "lora.r=8,16"]) == [
        {"lr": "1e-4", "lora.r": "8"}, {"lr": "1e-4", "lora.r": "16"},
        {"lr": "3e-4", "lora.r": "8"}, {"lr": "3e-4", "lora.r": "16"}]


def test_secrets_never_reach_the_manifest():
    assert redact({"hf_token": "hf_abc", "nested": {"api_key": "sk-123"}, "lr": 1}) == \
        {"hf_token": "***", "nested": {"api_key": "***"}, "lr": 1}
    assert redact("workbench run x.yaml -p token=hf_secret") == "workbench run x.yaml -p token=***"


@pytest.fixture(scope="module")
def finished(base, tmp_path_factory):
    """One complete run of the four notebooks on a tiny Llama."""
    root = tmp_path_factory.mktemp("runs")
    cfg = from_dict(ExperimentConfig, spec(base))
    return run_experiment(cfg, root, argv=["workbench", "run", "tiny.yaml", "-p", "hf_token=hf_secret"])


def test_a_run_folder_holds_everything_to_rerun_it(finished):
    run = finished.run_dir
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "manifest.json", "status.json", "notebooks", "data", "train-lora", "compare",
            "metrics.json"} <= names
    assert json.loads((run / "status.json").read_text())["status"] == "succeeded"
    executed = sorted(p.name for p in (run / "notebooks").iterdir() if not p.name.endswith(".kernel.log"))
    assert executed == ["01-data.ipynb", "01-data.yaml", "02-tokens.ipynb", "02-tokens.yaml",
                        "03-finetune-lora.ipynb", "03-finetune-lora.yaml", "04-compare.ipynb",
                        "04-compare.yaml"]  # each step's full config sits beside its notebook
    assert (run / "notebooks" / "04-compare.kernel.log").exists()  # kernels' stderr, kept off the terminal
    man = json.loads((run / "manifest.json").read_text())
    assert man["git"]["commit"] and isinstance(man["git"]["dirty"], bool)
    assert man["packages"]["torch"].startswith("2.") and man["hardware"]["cpus"] >= 1
    assert set(man["data"]["splits"]) == {"train", "validation", "test"}
    assert "hf_secret" not in (run / "manifest.json").read_text() and "hf_token=***" in man["command"]
    assert (run / "train-lora" / "model" / "adapter_model.safetensors").exists()
    assert (run / "compare" / "report.html").exists()
    # The comparison scored exactly the test split training held out (and the manifest recorded).
    settings = json.loads((run / "compare" / "settings.json").read_text())
    assert settings["test_fingerprint"] == man["data"]["splits"]["test"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train-lora"]["global_step"] == 6 and set(metrics["compare"]) == {"base", "lora"}
    nb = nbformat.read(run / "notebooks" / "03-finetune-lora.ipynb", 4)
    assert "succeeded: step 6/6" in "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                                             for o in c.get("outputs", []))


def test_rerun_reproduces_the_metrics_exactly(finished):
    again = rerun(finished.run_dir)
    assert again.run_dir != finished.run_dir
    a, b = finished.metrics, again.metrics
    timing = ("runtime", "per_second", "per_s", "seconds")  # wall-clock figures are not reproducible

    def quality(m: dict) -> dict:
        return {k: v for k, v in m.items() if not any(t in k for t in timing)}

    assert quality(a["train-lora"]) == quality(b["train-lora"])
    assert {k: quality(v) for k, v in a["compare"].items()} == {k: quality(v) for k, v in b["compare"].items()}
    assert a["differences"] == b["differences"]


def test_rerun_refuses_changed_data(base, tmp_path):
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text((ROOT / "datasets" / "it_support" / "tickets.jsonl").read_text())
    cfg = from_dict(ExperimentConfig, spec(base, tickets, notebooks=["01_explore_dataset.ipynb"]))
    first = run_experiment(cfg, tmp_path / "runs")
    lines = tickets.read_text().splitlines()
    tickets.write_text("\n".join(lines[:-1]) + "\n")  # one ticket fewer
    with pytest.raises(DatasetError, match="the data changed since .* so the run cannot be repeated"):
        rerun(first.run_dir)


def test_a_failing_cell_is_recorded_and_the_notebook_kept(base, tmp_path):
    path = tmp_path / "fail.yaml"
    path.write_text(yaml.safe_dump(spec(base, notebooks=[str(FIXTURES / "failing_cell.ipynb")])))
    proc = cli("run", path, "--runs", tmp_path / "runs", "--quiet")
    assert proc.returncode == 1
    assert "run failed: 01-failing_cell.ipynb: cell 3: ValueError: the data has no label column" in proc.stderr
    run = next((tmp_path / "runs" / "tiny-sft").iterdir())
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "ValueError" in status["reason"]
    nb = nbformat.read(run / "notebooks" / "01-failing_cell.ipynb", 4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0]["evalue"] == "the data has no label column"


def test_a_killed_kernel_is_a_failure_not_a_hang(base, tmp_path):
    cfg = from_dict(ExperimentConfig, spec(base, notebooks=[str(FIXTURES / "kill_kernel.ipynb")]))
    with pytest.raises(RunFailed, match="the kernel died"):
        run_experiment(cfg, tmp_path / "runs", timeout=120)
    run = next((tmp_path / "runs" / "tiny-sft").iterdir())
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    assert (run / "notebooks" / "01-kill_kernel.ipynb").exists()


def test_sweep_over_a_two_by_two_grid_and_the_runs_table(base, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec(base, notebooks=["03_finetune.ipynb"], train={
        "max_steps": 2, "batch_size": 4, "max_length": 512, "logging_steps": 1, "learning_rate": 1e-3})))
    results = sweep(path, ["lr=1e-3,3e-3", "lora.r=4,8"], parallel=2, runs_root=tmp_path / "runs", echo=None)
    assert sorted((r["params"]["lr"], r["params"]["lora.r"]) for r in results) == [
        ("1e-3", "4"), ("1e-3", "8"), ("3e-3", "4"), ("3e-3", "8")]
    assert all(r["returncode"] == 0 for r in results), results
    table = list_runs(tmp_path / "runs")
    assert len(table) == 4 and set(table["status"]) == {"succeeded"}
    assert sorted(zip(table["lr"], table["r"])) == [(0.001, 4), (0.001, 8), (0.003, 4), (0.003, 8)]
    a, b = sorted(table["path"])[:2]
    config, metrics = compare_runs(a, b)
    assert {k for k, _, _ in config} & {"train.learning_rate", "lora.r"}
    listing = cli("runs", "--runs", tmp_path / "runs")
    assert listing.returncode == 0 and listing.stdout.count("succeeded") == 4


def test_relative_paths_are_resolved_before_notebooks_run(base, tmp_path, monkeypatch, capfd):
    # Notebooks run in notebooks/: the runs folder, the data and the model given relative to where
    # the command runs (as the shipped experiments give them) must reach them as absolute paths.
    import shutil

    shutil.copytree(base, tmp_path / "models" / "base")
    shutil.copy(ROOT / "datasets" / "it_support" / "tickets.jsonl", tmp_path / "tickets.jsonl")
    monkeypatch.chdir(tmp_path)
    cfg = from_dict(ExperimentConfig, spec("models/base", Path("tickets.jsonl"), notebooks=["03_finetune.ipynb"],
                                           train={"max_steps": 1, "batch_size": 4, "max_length": 512}))
    record = run_experiment(cfg, "relative-runs", progress=True)
    err = capfd.readouterr().err
    assert "finetune-lora [" + "#" * 30 + "] 1/1" in err  # the bar, fed by the kernel's training log
    assert "IPKernelApp" not in err  # the kernel's own warnings go to its log in the run folder
    assert record.run_dir.is_absolute() and record.run_dir.is_relative_to(tmp_path / "relative-runs")
    assert (record.run_dir / "train-lora" / "model").exists()
    assert not (ROOT / "notebooks" / "relative-runs").exists()


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_validate(path):
    from workbench.config import load_yaml

    cfg = load_yaml(ExperimentConfig, path)
    assert cfg.name == path.stem and Path(ROOT / cfg.data.source).exists()


def test_fields_outside_a_notebooks_form_reach_training(base, tmp_path):
    cfg = from_dict(ExperimentConfig, spec(base, notebooks=["03_finetune.ipynb"], train={
        "max_steps": 1, "batch_size": 4, "max_length": 512, "weight_decay": 0.123, "probe_c": 7.0}))
    record = run_experiment(cfg, tmp_path / "runs")
    written = yaml.safe_load((record.run_dir / "train-lora" / "config.yaml").read_text())
    assert written["train"]["weight_decay"] == 0.123 and written["train"]["probe_c"] == 7.0


def test_a_run_launched_on_two_processes_says_so_in_its_manifest(base, tmp_path):
    """``-p launch.processes=2``: the fine-tuning notebook's training runs on two processes (workbench.launch)."""
    cfg = apply_overrides(from_dict(ExperimentConfig, spec(base, notebooks=["03_finetune.ipynb"], train={
        "max_steps": 2, "batch_size": 4, "max_length": 512, "logging_steps": 1})), ["launch.processes=2"])
    record = run_experiment(cfg, tmp_path / "runs")
    man = json.loads((record.run_dir / "manifest.json").read_text())
    assert man["launch"] == {"world_size": 2, "processes": 2, "machines": 1, "backend": "ddp",
                             "launcher": "torch.distributed.run", "trackers": []}
    metrics = json.loads((record.run_dir / "train-lora" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["per_device_batch_size"] == 2 and metrics["global_step"] == 2
    assert (record.run_dir / "train-lora" / "launch.log").exists()


def test_a_pretrain_section_reads_a_table_whose_text_column_has_another_name(tmp_path):
    # A JSONL knowledge base whose text is in "article" (no column named like text): the pretrain section has
    # no columns key, so the error must name its own text_column, and with it set the step trains.
    from dataclasses import replace

    from workbench.notebook_runner import _step_plan
    from workbench.pipeline import finetune, pretraining_corpus

    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps({"id": i, "title": f"Article {i}", "article": text})
                            for i, text in enumerate(p.read_text() for p in sorted(
                                (ROOT / "datasets" / "it_support" / "kb").glob("*.md")))))
    cfg = from_dict(ExperimentConfig, spec("", pretrain={"source": str(kb), "preset": "tiny", "vocab_size": 300,
                                                         "max_steps": 2, "batch_size": 4, "max_length": 64},
                                           notebooks=["03_finetune.ipynb"]))
    (unnamed,) = [c for _, label, _, c in _step_plan(cfg, tmp_path / "run") if label == "pretrain"]
    with pytest.raises(DatasetError) as e:
        pretraining_corpus(unnamed)
    message = str(e.value)
    assert "the columns are id, title, article" in message and "pretrain section: text_column: <column>" in message
    assert "-p pretrain.text_column=<column>" in message and "columns=" not in message

    cfg = replace(cfg, pretrain=replace(cfg.pretrain, text_column="article"))
    (step_cfg,) = [c for _, label, _, c in _step_plan(cfg, tmp_path / "run") if label == "pretrain"]
    corpus = pretraining_corpus(step_cfg)
    assert corpus.format == "corpus" and corpus.frame["text"].str.startswith("#").all()  # the articles' Markdown
    step_cfg = replace(step_cfg, train=replace(step_cfg.train, output_dir=str(tmp_path / "run" / "pretrain")))
    result = finetune(step_cfg)
    assert result.status == "succeeded" and result.global_step == 2

    # Data that is not from a pretrain section keeps the data section's own fix (columns=).
    with pytest.raises(DatasetError, match="columns="):
        pretraining_corpus(replace(unnamed, pretrain=replace(unnamed.pretrain, source="")))


def test_the_one_line_reason_keeps_the_problem_a_header_introduces():
    message = "1 problem:\n  - dataset: 'x' is not a local file or folder. Fix: point at a local file.\n"
    assert _headline(message) == "1 problem: - dataset: 'x' is not a local file or folder. Fix: point at a local file."
    assert _headline("the data has no label column\nmore detail") == "the data has no label column"
    assert _headline("x" * 1000).endswith("...") and len(_headline("x" * 1000)) == 400


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").rglob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_defaults_are_literals_the_runner_reads_without_running_code(path):
    import ast

    import papermill as pm

    for name, info in pm.inspect_notebook(str(path)).items():
        if info.get("default"):
            ast.literal_eval(info["default"])  # raises on anything but a literal


def test_the_runs_table_reads_training_logs_and_reports_of_a_run(tmp_path):
    run = tmp_path / "exp" / "20260101-000000"
    for sub, losses in (("train-lora", [3.0, 2.0]), ("pretrain", [5.0]), ("train-full", [])):
        (run / sub).mkdir(parents=True)
        (run / sub / "train_log.jsonl").write_text(
            "".join(json.dumps({"step": i + 1, "loss": v}) + "\n" for i, v in enumerate(losses))
            + json.dumps({"step": 9, "eval_loss": 1.0}) + "\n")
    assert list(train_logs(run)) == [f"{run.name}/train-full", f"{run.name}/train-lora", f"{run.name}/pretrain"]
    assert loss_curves([run]) == [(f"{run.name}/train-lora", [(1, 3.0), (2, 2.0)]),
                                  (f"{run.name}/pretrain", [(1, 5.0)])]  # a log without a loss draws nothing
    assert run_report(run) is None
    (run / "compare").mkdir()
    (run / "compare" / "report.html").write_text("<html></html>")
    assert run_report(run) == run / "compare" / "report.html"


def test_continued_pretraining_holds_out_whole_documents_and_is_compared_with_the_base(base, tmp_path):
    # model.name_or_path names a base and a pretrain section is set: the base is continued on the corpus (not
    # rebuilt from scratch), every method fine-tunes both the base as it was and the continued one, and the
    # comparison gets both bases, the four fine-tunes and the pairs that isolate the continued pretraining.
    from dataclasses import replace

    from workbench.compare import compare_generators
    from workbench.notebook_runner import _step_plan
    from workbench.pipeline import finetune, pretraining_corpus, pretraining_held_out

    kb = ROOT / "datasets" / "it_support" / "kb"
    cfg = from_dict(ExperimentConfig, spec(base, methods=["lora", "qlora"],
                                           pretrain={"source": str(kb), "held_out": 0.25, "max_steps": 30,
                                                     "learning_rate": 3e-3, "batch_size": 8, "max_length": 128}))
    plan = _step_plan(cfg, tmp_path / "run")
    labels = [label for _, label, _, _ in plan]
    assert labels[:5] == ["pretrain", "data", "tokens", "finetune-lora", "finetune-qlora"]
    assert labels[5:] == ["finetune-continued-lora", "finetune-continued-qlora", "compare"]
    steps = {label: (extra, c) for _, label, extra, c in plan}
    pre_cfg = steps["pretrain"][1]
    assert pre_cfg.model.name_or_path == str(base) and pre_cfg.model.task == "pretraining"
    assert steps["tokens"][0]["tokenizers"] == str(base)  # the base's own tokenizer, not a corpus BPE
    assert steps["finetune-lora"][1].model.name_or_path == str(base)
    assert steps["finetune-continued-lora"][1].model.name_or_path == str(tmp_path / "run" / "pretrain" / "model")
    compare_extra = steps["compare"][0]
    assert [m.split("=")[0] for m in compare_extra["models"].split(", ")] == [
        "base", "continued", "lora", "qlora", "continued-lora", "continued-qlora"]
    assert compare_extra["pairs"] == "continued-lora=lora, continued-qlora=qlora"

    # Held out: whole documents (all sections of a file), none of them in the pretraining corpus.
    trained, held = pretraining_corpus(pre_cfg), pretraining_held_out(cfg)
    assert set(held.frame["path"]).isdisjoint(trained.frame["path"])
    documents = len(list(kb.glob("*.md")))
    assert held.frame["path"].nunique() == round(0.25 * documents)
    assert trained.frame["path"].nunique() + held.frame["path"].nunique() == documents
    assert pretraining_held_out(cfg).fingerprint() == held.fingerprint()  # the same documents every time

    # The step continues the base (its tokenizer and weights) and lowers perplexity on the unseen documents.
    pre_cfg = replace(pre_cfg, train=replace(pre_cfg.train, output_dir=str(tmp_path / "run" / "pretrain")))
    result = finetune(pre_cfg)
    assert result.status == "succeeded" and result.global_step == 30
    corpus = held.frame["text"].tolist()
    c = compare_generators(load_tickets(2), {"base": str(base), "continued": str(result.model_dir)}, "base",
                           from_dict(ExperimentConfig, spec(base)).compare, corpus=corpus)
    assert c.metrics.loc["continued", "corpus_perplexity"] < c.metrics.loc["base", "corpus_perplexity"] / 2
    gain = c.differences[c.differences.metric == "corpus_nll"].iloc[0]
    assert gain.model == "continued" and gain.ci_low > 0 and c.settings["corpus_texts"] == len(corpus)


def load_tickets(n: int):
    from workbench.data import load_dataset

    ds = load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl")
    return ds.with_frame(ds.frame.head(n))
