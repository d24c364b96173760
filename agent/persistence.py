"""The full training state on disk: written atomically, verified by checksum, read without running code.

A run folder's ``state/`` holds::

    manifest.json             which state file is the current one, its size and SHA-256, the step it holds
    state-000007.pt           the current state (torch.save of tensors and plain values only)
    replay-frames.u8          with --save_replay: the replay memory's frames, a memory-mapped file
    replay-undo-000007.bin    with --save_replay: the frames overwritten since state 7 (see replay_memory)

Saving writes the new state file next to the old one (temporary file, fsync, rename), then replaces the
manifest the same way, and only then deletes the old state: whatever moment the process dies at, the manifest
names a complete state file. Loading checks the size and checksum against the manifest and reads the file with
``torch.load(..., weights_only=True)``, so a truncated, altered or malicious file is refused with one line.
"""

from __future__ import annotations

import glob
import json
import os
import time
import warnings

import numpy as np
import torch

from utils.runs import atomic_write, remove_stale_temporaries, sha256_of, write_json

MANIFEST = "manifest.json"
REPLAY_FRAMES = "replay-frames.u8"


class StateError(Exception):
    """A saved training state that cannot be used (missing, damaged or altered)."""


def to_tensors(value):
    """The same structure with every numpy array turned into a tensor (what weights_only loading accepts)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {key: to_tensors(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_tensors(item) for item in value]
    return value


def read_manifest(state_dir: str) -> dict | None:
    path = os.path.join(state_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
        if not isinstance(manifest, dict) or not {"file", "sha256", "bytes", "sequence"} <= set(manifest):
            raise ValueError("not a manifest")
    except (OSError, ValueError):
        raise StateError(f"{path} is damaged; the saved training state cannot be found") from None
    return manifest


def undo_journal(state_dir: str, sequence: int) -> str:
    return os.path.join(state_dir, f"replay-undo-{sequence:06d}.bin")


def save_state(state_dir: str, state: dict, replay=None, **summary) -> dict:
    """Write ``state`` as the new current state; ``replay`` (memory-mapped) is flushed before and gets a new undo
    journal after. ``summary`` (plain values, e.g. the step) goes into the manifest. Returns the manifest."""
    os.makedirs(state_dir, exist_ok=True)
    previous = read_manifest(state_dir)
    sequence = previous["sequence"] + 1 if previous else 1
    name = f"state-{sequence:06d}.pt"
    path = os.path.join(state_dir, name)
    if replay is not None:
        replay.flush()
    atomic_write(path, lambda file: torch.save(to_tensors(state), file))
    manifest = {"file": name, "sha256": sha256_of(path), "bytes": os.path.getsize(path), "sequence": sequence,
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S"), "replay": replay is not None, **summary}
    write_json(os.path.join(state_dir, MANIFEST), manifest)
    if replay is not None:
        replay.start_journal(undo_journal(state_dir, sequence))
    keep = {name, os.path.basename(undo_journal(state_dir, sequence))}
    for old in glob.glob(os.path.join(state_dir, "state-*.pt")) + glob.glob(os.path.join(state_dir, "replay-undo-*")):
        if os.path.basename(old) not in keep:
            os.remove(old)
    return manifest


def load_state(state_dir: str) -> tuple[dict, dict] | None:
    """(state, manifest) of the current saved state, None when none was saved yet. Stale temporary files of a
    write that was cut off are deleted first."""
    remove_stale_temporaries(state_dir)
    manifest = read_manifest(state_dir)
    if manifest is None:
        return None
    path = os.path.join(state_dir, manifest["file"])
    if not os.path.isfile(path):
        raise StateError(f"{path} named by {MANIFEST} is missing; the saved training state is lost")
    if os.path.getsize(path) != manifest["bytes"] or sha256_of(path) != manifest["sha256"]:
        raise StateError(f"{path} is damaged: its size or checksum differs from {MANIFEST} (truncated or altered); "
                         "it will not be loaded")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure to unpickle an untrusted file is the same answer
        raise StateError(f"{path} is not a readable weights-only training state; it will not be loaded") from None
    return state, manifest
