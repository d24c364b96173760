"""Safe writes and safe loads, once for the whole project.

A file that a later read must trust is written atomically (:func:`atomic_write`): into a temporary file in the same
folder, flushed to disk (fsync), then renamed over the old one, so a crash or a full disk leaves either the old or
the new file, never half of one. A torch file is read with ``weights_only=True`` (:func:`load_weights_only`): it
can hold tensors and plain values only, never code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import warnings

from utils.errors import os_error_of


def fsync_path(path: str) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str, temporary: str | None = None):
    """Yields a temporary path next to ``path`` (``temporary``, default ``path.tmp``) to write to; once the writing
    succeeded it is flushed to disk and replaces ``path``. On failure the temporary file is removed and the old
    ``path``, if any, is untouched."""
    tmp = temporary or f"{path}.tmp"
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        cause = os_error_of(error)  # torch.save on a full disk: a RuntimeError that lost the file's name
        if cause is not None and not cause.filename:
            raise OSError(cause.errno, cause.strerror or os.strerror(cause.errno), tmp) from error
        raise
    fsync_path(os.path.dirname(os.path.abspath(path)))


def atomic_write(path: str, write) -> None:
    """Write ``path`` through ``write(file)`` (a binary file object) atomically (:func:`replacing`)."""
    with replacing(path) as tmp, open(tmp, "wb") as file:
        write(file)


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


def read_json(path: str):
    """The JSON value in ``path``; None when the file is missing, unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights_only(path: str):
    """``torch.load(path, weights_only=True)`` onto the CPU, without torch's warnings about the pickle protocol (a
    caller that refuses the file says why in its own words)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def read_model_file(path: str, unreadable: str, error: type[Exception]):
    """:func:`load_weights_only` of a model file the user named, or ``error`` with one line: ``model file not
    found: PATH``, or ``PATH is not <unreadable>`` for a file that cannot be read as plain tensors and values."""
    if not os.path.isfile(path):
        raise error(f"model file not found: {path}")
    try:
        return load_weights_only(path)
    except Exception:  # noqa: BLE001 - any failure to unpickle an untrusted file is the same answer
        raise error(f"{path} is not {unreadable}") from None
