"""Notebooks: parameters mirror the config dataclasses, and each runs headless under papermill."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from workbench import config

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]


def test_there_are_notebooks():
    assert {"01_explore_dataset.ipynb", "02_tokenization.ipynb", "03_finetune.ipynb", "04_compare.ipynb",
            "05_documents.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_mirror_the_config_dataclasses(path):
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("workbench", {})
    classes = [getattr(config, name) for name in meta.get("configs", [])]
    assert classes, f"{path.name}: metadata.workbench.configs names no config dataclass"
    params = pm.inspect_notebook(str(path))
    assert params, f"{path.name}: no cell tagged 'parameters'"
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {line.split("=", 1)[0].strip() for line in cell.source.splitlines() if re.match(r"^\w+\s*=", line)}
    assert assigned == set(params), f"papermill could not parse {sorted(assigned - set(params))} (quotes or '=' in a comment?)"
    fields = {f for cls in classes for f in cls.__dataclass_fields__}
    extra = set(meta.get("extra_parameters", []))
    assert set(params) - fields - extra == set(), "parameters that are neither config fields nor declared extras"
    assert extra - set(params) == set(), "declared extras that are not parameters"
    defaults = {name: eval(p["default"]) for name, p in params.items()}  # noqa: S307 - our own literals
    assert all(isinstance(v, (str, int, float, bool)) for v in defaults.values()), "parameters are primitives"
    for cls in classes:  # the defaults build a valid config
        mine = {k: v for k, v in defaults.items() if k in cls.__dataclass_fields__}
        if cls is config.TokenConfig and mine.get("sample") == 0:
            mine["sample"] = None
        config.from_params(cls, **mine)


def _run(tmp_path, name, **parameters):
    out = tmp_path / name
    # Like JupyterLab and Voila, the kernel runs in the notebooks folder: paths are relative to it.
    pm.execute_notebook(str(ROOT / "notebooks" / name), str(out), parameters=parameters, kernel_name="python3",
                        cwd=str(ROOT / "notebooks"), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs if o.output_type != "stream")
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, html, pngs


def test_explore_notebook_on_banking77(tmp_path):
    text, _, pngs = _run(tmp_path, "01_explore_dataset.ipynb", out_dir=str(tmp_path / "splits"))
    assert "format        classification  (text<-text, label<-category)" in text
    assert "labels        77" in text and pngs == 2
    assert (tmp_path / "splits" / "splits.json").exists()


def test_explore_notebook_on_it_support(tmp_path):
    text, _, pngs = _run(tmp_path, "01_explore_dataset.ipynb", source="../datasets/it_support/tickets.jsonl",
                         stratify="category", pii_allow="security@northwind.example")
    assert "format        prompt_completion" in text and "credit_card" in text and pngs == 2


def test_tokenization_notebook_on_banking77(tmp_path):
    text, html, pngs = _run(tmp_path, "02_tokenization.ipynb", sample=2000)
    assert "../datasets/banking77: classification, 10,003 rows; tokenizers: minilm, kb-bpe" in text
    assert "truncated_share" in html and "wb-lossmask" in html and pngs == 1


def test_tokenization_notebook_on_it_support(tmp_path):
    text, html, _ = _run(tmp_path, "02_tokenization.ipynb", source="../datasets/it_support/tickets.jsonl",
                         tokenizers="kb-bpe", max_length=256)
    assert "template fallback" in text and "longer than max_length=256" in text
    assert "wb-trained" in html  # the answer tokens are highlighted


def test_finetune_notebook_on_a_tiny_llama(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_base

    base = tiny_base(tmp_path / "base")
    text, _, pngs = _run(tmp_path, "03_finetune.ipynb", source="../datasets/it_support/tickets.jsonl",
                         eval_split="", stratify="category", name_or_path=str(base), task="causal-lm", method="lora",
                         output_dir=str(tmp_path / "run"), max_steps=6, learning_rate=3e-3, batch_size=4,
                         max_length=512, logging_steps=2)
    assert "succeeded: step 6/6" in text and "eval_loss" in text and pngs == 1
    assert (tmp_path / "run" / "training_curves.png").exists() and (tmp_path / "run" / "model").exists()


def test_compare_notebook_classification_with_the_probe(tmp_path):
    import pandas as pd

    bank = pd.read_csv(ROOT / "datasets" / "banking77" / "train.csv")
    few = bank[bank.category.isin(["card_arrival", "exchange_rate", "pin_blocked"])].groupby("category").head(20)
    few.to_csv(tmp_path / "few.csv", index=False)
    text, html, pngs = _run(tmp_path, "04_compare.ipynb", source=str(tmp_path / "few.csv"), stratify="auto",
                            test=0.3, report_dir=str(tmp_path / "report"), bootstrap_resamples=200)
    assert "18 held-out examples" in text and "frozen probe" in html and pngs == 1
    assert (tmp_path / "report" / "report.html").exists()
