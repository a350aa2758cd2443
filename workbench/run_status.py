"""A folder's ``status.json`` that cannot lie, and the lock on a folder one process writes into.

``status.json`` of a run folder (``workbench run``) or a training folder (``workbench train``,
a fine-tuning step) says ``running``, ``succeeded``, ``failed`` or ``stopped`` (Ctrl-C or a
Stop request) with a one-line reason, and, written by this module, the process that writes
it: ``pid``, ``host`` and a ``heartbeat`` time that a thread renews every ``HEARTBEAT_S``
seconds while the status says running. A process killed with ``kill -9``, or a machine that
went down, cannot write its end; ``death`` tells such a status from a live one (the pid is
gone on this host, or the heartbeat is older than ``STALE_S``), and readers (``workbench
runs``, the runs panel) show it as ``died``. Folders written before the heartbeat existed
have no pid and read as they say. ``interrupted``, the old word for Ctrl-C, reads as ``stopped``.

``FolderLock`` is an exclusive lock (``fcntl.flock``) on ``<folder>/.lock``, which names its
holder's pid and host: the system drops it when the holder dies, so a lock left by a killed
process is taken over (with a note naming it), and one held by a live process refuses.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from .files import atomic_write_json

#: Seconds between heartbeats of a running folder's status.
HEARTBEAT_S = 10.0
#: A running status whose heartbeat is older than this is dead (a machine that went down, a pid reused).
STALE_S = 300.0
RUNNING, SUCCEEDED, FAILED, STOPPED, DIED = "running", "succeeded", "failed", "stopped", "died"
#: The reason recorded for a run or a step stopped with Ctrl-C.
STOPPED_BY_USER = "stopped by the user (Ctrl-C)"
#: Words older folders used, read as today's.
LEGACY = {"interrupted": STOPPED}
HOST = socket.gethostname()

_lock = threading.Lock()
_current: dict[Path, dict] = {}  # folder -> the status this process last wrote there
_beating: dict[Path, threading.Event] = {}


def _write(folder: Path, data: dict) -> None:
    try:
        atomic_write_json(folder / "status.json", data)
    except FileNotFoundError:  # the folder was removed under us (a test's tmp dir, a user's rm -r)
        pass
    except OSError as e:
        if not (e.errno in (errno.ENOSPC, errno.EDQUOT) and _rewrite_in_place(folder / "status.json", data)):
            raise


def _rewrite_in_place(path: Path, data: dict) -> bool:
    """On a full disk, where a new file cannot be made: overwrite ``path`` in the blocks it already has, when the
    new status fits them (a status is a few hundred bytes in a 4 KB block), so a run never stays "running" because
    the disk filled. Not atomic; only for this last word. Whether it was written."""
    text = (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode()
    try:
        if len(text) > path.stat().st_blocks * 512:
            return False
        with open(path, "r+b") as f:
            f.write(text)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False


def write_status(folder: str | Path, status: str, reason: str = "", **extra) -> dict:
    """Write ``folder/status.json`` atomically: ``status``, ``reason``, ``extra``, this process's pid, host, heartbeat.

    While the status is ``running`` a daemon thread renews ``heartbeat`` every ``HEARTBEAT_S``
    seconds; another status stops it. Writes of this process to one folder are serialised, so a
    heartbeat never brings back a status the main thread has replaced.

    Returns:
        What was written.
    """
    folder = Path(folder).resolve()
    now = time.time()
    data = {"status": status, "reason": reason, **extra, "pid": os.getpid(), "host": HOST, "heartbeat": now}
    with _lock:
        _current[folder] = data
        _write(folder, data)
        if status == RUNNING and folder not in _beating:
            done = _beating[folder] = threading.Event()
            threading.Thread(target=_beat, args=(folder, done), daemon=True, name=f"heartbeat {folder.name}").start()
        elif status != RUNNING and folder in _beating:
            _beating.pop(folder).set()
    return data


def _beat(folder: Path, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT_S):
        with _lock:
            data = _current.get(folder)
            if done.is_set() or data is None or data["status"] != RUNNING or not folder.is_dir():
                return
            data["heartbeat"] = time.time()
            try:
                _write(folder, data)
            except OSError:  # a full disk: skip this beat; the pid still tells a live run from a dead one
                pass


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def death(status: dict, now: float | None = None) -> str | None:
    """Why a status that says running is not: its process is gone, or its heartbeat stopped. None if it may be alive.

    A status without a pid (written before heartbeats existed) cannot be judged: None.
    """
    if status.get("status") != RUNNING or not status.get("pid"):
        return None
    now = time.time() if now is None else now
    pid, host, beat = status["pid"], status.get("host"), status.get("heartbeat")
    if host == HOST and not pid_alive(int(pid)):
        return f"its process ({pid} on {host}) ended without recording how"
    if isinstance(beat, (int, float)) and now - beat > STALE_S:
        return f"no heartbeat from its process ({pid} on {host}) for {_ago(now - beat)}"
    return None


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600} h {seconds % 3600 // 60} min" if seconds >= 3600 else (
        f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s")


def read_status(folder: str | Path) -> dict:
    """``folder/status.json`` as it is now: a dead running status becomes ``died`` (with ``died_because``).

    ``interrupted`` (older folders) reads as ``stopped``; no file or an unreadable one as ``unknown``.
    """
    try:
        data = json.loads((Path(folder) / "status.json").read_text())
    except (OSError, ValueError):
        return {"status": "unknown", "reason": ""}
    if not isinstance(data, dict):
        return {"status": "unknown", "reason": ""}
    data["status"] = LEGACY.get(data.get("status"), data.get("status", "unknown"))
    if (why := death(data)) is not None:
        data.update(status=DIED, died_because=why)
    return data


def close_status(folder: str | Path, status: str, reason: str) -> bool:
    """Mark ``folder``'s status ``status`` with ``reason`` if it still says running; returns whether it did.

    A step whose process ended without writing its outcome (its kernel shut down after Ctrl-C,
    or killed) would otherwise say running for ever.
    """
    path = Path(folder) / "status.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(old, dict) or old.get("status") != RUNNING:
        return False
    atomic_write_json(path, {**old, "status": status, "reason": reason, "finished": time.time()})
    return True


#: How torch.save reports a write the disk cut short: its zip writer checks positions, not errno.
_SHORT_WRITE = ("unexpected pos", "failed writing file", "file write failed", "no space left")
#: Below this much free space, a failed write is taken for a full disk.
_NEARLY_FULL = 4 << 20


def disk_full(exc: BaseException, where: str | Path | None = None) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk or an exhausted quota.

    An ``OSError`` says so by its errno; torch's checkpoint writer raises a ``RuntimeError`` about positions
    instead ("unexpected pos 158848 vs 158736"), taken for a full disk when ``where`` (the folder written to)
    has under 4 MB free."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if where is not None and isinstance(exc, (OSError, RuntimeError)) \
                and any(s in str(exc).lower() for s in _SHORT_WRITE):
            try:
                return shutil.disk_usage(where).free < _NEARLY_FULL
            except OSError:
                return False
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def disk_full_message(exc: BaseException, where: str | Path,
                      then: str = "run the same command again: it resumes from the last complete checkpoint") -> str:
    """The one-line message for a full disk while writing under ``where``, ending with what to do ``then``."""
    target = getattr(exc, "filename", None) or where
    return f"the disk is full (no space left writing {target}). Free space there (or use another disk), then {then}."


class FolderBusy(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """An exclusive lock on ``folder`` for this process, held from ``acquire`` (or ``with``) to ``release``.

    Attributes:
        note: After ``acquire``, what a lock left behind said (a holder killed without releasing it), or "".
    """

    def __init__(self, folder: str | Path, what: str = "training"):
        self.path, self.what = Path(folder) / ".lock", what
        self.fd: int | None = None
        self.note = ""

    def acquire(self) -> FolderLock:
        """Take the lock.

        Raises:
            FolderBusy: a live process holds it; the message names its pid and host.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                who = (f"process {holder.get('pid')} on {holder.get('host')} (since "
                       f"{time.strftime('%H:%M:%S', time.localtime(holder.get('since', 0)))})") if holder else \
                    "another process"
                raise FolderBusy(f"{self.path.parent} is in use: {who} is {self.what} into it. Wait for it to "
                                 f"finish (or stop it), or use another output folder.") from None
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:  # not a lock file replaced meanwhile
                break
            os.close(fd)
        old = _holder(fd)
        if old.get("pid"):
            self.note = (f"took over the lock of process {old['pid']} on {old.get('host')}, which ended without "
                         "releasing it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": HOST, "since": time.time(),
                                  "what": self.what}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Let go of the lock; the file stays, empty, so no other process's lock is ever unlinked."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
