"""Thread counts follow the machine's load: processes sharing the cores do not oversubscribe them."""

from __future__ import annotations

import pytest

from workbench import devices


@pytest.mark.parametrize("load,requested,expected", [(0.0, 0, 2), (0.4, 0, 2), (1.0, 0, 1), (2.3, 0, 1), (6.0, 0, 1),
                                                     (2.0, 3, 3)])
def test_thread_count_leaves_busy_cores_alone(monkeypatch, load, requested, expected):
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(devices, "busy_elsewhere", lambda: load)
    assert devices.thread_count(requested) == expected


def test_use_threads_sets_torch_threads(monkeypatch):
    import torch

    monkeypatch.setattr(devices, "thread_count", lambda requested=0: 1)
    before = torch.get_num_threads()
    try:
        assert devices.use_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_busy_elsewhere_counts_other_runnable_work():
    import subprocess
    import sys

    idle = devices.busy_elsewhere()
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        import time

        time.sleep(0.5)
        busy = devices.busy_elsewhere()
    finally:
        for p in spin:
            p.kill()
    assert busy >= idle + 1.5  # two spinning processes are two busy cores
