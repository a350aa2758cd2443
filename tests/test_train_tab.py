"""The Train tab as a new user meets it: choosing what to train, every setting reachable, the same run as a file,
a Stop that answers, and the Runs tab that follows what training wrote."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tiny import tiny_base
from workbench.config import (DataConfig, ExperimentConfig, LaunchConfig, LoraConfig, ModelConfig, QuantConfig,
                              TrainConfig, dump_changes, from_dict)
from workbench.data import load_dataset
from workbench.errors import TrainingError
from workbench.export import model_choices
from workbench.panels import RunsPanel, TrainPanel
from workbench.panels.train import MAIN_FIELDS, PANEL_FIELDS
from workbench.presets import describe_model
from workbench.runs_table import list_runs
from workbench.tasks import task_for_model
from workbench.train import TrainResult, run_training

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(tiny_base(tmp_path_factory.mktemp("tiny") / "base"))


@pytest.fixture
def pairs():
    return load_dataset(pd.DataFrame({"prompt": [f"my laptop {i} will not start" for i in range(12)],
                                      "completion": [f"hold the power button for {i} seconds" for i in range(12)]}))


@pytest.fixture
def labelled():
    return load_dataset(pd.DataFrame({"text": [f"refund please {i}" for i in range(6)] + [f"card lost {i}" for i in
                                                                                            range(6)],
                                      "label": ["refund"] * 6 + ["card"] * 6}))


def _stub(seen: list):
    def run(train, eval, model, cfg, lora, quant, stop, on_log):
        seen.append((model, cfg, lora, quant))
        on_log({"step": 1, "max_steps": 2, "loss": 1.0})
        return TrainResult(Path(cfg.output_dir), None, {"train_loss": 1.0}, "succeeded", 2, 2)
    return run


# --------------------------------------------------------------------------- what a model is, what it can train


def test_describe_model_tells_encoders_generators_classifiers_and_adapters_apart(tmp_path, base):
    assert describe_model("minilm").kind == "encoder"
    assert describe_model("smollm2-135m-instruct").kind == "causal-lm"  # a GGUF preset: not converted to tell
    assert describe_model(base).kind == "causal-lm"
    assert describe_model("org/not-here").kind is None and "Hugging Face hub" in describe_model("x/y").describe()
    assert "no such GGUF file" in describe_model(str(tmp_path / "missing.gguf")).describe()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2-135m-instruct",
                                                             "task_type": "CAUSAL_LM"}))
    info = describe_model(str(adapter))
    assert info.adapter and info.base == "smollm2-135m-instruct" and info.kind == "causal-lm"
    head = tmp_path / "clf"
    head.mkdir()
    (head / "workbench.json").write_text(json.dumps({"kind": "pooled-classifier", "base": "minilm"}))
    assert describe_model(str(head)).kind == "classifier"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no config.json" in describe_model(str(empty)).describe()


def test_nonsense_pairs_are_refused_with_what_to_pick(pairs, labelled, base, tmp_path):
    with pytest.raises(TrainingError, match="minilm is a text encoder.*cannot write text.*Pick a generative model: "
                                            "smollm2-135m-instruct"):
        task_for_model(pairs, describe_model("minilm"))
    assert task_for_model(pairs, describe_model(base)).name == "causal-lm"
    assert task_for_model(labelled, describe_model("minilm")).name == "sequence-classification"
    assert task_for_model(labelled, describe_model(base)).name == "sequence-classification"  # a head is added
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    with pytest.raises(TrainingError, match=f"LoRA adapter.*train from its base \\({base}\\).*workbench export"):
        task_for_model(pairs, describe_model(str(adapter)))


def test_the_picker_offers_presets_project_models_and_trained_runs(tmp_path, base):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "models" / "mine" / "config.json").write_text("{}")
    (tmp_path / "models" / "laptop.gguf").write_bytes(b"GGUF")
    (tmp_path / "models" / "notes.txt").write_text("not a model")
    trained = tmp_path / "runs" / "dashboard" / "20261203-000000" / "model"
    trained.mkdir(parents=True)
    (trained / "workbench.json").write_text(json.dumps({"kind": "causal-lm", "method": "lora", "base": base}))
    offered = model_choices(tmp_path, tmp_path / "runs")
    assert offered[:3] == ["minilm", "smollm2-135m-instruct", "gemma3-270m"]
    assert "models/mine" in offered and "models/laptop.gguf" in offered and "models/notes.txt" not in offered
    assert "runs/dashboard/20261203-000000/model" in offered


def test_the_panel_infers_the_task_refuses_a_bad_base_and_picks_one_that_fits(pairs, base):
    seen = []
    p = TrainPanel(pairs, None, ModelConfig(name_or_path="minilm"), run=_stub(seen), choices=lambda: ["minilm", base])
    assert p.base.value == base and "minilm cannot train this data" in p.model_check.value  # a default that fits
    assert p.task_name == "causal-lm" and not p.start_btn.disabled
    p.base.value = "minilm"  # the user insists: refused, with the sentence, and Start held
    assert "cannot write text" in p.model_check.value and 'role="alert"' in p.model_check.value
    assert p.start_btn.disabled and p.start() is None and seen == []
    p.base.value = base
    assert not p.start_btn.disabled
    p.start()
    p.wait()
    assert seen[0][0].task == "causal-lm" and seen[0][0].name_or_path == base


# --------------------------------------------------------------------------- every setting, and the same run as a file


def test_every_config_field_is_in_the_form_and_reaches_the_run(pairs, base, tmp_path):
    seen = []
    p = TrainPanel(pairs, None, ModelConfig(name_or_path=base, task="causal-lm"), run=_stub(seen),
                   experiments_dir=tmp_path / "experiments", data=DataConfig(source="datasets/x.jsonl"))
    import dataclasses

    for cls in (ModelConfig, LoraConfig, QuantConfig, TrainConfig, LaunchConfig):
        for f in dataclasses.fields(cls):
            assert (cls, f.name) in p.form or (cls, f.name) in PANEL_FIELDS, f"{cls.__name__}.{f.name} not reachable"
    assert MAIN_FIELDS <= set(p.form)
    p.form[(TrainConfig, "warmup")].box.value = "0.2"
    p.form[(TrainConfig, "scheduler")].value = "cosine"
    p.form[(TrainConfig, "head_learning_rate")].box.value = "1e-3"
    p.form[(LoraConfig, "target_modules")].box.value = "[q_proj, v_proj]"
    p.form[(QuantConfig, "double_quant")].value = False
    p.form[(ModelConfig, "gradient_checkpointing")].value = True
    p.form[(TrainConfig, "warmup")].box.value = "-1"  # a bad advanced value holds Start like a main one
    assert p.start_btn.disabled and "warmup" in " ".join(p.problems)
    p.form[(TrainConfig, "warmup")].box.value = "0.2"
    p.start()
    p.wait()
    model, cfg, lora, quant = seen[0]
    assert (cfg.warmup, cfg.scheduler, cfg.head_learning_rate) == (0.2, "cosine", 1e-3)
    assert lora.target_modules == ["q_proj", "v_proj"] and quant.double_quant is False
    assert model.gradient_checkpointing is True
    p.form[(TrainConfig, "head_learning_rate")].box.value = ""  # an optional field left empty: not set
    assert p.configs()[1].head_learning_rate is None and not p.start_btn.disabled


def test_processes_above_one_train_through_the_launcher_with_the_global_batch_checked(pairs, base, tmp_path):
    seen, launched = [], []

    def launch_run(train, eval, model, cfg, lora, quant, stop, on_log, launch):
        launched.append(launch)
        on_log({"step": 0, "max_steps": 0, "phase": "loading", "progress": True,
                "launch": "2 processes (2 x 1 machines, ddp, cpu)"})
        assert "Starting 2 processes" in p.status.value
        return _stub(seen)(train, eval, model, cfg, lora, quant, stop, on_log)

    p = TrainPanel(pairs, None, ModelConfig(name_or_path=base, task="causal-lm"), run=_stub(seen),
                   launch_run=launch_run, experiments_dir=tmp_path / "experiments",
                   data=DataConfig(source="datasets/x.jsonl"))
    p.batch.box.value = "4"
    p.processes.box.value = "3"  # 4 does not divide among 3 processes: Start waits, the reason is shown
    assert p.start_btn.disabled and "does not divide among 3 processes" in p.launch_check.value
    p.processes.box.value = "2"
    assert not p.start_btn.disabled and p.launch_check.value == ""
    assert "launch:\n  processes: 2" in p.spec_yaml.value  # the YAML carries it
    p.start()
    p.wait()
    assert [launch.processes for launch in launched] == [2] and p.result.status == "succeeded"
    p.processes.box.value = "1"  # one process trains in the kernel, as before
    p.start()
    p.wait()
    assert len(launched) == 1 and len(seen) == 2


def test_the_form_as_yaml_and_command_reads_back_to_the_same_run(pairs, base, tmp_path):
    p = TrainPanel(pairs, None, ModelConfig(name_or_path=base, task="causal-lm"), run=_stub([]),
                   experiments_dir=tmp_path / "experiments", data=DataConfig(source="datasets/x.jsonl"), root=tmp_path)
    p.lr.box.value = "3e-4"
    p.method.value = "lora"
    p.max_steps.box.value = "5"
    p.spec_name.value = "laptops"
    assert "<code>workbench run experiments/laptops.yaml</code>" in p.spec_command.value
    spec = from_dict(ExperimentConfig, yaml.safe_load(p.spec_yaml.value))
    assert spec == p.spec() and spec.train.learning_rate == 3e-4 and spec.methods == ["lora"]
    assert spec.model.name_or_path == base and spec.data.source == "datasets/x.jsonl"
    assert "output_dir" not in p.spec_yaml.value  # the command line run goes to runs/<name>/, not the dashboard's
    path = p.save_spec()
    assert path.read_text() == p.spec_yaml.value and "saved" in p.save_note.value
    p.lr.box.value = "1e-3"
    assert p.save_spec() is None and "exists" in p.save_note.value  # never over another file
    assert from_dict(ExperimentConfig, yaml.safe_load(path.read_text())).train.learning_rate == 3e-4
    p.spec_name.value = "../escape"
    assert p.save_btn.disabled and "letters, digits" in p.spec_command.value
    p.lr.box.value = "abc"
    p.spec_name.value = "other"
    assert p.save_btn.disabled and "learning_rate" in p.spec_command.value


def test_dump_changes_is_the_shortest_yaml_that_reads_back():
    spec = ExperimentConfig(name="t", model=ModelConfig(name_or_path="minilm"), train=TrainConfig(max_steps=5))
    text = dump_changes(spec, {"model": ("name_or_path",)})
    assert yaml.safe_load(text) == {"name": "t", "model": {"name_or_path": "minilm"}, "train": {"max_steps": 5}}
    assert from_dict(ExperimentConfig, yaml.safe_load(text)) == spec


# --------------------------------------------------------------------------- Stop that answers, on a real run


def test_stop_can_evaluate_with_progress_and_the_result_lands_in_metrics(pairs, base, tmp_path):
    train, eval = load_dataset(pairs.frame.iloc[:8].reset_index(drop=True)), load_dataset(
        pairs.frame.iloc[8:].reset_index(drop=True))
    phases, stop = [], threading.Event()

    def on_log(entry):
        phases.append(entry.get("phase", "step"))
        if entry.get("step", 0) >= 2 and "phase" not in entry:
            stop.set()

    cfg = TrainConfig(output_dir=str(tmp_path / "run"), max_steps=50, batch_size=2, max_length=32, logging_steps=1,
                      eval_steps=1000, save_steps=1000, evaluate_on_stop=True, num_threads=1, warmup=0)
    r = run_training(train, eval, ModelConfig(name_or_path=base, task="causal-lm", method="lora"), cfg,
                     stop=stop, on_log=on_log)
    assert r.status == "stopped" and r.global_step < 50
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["evaluated_at_stop"] is True and "eval_loss" in metrics and "eval_perplexity" in metrics
    assert "evaluating" in phases and phases.index("evaluating") < phases.index("saving")
    # Without it, a stopped run saves at once
    phases.clear()
    stop.clear()
    r = run_training(train, eval, ModelConfig(name_or_path=base, task="causal-lm", method="lora"),
                     TrainConfig(**{**cfg.__dict__, "output_dir": str(tmp_path / "run2"), "evaluate_on_stop": False}),
                     stop=stop, on_log=on_log)
    metrics = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert r.status == "stopped" and "eval_loss" not in metrics and "evaluating" not in phases


def test_the_panel_tells_each_phase_and_the_eta_counts_training_only(pairs, base):
    p = TrainPanel(pairs, None, ModelConfig(name_or_path=base, task="causal-lm"), run=_stub([]))
    p.status.value = "<i class='wb-phase'>Loading the model…</i>"  # as Start says, while the model loads
    p.on_log({"step": 10, "max_steps": 100, "time": 1000.0, "progress": True})
    p.on_log({"step": 20, "max_steps": 100, "time": 1010.0, "progress": True})  # 1 step/s: 80 steps left
    assert "ETA 1m20s" in p.progress_text.value
    p.on_log({"step": 20, "max_steps": 100, "phase": "evaluating", "eval_step": 3, "eval_steps": 7})
    assert "Evaluating on the validation split… batch 3/7" in p.status.value
    assert (p.eval_progress.value, p.eval_progress.max, p.eval_progress.layout.visibility) == (3, 7, "visible")
    p.on_log({"step": 21, "max_steps": 100, "time": 1011.0, "progress": True})
    assert "Training" in p.status.value and p.eval_progress.layout.visibility == "hidden"
    p.stop()
    assert "saves the model (no evaluation" in p.status.value  # this panel has no validation split
    assert p.evaluate_on_stop.disabled and "no validation split" in p.evaluate_on_stop.description
    p.on_log({"step": 22, "max_steps": 100, "time": 1012.0, "progress": True})
    assert "stopping" in p.progress_text.value and "ETA" not in p.progress_text.value
    p.on_log({"step": 22, "max_steps": 100, "phase": "saving"})
    assert "Saving the model" in p.status.value


def test_stop_says_what_the_run_was_started_with(pairs, base):
    started = threading.Event()

    def run(train, eval, model, cfg, lora, quant, stop, on_log):
        started.set()
        stop.wait(10)
        return TrainResult(Path(cfg.output_dir), None, {"train_loss": 1.0}, "stopped", 1, 2)

    p = TrainPanel(pairs, pairs, ModelConfig(name_or_path=base, task="causal-lm"), run=run)
    p.evaluate_on_stop.value = True
    p.start()
    started.wait(10)
    p.evaluate_on_stop.value = False  # unticked after Start: the run still evaluates, as it was started
    p.stop()
    assert "evaluates on the validation split, then saves" in p.status.value
    p.wait()


# --------------------------------------------------------------------------- the Runs tab follows training


def test_runs_table_has_metric_columns_and_follows_a_run_live(tmp_path, pairs, base):
    run_dir = tmp_path / "runs" / "dashboard" / "r1"
    p = RunsPanel(tmp_path / "runs", poll=0.2)
    try:
        assert "No runs" in p.table.value
        r = run_training(pairs, pairs, ModelConfig(name_or_path=base, task="causal-lm", method="lora"),
                         TrainConfig(output_dir=str(run_dir), max_steps=2, batch_size=4, max_length=32,
                                     logging_steps=1, num_threads=1))
        for _ in range(50):  # the live look sees the new run without a click
            if "succeeded" in p.table.value:
                break
            threading.Event().wait(0.1)
        assert "r1" in p.table.value and "succeeded" in p.table.value
        table = list_runs(tmp_path / "runs")
        row = table.iloc[0]
        assert row["steps"] == "2/2" and row["eval_loss"] == pytest.approx(r.metrics["eval_loss"])
        assert "eval_perplexity" in p.sort.options and "train_loss" in p.sort.options
        p.select.value = (str(run_dir),)
        assert list(p.curves.lines) == ["dashboard/r1"] or len(p.curves.lines) == 1  # two points of a short run
        p.refresh()
        assert p.select.value == (str(run_dir),)  # a refresh keeps the selection
    finally:
        p.close()


def test_a_finished_run_gives_its_model_back(pairs, base, tmp_path):
    """The trainer and the model reference each other: only the cycle collector frees them, and a kernel that
    trained must not keep them (2.6 GB after a real run) until Python happens to collect."""
    import gc

    from transformers import PreTrainedModel

    def models() -> int:  # no gc.collect() here: what is still tracked, reachable or not
        return sum(isinstance(o, PreTrainedModel) for o in gc.get_objects())

    gc.collect()
    before = models()
    run_training(pairs, None, ModelConfig(name_or_path=base, task="causal-lm", method="full"),
                 TrainConfig(output_dir=str(tmp_path / "run"), max_steps=1, batch_size=4, max_length=32,
                             num_threads=1))
    assert models() == before


def test_the_dashboard_reaches_project_models_from_the_notebooks_folder(tmp_path, monkeypatch, base):
    """Voila and JupyterLab run the dashboard in notebooks/: the picker's ``models/x`` and the Load box's
    ``datasets/x`` are read from the project folder, and the YAML names them as the project folder does."""
    import shutil

    from workbench.panels import Dashboard

    project = tmp_path / "project"
    shutil.copytree(base, project / "models" / "tiny")
    (project / "datasets").mkdir()
    pd.DataFrame({"prompt": [f"printer {i} jams" for i in range(30)],
                  "completion": [f"open tray {i}" for i in range(30)]}).to_json(
        project / "datasets" / "pairs.jsonl", orient="records", lines=True)
    (project / "notebooks").mkdir()
    monkeypatch.chdir(project / "notebooks")
    d = Dashboard("datasets/pairs.jsonl", ["kb-bpe"], ModelConfig(name_or_path="models/tiny"),
                  TrainConfig(max_length=64), project / "runs", root=project, poll=0)
    p = d.train_panel
    assert "models/tiny" in p.base.options and "a generative language model" in p.model_check.value
    assert list(d.token_panel._sources)[0] == str(project / "models" / "tiny")  # the Tokens tab reads its tokenizer
    seen = []
    p._run = _stub(seen)
    p.start()
    p.wait()
    assert seen[0][0].name_or_path == str(project / "models" / "tiny")
    spec = yaml.safe_load(p.spec_yaml.value)
    assert spec["model"]["name_or_path"] == "models/tiny"
    assert spec["data"] == {"source": "datasets/pairs.jsonl", "dedupe": False, "redact_pii": False}


def test_models_the_workbench_cannot_train_are_refused_by_name(tmp_path, pairs, labelled):
    def folder(name, config=None, files=()):
        path = tmp_path / name
        path.mkdir()
        if config is not None:
            (path / "config.json").write_text(json.dumps(config))
        for f, content in files:
            (path / f).write_text(json.dumps(content))
        return str(path)

    t5 = folder("t5", {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": True})
    llava = folder("llava", {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava"})
    empty = folder("empty")
    with pytest.raises(TrainingError, match="encoder-decoder model"):
        task_for_model(pairs, describe_model(t5))
    with pytest.raises(TrainingError, match="does not train \\(vision"):
        task_for_model(labelled, describe_model(llava))
    with pytest.raises(TrainingError, match="a folder without a model in it"):
        task_for_model(labelled, describe_model(empty))
    lora_clf = folder("clf", files=[("adapter_config.json", {"base_model_name_or_path": "minilm",
                                                               "task_type": "SEQ_CLS"})])
    with pytest.raises(TrainingError) as refused:
        task_for_model(labelled, describe_model(lora_clf))
    assert "train from its base (minilm)" in str(refused.value) and "workbench export" not in str(refused.value)
    head = folder("head", files=[("workbench.json", {"kind": "pooled-classifier", "base": "minilm"})])
    with pytest.raises(TrainingError) as refused:  # its base is an encoder: not offered for answers
        task_for_model(pairs, describe_model(head))
    assert "or its base" not in str(refused.value)
    with pytest.raises(TrainingError, match="or its base minilm"):
        task_for_model(labelled, describe_model(head))


def test_the_picker_lists_models_past_the_first_files(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for i in range(60):
        (models / f"a-note-{i:02d}.txt").write_text("not a model")
    (models / "z-model").mkdir()
    (models / "z-model" / "config.json").write_text("{}")
    assert "models/z-model" in model_choices(tmp_path, tmp_path / "runs")
