"""Training on several processes (``workbench.launch``), on this CPU machine: 2 processes over gloo.

Acceptance of issue #17: the same fine-tune on 1 and on 2 processes with the same global batch
ends with the same loss curve (each step's loss within 1e-4 relative; the evaluation loss within
1%: the processes evaluate their share of the validation split in batches of their own, and a
batch's loss is its tokens' mean) and the same metrics; a rank killed with kill -9 fails the run
within seconds, naming the rank, and the run resumes (here with another number of processes) to
the weights of an uninterrupted run; the run folder is written once; Stop reaches every process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from tiny import full_model, quick_train, ticket_splits, tiny_base
from workbench import distributed
from workbench.cli import main
from workbench.config import ConfigError, LaunchConfig, QuantConfig, TrainConfig
from workbench.launch import (LaunchError, _failure, backend_args, check_port, failure_reason, free_port,
                              launch_training, read_split, write_split)
from workbench.run_status import read_status
from workbench.train import FolderRefused, TrainingError, load_log, run_training

ROOT = Path(__file__).resolve().parent.parent
TICKETS = ROOT / "datasets" / "it_support" / "tickets.jsonl"
TWO = LaunchConfig(processes=2)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="module")
def splits():
    return ticket_splits()


model = full_model


def short(out, **kw) -> TrainConfig:
    return quick_train(out, **{"max_steps": 6, "max_length": 384, **kw})


def losses(run_dir) -> list[float]:
    return [e["loss"] for e in load_log(run_dir) if "loss" in e]


def workers(launcher: bool = False) -> list[psutil.Process]:
    """The processes of launches running on this machine (``launcher``: torchrun's too), whoever started them."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if "workbench.worker" in line and (launcher or "torch.distributed.run" not in line):
            found.append(p)
    return found


def rank_of(proc: psutil.Process) -> int:
    return int(proc.environ().get("RANK", "-1"))


def assert_same_weights(a: Path, b: Path, tolerance: float = 1e-4) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst < tolerance, f"weights differ by up to {worst}"


@pytest.fixture(scope="module")
def one_and_two(base, splits, tmp_path_factory):
    """The same fine-tune on one process (in this one) and on two (launched), uninterrupted."""
    root = tmp_path_factory.mktemp("runs")
    events = []
    one = run_training(splits["train"], splits["validation"], model(base), short(root / "one"))
    two = launch_training(splits["train"], splits["validation"], model(base), short(root / "two"), launch=TWO,
                          on_log=events.append)
    return one, two, events


def test_two_processes_train_the_same_curve_and_metrics_as_one(one_and_two):
    one, two, _ = one_and_two
    assert one.status == two.status == "succeeded" and one.global_step == two.global_step == 6
    a, b = losses(one.run_dir), losses(two.run_dir)
    assert len(a) == len(b) == 6
    assert all(abs(x - y) <= 1e-4 * abs(x) for x, y in zip(a, b)), (a, b)
    assert two.metrics["train_loss"] == pytest.approx(one.metrics["train_loss"], rel=1e-4)
    assert two.metrics["eval_loss"] == pytest.approx(one.metrics["eval_loss"], rel=0.01)
    assert two.metrics["eval_perplexity"] == pytest.approx(one.metrics["eval_perplexity"], rel=0.05)
    # The global batch is the spec's: 8 = 4 per process x 2 processes; the run records how it was made.
    assert (two.metrics["world_size"], two.metrics["per_device_batch_size"], two.metrics["grad_accum_per_process"]) \
        == (2, 4, 1)
    assert two.metrics["launcher"] == "torch.distributed.run" and "world_size" not in one.metrics
    assert_same_weights(one.model_dir, two.model_dir)


def test_the_run_folder_is_written_once_by_the_main_process(one_and_two):
    _, two, events = one_and_two
    run = two.run_dir
    steps = [e["step"] for e in load_log(run) if "loss" in e]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4, 5, 6]  # no interleaved or repeated lines
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-4", "checkpoint-6"]  # save_total_limit 2; one folder per save
    for c in ckpts:
        files = sorted(f.name for f in (run / "checkpoints" / c).iterdir())
        assert files.count("COMPLETE") == 1 and {"rng_state_0.pth", "rng_state_1.pth"} <= set(files)
    assert read_status(run)["status"] == "succeeded"
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
    assert "torch.distributed.run" not in (run / "config.yaml").read_text()
    assert (run / "launch.log").exists() and not list(run.glob("*.partial"))
    # One stream of progress reached the caller: the steps in order, from the main process only.
    stepped = [e["step"] for e in events if "loss" in e]
    assert stepped == [1, 2, 3, 4, 5, 6]
    assert events[0]["phase"] == "loading" and "global batch 8" in events[0]["launch"]


def test_a_killed_rank_fails_the_run_naming_it_and_it_resumes_to_the_same_result(base, splits, one_and_two,
                                                                                   tmp_path):
    _, reference, _ = one_and_two
    out = tmp_path / "killed"
    seen, outcome = [], {}

    def train():
        try:
            launch_training(splits["train"], splits["validation"], model(base), short(out), launch=TWO,
                            on_log=seen.append)
        except Exception as e:  # noqa: BLE001 - the outcome is asserted below
            outcome["error"] = e

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 240
    while not any(e.get("step", 0) >= 3 and "loss" in e for e in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = [p for p in workers() if rank_of(p) == 1]
    assert victims, "no rank 1 process to kill"
    os.kill(victims[0].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    thread.join(timeout=60)
    ended_in = time.monotonic() - killed_at
    assert not thread.is_alive() and ended_in < 15, f"the launch took {ended_in:.1f} s to end"
    assert "rank 1 was killed by SIGKILL" in str(outcome["error"])
    assert not workers()  # rank 0 was stopped too
    status = read_status(out)
    assert status["status"] == "failed" and "rank 1" in status["reason"]

    # Resume on one process: from the last complete checkpoint, to the uninterrupted run's weights.
    resumed = run_training(splits["train"], splits["validation"], model(base), short(out))
    assert resumed.status == "succeeded" and resumed.global_step == 6
    assert resumed.metrics["resumed_from"] and Path(resumed.metrics["resumed_from"]).name in (
        "checkpoint-2", "checkpoint-4")
    assert losses(out) == pytest.approx(losses(reference.run_dir), rel=1e-4)
    assert_same_weights(out / "model", reference.model_dir)


def test_two_machines_each_run_the_same_call_and_machine_0_writes_the_run(base, splits, one_and_two, tmp_path):
    """Two "machines" on this one (machine_rank 0 and 1, one process each, the same port): one run of world size 2,
    the same curve as one process; the other machine's call returns its own result and writes nothing."""
    one = one_and_two[0]
    port = free_port()
    out, results = tmp_path / "two-machines", {}

    def machine(rank):
        launch = LaunchConfig(processes=1, machines=2, machine_rank=rank, main_process_port=port, connect_timeout=120)
        try:
            results[rank] = launch_training(splits["train"], splits["validation"], model(base), short(out),
                                            launch=launch)
        except Exception as e:  # noqa: BLE001 - asserted below
            results[rank] = e

    threads = [threading.Thread(target=machine, args=(r,)) for r in (1, 0)]  # machine 1 first: it waits for 0
    for t in threads:
        t.start()
        time.sleep(1)
    for t in threads:
        t.join(timeout=300)
    assert all(r.status == "succeeded" for r in results.values()), results
    assert results[0].metrics["world_size"] == 2 and results[0].global_step == results[1].global_step == 6
    assert losses(out) == pytest.approx(losses(one.run_dir), rel=1e-4)
    assert [e["step"] for e in load_log(out) if "loss" in e] == [1, 2, 3, 4, 5, 6]


def test_stop_reaches_every_process(base, splits, tmp_path):
    out, stop, seen = tmp_path / "stopped", threading.Event(), []

    def on_log(e):
        seen.append(e)
        if e.get("step", 0) >= 2:
            stop.set()

    result = launch_training(splits["train"], None, model(base), short(out, max_steps=400), launch=TWO, stop=stop,
                             on_log=on_log)
    assert result.status == "stopped" and 2 <= result.global_step < 400
    assert read_status(out)["status"] == "stopped" and not workers()
    assert (out / "model" / "model.safetensors").exists()


WATCHER = """
import sys
sys.path.insert(0, {tests!r})
from test_launch import TICKETS, model, short
from workbench.config import LaunchConfig
from workbench.data import load_dataset
from workbench.launch import launch_training
from workbench.config import ModelConfig
ds = load_dataset(TICKETS)
launch_training(ds.with_frame(ds.frame.head(40)), None, ModelConfig(name_or_path={base!r}, task="causal-lm",
                method="full"), short({out!r}, max_steps=400), launch=LaunchConfig(processes=2))
"""


def test_a_launch_whose_watcher_dies_stops_with_a_checkpoint(base, tmp_path):
    """A dashboard kernel shut down with its tab takes the launching process with it: the processes it started
    stop at the next step, save, say why in the status, and leave nothing behind."""
    import subprocess
    import sys

    out = tmp_path / "orphaned"
    script = WATCHER.format(tests=str(ROOT / "tests"), base=str(base), out=str(out))
    watcher = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 240
    while len(load_log(out)) < 2 and time.monotonic() < deadline and watcher.poll() is None:
        time.sleep(0.1)
    assert watcher.poll() is None and len(load_log(out)) >= 2
    job = [Path(p.cmdline()[-1]).parent for p in workers()]
    watcher.kill()
    watcher.wait()
    deadline = time.monotonic() + 60
    while workers(launcher=True) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers(launcher=True), "the launched processes outlived the process watching them"
    status = read_status(out)
    assert status["status"] == "stopped" and "the process that launched it ended" in status["reason"]
    assert (out / "model" / "model.safetensors").exists() and not any(p.exists() for p in job)
    # Rank 0 took the folder's lock over from the dead launcher until it ended (then released it: the killed
    # launcher's pid is no longer in it, so the next run takes the folder without a stale-lock warning).
    assert (out / ".lock").read_text() == ""


def test_refusals_before_anything_starts(base, splits, tmp_path):
    # A global batch that does not divide among the processes.
    with pytest.raises(ConfigError, match=r"global batch .*= 9.* does not divide among 2 processes"):
        launch_training(splits["train"], None, model(base), short(tmp_path / "a", batch_size=9), launch=TWO)
    # A port in use on the main machine, and a main machine nobody answers for.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(LaunchError, match=f"port {port} on this machine is in use"):
            check_port(replace(TWO, main_process_port=port))
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"machine 0 at 127\.0\.0\.1:\d+ did not answer within 1 s"):
        check_port(LaunchConfig(processes=2, machines=2, machine_rank=1, main_process_port=port, connect_timeout=1))
    assert time.monotonic() - start < 10
    # Backend settings that cannot work.
    with pytest.raises(ConfigError, match="storage_dtype: bfloat16"):
        backend_args(replace(TWO, backend="fsdp"), "qlora", QuantConfig())
    assert backend_args(replace(TWO, backend="fsdp"), "qlora", QuantConfig(storage_dtype="bfloat16"))["fsdp_config"][
        "version"] == 2
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("fsdp: full_shard\n")
    with pytest.raises(ConfigError, match="fsdp is not a setting of backend ddp"):
        backend_args(replace(TWO, config_file=str(wrong)), "full", QuantConfig())
    with pytest.raises(ConfigError, match="deepspeed package"):
        backend_args(replace(TWO, backend="deepspeed"), "full", QuantConfig())
    with pytest.raises(ConfigError, match="main_process_port must be set"):
        LaunchConfig(machines=2)
    assert not (tmp_path / "a").exists()  # nothing was written


def test_per_device_batch_keeps_the_global_batch():
    assert distributed.per_device_batch(8, 1, 1) == (8, 1)
    assert distributed.per_device_batch(8, 4, 2) == (8, 2)  # accumulation divided first: memory per device kept
    assert distributed.per_device_batch(8, 1, 2) == (4, 1)
    assert distributed.per_device_batch(6, 2, 4) == (3, 1)
    assert distributed.per_device_batch(3, 4, 4) == (3, 1)
    assert distributed.per_device_batch(6, 4, 8) == (3, 1)
    for b, a, n in ((8, 1, 2), (6, 2, 4), (12, 3, 9), (5, 4, 10)):
        batch, accum = distributed.per_device_batch(b, a, n)
        assert batch * accum * n == b * a and batch <= b
    with pytest.raises(ValueError, match="multiple of 4"):
        distributed.per_device_batch(3, 1, 4)


def test_failure_reason_names_the_rank_that_died_not_those_the_launcher_stopped():
    summary = """
Failures:
[1]:
  time      : 2026-12-03_04:28:35
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 945)  (SIGTERM)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-03_04:28:35
  host      : localhost
  rank      : 3 (local_rank: 1)
  exitcode  : -9 (pid: 946)
"""
    assert failure_reason(summary, 4).startswith("rank 3 was killed by SIGKILL")
    assert "the other 3 processes" in failure_reason(summary, 4)
    assert failure_reason("rank      : 1 (local_rank: 1)\n  exitcode  : 2 (pid: 1)", 2).startswith(
        "rank 1 exited with code 2")
    assert "launch log" in failure_reason("killed", 2)


def test_the_launch_error_is_the_cause_not_a_peer_that_lost_its_connection(tmp_path):
    killed = "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n  exitcode  : -9 (pid: 9)\n"
    peer = {"kind": "crash", "rank": 0, "message": "rank 0 failed: DistBackendError: Connection closed by peer"}
    error = _failure([peer], killed, 2, tmp_path)
    assert str(error).startswith("rank 1 was killed by SIGKILL") and read_status(tmp_path)["status"] == "failed"
    said = {"kind": "training", "rank": 1, "message": "out of GPU memory at batch_size=4 ..."}
    error = _failure([peer, said], killed, 2, None)
    assert isinstance(error, TrainingError) and str(error) == "rank 1: out of GPU memory at batch_size=4 ..."
    assert isinstance(_failure([{"kind": "refused", "rank": 0, "message": "in use"}], "", 2, None), FolderRefused)
    assert str(_failure([peer], "", 2, None)).startswith("rank 0 failed: DistBackendError")


def test_splits_reach_the_processes_value_for_value(splits, tmp_path):
    ds = splits["train"]
    write_split(ds, tmp_path / "train.jsonl")
    back = read_split(tmp_path / "train.jsonl")
    assert back.fingerprint() == ds.fingerprint() and back.format == ds.format and len(back) == len(ds)


def test_workbench_train_takes_the_launch_from_flags_and_p(tmp_path, monkeypatch):
    spec = tmp_path / "exp.yaml"
    spec.write_text("name: launch-flags\nlaunch:\n  processes: 3\n  backend: ddp\n")
    seen = []

    def fake(cfg, progress=False):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr("workbench.cli.finetune", fake)
    for argv, expected in ((["--quiet"], (3, 1, 0)), (["--processes", "2", "--quiet"], (2, 1, 0)),
                           (["--processes", "4", "--machines", "2", "--machine-rank", "1", "--main-process-port",
                             "29511", "--main-process-ip", "10.0.0.5", "--quiet"], (4, 2, 1)),
                           (["-p", "launch.processes=2", "--quiet"], (2, 1, 0))):
        with pytest.raises(SystemExit):
            main(["train", str(spec), *argv])
        got = seen[-1].launch
        assert (got.processes, got.machines, got.machine_rank) == expected
    assert seen[2].launch.main_process_ip == "10.0.0.5" and seen[2].launch.main_process_port == 29511
    assert main(["train", str(spec), "--machines", "2", "--quiet"]) == 2  # no port for several machines


def test_tensorboard_logs_into_the_run_folder_from_the_main_process(base, splits, tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = tmp_path / "tracked"
    result = run_training(splits["train"], None, model(base), short(out, max_steps=2, report_to=["tensorboard"]))
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file in the run folder"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    assert json.loads((out / "trackers.json").read_text()) == {"tensorboard": str((out / "tensorboard").resolve())}
    assert result.metrics["trackers"]["tensorboard"].endswith("tensorboard")
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ  # the kernel's environment is left as it was
    with pytest.raises(ConfigError, match="report_to must be a list of tensorboard, mlflow, trackio"):
        TrainConfig(report_to=["wandb"])
