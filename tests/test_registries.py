"""One home per concept: a format or a method is added in one place (here, this file) and works
everywhere; the data layer imports no tokenizer, preset or model code; no import hides in a
function to dodge a cycle; nothing outside the format descriptors compares format names."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny import bpe_tokenizer, tiny_base
from workbench.config import LoraConfig, ModelConfig, TokenConfig, TrainConfig, from_dict
from workbench.data import find_duplicates, load_dataset, split_dataset
from workbench.data.formats import FORMATS, Format, register_format
from workbench.explore import Explorer, Query
from workbench.methods import METHODS, Method, register_method
from workbench.models import load_causal_lm
from workbench.tokens import length_stats
from workbench.train import run_training

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "workbench"


# --------------------------------------------------------------------------- a toy format, in this file only


class Ticket(Format):
    """A help-desk ticket: a subject and a body, answered by a reply."""

    name = "ticket"
    fields = ("subject", "body", "reply")
    conversational = True
    detect_order = 5

    def messages(self, row: dict) -> list[dict]:
        return [{"role": "user", "content": f"{row['subject']}\n\n{row['body']}"},
                {"role": "assistant", "content": row["reply"]}]


@pytest.fixture
def ticket_format():
    fmt = register_format(Ticket())
    yield fmt
    del FORMATS["ticket"]


def _tickets(path: Path, n: int = 24) -> Path:
    rows = [{"subject": f"Printer {i} jams", "body": f"The printer on floor {i % 5} jams on every page.",
             "reply": f"Open tray {i % 3}, remove the paper and restart the printer."} for i in range(n)]
    rows.append({"subject": "VPN", "body": "It drops every hour."})  # no reply: a problem naming the field
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_format_registered_in_one_file_loads_explores_measures_and_trains(ticket_format, tmp_path):
    ds = load_dataset(_tickets(tmp_path / "tickets.jsonl"), strict=False)
    assert ds.format == "ticket" and ds.spec is ticket_format
    assert ds.columns == {"subject": "subject", "body": "body", "reply": "reply"}
    assert len(ds) == 24
    missing = [p for p in ds.report.errors if p.field == "reply"]
    assert missing and missing[0].line == 25  # file and line of the record without a reply

    explorer = Explorer(ds)  # shows the fields, searches input and answer
    page = explorer.page(Query(text="remove the paper"))
    assert page.matches == 24 and {"subject", "body", "reply"} <= set(page.rows.columns)
    assert explorer.page(Query(text="floor 3")).matches == 5
    assert find_duplicates(ds).rows == 24

    tok = bpe_tokenizer()
    stats = length_stats(ds, tok, TokenConfig(max_length=128))
    assert set(stats.fields) == {"subject", "body", "reply", "example"}
    assert stats.template == "fallback" and stats.trained.min > 0 and not stats.fully_masked_rows

    splits = split_dataset(ds, test=0.0, validation=0.2, seed=0)
    base = tiny_base(tmp_path / "base")
    result = run_training(splits["train"], splits["validation"], ModelConfig(name_or_path=str(base), task="causal-lm",
                                                                             method="lora"),
                          TrainConfig(output_dir=str(tmp_path / "run"), max_steps=3, batch_size=4, max_length=128,
                                      logging_steps=1), LoraConfig(r=4, alpha=8))
    assert result.status == "succeeded" and result.global_step == 3
    assert (result.model_dir / "adapter_config.json").exists()
    assert "eval_perplexity" in result.metrics and result.metrics["cpu_threads"] >= 1


def test_a_descriptor_the_workbench_could_not_use_is_refused_when_registered():
    class Answer(Format):
        name = "answer-only"
        fields = ("question", "answer")  # a text answer, but no messages()

    class Intent(Format):
        name = "intent"
        fields = ("utterance", "intent")
        target = "label"

    for fmt, message in ((Answer(), "render as chat messages"), (Intent(), "named 'text' and 'label'")):
        with pytest.raises(ValueError, match=message):
            register_format(fmt)
        assert fmt.name not in FORMATS


# --------------------------------------------------------------------------- a toy method, in this file only


class NormTuning(Method):
    """Train only the normalisation weights (a few thousand numbers), the rest frozen; saved whole."""

    name = "norms"
    description = "train the normalisation weights only"

    def prepare(self, model, kind, lora, gradient_checkpointing=False):
        for name, p in model.named_parameters():
            p.requires_grad = "norm" in name
        return model


@pytest.fixture
def norm_method():
    method = register_method(NormTuning())
    yield method
    del METHODS["norms"]


def test_a_method_registered_in_one_file_trains_saves_and_reloads(norm_method, tmp_path):
    assert from_dict(ModelConfig, {"method": "norms"}).method == "norms"  # the config reads the registry
    base = tiny_base(tmp_path / "base")
    ds = load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl").with_frame(
        load_dataset(ROOT / "datasets" / "it_support" / "tickets.jsonl").frame.head(16))
    before = {n: p.clone() for n, p in load_causal_lm(base)[0].named_parameters()}
    result = run_training(ds, None, ModelConfig(name_or_path=str(base), task="causal-lm", method="norms"),
                          TrainConfig(output_dir=str(tmp_path / "run"), max_steps=3, batch_size=4, max_length=512,
                                      learning_rate=1e-2, logging_steps=1))
    assert result.status == "succeeded"
    trainable, total = result.metrics["trainable_params"], result.metrics["total_params"]
    assert 0 < trainable < total / 20
    after = dict(load_causal_lm(result.model_dir)[0].named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p, before[n])}
    assert changed and all("norm" in n for n in changed)


def test_unknown_names_say_what_is_registered():
    from workbench.config import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'qlora'"):
        from_dict(ModelConfig, {"method": "qlorra"})
    with pytest.raises(ConfigError, match="'pretraining'"):
        from_dict(ModelConfig, {"task": "pretrain"})


# --------------------------------------------------------------------------- the module graph


def test_importing_the_data_layer_loads_no_tokenizer_preset_or_model_code():
    code = ("import sys, workbench.data; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('workbench', 'torch', 'transformers')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    loaded = set(out.split())
    assert loaded, out
    assert all(m.startswith("workbench") for m in loaded), sorted(m for m in loaded if not m.startswith("workbench"))
    outside = {m for m in loaded if not m.startswith("workbench.data")} - {"workbench", "workbench.files",
                                                                          "workbench.errors", "workbench.registry"}
    assert not outside, outside


def _function_level_imports(path: Path) -> list[str]:
    """Imports of workbench modules placed inside a function body."""
    tree = ast.parse(path.read_text())
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("workbench")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {fn.name}")
    return found


def test_no_import_hides_in_a_function():
    # The one exception imports torch through the pooled head when a classifier loads, so that reading a
    # config (which lists the registered tasks) does not import torch; it dodges no cycle.
    allowed = {"workbench/tasks.py load"}
    found = [f for p in sorted(PACKAGE.rglob("*.py")) for f in _function_level_imports(p)]
    assert {re.sub(r":\d+", "", f) for f in found} <= allowed, found


def _format_name_comparisons(path: Path, names: set[str]) -> list[str]:
    """``x == "corpus"``, ``x in ("chat", ...)`` and the like: branching on a format's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            consts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            if any(isinstance(c, ast.Constant) and c.value in names for c in consts):
                if "kind" in ast.unparse(node):  # a saved model's kind (its class), which shares the word causal-lm
                    continue
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_format_task_and_method_names_are_compared_only_by_their_descriptors():
    from workbench.tasks import TASKS

    names = (set(FORMATS) - {"chat"}) | set(TASKS) | set(METHODS)  # "chat" is also a template choice
    homes = {"formats.py", "tasks.py", "methods.py"}
    hits = [h for p in sorted(PACKAGE.rglob("*.py")) if p.name not in homes
            for h in _format_name_comparisons(p, names)]
    assert not hits, "\n".join(hits)
