"""Project promises that are easy to break silently."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WIDGET_MODULES = {"ipywidgets", "IPython", "traitlets", "ipykernel"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_widget_code():
    offenders = {}
    for path in (ROOT / "workbench").rglob("*.py"):
        if "panels" in path.relative_to(ROOT / "workbench").parts:
            continue
        bad = _imports(path) & WIDGET_MODULES
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_no_module_shadows_stdlib_or_a_dependency():
    shadowing = {"tokenize", "datasets", "evaluate", "io", "json", "logging", "types", "transformers", "peft",
                 "torch", "typing", "random", "string", "copy", "queue", "select", "inspect", "dataclasses"}
    names = {p.stem for p in (ROOT / "workbench").rglob("*.py")} | {p.name for p in (ROOT / "workbench").iterdir()}
    assert names & shadowing == set()


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^\s*(?:-\s*)?([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_yml_has_the_same_pins_as_constraints():
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip_section) == constraints
    assert "torch" in constraints and constraints["torch"].startswith("2.")


def test_every_dependency_is_pinned():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=!\[ ]", d)[0].lower() for d in deps}
    assert names <= set(_pins((ROOT / "constraints.txt").read_text().splitlines()))
