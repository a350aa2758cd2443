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


def test_busy_elsewhere_counts_runnable_tasks_but_the_caller(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.52 0.61 0.70 3/182 4242\n")  # 3 runnable: the reader and two others
    assert devices.busy_elsewhere(samples=3, interval=0, source=str(loadavg)) == 2.0
    loadavg.write_text("1.00 1.00 1.00 1/182 4242\n")  # the reader alone
    assert devices.busy_elsewhere(samples=1, interval=0, source=str(loadavg)) == 0.0
