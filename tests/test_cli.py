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


def test_demo_data_report_covers_the_shipped_datasets(tmp_path, capsys):
    assert main(["demo", "--data-report", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "classification" in out and "prompt_completion" in out
    assert (tmp_path / "banking77" / "splits" / "splits.json").exists()
    assert (tmp_path / "it_support" / "splits" / "splits.json").exists()


def test_demo_runs_the_banking77_experiment(monkeypatch):
    import workbench.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_run", lambda args: seen.setdefault("config", args.config) and 0)
    assert main(["demo", "-p", "train.epochs=1"]) == 0
    assert seen["config"].endswith("experiments/banking77-minilm.yaml")


def test_headline_figures_of_a_classification_run(tmp_path):
    from workbench.cli import _headline

    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "report.html").write_text("<html></html>")
    metrics = {"train-full": {"eval_accuracy": 0.9388, "global_step": 843, "train_seconds": 256.0},
               "compare": {"frozen probe": {"accuracy": 0.9292, "accuracy_low": 0.9198, "accuracy_high": 0.9383,
                                            "macro_f1": 0.929},
                           "full": {"accuracy": 0.9351, "accuracy_low": 0.9263, "accuracy_high": 0.9432,
                                    "macro_f1": 0.935}},
               "differences": [{"model": "full", "versus": "frozen probe", "metric": "accuracy",
                                "difference": 0.00584, "ci_low": -0.00032, "ci_high": 0.01201, "p_value": 0.073,
                                "significant": False, "wins": 57, "ties": 2984, "losses": 39},
                               {"model": "full", "versus": "frozen probe", "metric": "macro_f1",
                                "difference": 0.0266, "ci_low": 0.0112, "ci_high": 0.0455, "p_value": 0.0004,
                                "resamples": 2000, "significant": True, "wins": 9, "ties": 786, "losses": 0}]}
    text = "\n".join(_headline(metrics, tmp_path))
    # The macro-F1 difference too: on imbalanced labels it is what the report's verdict is about.
    assert "full vs frozen probe on macro_f1: +2.66 pp [+1.12, +4.55] (paired bootstrap, p < 0.001; a real gain" in text
    assert "train-full: eval_accuracy 0.9388, global_step 843, train_seconds 256" in text
    assert "frozen probe: accuracy 92.92% [91.98%, 93.83%], macro_f1 92.90%" in text
    assert "full vs frozen probe on accuracy: +0.58 pp [-0.03, +1.20] (paired bootstrap, p=0.073; " \
           "not significant at this level; 57 wins, 39 losses)" in text
    assert f"report: {tmp_path / 'compare' / 'report.html'}" in text
    # open-set data (compare.out_of_scope): in-scope accuracy and out-of-scope recall and precision too
    metrics["compare"]["full"].update({"in_scope_accuracy": 0.912, "oos_recall": 0.33, "oos_precision": 0.8})
    assert "in_scope_accuracy 91.20%, oos_recall 33.00%, oos_precision 80.00%" in "\n".join(_headline(metrics))


def test_headline_warns_about_degenerate_answers():
    from workbench.cli import _headline

    fine = {"rouge_l": 0.31, "examples": 50.0, "degenerate": 0.0, "degenerate_empty": 0.0, "degenerate_echo": 0.0,
            "degenerate_repetition": 0.0}
    metrics = {"compare": {"base": {**fine, "rouge_l": 0.0, "degenerate": 50.0, "degenerate_empty": 48.0,
                                    "degenerate_repetition": 2.0},
                           "lora": fine}}
    lines = _headline(metrics)
    warned = [line for line in lines if "WARNING" in line]
    assert warned == ["      WARNING: 50 of 50 answers degenerate (48 empty, 2 repeated n-grams); read the answers "
                      "before trusting these figures"]
    assert lines.index(warned[0]) == lines.index("    base: rouge_l 0") + 1   # under the model it is about
