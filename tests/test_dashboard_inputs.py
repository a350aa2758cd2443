"""The dashboard's inputs tell the truth (issue #15, points 3 to 5): typed fields that never coerce and hold
Start while wrong, paths from the project folder, Enter loads, a folder's test split kept for Compare."""

from __future__ import annotations

import html
import threading
from pathlib import Path

import pandas as pd
import pytest

from workbench.config import ConfigError, ModelConfig, TrainConfig, parse_field
from workbench.data import load_dataset
from workbench.panels import Dashboard, TrainPanel
from workbench.train import TrainResult


@pytest.fixture
def panel():
    ds = load_dataset(pd.DataFrame({"prompt": ["hello there", "how are you"], "completion": ["hi", "fine"]}))
    seen = []

    def run(train, eval, model, cfg, lora, quant, stop, on_log):
        seen.append(cfg)
        on_log({"step": 1, "max_steps": cfg.max_steps, "loss": 1.0})
        return TrainResult(Path(cfg.output_dir), None, {"train_loss": 1.0}, "succeeded", 1, cfg.max_steps)

    p = TrainPanel(ds, None, ModelConfig(name_or_path="base", task="causal-lm"), TrainConfig(max_steps=5), run=run,
                   plot_every=0)
    p.seen = seen
    return p


@pytest.mark.parametrize("field, text, message", [
    ("max_steps", "0", "max_steps must be -1 (train for the epochs) or at least 1, got 0"),
    ("max_steps", "-2", "at least 1, got -2"),
    ("max_steps", "1.5", "expected an integer, got 1.5"),
    ("lr", "abc", "expected a number, got 'abc'"),
    ("lr", "-1", "learning_rate must be positive"),
    ("lr", "", "enter a value"),
    ("batch", "0", "batch_size and grad_accum must be at least 1"),
    ("epochs", "-1", "epochs must be positive"),
    ("max_length", "1", "max_length must be at least 8, got 1"),
    ("rank", "0", "lora.r and lora.alpha must be positive"),
])
def test_a_bad_value_shows_its_problem_beside_the_field_and_holds_start(panel, field, text, message):
    widget = getattr(panel, field)
    widget.box.value = text
    assert message in widget.problem and widget.box.value == text  # never changed
    assert html.escape(widget.problem) in widget.error.value  # shown beside the field
    assert panel.start_btn.disabled and panel.resume_btn.disabled
    assert panel.start() is None and panel.seen == []  # Start does nothing while the form is wrong
    widget.value = {"max_steps": 3, "lr": 1e-3, "batch": 2, "epochs": 1.0, "max_length": 64, "rank": 4}[field]
    assert widget.error.value == "" and not panel.start_btn.disabled


def test_values_are_taken_exactly_as_typed(panel):
    panel.lr.box.value = "3e-4"
    panel.epochs.box.value = "2.5"
    panel.max_steps.box.value = "-1"
    model, train, lora = panel.configs()
    assert train.learning_rate == 3e-4 and train.epochs == 2.5 and train.max_steps == -1
    panel.lr.box.value = "5"  # high, but a value the config accepts: kept as typed, not clamped
    assert panel.configs()[1].learning_rate == 5.0


def test_epochs_and_max_steps_are_checked_together(panel):
    panel.max_steps.box.value = "-1"
    panel.epochs.box.value = "0"
    assert "epochs must be positive (or set max_steps)" in panel.epochs.error.value and panel.start_btn.disabled
    panel.max_steps.box.value = "10"  # fixing the other field clears this one
    assert panel.epochs.error.value == "" and not panel.start_btn.disabled
    assert "max steps" in panel.length_note.value and "epochs" in panel.length_note.value


def test_start_clears_the_previous_run_and_says_what_it_is_doing(panel):
    panel.progress_text.value = "step 9/9 · ETA 0s · loss 0.1"
    panel.start()
    panel.wait()
    assert panel.seen[-1].max_steps == 5
    assert "succeeded" in panel.status.value
    assert panel.progress_text.value.startswith("step 1/5 · succeeded")  # an ended run has no ETA
    assert "9/9" not in panel.progress_text.value


def test_parse_field_uses_the_class_checks_and_never_coerces():
    assert parse_field(TrainConfig, "learning_rate", "3e-4") == 3e-4
    with pytest.raises(ConfigError, match="expected a number"):
        parse_field(TrainConfig, "learning_rate", "abc")
    with pytest.raises(ConfigError, match="expected an integer"):
        parse_field(TrainConfig, "batch_size", "2.5")


# --------------------------------------------------------------------------- loading from the dashboard


@pytest.fixture
def project(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "datasets" / "intents"
    folder.mkdir(parents=True)
    rows = [(f"{label} message number {i}", label) for label in "ab" for i in range(20)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(rows[:6], columns=["text", "label"]).assign(text=lambda f: f.text + " again").to_csv(
        folder / "test.csv", index=False)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # the dashboard runs in notebooks/, not the project folder
    return tmp_path / "project"


def dashboard(project, loads: list, **kw):
    def split(ds, test=0.0):
        loads.append(ds)
        return {"train": ds}

    class Splits(dict):
        parts = {}

    return Dashboard("", ["kb-bpe"], ModelConfig(name_or_path="unused"), TrainConfig(max_length=64),
                     project / "runs", split=lambda ds, test: Splits(split(ds, test)), root=project, **kw)


def test_a_path_from_the_project_folder_loads_train_and_keeps_the_test_split(project):
    loads = []
    d = dashboard(project, loads)
    d.source.value = "datasets/intents"  # Enter: the value changes once, and that loads
    assert len(loads) == 1 and len(loads[0]) == 40
    assert "test" in d.status.value and "6 rows" in d.status.value and "Compare" in d.status.value
    assert len(d.test_ds) == 6
    d.load_btn.click()  # the click that left the box: not a second load
    assert len(loads) == 1


def test_an_empty_box_says_what_to_type(project):
    d = dashboard(project, [])
    d.source.value = "   "
    d.load_btn.click()
    assert "Type a dataset" in d.status.value and "datasets/banking77" in d.status.value


def test_loading_replaces_the_old_views_and_an_error_leaves_none(project):
    loads = []
    d = dashboard(project, loads)
    d.source.value = "datasets/intents"
    assert d.dataset_panel is not None and d.tabs.children[0].children[0] is d.dataset_panel.widget
    d.source.value = "datasets/missing.csv"
    assert "wb-error" in d.status.value
    assert "Load a dataset" in d.tabs.children[0].children[0].value  # not the old dataset's rows
    assert not d.load_btn.disabled


def test_make_lab_starts_as_root_and_as_anyone_else():
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    command = subprocess.run(["make", "-n", "-o", "venv", "lab"], cwd=root, capture_output=True, text=True,
                             check=True).stdout
    assert "--ServerApp.ip=127.0.0.1" in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)  # JupyterLab refuses root without it


# --------------------------------------------------------------------------- the Tokens tab


def test_tokens_tab_reads_plainly_and_compares_tokenizers_with_a_click():
    from tiny import word_tokenizer
    from workbench.config import TokenConfig
    from workbench.panels import TokenPanel

    ds = load_dataset(pd.DataFrame({"prompt": ["hello there", "hi"], "completion": ["hi", "hello"]}))
    toks = {"words": word_tokenizer(["hello", "there", "hi"]), "other": word_tokenizer(["hello", "hi"])}
    p = TokenPanel(ds, toks, TokenConfig(max_length=64, sample=None))
    table = p.table.value
    assert "truncated" in table and "median tokens" in table and "steps per epoch" in table
    assert "_" not in table.replace("wb-table", "")  # no snake_case header reaches the reader
    assert table.count(">words</th>") == 1 and "other" not in table  # tokenizers are columns: narrow
    p.choose.boxes[1].value = True  # one click adds a tokenizer, no Ctrl
    assert p.choose.value == ("words", "other") and ">other</th>" in p.table.value
    assert p.busy.value == "" and p.table.layout.opacity == "1"


def test_tokens_tab_on_classification_data_shows_what_applies():
    from tiny import word_tokenizer
    from workbench.config import TokenConfig
    from workbench.panels import TokenPanel

    ds = load_dataset(pd.DataFrame({"text": ["hello there", "hi", "hello", "there"], "label": ["a", "b", "a", "b"]}))
    p = TokenPanel(ds, {"words": word_tokenizer(["hello", "there", "hi"])}, TokenConfig(max_length=64, sample=None))
    shown = [w for box in p.widget.children for w in getattr(box, "children", [box])]
    assert p.template not in shown and p.inputs not in shown  # chat template and answer masking: not for labels
    note = p.widget.children[-1].children[1]
    assert "no token is masked" in note.value and "median tokens" in p.table.value


# --------------------------------------------------------------------------- the Compare tab picks its models


def test_compare_tab_offers_the_base_and_the_runs_trained_for_this_data(tmp_path, monkeypatch):
    import json

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    runs = tmp_path / "runs"
    for run, labels in (("dashboard/20261202-100000", False), ("banking/1/train-full", True),
                        ("tickets/2/train-lora", False)):
        model = runs / run / "model"
        model.mkdir(parents=True)
        (model / "workbench.json").write_text(json.dumps({"kind": "causal-lm", "method": "lora", "base": "x"}))
        if labels:
            (model / "label_map.json").write_text(json.dumps({"labels": ["a", "b"]}))
    asked = []

    def models(ds, folders):
        asked.append(dict(folders))
        raise FileNotFoundError("stop here: the folders are what this test checks")

    from tiny import tiny_base

    base = tiny_base(tmp_path / "base")
    d = Dashboard("datasets/it_support/tickets.jsonl", ["kb-bpe"], ModelConfig(name_or_path=str(base)),
                  TrainConfig(max_length=64), runs, models=models)
    options = d.compare_pick.options
    assert options[0] == "base: base" and set(options[1:]) == {"dashboard/20261202-100000", "tickets/2/lora"}
    d.compare_btn.click()
    assert "Tick at least one model" in d.compare_area.children[0].value and asked == []
    d.compare_pick.value = ("base: base", "tickets/2/lora")
    d.compare_btn.click()
    assert asked == [{"base: base": str(base), "tickets/2/lora": str(runs / "tickets/2/train-lora/model")}]
    assert "stop here" in d.compare_area.children[0].value

    late = runs / "dashboard" / "20261202-110000" / "model"  # a run that finished since: Refresh lists it
    late.mkdir(parents=True)
    (late / "workbench.json").write_text("{}")
    d.refresh_btn.click()
    assert "dashboard/20261202-110000" in d.compare_pick.options
    assert d.compare_pick.value == ("base: base", "tickets/2/lora")  # what was ticked stays ticked


# --------------------------------------------------------------------------- scoring: progress where the user looks, Cancel


def test_scoring_shows_its_progress_beside_the_button_and_cancels():
    from workbench.errors import Cancelled
    from workbench.panels.compare import ComparePanel

    test = load_dataset(Path(__file__).resolve().parent.parent / "datasets" / "it_support" / "tickets.jsonl")
    started = threading.Event()

    def compare(test, models, reference, cfg, device, progress, stop):
        progress("a (1 of 2): 16 of 49 answers", 0.2)
        started.set()
        assert stop.wait(30), "Cancel never reached the scoring"
        raise Cancelled("scoring was cancelled")

    p = ComparePanel({"a": "a", "b": "b"}, test, comparer=compare)
    assert "Scores the 335 rows" in p.tabs.children[1].children[1].value  # which split, said before scoring
    p.metrics_btn.click()
    assert started.wait(30)
    assert p.score_progress.value == 0.2 and "16 of 49 answers" in p.score_status.value
    assert p.score_progress.layout.visibility == "visible" and not p.cancel_btn.disabled and p.metrics_btn.disabled
    p.cancel_btn.click()
    p.wait()
    assert "Cancelled; no scores were kept" in p.score_status.value and p.metrics_html.value == ""
    assert not p.metrics_btn.disabled and p.cancel_btn.disabled


def test_compare_generators_reports_progress_and_stops_between_tokens(tmp_path):
    from tiny import tiny_base
    from workbench.compare import compare_generators
    from workbench.config import CompareConfig
    from workbench.errors import Cancelled

    base = str(tiny_base(tmp_path / "base"))
    test = load_dataset(Path(__file__).resolve().parent.parent / "datasets" / "it_support" / "tickets.jsonl")
    test = test.with_frame(test.frame.head(4))
    heard, stop = [], threading.Event()
    cfg = CompareConfig(max_new_tokens=4, batch_size=2, bootstrap_resamples=50, metrics=["rouge_l"])
    compare_generators(test, {"a": base}, cfg=cfg, progress=lambda m, share: heard.append((m, share)))
    assert heard[0] == ("a (1 of 1): loading the model", 0.0) and heard[-1] == ("done", 1.0)
    assert ("a (1 of 1): 4 of 4 answers", pytest.approx(0.9)) in heard

    def cancel_at_first_batch(message, share):
        if "answers" in message:
            stop.set()

    with pytest.raises(Cancelled):
        compare_generators(test, {"a": base, "b": base}, cfg=cfg, progress=cancel_at_first_batch, stop=stop)


def test_plots_say_what_they_leave_out_and_show_nothing_broken_before_they_exist(panel):
    from workbench import plots

    counts = pd.Series({f"intent {i}": 100 - i for i in range(77)})
    fig = plots.label_bar(counts, "rows per label")
    assert fig.axes[0].get_title() == "rows per label: the 30 most frequent of 77 labels"
    assert "The loss curves appear once training logs" in panel.curves.empty.value
    assert panel.curves.figure not in panel.curves.widget.children  # no empty axes before the first curve
    panel.start()
    panel.wait()
    assert panel.curves.figure in panel.curves.widget.children
    assert "training loss" in panel.curves.legend.value and "loss by step" in panel.curves.caption.value


def test_classifier_scoring_tells_its_progress_and_can_be_cancelled():
    import threading

    from workbench.compare import compare_classifiers
    from workbench.errors import Cancelled
    from workbench.panels import ClassifierComparePanel

    rows = [(f"text {i}", "ab"[i % 2]) for i in range(600)]
    test = load_dataset(pd.DataFrame(rows, columns=["text", "label"]))
    seen = []
    calls = []

    def predict(texts):
        calls.append(len(texts))
        return ["a"] * len(texts)

    c = compare_classifiers(test, {"m": predict}, progress=lambda message, share: seen.append((message, share)))
    assert calls == [256, 256, 88] and c.metrics.loc["m", "accuracy"] == pytest.approx(0.5)
    assert seen[0] == ("m: 0 of 600 texts", 0.0) and seen[-1] == ("m: 600 of 600 texts", 1.0)
    stop = threading.Event()
    with pytest.raises(Cancelled):
        compare_classifiers(test, {"m": predict}, progress=lambda message, share: share > 0 and stop.set(), stop=stop)

    def comparer(test, scorers, reference, cfg, progress, stop):
        progress("m: 256 of 600 texts", 0.4)
        stop.wait(5)
        raise Cancelled("scoring was cancelled")

    p = ClassifierComparePanel({"m": predict}, test, comparer=comparer)
    p.metrics_btn.click()
    for _ in range(100):
        if "256 of 600" in p.scoring.status.value:
            break
        threading.Event().wait(0.02)
    assert p.scoring.bar.value == 0.4 and p.scoring.bar.layout.visibility == "visible"
    assert not p.cancel_btn.disabled
    p.cancel_btn.click()
    p.wait()
    assert "Cancelled" in p.scoring.status.value and p.cancel_btn.disabled and not p.metrics_btn.disabled
