"""Training progress on the terminal: a bar fed training-log entries, and a follower of a log another process writes.

``workbench train`` feeds ``TerminalProgress`` from the training callback; ``workbench run``
feeds it through ``LogTail``, which follows the ``train_log.jsonl`` a notebook's kernel appends to.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


class TerminalProgress:
    """A progress bar with ETA, loss and tokens/s for the terminal, fed training-log entries.

    On a terminal it redraws one line; elsewhere (a CI log, a file) it prints a line at every
    tenth of the way, so logs stay readable. The rate is measured from the first entry it sees,
    so a resumed run's ETA counts only the steps still to do.
    """

    def __init__(self, stream=None, label: str = ""):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = f"{label} " if label else ""
        self.first: tuple[float, int] | None = None
        self.loss = self.tps = None
        self.evaluation = ""
        self.shown_tenth, self.open = -1, False

    def __call__(self, entry: dict) -> None:
        step, total = int(entry.get("step", 0)), max(1, int(entry.get("max_steps") or 1))
        now = time.time()
        if self.first is None:
            self.first = (now, step)
        self.loss = entry.get("loss", self.loss)
        self.tps = entry.get("tokens_per_s", self.tps)
        if entry.get("eval_accuracy") is not None:
            self.evaluation = f" val acc {100 * entry['eval_accuracy']:.2f}%"
        elif entry.get("eval_loss") is not None:
            self.evaluation = f" val loss {entry['eval_loss']:.4f}"
        t0, s0 = self.first
        rate = (step - s0) / (now - t0) if step > s0 and now > t0 else 0.0
        eta = f"ETA {duration((total - step) / rate)}" if rate else "ETA ?"
        done = min(1.0, step / total)
        bar = "#" * int(30 * done) + "-" * (30 - int(30 * done))
        extra = (f" loss {self.loss:.4f}" if isinstance(self.loss, (int, float)) else "") + (
            f" {self.tps:,.0f} tok/s" if self.tps else "") + self.evaluation
        line = f"{self.label}[{bar}] {step}/{total} {eta}{extra}"
        if self.tty:
            self.stream.write(f"\r{line}   ")
            self.open = step < total
            if not self.open:
                self.stream.write("\n")
        elif int(10 * done) > self.shown_tenth:
            self.shown_tenth = int(10 * done)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End an unfinished bar's line (a stop or a failure before the last step)."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def duration(seconds: float) -> str:
    """``75`` as ``1m15s``, ``42`` as ``42s``: a time left, read at a glance."""
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class LogTail(threading.Thread):
    """Follows a JSONL log another process appends to, handing each new entry to ``on_entry``."""

    def __init__(self, path: Path, on_entry, interval: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.on_entry, self.interval = Path(path), on_entry, interval
        self.offset, self.done = 0, threading.Event()

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self.offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "step" in entry:
                self.on_entry(entry)

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.poll()
