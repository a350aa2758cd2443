"""One config definition, several views: the command line, notebook parameters and panel forms are
derived from the config dataclasses and their field docstrings; these tests fail when a view drifts."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

from tiny import word_tokenizer
from workbench import config
from workbench.config import (CompareConfig, ConfigError, DataConfig, ExperimentConfig, ModelConfig, TokenConfig,
                              TrainConfig, config_from_args, field_docs, field_help, from_params, section_from_params,
                              section_names)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [p for p in sorted((ROOT / "notebooks").rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
CONFIGS = [obj for obj in vars(config).values() if isinstance(obj, type) and dataclasses.is_dataclass(obj)]


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------- docstrings


def test_the_config_classes_are_found():
    assert {DataConfig, TokenConfig, ModelConfig, TrainConfig, CompareConfig, ExperimentConfig,
            config.DocumentConfig} <= set(CONFIGS)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_a_docstring(cls):
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, "").strip()]
    assert missing == [], f"{cls.__name__}: fields without a docstring under them: {missing}"


def test_docstrings_are_read_as_written():
    assert field_docs(DataConfig)["source"] == "File, folder, or hub dataset name."
    assert field_help(DataConfig, "format") == "Task format; auto detects it from the column names."
    overlap = field_help(config.DocumentConfig, "overlap")  # written over several lines
    assert "\n" not in overlap and "  " not in overlap and overlap.endswith("less than half of chunk_size.")


def test_section_names_come_from_the_experiment_fields():
    from workbench.notebook_runner import SECTION_OF

    names = section_names()
    assert names["DataConfig"] == "data" and names["TokenConfig"] == "tokens" and names["LoraConfig"] == "lora"
    assert all(getattr(ExperimentConfig(), section).__class__.__name__ == cls for cls, section in names.items())
    assert SECTION_OF == names


# --------------------------------------------------------------------------- the command line


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


#: Options of the data commands that are not DataConfig fields.
CLI_ONLY = {"report": {"field", "out"}, "validate": {"field", "limit"}, "split": {"field", "out"}}


@pytest.mark.parametrize("command", sorted(CLI_ONLY))
def test_data_command_options_are_data_config_fields_with_their_docstrings(command):
    from workbench.cli import build_parser

    sub = _subparser(build_parser(), "data", command)
    options = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
    strays = {a.dest for a in options} - _fields(DataConfig) - CLI_ONLY[command]
    assert strays == set(), f"workbench data {command}: options that are not DataConfig fields: {strays}"
    for action in options:
        if action.dest in _fields(DataConfig):
            assert action.help.replace("%%", "%").startswith(field_help(DataConfig, action.dest)), action.dest


def test_data_options_build_the_data_config():
    from workbench.cli import LOAD_FIELDS, SPLIT_FIELDS, build_parser

    args = build_parser().parse_args([
        "data", "report", "my.dat", "--format", "classification", "--column", "text=utterance",
        "--columns", "label=intent", "--split", "train", "--reader", "csv", "--encoding", "latin-1", "--test", "0.2",
        "--validation", "0.05", "--seed", "7", "--stratify", "none", "--pii-allow", "a@x.example, b@x.example"])
    cfg = config_from_args(DataConfig, args, LOAD_FIELDS + SPLIT_FIELDS)
    assert cfg == DataConfig(source="my.dat", format="classification", columns={"text": "utterance", "label": "intent"},
                             split="train", reader="csv", encoding="latin-1", test=0.2, validation=0.05, seed=7,
                             stratify=None, pii_allow=["a@x.example", "b@x.example"])
    defaults = config_from_args(DataConfig, build_parser().parse_args(["data", "report", "my.dat"]),
                                LOAD_FIELDS + SPLIT_FIELDS)
    assert defaults == DataConfig(source="my.dat")


def test_a_bad_option_value_is_a_config_error_naming_the_choices(capsys):
    from workbench.cli import main

    assert main(["data", "validate", "tests/fixtures/formats/cls.tsv", "--format", "clasification"]) == 2
    assert "Did you mean 'classification'?" in capsys.readouterr().err


# --------------------------------------------------------------------------- notebook parameters


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]


def _assigned(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_build_their_sections_from_the_parameters_without_listing_fields(path):
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("workbench", {})
    classes = [getattr(config, name) for name in meta.get("configs", [])]
    fields = set().union(*map(_fields, classes))
    extra = set(meta.get("extra_parameters", []))
    params = set(pm.inspect_notebook(str(path)))
    assert params - fields - extra == set(), "parameters that are neither config fields nor declared extras"
    assert extra & fields == set(), "a declared extra parameter is a config field: read it through its section"
    code = "\n".join(_code(nb))
    for cls in classes:
        assert f"section_from_params({cls.__name__}, globals())" in code, f"{cls.__name__} is not built from params"
    assert not re.search(r"(?<!section_)from_params\(", code), "fields listed by hand in a from_params call"
    # section_from_params reads the notebook's globals: no later cell may bind a config field's name.
    clashes = set().union(*map(_assigned, _code(nb))) & fields
    assert clashes == set(), f"cells outside the parameters bind config field names: {clashes}"


def test_section_from_params_reads_its_fields_and_leaves_the_rest():
    params = {"source": "x.csv", "seed": 3, "max_length": 64, "sample": 0, "columns": "text=a, label=b",
              "eval_split": "", "tokenizers": "minilm", "pii_allow": "a@b.example, c@d.example"}
    assert section_from_params(DataConfig, params) == DataConfig(
        source="x.csv", seed=3, columns={"text": "a", "label": "b"}, eval_split=None,
        pii_allow=["a@b.example", "c@d.example"])
    assert section_from_params(TokenConfig, params) == TokenConfig(max_length=64, sample=None, seed=3)
    with pytest.raises(ConfigError, match="seed"):
        section_from_params(TrainConfig, {"seed": "three"})


def test_zero_stands_for_none_only_in_optional_number_fields():
    assert from_params(TrainConfig, head_learning_rate=0.0).head_learning_rate is None
    assert from_params(CompareConfig, max_examples=0).max_examples is None
    assert from_params(TrainConfig, weight_decay=0.0).weight_decay == 0.0
    assert from_params(TrainConfig, eval_steps=0).eval_steps == 0


# --------------------------------------------------------------------------- panel forms


def test_panel_forms_edit_config_fields_and_explain_them_with_their_docstrings():
    from workbench.data import load_dataset
    from workbench.panels import ComparePanel, TokenPanel, TrainPanel

    ds = load_dataset(pd.DataFrame({"prompt": ["hello there"], "completion": ["hi"]}))
    panels = [TokenPanel(ds, {"words": word_tokenizer("hello there hi ### User Assistant :".split())},
                         TokenConfig(sample=None)),
              TrainPanel(ds, None, ModelConfig(name_or_path="base", task="causal-lm"), run=lambda *a, **kw: None),
              ComparePanel({"base": "base"}, ds)]
    for panel in panels:
        assert panel.form, f"{type(panel).__name__} has no form"
        for (cls, name), widget in panel.form.items():
            assert name in _fields(cls), f"{type(panel).__name__}: {cls.__name__} has no field {name!r}"
            assert widget.tooltip == field_help(cls, name) != ""


def test_train_panel_form_values_reach_the_configs():
    from workbench.data import load_dataset
    from workbench.panels import TrainPanel

    ds = load_dataset(pd.DataFrame({"prompt": ["hello there"], "completion": ["hi"]}))
    p = TrainPanel(ds, None, ModelConfig(name_or_path="base", task="causal-lm"), TrainConfig(warmup=0.2),
                   run=lambda *a, **kw: None)
    p.epochs.value, p.max_steps.value, p.batch.value, p.max_length.value = 2.0, 9, 3, 128
    model, train, lora = p.configs()
    assert (train.epochs, train.max_steps, train.batch_size, train.max_length, train.warmup) == (2.0, 9, 3, 128, 0.2)
    assert model.name_or_path == "base" and lora.r == p.rank.value


# --------------------------------------------------------------------------- fields added to the configs


def test_compare_metrics_are_checked_against_the_registry():
    from workbench.metrics import PER_EXAMPLE

    assert set(CompareConfig().metrics) <= set(PER_EXAMPLE)
    with pytest.raises(ConfigError, match="Did you mean 'rouge_l'"):
        CompareConfig(metrics=["rogue_l"])
    with pytest.raises(ConfigError, match="'accuracy' is not a generation metric"):
        config.from_dict(ExperimentConfig, {"compare": {"metrics": ["accuracy"]}})


def test_reader_encoding_and_pii_allow_reach_loading_and_the_report(tmp_path):
    from workbench.data import data_report, load_dataset

    f = tmp_path / "rows.dat"  # an extension no reader claims
    f.write_bytes("text,label\ncafé au lait,drink\nwrite to ops@corp.example,contact\n".encode("latin-1"))
    cfg = DataConfig(source=str(f), reader="csv", encoding="latin-1", test=0.0, validation=0.0, stratify=None)
    assert load_dataset(cfg.source, **cfg.load_kwargs()).frame["text"].iat[0] == "café au lait"
    flagged = data_report(cfg.source, **cfg.report_kwargs())
    allowed = data_report(cfg.source, **dataclasses.replace(cfg, pii_allow=["ops@corp.example"]).report_kwargs())
    assert flagged.pii.counts.get("email") == 1 and not allowed.pii.counts.get("email")
    assert DataConfig().load_kwargs() == {"format": "auto", "columns": None, "split": None, "strict": False,
                                          "reader": None, "encoding": "utf-8", "header": "auto", "delimiter": None,
                                          "quotechar": None, "field": None}
