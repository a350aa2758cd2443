"""Panels in plain pytest: set widget values, click, and check state and output."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tiny import word_tokenizer
from workbench.config import TokenConfig
from workbench.data import load_dataset
from workbench.panels import DatasetPanel, TokenPanel


@pytest.fixture(scope="module")
def tickets():
    return load_dataset("datasets/it_support/tickets.jsonl")


def test_dataset_panel_search_filter_and_pages(tickets):
    p = DatasetPanel(tickets, page_size=10)
    assert "Page 1 of 34" in p.status.value and len(p.page.rows) == 10
    p.next.click()
    assert p.page.page == 1 and p.page.rows.index[0] == 10
    p.search.value = "vpn"
    vpn_rows = p.page.matches
    assert 0 < vpn_rows < len(tickets) and p.page.page == 0  # a new filter starts at page 1
    assert all("vpn" in (tickets.frame.prompt[i] + "\n" + tickets.frame.completion[i]).lower()
               for i in p.ex.page(p.query.__class__(text="vpn", page_size=1000)).rows.index)
    p.label.value = "printers"
    assert p.page.matches < vpn_rows
    assert set(tickets.frame.category[list(p.page.rows.index)]) <= {"printers"}
    p.search.value = "no such text anywhere"
    assert p.page.matches == 0 and "No rows match" in p.table.value
    assert p.prev.disabled and p.next.disabled


def test_classification_search_looks_at_the_text_not_the_label():
    ds = load_dataset(pd.DataFrame({"text": ["where is my money", "refund please"],
                                    "label": ["refund_missing", "refund_request"]}))
    p = DatasetPanel(ds)
    p.search.value = "refund"
    assert list(p.page.rows.index) == [1]


def test_dataset_panel_length_filter(tickets):
    p = DatasetPanel(tickets)
    p.length.value = (0, 80)
    assert p.page.matches == int((tickets.frame.prompt.str.len() <= 80).sum())


def test_dataset_panel_findings_point_at_rows(tickets):
    p = DatasetPanel(tickets, pii_allow=("security@northwind.example",))
    assert p.finding.disabled
    p.scan.click()
    p.wait()
    assert "personal data:" in p.findings_html.value and "email" in p.findings_html.value
    assert "credit_card" in p.finding.options
    p.finding.value = "credit_card"
    rows = list(p.page.rows.index)
    assert rows and all(tickets.frame.pii[r] for r in rows)
    assert "tickets.jsonl:" in p.page.rows["where"].iat[0]


def test_dataset_panel_example_viewer_and_problems(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "hello", "completion": "hi"}\n{"prompt": "x"}\n')
    ds = load_dataset(f, strict=False)
    p = DatasetPanel(ds)
    assert "### Assistant:\n" in p.example.value.replace("&#x27;", "'")
    assert '<span class="wb-trained" style="background:#c8f7c5">hi&lt;eos&gt;</span>' in p.example.value
    assert "missing" in p.problems.value and "d.jsonl:2" in p.problems.value


def test_dataset_panel_plots_drawn_when_their_tab_opens(tickets):
    p = DatasetPanel(tickets)
    assert p.plots.children == ()
    p.tabs.selected_index = 1
    bars, lengths = p.charts
    assert p.plots.children == (bars.widget, lengths.widget)
    assert all("wb-distribution" in c.widget._dom_classes for c in p.charts)  # the browser tests find them so
    assert "rows per category" in bars.caption.value  # a screen reader hears what it shows
    counts = tickets.frame["category"].value_counts()
    assert sorted(zip(bars.bars.x, bars.bars.y)) == sorted((str(k), float(v)) for k, v in counts.items())
    assert bars.bars.y[-1] == counts.max()  # the most frequent label drawn last: at the top
    assert tickets.spec.target == "text"  # answers: their lengths too
    assert "input and output lengths in characters" in lengths.caption.value
    assert list(lengths.hists) == ["input", "output"]
    assert sum(lengths.hists["input"].y[1::2]) == len(tickets)  # every row in one bin
    assert bars.figure.layout.width == lengths.figure.layout.width == "100%"  # sized to the tab, not to a PNG


def test_dataset_panel_draws_the_distributions_its_core_function_returns(tickets):
    from workbench.explore import Distributions

    asked = []

    def stub(ex):
        asked.append(ex)
        counts = pd.Series({f"intent {i}": 100 - i for i in range(30)})
        return Distributions("intent", counts, 77, {"input": [1, 2, 3], "output": [4, 5]})

    p = DatasetPanel(tickets, distributions=stub)
    p.tabs.selected_index = 1
    assert asked == [p.ex] and len(p.charts) == 2
    assert "rows per intent: the 30 most frequent of 77 labels" in p.charts[0].caption.value
    assert list(p.charts[1].hists) == ["input", "output"] and "input and output" in p.charts[1].caption.value


def test_dataset_panel_takes_a_stub_engine(tickets):
    calls = []

    class Stub:
        def __init__(self, ds):
            from workbench.explore import Explorer
            self._real = Explorer(ds)
            self.labels, self.label_column, self.lengths = self._real.labels, "category", self._real.lengths

        def page(self, q):
            calls.append(q)
            return self._real.page(q)

    p = DatasetPanel(tickets, explorer=Stub)
    p.search.value = "printer"
    assert calls[-1].text == "printer"


WORDS = "a b c d e hello there hi ### User Assistant :".split()


def test_token_panel_updates_on_slider_and_shows_mask():
    tok = word_tokenizer(WORDS)
    ds = load_dataset(pd.DataFrame({"prompt": ["hello there", "a b c d e a b c d e"], "completion": ["hi", "a"]}))
    loads = []

    def lazy():
        loads.append(1)
        return word_tokenizer(WORDS + ["x"])

    p = TokenPanel(ds, {"words": tok, "lazy": lazy}, TokenConfig(max_length=64, sample=None))
    assert loads == []  # not loaded until chosen
    assert "No warnings" in p.warnings.value
    p.max_length.value = 16
    assert "truncated" in p.warnings.value or "no trained token" in p.warnings.value
    assert p.results["words"].max_length == 16
    p.choose.value = ("words", "lazy")
    assert loads == [1] and "lazy" in p.table.value
    assert "wb-trained-count'>2<" in p.mask.value  # "hi" and <eos>
    p.row.value = 1  # 10 prompt words + template: the answer falls beyond max_length=16
    assert "wb-trained-count'>0<" in p.mask.value and "truncated after 16 tokens" in p.mask.value
    p.max_length.value = 64
    p.refresh_mask()
    assert "wb-trained-count'>2<" in p.mask.value  # "a" and <eos>
    p.inputs.value = True
    assert p.results["words"].trained.total > 4


def test_token_panel_shows_errors_instead_of_raising():
    tok = word_tokenizer(WORDS)
    ds = load_dataset(pd.DataFrame({"prompt": ["hello"], "completion": ["hi"]}))
    p = TokenPanel(ds, {"words": tok}, TokenConfig(sample=None))
    p.template.value = "chat"  # this tokenizer has no chat template
    assert "wb-error" in p.table.value and "has no chat template" in p.table.value


def test_token_panel_form_keeps_the_fields_it_does_not_show_and_calls_its_core_function():
    from workbench.tokens import token_report

    tok = word_tokenizer(WORDS)
    ds = load_dataset(pd.DataFrame({"prompt": ["hello there"], "completion": ["hi"]}))
    asked = []

    def report(ds, toks, cfg):
        asked.append(cfg)
        return token_report(ds, toks, cfg)

    start = TokenConfig(max_length=64, sample=None, grad_accum=3, epochs=2.5, truncation_warn=0.2, seed=7)
    p = TokenPanel(ds, {"words": tok}, start, report=report)
    p.max_length.value = 32
    p.batch.value = 4
    want = TokenConfig(max_length=32, batch_size=4, sample=None, grad_accum=3, epochs=2.5, truncation_warn=0.2, seed=7)
    assert p.current_cfg() == want and asked[-1] == want
    assert list(p.hist.hists) == ["words"] and "words" in p.table.value
    assert "max_length 32" in p.hist.legend.value and list(p.hist.marker.x) == [32, 32]


def _stub_run(steps=50):
    """A stand-in for run_training that logs steps and honours Stop, like the real one."""
    import threading
    import time as _time

    from workbench.train import TrainResult

    seen = {}

    def run(train, eval, model, cfg, lora, quant, stop: threading.Event, on_log):
        seen.update(model=model, cfg=cfg, lora=lora)
        start = 0 if not cfg.resume else seen.get("stopped_at", 0)
        for step in range(start + 1, steps + 1):
            on_log({"step": step, "max_steps": steps, "loss": 3.0 / step, "tokens_per_s": 1000.0, "memory_mb": 512})
            if step % 10 == 0:
                on_log({"step": step, "max_steps": steps, "eval_loss": 2.5 / step})
            _time.sleep(0.002)
            if stop.is_set():
                seen["stopped_at"] = step
                return TrainResult(Path("runs/x"), None, {"train_loss": 0.1}, "stopped", step, steps)
        return TrainResult(Path("runs/x"), None, {"train_loss": 0.1, "eval_loss": 0.05}, "succeeded", steps, steps)

    return run, seen


def test_train_panel_start_runs_in_a_thread_with_the_form_settings(tickets):
    from workbench.config import ModelConfig, TrainConfig
    from workbench.panels import TrainPanel

    run, seen = _stub_run()
    p = TrainPanel(tickets, None, ModelConfig(name_or_path="base", task="causal-lm"), TrainConfig(), run=run,
                   plot_every=0)
    p.method.value = "qlora"
    p.rank.value = 8
    p.lr.value = 1e-3
    p.start_btn.click()
    p.wait()
    assert seen["model"].method == "qlora" and seen["lora"].r == 8 and seen["cfg"].learning_rate == pytest.approx(1e-3)
    assert p.progress.value == 50 and "succeeded" in p.status.value
    assert "tokens/s" in p.progress_text.value and "memory 512 MB" in p.progress_text.value
    assert len(p.curves.lines["training loss"].x) > 1 and p.curves.figure in p.curves.widget.children
    assert not p.start_btn.disabled and p.stop_btn.disabled


def test_train_panel_picks_the_base_and_shows_its_licence(tickets):
    from workbench.config import ModelConfig, TrainConfig
    from workbench.panels import TrainPanel

    run, seen = _stub_run()
    p = TrainPanel(tickets, None, ModelConfig(name_or_path="base", task="causal-lm"), TrainConfig(), run=run,
                   plot_every=0)
    assert "smollm2-135m-instruct" in p.base.options and "not a preset" in p.licence.value
    p.base.value = "gemma3-270m"
    assert "Gemma Terms of Use" in p.licence.value
    p.base.value = "smollm2-135m-instruct"
    assert "licence: Apache-2.0" in p.licence.value and "SmolLM2-135M-Instruct" in p.licence.value
    p.start_btn.click()
    p.wait()
    assert seen["model"].name_or_path == "smollm2-135m-instruct"


def test_train_panel_stop_mid_run_then_resume(tickets):
    import threading

    from workbench.config import ModelConfig, TrainConfig
    from workbench.panels import TrainPanel

    run, seen = _stub_run(steps=2000)
    p = TrainPanel(tickets, None, ModelConfig(name_or_path="base", task="causal-lm"), TrainConfig(), run=run)
    p.start()
    while p.progress.value < 20:  # the kernel's thread stays free while training runs
        threading.Event().wait(0.005)
    p.stop_btn.click()
    p.wait()
    assert "stopped" in p.status.value and 20 <= seen["stopped_at"] < 2000
    p.resume_btn.click()
    p.wait()
    assert seen["cfg"].resume is True and "succeeded" in p.status.value and p.progress.value == 2000


def test_train_panel_shows_training_errors(tickets):
    from workbench.config import ModelConfig
    from workbench.panels import TrainPanel
    from workbench.train import TrainingError

    def broken(*a, **kw):
        raise TrainingError("3 examples would train on nothing")

    p = TrainPanel(tickets, None, ModelConfig(name_or_path="base", task="causal-lm"), run=broken)
    p.start()
    p.wait()
    assert "wb-error" in p.status.value and "would train on nothing" in p.status.value
    assert isinstance(p.error, TrainingError) and not p.start_btn.disabled


def test_runs_panel_sorts_filters_overlays_and_diffs(tmp_path):
    import json

    import yaml

    from workbench.config import ExperimentConfig, dump_yaml, from_dict
    from workbench.panels import RunsPanel

    for i, (status, lr) in enumerate([("succeeded", 1e-4), ("failed", 3e-4), ("succeeded", 2e-4)]):
        run = tmp_path / "exp" / f"2026112{i}-000000"
        run.mkdir(parents=True)
        (run / "status.json").write_text(json.dumps({"status": status}))
        (run / "config.yaml").write_text(dump_yaml(from_dict(ExperimentConfig, {"train": {"learning_rate": lr}})))
        (run / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3 / s}) + "\n" for s in (1, 2, 3)))
        (run / "metrics.json").write_text(json.dumps({"train-full": {"eval_loss": lr * 1000}}))
    p = RunsPanel(tmp_path)
    assert p.table.value.count("</tr>") == 4  # header + 3 runs
    p.filter.value = "failed"
    assert p.table.value.count("</tr>") == 2 and "failed" in p.table.value
    p.filter.value = ""
    p.sort.value = "lr"
    p.descending.value = False
    assert list(p.visible()["lr"]) == [1e-4, 2e-4, 3e-4]
    paths = [v for _, v in p.select.options]
    p.select.value = tuple(paths[:2])
    assert len(p.curves.lines) == 2 and "training loss" in p.curves.caption.value.lower()
    p.diff_btn.click()
    assert "train.learning_rate" in p.diff.value and "train-full.eval_loss" in p.diff.value
    p.report_btn.click()
    assert "Select a run with a comparison report" in p.report.value
    assert yaml.safe_load((Path(paths[0]) / "config.yaml").read_text())["train"]["learning_rate"] in (1e-4, 3e-4, 2e-4)


def test_runs_panel_shows_what_its_core_functions_give(tmp_path):
    import pandas as pd

    from workbench.panels import RunsPanel

    report = tmp_path / "report.html"
    report.write_text("<p>the report</p>")
    table = pd.DataFrame([{"experiment": "e", "run": "r1", "status": "succeeded", "path": "/a"},
                          {"experiment": "e", "run": "r2", "status": "failed", "path": "/b"}])
    asked = []
    diff = ([("train.learning_rate", 1e-4, 3e-4)], [("train-full.eval_loss", 1.0, 0.5, -0.5)])
    p = RunsPanel("unused", lister=lambda root: table, comparer=lambda a, b: diff,
                  curves=lambda runs: asked.append(runs) or [("r1", [(1, 2.0), (2, 1.0)])],
                  report=lambda run: report if run == "/a" else None)
    assert p.table.value.count("</tr>") == 3 and "r2" in p.table.value
    p.select.value = ("/a", "/b")
    assert asked == [[Path("/a"), Path("/b")]] and list(p.curves.lines["r1"].y) == [2.0, 1.0]
    p.diff_btn.click()
    assert "train.learning_rate" in p.diff.value and "-0.5" in p.diff.value
    p.report_btn.click()
    assert "the report" in p.report.value
    p.select.value = ("/b",)
    p.report_btn.click()
    assert "Select a run with a comparison report" in p.report.value


def test_dashboard_loads_a_dataset_into_every_tab(tmp_path):
    from workbench.config import ModelConfig, TrainConfig
    from workbench.panels import Dashboard

    d = Dashboard("", ["kb-bpe"], ModelConfig(name_or_path="unused", method="lora"), TrainConfig(max_length=256),
                  tmp_path / "runs")
    assert "Load a dataset" in d.tabs.children[0].children[0].value and "No runs" in d.runs.table.value
    d.source.value = "tests/fixtures/malformed/definitely_missing.csv"
    d.load_btn.click()
    assert "wb-error" in d.status.value and "no such file" in d.status.value
    d.source.value = "datasets/it_support/tickets.jsonl"
    d.load_btn.click()
    assert "prompt_completion, 335 rows" in d.status.value
    assert d.dataset_panel.page.matches == 335
    assert "kb-bpe" in d.token_panel.table.value
    assert d.train_panel.model_cfg.task == "causal-lm"
    assert d.tabs.children[2].children[0] is d.train_panel.widget
    assert d.train_panel._run_dirs().startswith(str(tmp_path / "runs" / "dashboard"))


def test_dashboard_compares_classifiers_on_classification_data(tmp_path):
    from functools import partial

    from workbench.compare import model_set
    from workbench.config import ModelConfig, TrainConfig
    from workbench.panels import Dashboard
    from workbench.panels.compare import ClassifierComparePanel

    loaded = []
    models = partial(model_set, predictor=lambda path: loaded.append(path) or (lambda texts: []))
    d = Dashboard("tests/fixtures/formats/cls.tsv", ["kb-bpe"], ModelConfig(name_or_path="unused"),
                  TrainConfig(max_length=64), tmp_path / "runs", compare_models={"tuned": "runs/x/model"},
                  models=models)
    assert isinstance(d.compare_panel, ClassifierComparePanel) and loaded == ["runs/x/model"]
    assert d.compare_area.children[0] is d.compare_panel.widget and d.compare_pick.value == ("tuned",)
    assert d.train_panel.model_cfg.task == "sequence-classification"

    def broken(ds, folders):
        raise FileNotFoundError(f"{next(iter(folders.values()))} has no classifier.json")

    d = Dashboard("tests/fixtures/formats/cls.tsv", ["kb-bpe"], ModelConfig(name_or_path="unused"),
                  TrainConfig(max_length=64), tmp_path / "runs", compare_models={"tuned": "runs/x/model"},
                  models=broken)
    assert "wb-error" in d.compare_area.children[0].value and "runs/x/model has no classifier.json" in \
        d.compare_area.children[0].value


def test_dashboard_chats_with_two_causal_lms_side_by_side(tmp_path):
    from tiny import tiny_base
    from workbench.config import ModelConfig, TrainConfig
    from workbench.panels import Dashboard
    from workbench.panels.compare import ComparePanel

    folders = {name: str(tiny_base(tmp_path / name, seed=seed)) for seed, name in ((0, "alpha"), (1, "beta"))}
    d = Dashboard("datasets/it_support/tickets.jsonl", ["kb-bpe"], ModelConfig(name_or_path=folders["alpha"]),
                  TrainConfig(max_length=64), tmp_path / "runs", compare_models=folders)
    p = d.compare_panel
    assert isinstance(p, ComparePanel) and d.compare_area.children[0] is p.widget
    assert p.chat_pick.value == ("alpha", "beta")
    p.decoding.value, p.temperature.value, p.top_p.value, p.max_new_tokens.value = True, 1.0, 1.0, 6
    p.chat_input.value = "My VPN keeps dropping every few minutes"
    p.send_btn.click()
    p.wait(120)
    answers = p.history[1:]
    assert [a["model"] for a in answers] == ["alpha", "beta"] and "wb-error" not in p.chat_status.value
    assert all(a["new_tokens"] == 6 and a["content"] and not a["stopped"] for a in answers)  # random weights: no EOS
    assert answers[0]["content"] != answers[1]["content"]               # two different models
    assert answers[0]["settings"] == {"max_new_tokens": 6, "do_sample": True, "temperature": 1.0, "top_p": 1.0,
                                      "seed": 0}
    # Greedy with a repetition penalty: recorded with the answer, and said under it.
    p.decoding.value, p.repetition_penalty.value = False, 1.3
    p.chat_input.value = "And the printer?"
    p.send_btn.click()
    p.wait(120)
    last = p.history[-1]
    assert last["settings"] == {"max_new_tokens": 6, "do_sample": False, "temperature": None, "top_p": None,
                                "seed": 0, "repetition_penalty": 1.3}
    assert "greedy, repetition penalty 1.3, at most 6 new tokens" in p.chat_log.value


def test_dashboard_takes_its_split_and_task_from_the_functions_it_is_given(tmp_path):
    from types import SimpleNamespace

    from workbench.config import ModelConfig, TrainConfig
    from workbench.data import split_dataset
    from workbench.panels import Dashboard

    asked = []

    def halves(ds, test):
        asked.append((len(ds), test))
        return split_dataset(ds, test=test, validation=0.5, stratify=None)

    d = Dashboard("datasets/it_support/tickets.jsonl", ["kb-bpe"], ModelConfig(name_or_path="unused"),
                  TrainConfig(max_length=64), tmp_path / "runs", split=halves,
                  task=lambda ds: SimpleNamespace(name="sequence-classification"))
    assert asked == [(335, 0.1)]  # no test file: a tenth is held out for the Compare tab
    assert len(d.train_panel.train_ds) + len(d.train_panel.eval_ds) + len(d.test_ds) == 335
    assert len(d.train_panel.eval_ds) == 168 and len(d.test_ds) == 34  # as the function it was given split them
    # The task it was given does not suit prompt/completion data: the panel infers causal-lm and says why not
    assert d.train_panel.task_name == "causal-lm" and "unused" in d.train_panel.model_check.value
