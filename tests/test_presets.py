"""Preset names: every one the docs, docstrings, notebooks and CLI help mention exists, and a name that
loads nothing gives one line saying what to name instead (not a hub traceback)."""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from workbench import presets
from workbench.cli import build_parser, main
from workbench.config import ModelConfig
from workbench.errors import ModelNotFoundError

ROOT = Path(__file__).resolve().parent.parent
#: Every name a preset can have: models (``model.name_or_path``), tokenizers, scratch sizes (``pretrain.preset``).
KNOWN = set(presets.LICENCES) | set(presets.BUILTIN_TOKENIZERS) | set(presets.SCRATCH_PRESETS)
#: A model-like name: hyphenated or with a digit (``tiny-llama``, ``gemma3``), which no Python identifier is;
#: plain words in backticks beside "preset" are as often argument names (``name``, ``base``).
MODEL_LIKE = re.compile(r"[a-z][a-z0-9.]*(?:-[a-z0-9.]+)+|[a-z]+[0-9][a-z0-9.]*")
DOTTED = re.compile(r"\w+(?:\.\w+)+")  # module paths and config keys (workbench.presets, pretrain.preset)


def preset_mentions(text: str) -> set[str]:
    """Names a text calls presets, when they are known presets or look like model names (``MODEL_LIKE``):
    on a line that says "preset" and the two after it (a sentence wraps), the names in backticks and
    those in parentheses right after the word (``a preset (kb-bpe, minilm)``); in a Markdown table,
    the cells of a "preset" column."""
    found, column = set(), None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            column = None
        elif column is None:  # a Markdown table whose header has a "preset" column: its cells are presets
            column = next((i for i, c in enumerate(cells) if c.lower() in ("preset", "presets")), None)
        elif column < len(cells) and not set(cells[column]) <= set("-: "):
            found |= {n for n in re.findall(r"`+([^`]+)`+", cells[column]) if MODEL_LIKE.fullmatch(n) or n in KNOWN}
        line = DOTTED.sub("", line)
        if cells is not None or not re.search(r"\bpresets?\b", line, re.IGNORECASE):
            continue
        quoted = re.findall(r"`+([^`]+)`+", " ".join([line, *(DOTTED.sub("", x) for x in lines[i + 1:i + 3])]))
        listed = [n for group in re.findall(r"\bpresets?:?\s*\(([^)]*)\)", line, re.IGNORECASE)
                  for n in group.split(",")]
        found |= {n.strip() for n in quoted + listed if n.strip() in KNOWN or MODEL_LIKE.fullmatch(n.strip())}
    return found


def _help_texts() -> list[str]:
    parser = build_parser()
    texts = [parser.format_help()]
    stack = [parser]
    while stack:
        for action in stack.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    texts.append(sub.format_help())
                    stack.append(sub)
    return texts


def _sources() -> dict[str, str]:
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
             for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                       *sorted((ROOT / "workbench").rglob("*.py"))]}
    for nb in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        texts[str(nb.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells)
    texts.update({f"cli help {i}": t for i, t in enumerate(_help_texts())})
    return texts


def test_the_mention_finder_sees_what_a_reader_would_take_for_a_preset():
    assert preset_mentions('"""A hub id, a local folder, or a preset: ``tiny-llama`` (the demo)."""') == {"tiny-llama"}
    assert preset_mentions('name_or_path = "minilm"  # preset (minilm), local folder or hub id') == {"minilm"}
    assert preset_mentions("(see ``pretrain.preset``) ``pretraining`` from scratch") == set()  # a key, not a name
    assert preset_mentions("``tiny-llama`` is a model") == set()                            # no preset said
    assert preset_mentions("a local folder, or a preset:\n    ``minilm``, ``tiny-llama``\n") == {"minilm", "tiny-llama"}
    assert preset_mentions("scratch preset ``name`` (``tiny`` or ``small``)") == {"tiny", "small"}
    table = "| preset | model |\n|---|---|\n| `tiny-llama` | a `small-llama` |\n\n| `not-this` |"
    assert preset_mentions(table) == {"tiny-llama"}                                          # the preset column


def test_every_preset_name_in_the_docs_docstrings_notebooks_and_help_exists():
    mentions = {path: preset_mentions(text) for path, text in _sources().items()}
    unknown = {path: sorted(names - KNOWN) for path, names in mentions.items() if names - KNOWN}
    assert unknown == {}, f"presets mentioned but not defined (defined: {sorted(KNOWN)})"
    assert {"minilm", "kb-bpe"} <= set().union(*mentions.values())   # the finder does find the real ones


def _resolves(value: str, folder: Path) -> bool:
    return value in KNOWN or (folder / value).exists() or Path(value).exists()


def test_the_presets_named_in_shipped_experiments_and_notebook_parameters_exist():
    import papermill as pm

    checked = []
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        for value in [(spec.get("model") or {}).get("name_or_path"), (spec.get("pretrain") or {}).get("preset")]:
            if value:
                checked.append(value)
                assert _resolves(value, ROOT), f"{path.name}: {value!r} is no preset and no path"
    for nb in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        params = pm.inspect_notebook(str(nb))
        for key in ("name_or_path", "tokenizers", "probe_encoder", "tokenizer"):
            default = params.get(key, {}).get("default")
            for value in (v.strip() for v in (ast.literal_eval(default) if default else "").split(",")):
                if value and value != "whitespace":  # counting_tokenizer's word count
                    checked.append(value)
                    assert _resolves(value, nb.parent), f"{nb.name}: {key} {value!r} is no preset and no path"
    assert "minilm" in checked and "kb-bpe" in checked
    assert Path(presets.resolve_path("minilm"), "config.json").exists()


def test_an_unknown_model_name_offline_is_one_line_naming_it_and_the_presets(tmp_path, capsys):
    from workbench.models import load_causal_lm, load_model

    with pytest.raises(ModelNotFoundError) as e:
        load_model(ModelConfig(name_or_path="tiny-llama", task="causal-lm"))
    message = str(e.value)
    assert "\n" not in message and message.startswith("'tiny-llama' is not a local folder or file, not a preset")
    assert "Fix: name a model folder, a .gguf file, a preset" in message
    assert f"Presets: {', '.join(presets.LICENCES)}." in message and "minilm" in message
    assert e.value._render_traceback_() == [f"ModelNotFoundError: {message}"]  # Jupyter prints the line only

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"empty: the folder holds no tokenizer files .* Fix: point at a "
                                                 r"folder written by save_pretrained"):
        load_causal_lm(tmp_path / "empty")

    experiment = tmp_path / "bad.yaml"
    experiment.write_text(yaml.safe_dump({"data": {"source": str(ROOT / "datasets/it_support/tickets.jsonl")},
                                          "model": {"name_or_path": "tiny-llama", "task": "causal-lm"},
                                          "train": {"max_steps": 1, "output_dir": str(tmp_path / "run")}}))
    assert main(["train", str(experiment), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("workbench: 'tiny-llama' is not a local folder") and "Traceback" not in "\n".join(err)
