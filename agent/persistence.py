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

Before ``--resume`` writes anything, :func:`check_run_folder` and :func:`check_resume` check the folder as a whole:
files where files belong and nothing pointing outside it, the manifest's fields, the state's structure, the folder's
config.json against the configuration stored in the state, the budget, and the replay memory's frames against their
checksums. A refusal is one line and changes nothing on disk.
"""

from __future__ import annotations

import glob
import math
import os
import re
import time
from dataclasses import dataclass

import numpy as np
import torch

from utils.cli import UserError
from utils.files import atomic_write, load_weights_only, read_json, sha256_of, write_json

MANIFEST = "manifest.json"
REPLAY_FRAMES = "replay-frames.u8"


@dataclass
class Progress:
    """The loop's counters: with the networks, optimizer, envs, generators and replay memory, the whole state."""

    explored: int = 0  # exploration steps done
    timestep: int = 0  # learning steps done
    pending_eval: int | None = None  # an evaluation that is due (or was cut short by a signal) at this label
    finished: bool = False  # the final evaluation is done (or skipped)
    last_done: bool = False  # the last learning step ended an episode (the final evaluation's skip rule)
    final_step: bool = False  # step timestep_num was taken for the final evaluation (--final_eval one_more_step)
    best_score: float = -math.inf
    games: int = 0  # training games finished (for train/episode_return)


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
    manifest = read_json(path)
    problem = manifest_problem(manifest)
    if problem:
        raise StateError(f"{path} is damaged ({problem}); the saved training state cannot be found: nothing was "
                         "changed; put back the manifest, or pass --start_over to train again from step 0")
    return manifest


#: The manifest's fields: (accepts, what it must be).
_NATURAL = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0")
MANIFEST_FIELDS = {
    "file": (lambda v: isinstance(v, str) and re.fullmatch(r"state-\d{6,}\.pt", v) is not None,
             "the name of a state file in the same folder"),
    "sha256": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "a SHA-256 in hex"),
    "bytes": _NATURAL,
    "sequence": (lambda v: _NATURAL[0](v) and v >= 1, "an integer >= 1"),
    "replay": (lambda v: isinstance(v, bool), "true or false"),
    "timestep": _NATURAL,
    "explored": _NATURAL,
    "pending_eval": (lambda v: v is None or _NATURAL[0](v), "null or an integer >= 0"),
    "finished": (lambda v: isinstance(v, bool), "true or false"),
}


def manifest_problem(manifest) -> str | None:
    """What is wrong with a manifest read from disk (None: nothing)."""
    if not isinstance(manifest, dict):
        return "not a JSON object"
    for name, (accepts, requirement) in MANIFEST_FIELDS.items():
        if name not in manifest:
            return f"no {name}"
        if not accepts(manifest[name]):
            return f"{name} is {manifest[name]!r}, not {requirement}"
    return None


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
    """(state, manifest) of the current saved state, None when none was saved yet (no manifest). Reads only."""
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
        state = load_weights_only(path)
    except Exception:  # noqa: BLE001 - any failure to unpickle an untrusted file is the same answer
        raise StateError(f"{path} is not a readable weights-only training state; it will not be loaded") from None
    return state, manifest


# -- checking a run folder before it is resumed ------------------------------------------------------------------------

#: What run.py keeps in a run folder, and which are files and which folders.
RUN_FOLDER_KINDS = {"config.json": "file", "status.json": "file", "run.log": "file", "best.pkl": "file",
                    "summary.json": "file", "state": "folder", "tensorboard": "folder", "videos": "folder"}
STATE_NAME = re.compile(r"(manifest\.json|state-\d+\.pt|replay-undo-\d+\.bin|replay-frames\.u8)(\.tmp)?")


def check_run_folder(run_dir: str) -> None:
    """A one-line :class:`UserError` unless ``run_dir`` has files where run.py keeps files, folders where it keeps
    folders, and nothing that points outside it. Reads only."""
    real = os.path.realpath(run_dir)
    entries = [(os.path.join(run_dir, name), kind) for name, kind in RUN_FOLDER_KINDS.items()]
    state_dir = os.path.join(run_dir, "state")
    if os.path.isdir(state_dir):
        entries += [(os.path.join(state_dir, name), "file") for name in sorted(os.listdir(state_dir))
                    if STATE_NAME.fullmatch(name)]
    for path, kind in entries:
        if not os.path.lexists(path):
            continue
        target = os.path.realpath(path)
        if os.path.islink(path) and os.path.commonpath([real, target]) != real:
            raise UserError(f"{path} points outside the run folder (to {target}); a run folder is resumed only with "
                            "its own files: put the real file there")
        if kind == "file" and not os.path.isfile(path):
            raise UserError(f"{path} is {'a folder' if os.path.isdir(path) else 'not a regular file'} where run.py "
                            "keeps a file; move it out of the run folder, then resume")
        if kind == "folder" and not os.path.isdir(path):
            raise UserError(f"{path} is a file where run.py keeps a folder; move it out of the run folder, then "
                            "resume")


def _state_problem(state) -> str | None:
    if not isinstance(state, dict):
        return "not a mapping"
    missing = [key for key in ("progress", "config", "net", "target_net", "optimizer", "rngs", "train_env",
                               "eval_env", "obs", "losses", "replay") if key not in state]
    if missing:
        return f"no {missing[0]}"
    progress, defaults = state["progress"], Progress()
    if not isinstance(progress, dict) or set(progress) != set(vars(defaults)):
        return "its progress is not the loop's counters"
    for name, default in vars(defaults).items():
        value = progress[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name == "pending_eval":
            ok = value is None or _NATURAL[0](value)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = _NATURAL[0](value)
        else:
            ok = number
        if not ok:
            return f"its progress {name} is {value!r}"
    if not isinstance(state["config"], dict):
        return "its configuration is not a mapping"
    return None


def check_resume(run_dir: str, config) -> tuple[dict, dict] | None:
    """Everything ``run.py --resume`` checks before it writes anything: the saved state (:func:`load_state`), its
    structure, that it was saved by a run of this folder's config.json, the budget, and the replay memory's files.
    Returns (state, manifest), or None when the run saved no state before it stopped (and left nothing a fresh
    start would replace), or with ``--start_over``. Reads only."""
    from replay_memory import ReplayMemory

    from .config import RESUMABLE_OVERRIDES

    state_dir = os.path.join(run_dir, "state")
    if config.start_over:
        return None
    loaded = load_state(state_dir)
    if loaded is None:
        leftovers = sorted(os.path.basename(p) for p in glob.glob(os.path.join(state_dir, "state-*.pt"))
                           + glob.glob(os.path.join(run_dir, "best.pkl")))
        if leftovers:
            raise UserError(f"{os.path.join(state_dir, MANIFEST)} is missing but the run folder holds "
                            f"{', '.join(leftovers)}: its saved state cannot be verified, and resuming would start "
                            "over and replace them; put back the manifest, or pass --start_over to train again from "
                            "step 0 (deleting the saved state, replacing best.pkl)")
        return None
    state, manifest = loaded
    path = os.path.join(state_dir, manifest["file"])
    problem = _state_problem(state)
    if problem:
        raise UserError(f"{path} is not a training state saved by run.py ({problem}); it will not be loaded: pass "
                        "--start_over to train again from step 0")
    stored, current = state["config"], config.to_dict()
    changed = [name for name in sorted(current) if name in stored and stored[name] != current[name]
               and name not in RESUMABLE_OVERRIDES | {"resume", "run_name"}]
    if changed:
        name = changed[0]
        raise UserError(f"{os.path.join(run_dir, 'config.json')} says {name} {current[name]!r} but the saved state "
                        f"was trained with {stored[name]!r}: config.json was edited or belongs to another run; put "
                        f"back {name} {stored[name]!r} (or start a new run)")
    if config.timestep_num < manifest["timestep"]:
        raise UserError(f"--timestep_num {config.timestep_num} is below the {manifest['timestep']} learning steps this "
                        "run has already done")
    frames = os.path.join(state_dir, REPLAY_FRAMES)
    if manifest["replay"] and config.save_replay and os.path.exists(frames):
        journal = undo_journal(state_dir, manifest["sequence"])
        problem = ReplayMemory.check_saved(frames, state["replay"], journal if os.path.exists(journal) else None,
                                           config.replay_memory_size, config.history_len)
        if problem:
            raise UserError(f"{frames}: {problem}; the replay memory cannot be restored exactly: restore the file, or "
                            "delete it to resume with a refilled replay memory (no longer bit-exact)")
    return loaded


def replay_file_allocated(frames_file: str, config) -> bool:
    """The replay memory's frames file of this configuration is already on disk at its full size (so a resume needs
    no more space for it)."""
    from replay_memory import ReplayMemory

    return os.path.isfile(frames_file) and os.path.getsize(frames_file) == ReplayMemory.frames_file_bytes(
        config.replay_memory_size, config.history_len)


def start_over(state_dir: str) -> None:
    """``--resume --start_over``: delete the saved state (manifest, state files, undo journals; the replay memory's
    frames file is kept and refilled) so the run trains again from step 0."""
    if not os.path.isdir(state_dir):
        return
    names = [name for name in os.listdir(state_dir)
             if STATE_NAME.fullmatch(name) and not name.startswith(REPLAY_FRAMES)]
    for name in sorted(names, key=lambda name: not name.startswith(MANIFEST)):  # the manifest first
        os.remove(os.path.join(state_dir, name))
