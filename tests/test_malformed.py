"""Malformed data files: every one must give a DatasetError that says where and what.

The corpus is ``tests/fixtures/malformed/``: one tiny file per way data goes wrong, and
``expected.yaml`` saying, for each file, the problem kind, line, field and message the data
layer must report (see the header of that file for its keys). Rows marked ``xfail`` are
known data-layer defects; they are strict xfails, so fixing the defect makes the suite
say so.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from workbench.data import DatasetError, load_dataset, split_dataset
from workbench.data.problems import PROBLEM_KINDS, Problem

FIXTURES = Path(__file__).parent / "fixtures" / "malformed"
TABLE = FIXTURES / "expected.yaml"
CASES: list[dict] = yaml.safe_load(TABLE.read_text(encoding="utf-8"))

KEYS = {"file", "kind", "line", "row", "field", "message", "kwargs", "split_step", "good_rows",
        "xfail", "lenient_xfail"}
#: Kinds that cannot be a file in the corpus (the source is missing); tested below. A link out of a folder,
#: an unreadable file and a one-class set (a warning, which strict loading does not raise) are tested in
#: tests/test_hostile_inputs.py.
KINDS_WITHOUT_FIXTURE = {"not_found", "hub_unreachable", "outside_source", "unreadable", "single_class"}


def _params(cases: list[dict], xfail_key: str) -> list:
    out = []
    for case in cases:
        marks = [pytest.mark.xfail(strict=True, reason=case[xfail_key])] if case.get(xfail_key) else []
        out.append(pytest.param(case, marks=marks, id=case["file"]))
    return out


def _matches(p: Problem, case: dict) -> bool:
    return (
        p.kind == case["kind"]
        and p.line == case["line"]
        and ("row" not in case or p.row == case["row"])
        and (not case.get("field") or (p.field is not None and case["field"] in p.field))
        and case["message"] in p.message
    )


def _find(problems, case: dict) -> Problem:
    found = [p for p in problems if _matches(p, case)]
    want = {k: case.get(k) for k in ("kind", "line", "row", "field", "message") if k in case}
    listing = "\n".join(f"  {p.kind} line={p.line} row={p.row} field={p.field!r}: {p.message}" for p in problems)
    assert found, f"no problem matching {want} among:\n{listing or '  (none)'}"
    return found[0]


def _load(case: dict, strict: bool):
    return load_dataset(FIXTURES / case["file"], strict=strict, **(case.get("kwargs") or {}))


@pytest.mark.parametrize("case", _params(CASES, "xfail"))
def test_malformed_file_raises_with_location_and_fix(case):
    name = case["file"]
    if case.get("split_step"):
        ds = _load(case, strict=True)  # the file itself is fine; the split step is not
        with pytest.raises(DatasetError) as info:
            split_dataset(ds, **case["split_step"])
    else:
        with pytest.raises(DatasetError) as info:
            _load(case, strict=True)
    err = info.value
    problem = _find(err.problems, case)

    # The problem names the file, and says how to fix it.
    assert problem.file is not None and Path(problem.file).name == name, problem.file
    assert problem.fix.strip(), f"no fix hint in {problem}"

    # The rendered error shows the file (with its line) and the fix, for this problem.
    text = str(err)
    assert name in text
    shown = [ln for ln in text.splitlines() if problem.message in ln]
    assert shown, f"problem not shown in the error:\n{text}"
    if case["line"] is not None:
        assert f"{name}:{case['line']}" in shown[0], shown[0]
    assert re.search(r"Fix: \S", shown[0]), f"no non-empty 'Fix:' hint in: {shown[0]}"


LENIENT = [c for c in CASES if c.get("good_rows") is not None]


@pytest.mark.parametrize("case", _params(LENIENT, "lenient_xfail"))
def test_lenient_mode_keeps_good_rows_and_reports_bad_ones(case):
    ds = _load(case, strict=False)
    _find(ds.report.problems, case)
    assert len(ds) == case["good_rows"], ds.frame.drop(columns=["_file"]).to_dict("records")
    assert ds.report.rows_kept == case["good_rows"]
    if case["line"] is not None:
        assert case["line"] not in ds.frame["_line"].tolist(), "the bad line was kept"
    # Nothing undecodable slips through: bad bytes decode to U+FFFD, and such rows are dropped.
    for record in ds.records():
        assert "\ufffd" not in repr(record), record


def test_every_fixture_has_an_expectation():
    files = sorted(p.name for p in FIXTURES.iterdir() if p.is_file() and p != TABLE)
    listed = [c["file"] for c in CASES]
    assert len(files) >= 25, f"the malformed corpus has only {len(files)} files"
    assert len(listed) == len(set(listed)), "a file is listed twice in expected.yaml"
    assert sorted(set(files) - set(listed)) == [], "fixtures without an entry in expected.yaml"
    assert sorted(set(listed) - set(files)) == [], "entries in expected.yaml without a fixture"
    for case in CASES:
        assert set(case) <= KEYS, f"{case['file']}: unknown keys {set(case) - KEYS}"
        assert {"file", "kind", "line", "message"} <= set(case), f"{case['file']}: kind, line and message are required"
        assert case["kind"] in PROBLEM_KINDS, f"{case['file']}: unknown kind {case['kind']!r}"
        assert case["message"], f"{case['file']}: empty message substring"


def test_every_problem_kind_is_covered():
    covered = {c["kind"] for c in CASES if not c.get("xfail")} | KINDS_WITHOUT_FIXTURE
    assert sorted(set(PROBLEM_KINDS) - covered) == []


def test_missing_file_is_not_found():
    with pytest.raises(DatasetError) as info:
        load_dataset(FIXTURES / "no_such_file.csv")
    (problem,) = info.value.problems
    assert problem.kind == "not_found"
    assert problem.file.endswith("no_such_file.csv")
    assert "no_such_file.csv" in str(info.value) and re.search(r"Fix: \S", str(info.value))


def test_hub_name_offline_is_hub_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError) as info:
        load_dataset("someone/no-such-dataset")
    (problem,) = info.value.problems
    assert problem.kind == "hub_unreachable"
    assert "someone/no-such-dataset" in problem.message
    assert re.search(r"Fix: \S", str(info.value))
