"""The terminal progress of `workbench run`: a bar fed by the training log another process writes."""

from __future__ import annotations

import io
import json
import time

from workbench.progress import LogTail, TerminalProgress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_redraws_one_line_and_ends_it():
    out = Tty()
    bar = TerminalProgress(out, label="train")
    for step in (0, 50, 100):
        bar({"step": step, "max_steps": 100, "loss": 1.0 / (step + 1), "tokens_per_s": 1234.0})
        if step == 50:
            bar({"step": step, "max_steps": 100, "eval_loss": 0.3, "eval_accuracy": 0.9251})
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and "val acc 92.51%" in text
    assert "train [##############################] 100/100" in text and "1,234 tok/s" in text
    assert "50/100" in text and "loss 0.0196" in text


def test_in_a_log_it_prints_a_line_per_tenth_with_an_eta():
    out = io.StringIO()
    bar = TerminalProgress(out)
    bar.first = (time.time() - 10, 0)  # 10 s for the first 10 steps: 1 step/s
    for step in range(10, 101):
        bar({"step": step, "max_steps": 100})
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in out.getvalue()
    assert lines[0].startswith("[###---") and "ETA 1m" in lines[0]
    assert lines[-1].startswith("[" + "#" * 30 + "] 100/100") and "ETA 0s" in lines[-1]


def test_an_unfinished_bar_is_closed_on_its_own_line():
    out = Tty()
    bar = TerminalProgress(out)
    bar({"step": 3, "max_steps": 10})
    bar.close()
    assert out.getvalue().endswith("\n") and "3/10" in out.getvalue()


def test_the_log_tail_hands_over_whole_lines_only(tmp_path):
    log = tmp_path / "train_log.jsonl"
    seen = []
    tail = LogTail(log, seen.append, interval=0.05)
    tail.poll()  # no file yet
    with open(log, "a") as f:
        f.write(json.dumps({"step": 1, "max_steps": 3}) + "\n" + '{"step": 2, "max')
    tail.poll()
    assert [e["step"] for e in seen] == [1]
    with open(log, "a") as f:
        f.write('_steps": 3}\nnot json\n' + json.dumps({"eval_loss": 1.0}) + "\n")
    tail.start()
    with open(log, "a") as f:
        f.write(json.dumps({"step": 3, "max_steps": 3}) + "\n")
    tail.stop()
    assert [e["step"] for e in seen] == [1, 2, 3]
