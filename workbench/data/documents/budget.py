"""A time budget for one file: its extractor runs in a worker thread that is stopped when time is up.

A file that takes too long is most often stuck inside a library call (an HTML parser on a
hostile page, an XML parser on a huge part), which no check between blocks can reach. So the
extractor's generator runs in a daemon thread and hands its blocks over through a bounded
queue (large files still stream); the caller waits at most until the deadline. When time is
up the worker is told to stop, and, if it is still busy, ``_Stop`` is raised inside it
(``PyThreadState_SetAsyncExc``), which takes effect at its next Python instruction: at once
in pure-Python code (html.parser, pypdf), after the current call in C code (lxml).
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

#: Items handed over at a time, and batches the queue holds: the worker runs at most this far ahead.
BATCH = 64
QUEUE_BATCHES = 4
_POLL = 0.05


class TimeUp(Exception):
    """The budget was spent before the items ran out."""


class _Stop(BaseException):
    """Raised inside the worker to end it; a BaseException, so no library's ``except Exception`` keeps it going."""


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


def _interrupt(thread: threading.Thread) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Stop))


def within(make: Callable[[], Iterator[T]], seconds: float | None) -> Iterator[T]:
    """The items of ``make()``, produced in a worker thread, for at most ``seconds`` in all.

    The budget counts from the first ``next``, and includes the caller's own time between
    items. An exception in the worker is raised here, in the caller.

    Args:
        make: Builds the iterator (called in the worker).
        seconds: The budget; None runs ``make()`` here, in the caller's thread, without one.

    Raises:
        TimeUp: The budget was spent.
    """
    if seconds is None:
        yield from make()
        return
    deadline = time.monotonic() + seconds
    handover: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handover.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            batch: list = []
            try:
                for item in make():
                    batch.append(item)
                    if len(batch) >= BATCH:
                        if not put(batch):
                            return
                        batch = []
                if put(batch):
                    put(_END)
            except _Stop:
                return
            except BaseException as e:  # noqa: BLE001 - handed to the caller, raised there
                put(_Failed(e))
        except _Stop:  # arrived while handing over the failure
            return

    worker = threading.Thread(target=work, name="workbench-extract", daemon=True)
    worker.start()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeUp()
            try:
                item = handover.get(timeout=left)
            except queue.Empty:
                raise TimeUp() from None
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            for one in item:
                if time.monotonic() > deadline:
                    raise TimeUp()
                yield one
    finally:
        stop.set()
        worker.join(_POLL)
        if worker.is_alive():
            _interrupt(worker)
            worker.join(_POLL)
