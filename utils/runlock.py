"""A run folder belongs to the one process that runs in it: an exclusive lock on the folder itself.

run.py and convert.py lock their run folder (``flock`` on the folder, no file is written for it) as soon as it is
created, and ``run.py --resume`` before it reads or writes anything in it; the lock lasts as long as the process
(the operating system drops it when the process ends, however it ends: a crash or ``kill -9`` included). A second
run or resume of a folder in use is refused with one line naming the process that holds it.

Whether a run whose ``status.json`` says ``running`` is alive: :func:`run_is_live` (the folder is locked) or dead
(a crash or a kill left the status behind; ``--resume`` continues it).
"""

from __future__ import annotations

import fcntl
import os
import time

from utils.errors import Busy

_held: dict[str, int] = {}


def lock_run_dir(run_dir: str, wait_s: float = 1.0) -> None:
    """Take the exclusive lock of ``run_dir`` for this process (again: nothing), or raise :class:`Busy` (exit 75) if
    another process holds it. A reader that only looks (:func:`run_is_live`) holds it for an instant: it is
    retried for ``wait_s`` seconds."""
    path = os.path.realpath(run_dir)
    if path in _held:
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise Busy(f"{run_dir} is in use by another process{_holder(path)}: wait until it ends, or "
                                "stop it (kill -TERM <pid> saves its state) before running in that folder") from None
            time.sleep(0.05)
    _held[path] = fd


def _holder(path: str) -> str:
    from utils.runs import RunFolder

    status = RunFolder(path).status or {}
    pid, host = status.get("pid"), status.get("host")
    return f" (pid {pid} on {host}, per its status.json)" if pid and host else ""


def release_all() -> None:
    """Drop every lock this process holds (the end of a program run in-process, as the tests do)."""
    while _held:
        _, fd = _held.popitem()
        os.close(fd)


def run_is_live(run_dir: str) -> bool:
    """True while a process holds ``run_dir`` (a run in progress), False for a folder no process runs in."""
    path = os.path.realpath(run_dir)
    if path in _held:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock taken here
