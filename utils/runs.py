"""Run folders and safe writes, shared by run.py and convert.py.

Every run writes into its own folder ``<output_dir>/<run name>/``, created with an exclusive ``mkdir`` before
anything else is written: two runs started in the same second never share a folder (the second gets ``_2``).
Files that a later read must trust are written atomically: into a temporary file in the same folder, flushed to
disk (fsync), then renamed over the old one, so a crash or a full disk leaves either the old or the new file,
never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import time
from datetime import datetime


def shown(path: str) -> str:
    """A path as a user would type it: relative to the current folder when it lies below it."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else os.path.abspath(path)


def timestamp() -> str:
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def create_run_dir(parent: str, name: str) -> str:
    """Create and return ``parent/name``, or ``parent/name_2``, ``_3``, ... if taken (exclusive, race-free)."""
    os.makedirs(parent, exist_ok=True)
    for number in range(1, 10_000):
        path = os.path.join(parent, name if number == 1 else f"{name}_{number}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name for {name} in {parent}")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> None:
    """Write ``path`` through ``write(file)`` (a binary file object) atomically; on failure the temporary file is
    removed and the old ``path``, if any, is untouched."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        from utils.cli import os_error_of

        cause = os_error_of(error)  # torch.save on a full disk: a RuntimeError that lost the file's name
        if cause is not None and not cause.filename:
            raise OSError(cause.errno, cause.strerror or os.strerror(cause.errno), tmp) from error
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def write_json(path: str, record: dict) -> None:
    """Write ``record`` atomically as strict JSON (NaN and infinities become null) so any JSON reader loads it."""
    text = json.dumps(_finite_or_none(record), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_status(run_dir: str, status: str, **fields) -> None:
    """``status.json``: running / finished / stopped / diverged / failed, with the step reached and the time."""
    write_json(os.path.join(run_dir, "status.json"), {
        "status": status, "updated": datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
        "pid": os.getpid(), **fields,
    })


def read_run_config(folder: str, program: str) -> dict:
    """The config.json that ``program`` (run.py or convert.py) wrote into the run folder ``folder``, or {}."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as file:
            saved = json.load(file)
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) and saved.get("program") == program else {}


def trained_checkpoint(path: str) -> tuple[str, dict]:
    """A checkpoint path as given, or a run.py run folder's best.pkl; with the configuration of the run that trained
    it ({} if unknown)."""
    path = os.path.abspath(os.path.expanduser(path))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    return (os.path.join(path, "best.pkl") if os.path.isdir(path) else path), read_run_config(folder, "run.py")


def read_status(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "status.json"), encoding="utf-8") as file:
            status = json.load(file)
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete ``*.tmp`` files left in ``folder`` by a write that was cut off; returns their names."""
    removed = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
                    removed.append(name)
    return removed


class RateMeter:
    """Steps per second since the previous reading."""

    def __init__(self):
        self._time, self._steps = time.perf_counter(), 0

    def rate(self, steps: int) -> float:
        now = time.perf_counter()
        rate = (steps - self._steps) / max(now - self._time, 1e-9)
        self._time, self._steps = now, steps
        return rate
