"""A run folder as bytes (a tar archive) to send through Ray's object store, and back into a folder.

Used when a task's node does not see the driver's sweep folder: the task runs in a node-local copy and returns
the packed run folder; the driver unpacks it into the sweep's runs/ (replacing its older copy in one rename).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid

from utils.runs import RunFolder


def pack(folder: str, only: tuple[str, ...] | None = None) -> bytes:
    """The files of ``folder`` (or only the names in ``only``) as an uncompressed tar archive; the state files
    compress poorly, so compression would cost time for little."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(os.listdir(folder)):
            if (only is None or name in only) and not name.endswith(".tmp"):
                archive.add(os.path.join(folder, name), arcname=name)
    return buffer.getvalue()


def unpack(data: bytes, folder: str) -> None:
    """Make ``folder`` hold exactly the packed files: they are extracted next to it, then swapped in by renames,
    so a reader sees the old folder or the new one, never half of one."""
    parent, name = os.path.split(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    incoming = os.path.join(parent, f".incoming-{name}-{uuid.uuid4().hex[:8]}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        archive.extractall(incoming, filter="data")  # no absolute paths, links out of the folder or devices
    old = None
    if os.path.exists(folder):
        old = os.path.join(parent, f".replaced-{name}-{uuid.uuid4().hex[:8]}")
        os.rename(folder, old)
    os.rename(incoming, folder)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def progress_key(folder: str) -> tuple:
    """How far a copy of a run folder got: (finished, learning step, exploration step, state number) of its status
    and saved state; a missing folder is (-1,). Of two copies of one run, the larger key is the newer."""
    if not os.path.isdir(folder):
        return (-1,)
    run = RunFolder(folder)
    status, manifest = run.status or {}, run.manifest or {}
    return (int(status.get("status") == "finished"), int(manifest.get("timestep") or 0),
            int(manifest.get("explored") or 0), int(manifest.get("sequence") or 0))
