"""Nothing lost, nothing hung (issue #14, runs and training): a run resumes only its own checkpoints, one
process trains into a folder, status.json cannot lie (pid, heartbeat, died, stopped, failures before the first
notebook), a full disk or a kill cuts no file that matters, and resume is exact across epochs with length grouping.

Acceptance: ``workbench train`` killed with SIGKILL at five seeded random points, each time listed as died by
the runs table, then resumed, ends with the weights of an uninterrupted run; so does a run that hit a full disk.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tiny import full_model, quick_train, ticket_splits, tiny_base
from workbench import notebook_runner as runner
from workbench import run_status
from workbench.cli import main, train_folder
from workbench.config import DataConfig, ExperimentConfig, TrainConfig, from_dict
from workbench.data import DatasetError, Problem
from workbench.panels.runs import RunsPanel
from workbench.pipeline import finetune
from workbench.run_folders import RunFailed
from workbench.run_status import FolderBusy, FolderLock, read_status, write_status
from workbench.runs_table import last_activity, list_runs
from workbench.train import COMPLETE, FINGERPRINT, FolderRefused, TrainingError, load_log, run_training

ROOT = Path(__file__).resolve().parent.parent
TICKETS = ROOT / "datasets" / "it_support" / "tickets.jsonl"
FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="module")
def splits():
    return ticket_splits(longest_prompt=160)


model, short = full_model, quick_train


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def weights(model_dir: Path) -> dict:
    return load_file(str(model_dir / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst < 1e-6, f"weights differ by up to {worst}"


# --------------------------------------------------------------------------- 1. resume only what belongs to the run


def test_another_runs_checkpoint_is_refused_naming_what_differs(tmp_path, base, splits):
    out = tmp_path / "run"
    first = run_training(splits["train"], None, model(base), short(out))
    assert first.status == "succeeded"
    recorded = json.loads((out / "checkpoints" / "checkpoint-4" / FINGERPRINT).read_text())
    assert recorded["config"]["train.learning_rate"] == 3e-3 and recorded["data"]["train"]
    before = {f: (out / f).read_text() for f in ("status.json", "config.yaml", "train_log.jsonl")}

    with pytest.raises(FolderRefused, match=r"train\.learning_rate 0\.003 -> 0\.001.*new output folder.*"
                                            r"--resume-anyway"):
        run_training(splits["train"], None, model(base), short(out, learning_rate=1e-3, max_steps=6))
    fewer = splits["train"].with_frame(splits["train"].frame.iloc[1:])
    with pytest.raises(FolderRefused, match="the training data changed"):
        run_training(fewer, None, model(base), short(out, max_steps=6))
    with pytest.raises(FolderRefused, match=r"the evaluation data changed"):
        run_training(splits["train"], splits["validation"], model(base), short(out, max_steps=6))
    # Refusals leave the folder as the first run left it: its status, its config, its log.
    assert {f: (out / f).read_text() for f in before} == before

    # What may change on resume (how long, how often it logs and saves) resumes.
    longer = run_training(splits["train"], None, model(base), short(out, max_steps=6, logging_steps=2))
    assert longer.metrics["resumed_from"].endswith("checkpoint-4") and longer.global_step == 6
    # --resume-anyway continues another run's checkpoint and says so.
    anyway = run_training(splits["train"], None, model(base),
                          short(out, max_steps=8, learning_rate=1e-3, resume_anyway=True))
    assert anyway.metrics["resumed_from"].endswith("checkpoint-6")
    assert any("train.learning_rate 0.003 -> 0.001" in w for w in anyway.metrics["warnings"])


def test_the_cli_refuses_with_exit_2_and_trains_into_a_folder_per_experiment(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump({"name": "lr-probe"}))
    cfg = ExperimentConfig(name="lr-probe")
    assert train_folder(cfg, spec) == str(Path("runs/train/lr-probe"))
    assert train_folder(ExperimentConfig(), tmp_path / "unnamed.yaml") == str(Path("runs/train/unnamed"))
    assert train_folder(replace(cfg, train=TrainConfig(output_dir="mine")), spec) == "mine"
    assert train_folder(cfg, spec, "flag") == "flag"
    seen = {}

    def refuse(cfg, progress=False):
        seen["cfg"] = cfg
        raise FolderRefused("runs/train/lr-probe holds checkpoint-4 of another run (train.learning_rate ...)")

    monkeypatch.setattr("workbench.cli.finetune", refuse)
    assert main(["train", str(spec), "--quiet", "--resume-anyway"]) == 2
    assert "holds checkpoint-4 of another run" in capsys.readouterr().err
    assert seen["cfg"].train.resume_anyway and seen["cfg"].train.output_dir == str(Path("runs/train/lr-probe"))


def test_one_process_trains_into_a_folder(tmp_path, base, splits):
    out = tmp_path / "locked"
    with FolderLock(out):
        with pytest.raises(FolderBusy, match=rf"process {os.getpid()} on .* is training into it"):
            FolderLock(out).acquire()
        with pytest.raises(FolderRefused, match=rf"in use: process {os.getpid()}"):
            run_training(splits["train"], None, model(base), short(out))
        assert not (out / "status.json").exists()                       # refused before touching anything
    # A lock left by a process killed while holding it is taken over, with a note naming it.
    pid = dead_pid()
    (out / ".lock").write_text(json.dumps({"pid": pid, "host": "elsewhere", "since": 0}))
    lock = FolderLock(out).acquire()
    assert f"process {pid} on elsewhere" in lock.note
    lock.release()
    with FolderLock(out) as again:
        assert again.note == ""                                         # a released lock leaves no note


# --------------------------------------------------------------------------- 3. runs that cannot lie


def test_status_carries_pid_host_and_a_heartbeat_until_the_run_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(run_status, "HEARTBEAT_S", 0.05)
    first = write_status(tmp_path, "running", step="1/2 data")
    on_disk = json.loads((tmp_path / "status.json").read_text())
    assert (on_disk["pid"], on_disk["host"], on_disk["step"]) == (os.getpid(), run_status.HOST, "1/2 data")
    deadline = time.time() + 10
    while json.loads((tmp_path / "status.json").read_text())["heartbeat"] == first["heartbeat"]:
        assert time.time() < deadline, "the heartbeat was never renewed"
        time.sleep(0.02)
    write_status(tmp_path, "succeeded")
    time.sleep(0.2)  # several heartbeat periods: none may bring "running" back
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "succeeded"


def _fake_run(root: Path, status: dict) -> Path:
    run = root / "exp" / "20260101-000000"
    (run / "train-lora").mkdir(parents=True)
    (run / "notebooks").mkdir()
    (run / "status.json").write_text(json.dumps(status))
    return run


def test_a_run_whose_process_is_gone_is_listed_as_died_with_its_last_step_and_log_line(tmp_path):
    run = _fake_run(tmp_path, {"status": "running", "reason": "", "step": "2/3 finetune-lora", "pid": dead_pid(),
                               "host": run_status.HOST, "heartbeat": time.time()})
    (run / "notebooks" / "02-finetune-lora.kernel.log").write_text("loading the model\n")
    time.sleep(0.01)
    (run / "train-lora" / "train_log.jsonl").write_text(
        json.dumps({"step": 7, "max_steps": 20, "loss": 2.5}) + "\n" + '{"step": 8, "max_st')  # cut by the kill
    assert read_status(run)["status"] == "died"
    assert last_activity(run) == ("2/3 finetune-lora, training step 7/20", "step 7/20, loss 2.5")
    row = list_runs(tmp_path).iloc[0]
    assert row.status == "died"
    assert "process" in row.reason and "ended without recording" in row.reason
    assert "last step 2/3 finetune-lora, training step 7/20" in row.reason and "last log: step 7/20" in row.reason
    panel = RunsPanel(tmp_path)
    assert "wb-status-died" in panel.table.value and "training step 7/20" in panel.table.value


def test_a_stale_heartbeat_reads_as_died_and_old_words_read_as_today(tmp_path, capsys):
    stale = {"status": "running", "reason": "", "pid": os.getpid(), "host": "another-machine",
             "heartbeat": time.time() - 2 * run_status.STALE_S}
    assert "no heartbeat" in run_status.death(stale)
    assert run_status.death({**stale, "heartbeat": time.time()}) is None  # alive elsewhere, as far as we know
    assert run_status.death({"status": "running", "reason": ""}) is None   # written before heartbeats: as it says
    run = _fake_run(tmp_path, stale)
    (run / "notebooks" / "01-data.kernel.log").write_text("splitting\nwriting the splits\n")
    old = _fake_run(tmp_path / "old", {"status": "interrupted", "reason": "interrupted by the user (Ctrl-C)"})
    assert read_status(old)["status"] == "stopped"
    assert main(["runs", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "exp/20260101-000000 died: no heartbeat" in out and "last log: 01-data.kernel.log: writing" in out


def test_a_failure_before_the_first_notebook_is_recorded(tmp_path, monkeypatch):
    cfg = ExperimentConfig(name="x", data=DataConfig(source=str(tmp_path / "data.csv")))

    def bad_data(*a, **kw):  # the data fails while the runner splits it, before any notebook
        raise DatasetError(Problem(kind="malformed_csv", file="data.csv", line=7, message="row 7 has 3 fields, not 2",
                                   fix="quote the commas inside the text"))

    monkeypatch.setattr(runner, "experiment_splits", bad_data)
    with pytest.raises(DatasetError):
        runner.run_experiment(cfg, tmp_path / "runs")
    status = read_status(next((tmp_path / "runs" / "x").iterdir()))
    assert status["status"] == "failed" and "DatasetError" in status["reason"] and "data.csv" in status["reason"]

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "y" / "data"))

    monkeypatch.setattr(runner, "experiment_splits", full)
    with pytest.raises(RunFailed, match="the disk is full"):
        runner.run_experiment(replace(cfg, name="y"), tmp_path / "runs")
    status = read_status(next((tmp_path / "runs" / "y").iterdir()))
    assert status["status"] == "failed" and status["reason"].startswith("the disk is full")


# --------------------------------------------------------------------------- 7. full disk, cut writes


def test_a_notebook_cut_by_a_full_disk_never_takes_the_final_name(tmp_path, monkeypatch):
    import papermill as pm

    def cut(path, output, **kw):  # papermill saved a cell, then the disk filled in the middle of the next save
        Path(output).write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')
        raise OSError(errno.ENOSPC, "No space left on device", output)

    def whole(path, output, **kw):
        Path(output).write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))

    out = tmp_path / "01-data.ipynb"
    monkeypatch.setattr(pm, "execute_notebook", cut)
    with pytest.raises(OSError):
        runner._execute(Path("nb.ipynb"), out, {}, None)
    assert not out.exists() and runner.partial_path(out).exists()       # the cut one keeps its partial name
    assert "the disk is full" in runner._reason(FULL, out)
    monkeypatch.setattr(pm, "execute_notebook", whole)
    runner._execute(Path("nb.ipynb"), out, {}, None)
    assert json.loads(out.read_text())["nbformat"] == 4 and not runner.partial_path(out).exists()


def test_a_cut_last_log_line_is_skipped_by_readers(tmp_path):
    (tmp_path / "train_log.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.9}\n{"step": 3, "lo')
    assert [e["step"] for e in load_log(tmp_path)] == [1, 2]


# --------------------------------------------------------------------------- 8. exact resume across epochs


def test_resume_in_a_later_epoch_with_length_grouping_is_exact(tmp_path, base, splits):
    cfg = TrainConfig(epochs=3, batch_size=8, max_length=128, learning_rate=3e-3, logging_steps=1, num_threads=1,
                      group_by_length=True)
    clean = run_training(splits["train"], splits["validation"], model(base),
                         replace(cfg, output_dir=str(tmp_path / "a")))
    per_epoch = clean.global_step // 3
    stop = threading.Event()

    def on_log(entry):
        if entry["step"] >= per_epoch + 2:  # inside the second epoch, where the order used to come from the global RNG
            stop.set()

    out = replace(cfg, output_dir=str(tmp_path / "b"))
    first = run_training(splits["train"], splits["validation"], model(base), out, stop=stop, on_log=on_log)
    assert first.status == "stopped" and per_epoch < first.global_step < 2 * per_epoch
    resumed = run_training(splits["train"], splits["validation"], model(base), out)
    assert resumed.metrics["resumed_from"].endswith(f"checkpoint-{first.global_step}")
    assert resumed.metrics["eval_loss"] == clean.metrics["eval_loss"]
    assert_same_weights(resumed.model_dir, clean.model_dir)


# --------------------------------------------------------------------------- acceptance: kill -9, full disk

STEPS = 24


def _spec(base) -> dict:
    return {"name": "kill", "data": {"source": str(TICKETS), "validation": 0.1, "test": 0.0, "stratify": "category",
                                     "max_train_rows": 64},
            "model": {"name_or_path": str(base), "task": "causal-lm", "method": "full"},
            "train": {"max_steps": STEPS, "save_steps": 3, "learning_rate": 3e-3, "batch_size": 4,
                      "max_length": 256, "logging_steps": 1, "num_threads": 1}}


@pytest.fixture(scope="module")
def uninterrupted(base, tmp_path_factory):
    spec = _spec(base)
    spec["train"]["output_dir"] = str(tmp_path_factory.mktemp("clean") / "run")
    return finetune(from_dict(ExperimentConfig, spec))


def _last_step(folder: Path) -> int:
    return max((e["step"] for e in load_log(folder)), default=0)


#: A process that imports the workbench once, then forks one ``workbench train`` per line it reads and says its
#: pid: each kill costs a training's start, not the seconds of importing torch and transformers again.
ZYGOTE = """
import os, sys
import transformers.trainer
from workbench.cli import main
for line in sys.stdin:
    cwd, log, *argv = line.split()
    pid = os.fork()
    if pid == 0:
        os.chdir(cwd)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1), os.dup2(fd, 2)
        os._exit(main(argv))
    print(pid, flush=True)
"""


def test_kill_minus_nine_at_five_random_points_then_resume_matches_an_uninterrupted_run(tmp_path, base,
                                                                                        uninterrupted):
    spec = tmp_path / "kill.yaml"
    spec.write_text(yaml.safe_dump(_spec(base)))
    folder = tmp_path / "runs" / "train" / "kill"                        # the default folder: runs/train/<name>
    points = sorted(random.Random(14).sample(range(2, STEPS - 1), 5))
    log = tmp_path / "train.log"
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, text=True)
    try:
        for point in points:
            zygote.stdin.write(f"{tmp_path} {log} train {spec} --quiet\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            deadline = time.time() + 180
            while _last_step(folder) < point and run_status.pid_alive(pid) and time.time() < deadline:
                time.sleep(0.02)
            assert run_status.pid_alive(pid), f"it ended before step {point}: {log.read_text()[-2000:]}"
            os.kill(pid, signal.SIGKILL)
            while run_status.pid_alive(pid):  # a zombie until its parent reaps it: dead all the same
                time.sleep(0.01)
            row = list_runs(tmp_path / "runs").set_index("run").loc["kill"]
            assert row.status == "died", f"{row.status}: {row.reason}; {log.read_text()[-2000:]}"
            assert f"training step {_last_step(folder)}/{STEPS}" in row.reason, row.reason
    finally:
        zygote.kill()
        zygote.wait()
    resumed = finetune(from_dict(ExperimentConfig, {**_spec(base), "train": {**_spec(base)["train"],
                                                                             "output_dir": str(folder)}}))
    assert resumed.status == "succeeded" and resumed.global_step == STEPS
    assert resumed.metrics["eval_loss"] == pytest.approx(uninterrupted.metrics["eval_loss"], rel=1e-6)
    assert_same_weights(resumed.model_dir, uninterrupted.model_dir)
    steps = [e["step"] for e in load_log(folder) if "loss" in e]
    assert steps == list(range(1, STEPS + 1))                            # one entry per step, none cut or repeated


def test_a_full_disk_fails_with_a_message_then_resume_matches_an_uninterrupted_run(tmp_path, base, uninterrupted,
                                                                                   monkeypatch):
    from transformers import Trainer

    real, saves = Trainer._save_checkpoint, []

    def filling(self, model, trial):
        saves.append(self.state.global_step)
        if len(saves) == 3:  # the disk fills in the middle of the third checkpoint and of a log line
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True)
            (folder / "model.safetensors").write_bytes(b"\0" * 10)
            with open(Path(self.args.output_dir).parent / "train_log.jsonl", "a") as f:
                f.write('{"step": 99, "lo')
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "optimizer.pt"))
        return real(self, model, trial)

    monkeypatch.setattr(Trainer, "_save_checkpoint", filling)
    spec = _spec(base)
    spec["train"]["output_dir"] = str(tmp_path / "runs" / "train" / "full")
    cfg = from_dict(ExperimentConfig, spec)
    with pytest.raises(TrainingError, match=r"the disk is full \(no space left writing .*optimizer\.pt\).*resumes"):
        finetune(cfg)
    status = read_status(tmp_path / "runs" / "train" / "full")
    assert status["status"] == "failed" and status["reason"].startswith("the disk is full")
    assert list_runs(tmp_path / "runs").iloc[0].status == "failed"
    cut = tmp_path / "runs" / "train" / "full" / "checkpoints" / f"checkpoint-{saves[-1]}"
    assert not cut.exists()                                              # never resumable: its space given back

    monkeypatch.setattr(Trainer, "_save_checkpoint", real)              # space again
    resumed = finetune(cfg)
    assert resumed.metrics["resumed_from"].endswith(f"checkpoint-{saves[-2]}")
    assert_same_weights(resumed.model_dir, uninterrupted.model_dir)
    lines = (tmp_path / "runs" / "train" / "full" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines if "loss" in json.loads(ln)] == list(range(1, STEPS + 1))


def _tmpfs_unavailable() -> str | None:
    """Why a test cannot mount a small tmpfs of its own (``unshare`` into a user and mount namespace), or None."""
    if sys.platform != "linux" or not shutil.which("unshare"):
        return "needs Linux and util-linux's unshare to mount a small tmpfs"
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {d}"],
                               capture_output=True, text=True)
    if probe.returncode:
        return f"this machine lets no test mount a tmpfs (unshare -rm: {probe.stderr.strip()[:120]})"
    return None


#: In a mount namespace of its own: a tmpfs too small for the run's second checkpoint is the runs folder;
#: train until the disk is full, look at what is left, give the disk room, train again (resume).
FULL_DISK = """
mount -t tmpfs -o size=2200k none runs || exit 90
"$PY" -m workbench.cli train full.yaml --quiet > out/first.log 2>&1; echo $? > out/first.rc
cp -a runs/train/full out/left 2>/dev/null
"$PY" -m workbench.cli runs --runs runs > out/runs.txt 2>&1
mount -o remount,size=64m runs
"$PY" -m workbench.cli train full.yaml --quiet > out/second.log 2>&1; echo $? > out/second.rc
cp -a runs/train/full out/final
"""


NO_TMPFS = _tmpfs_unavailable()


@pytest.mark.skipif(bool(NO_TMPFS), reason=str(NO_TMPFS))
def test_a_real_full_disk_fails_clearly_then_resume_matches_an_uninterrupted_run(tmp_path, base, uninterrupted):
    """The same as above on a real filesystem that fills (a 2.2 MB tmpfs: one checkpoint of the tiny model is
    1.4 MB), not a patched save: whatever write fails first, the run says the disk is full, and resumes exactly."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "full.yaml").write_text(yaml.safe_dump({**_spec(base), "name": "full"}))
    env = {**os.environ, "PY": sys.executable, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK], cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done
    out = tmp_path / "out"
    first = (out / "first.log").read_text()
    assert (out / "first.rc").read_text().strip() == "1", first
    assert "the disk is full" in first.lower() and "Traceback" not in first, first
    status = json.loads((out / "left" / "status.json").read_text())
    assert status["status"] == "failed" and "disk is full" in status["reason"].lower(), status
    assert "failed" in (out / "runs.txt").read_text()
    left = sorted((out / "left" / "checkpoints").glob("checkpoint-*"))
    assert [c.name for c in left if (c / COMPLETE).exists()] == ["checkpoint-3"], left
    second = (out / "second.log").read_text()
    assert (out / "second.rc").read_text().strip() == "0", second
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-3")
    assert metrics["eval_loss"] == pytest.approx(uninterrupted.metrics["eval_loss"], rel=1e-6)
    assert_same_weights(out / "final" / "model", uninterrupted.model_dir)
    steps = [e["step"] for e in load_log(out / "final") if "loss" in e]
    assert steps == list(range(1, STEPS + 1))                            # nothing cut or repeated in the log


def test_on_a_full_disk_the_last_status_is_written_in_the_blocks_status_json_has(tmp_path, monkeypatch):
    """No room for a new file (the atomic write's temporary one): the final word still reaches status.json."""
    write_status(tmp_path, "running")
    monkeypatch.setattr(run_status, "atomic_write_json", lambda *a, **k: (_ for _ in ()).throw(FULL))
    write_status(tmp_path, "failed", "the disk is full (no space left writing x). Free space there, then rerun.")
    assert read_status(tmp_path)["status"] == "failed" and "disk is full" in read_status(tmp_path)["reason"]
    with pytest.raises(OSError):                                         # too long for its blocks: not written
        write_status(tmp_path, "failed", "x" * 10_000)
    assert read_status(tmp_path)["status"] == "failed"
