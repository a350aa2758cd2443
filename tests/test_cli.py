"""The `workbench` command: reports, exit codes, and bad data without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from workbench.cli import main

F = "tests/fixtures/formats/"


def test_data_report_prints_format_and_writes_splits(tmp_path, capsys):
    assert main(["data", "report", F + "cls.tsv", "--test", "0", "--validation", "0.5", "--stratify", "none",
                 "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "format        classification  (text<-utterance, label<-intent)" in out
    manifest = json.loads((tmp_path / "s" / "splits.json").read_text())
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["validation"]["rows"] == 4


def test_validate_exit_codes(tmp_path, capsys):
    good = main(["data", "validate", F + "pc.jsonl"])
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"prompt": "q", "completion": "a"}\n{"prompt": "q2", "completion": ""}\n')
    bad = main(["data", "validate", str(bad_file)])
    out = capsys.readouterr().out
    assert (good, bad) == (0, 1)
    assert "bad.jsonl:2, field 'completion': the field 'completion' is empty." in out


def test_column_mapping_flag(capsys):
    assert main(["data", "validate", F + "cls.tsv", "--column", "text=utterance", "--column", "label=intent"]) == 0


def test_bad_data_gives_a_message_not_a_traceback(tmp_path):
    p = tmp_path / "broken.jsonl"
    p.write_text('{"prompt": "q", "completion": "a"}\n{"prompt": "q2", "completion": \n')
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "data", "report", str(p)],
                          capture_output=True, text=True)
    assert proc.returncode == 0  # report mode is lenient: it loads the good row and lists the problem
    assert "malformed_json" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "data", "report", str(tmp_path / "none.csv")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "none.csv: no such file or folder." in proc.stderr
