"""Circular uint8 experience replay memory for DQN that stores every frame once.

The environment hands the agent frame stacks of shape ``(history_len, H, W)`` (oldest frame first).  Consecutive
stacks of one episode overlap in ``history_len - 1`` frames, so storing whole stacks (as the original code did) costs
``history_len`` times more memory than necessary.  This memory stores each distinct frame once and rebuilds the stacks
when sampling.

Layout
------
Two rings, both allocated up front:

* **Frame ring** ``_frames``: ``uint8[F, H, W]`` with
  ``F = capacity + ceil(frame_headroom * capacity) + history_len + 1``. Every stored frame gets an absolute
  (ever-increasing) number ``a`` and lives in row ``a % F``.
* **Transition ring** of ``capacity`` slots.  Transition number ``t`` lives in slot ``t % capacity`` and holds
  ``state_abs`` (absolute number of the last frame of its state stack), ``ep_start`` (absolute number of the first
  stored frame of its episode), ``action`` (int32), ``reward`` (float32) and ``done`` (bool).  The last frame of the
  next state is always frame ``state_abs + 1``.

Rebuilding: the stack ending at frame ``a`` of an episode starting at ``e`` is the frames
``max(a - history_len + 1 + k, e)`` for ``k = 0 .. history_len-1``, i.e. the episode's first stored frame is repeated
for the positions before the episode began -- exactly the baselines ``FrameStack`` reset semantics
``[f0, f0, f0, f0], [f0, f0, f0, f1], ...``.
Frames of a previous episode are therefore never used.  A sample gathers these indices for the whole batch at once
(one fancy-indexing gather for states, one for next states).

Appending
---------
``append(frame_stack, action, reward, done, next_frame_stack)`` decides whether the transition begins a new episode
segment.  It does if it is the first append ever, if the previous append had ``done=True``, or if ``frame_stack``
differs from the previous transition's next state as rebuilt from the ring (one gather of ``history_len`` frames and
one comparison, about 10-20 microseconds per append on one CPU core), so a stream that skips a transition without
``done`` never mixes two episodes' frames.  Then:

* new episode: the leading run of identical frames of ``frame_stack`` is stored once (``[f0, f0, f0, f0]`` -> 1 frame;
  a non-repeated stack ``[a, b, c, d]`` -> 4 frames; ``[a, a, b, c]`` -> 3 frames), then ``next_frame_stack[-1]``.
  Rebuilding with the repeat rule above is exact in all three cases.
* continuing episode: only ``next_frame_stack[-1]`` is copied (one frame).

The terminal transition's next frame is stored too, so the sampled ``next_states`` always equal what the environment
returned (DQN masks them with ``dones`` anyway).  It is assumed, as for any frame-stacking wrapper, that
``next_frame_stack[:-1] == frame_stack[1:]``; this is not checked.

Wrap-around and validity
------------------------
An episode of ``L`` transitions needs ``L + 1`` frames (``L + history_len`` if it starts with a non-repeated stack),
so the frame ring holds more rows than the transition ring: ``frame_headroom`` (default 2 %) leaves room for one extra
frame per episode as long as the episodes in the memory average at least ``1 / frame_headroom`` = 50 transitions.
When the frame ring nevertheless overwrites a frame that an old transition still needs, that transition is *dropped*
(never sampled).  Because the oldest frame a transition needs grows monotonically with the transition number, the
sampleable transitions are always one contiguous run ``[_first_valid, _num_appended)`` of transition numbers, so
``len()`` is its length (``<= capacity``; equal to ``capacity`` once full in the usual case) and uniform sampling is a
single ``integers`` draw.

Memory per transition
---------------------
``(F / capacity) * H * W`` bytes of frames plus 25 bytes of metadata (8 + 8 + 4 + 4 + 1): for 84x84 frames and the
default 2 % headroom about 7,225 bytes, i.e. about 7.2 GB for 1,000,000 transitions (whole 4-frame stacks for state
and next state would need 56,448 bytes, 28,224 with only states). ``numpy.empty`` is used, so the operating system
commits the frame memory page by page as the ring fills.

Persistence
-----------
With ``frames_file`` the frame ring is a memory-mapped file, so a checkpoint of the memory is :meth:`flush` plus
:meth:`state_dict` (the 25 bytes per transition of metadata, the counters and the sampling generator), not a copy of
gigabytes of frames. To go back to the last checkpoint after the process died, the frames overwritten since then are
needed: after each checkpoint :meth:`start_journal` opens an undo journal that receives every frame just before it is
overwritten (only once the ring has wrapped), and :meth:`undo` writes them back, newest first. Frames written after
the checkpoint into rows that held nothing yet need no undo: the transitions of the checkpoint never refer to them.

Every row of a memory-mapped ring has a CRC-32 (kept with the metadata; about 3.5 microseconds per append), and
every journal record carries one, so :meth:`check_saved` can tell, reading only, whether the frames file and the
journal give back exactly the frames a saved state refers to.
"""

from __future__ import annotations

import math
import os
import shutil
import zlib
from typing import NamedTuple

import numpy as np
import psutil
import torch

__all__ = ["Batch", "ReplayMemory", "ReplayMemoryTooLargeError"]

# Metadata bytes per transition slot: state_abs (int64), ep_start (int64),
# action (int32), reward (float32), done (bool).
_META_BYTES_PER_TRANSITION = 8 + 8 + 4 + 4 + 1


class ReplayMemoryTooLargeError(MemoryError):
    """The requested replay memory does not fit in the available memory."""


class Batch(NamedTuple):
    """A sampled minibatch of CPU tensors (the learner moves them to its device)."""

    states: torch.Tensor  # uint8 [B, history_len, H, W]
    actions: torch.Tensor  # int64 [B]
    rewards: torch.Tensor  # float32 [B]
    next_states: torch.Tensor  # uint8 [B, history_len, H, W]
    dones: torch.Tensor  # float32 [B], 1.0 where the transition ended the episode


def _frame_rows(capacity: int, history_len: int, frame_headroom: float) -> int:
    return capacity + int(math.ceil(frame_headroom * capacity)) + history_len + 1


#: The first bytes of an undo journal whose records carry a CRC-32 (row int64, frame, crc32 of both, uint32).
_JOURNAL_MAGIC = b"DSQNUNDO"


def _read_journal(path: str, row_bytes: int, rows: int) -> tuple[list[tuple[int, np.ndarray]], str | None]:
    """The complete records of an undo journal, oldest first, and what is wrong with it (None: nothing). A torn last
    record (the process died while writing it) was never applied and is not a fault."""
    data = np.fromfile(path, dtype=np.uint8)
    checked = data[: len(_JOURNAL_MAGIC)].tobytes() == _JOURNAL_MAGIC
    if checked:
        data = data[len(_JOURNAL_MAGIC):]
    record = 8 + row_bytes + (4 if checked else 0)
    records = []
    for k in range(len(data) // record):
        chunk = data[k * record : (k + 1) * record]
        row = int(chunk[:8].view(np.int64)[0])
        if checked and int(chunk[8 + row_bytes :].view(np.uint32)[0]) != zlib.crc32(chunk[: 8 + row_bytes]):
            return records, f"record {k + 1} of the undo journal {path} fails its checksum"
        if not 0 <= row < rows:
            return records, f"record {k + 1} of the undo journal {path} names row {row}, outside the ring"
        records.append((row, chunk[8 : 8 + row_bytes]))
    return records, None


def _gb(num_bytes: float) -> str:
    return f"{num_bytes / 1e9:.1f} GB"


class ReplayMemory:
    """Uniform experience replay storing each frame once (see module docstring)."""

    def __init__(
        self,
        capacity: int,
        history_len: int,
        frame_shape: tuple[int, ...] = (84, 84),
        seed: int | None = None,
        check_memory: bool = True,
        frame_headroom: float = 0.02,
        frames_file: str | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"replay memory capacity must be an integer >= 1, got {capacity!r}")
        if isinstance(history_len, bool) or not isinstance(history_len, (int, np.integer)) or history_len < 1:
            raise ValueError(f"history_len must be an integer >= 1, got {history_len!r}")
        if not (frame_headroom >= 0):
            raise ValueError(f"frame_headroom must be >= 0, got {frame_headroom!r}")
        frame_shape = tuple(int(s) for s in frame_shape)
        if not frame_shape or any(s < 1 for s in frame_shape):
            raise ValueError(f"frame_shape must be a non-empty tuple of positive sizes, got {frame_shape!r}")

        self.capacity = int(capacity)
        self.history_len = int(history_len)
        self.frame_shape = frame_shape
        self.frame_headroom = float(frame_headroom)

        if check_memory:
            self.check_fits(self.capacity, self.history_len, frame_shape, self.frame_headroom,
                            folder=os.path.dirname(os.path.abspath(frames_file)) if frames_file else None)

        self._num_frame_rows = _frame_rows(self.capacity, self.history_len, self.frame_headroom)
        shape = (self._num_frame_rows, *frame_shape)
        self.frames_file_created = False
        if frames_file is None:
            self._frames = np.empty(shape, dtype=np.uint8)
        else:  # a memory-mapped file: a checkpoint only flushes it (see the module docstring, Persistence)
            expected = int(np.prod(shape, dtype=np.int64))
            # A file of another size cannot hold this memory's frames (damaged, or another capacity): start afresh.
            self.frames_file_created = not (os.path.exists(frames_file) and os.path.getsize(frames_file) == expected)
            if self.frames_file_created:  # reserve the disk space now: a full disk later would kill the run
                try:
                    with open(frames_file, "wb") as file:
                        os.posix_fallocate(file.fileno(), 0, expected)
                except OSError:
                    os.remove(frames_file)
                    raise
            self._frames = np.memmap(frames_file, dtype=np.uint8, mode="r+", shape=shape)
        # CRC-32 of every row of a memory-mapped ring (saved with the metadata; see check_saved)
        self._crc = None if frames_file is None else np.zeros(self._num_frame_rows, dtype=np.uint32)
        self._journal = None  # the undo journal file while one is kept
        self._state_abs = np.zeros(self.capacity, dtype=np.int64)
        self._ep_start = np.zeros(self.capacity, dtype=np.int64)
        self._actions = np.zeros(self.capacity, dtype=np.int32)
        self._rewards = np.zeros(self.capacity, dtype=np.float32)
        self._dones = np.zeros(self.capacity, dtype=np.bool_)

        self._rng = np.random.default_rng(seed)
        self._num_frames = 0  # absolute number of the next frame to write
        self._num_appended = 0  # absolute number of the next transition to write
        self._first_valid = 0  # oldest sampleable transition number
        self._last_done = True  # the first append starts an episode
        self._offsets = np.arange(-(self.history_len - 1), 1, dtype=np.int64)  # [-(h-1), ..., 0]

    # ------------------------------------------------------------------ sizes
    @staticmethod
    def estimate_bytes(
        capacity: int,
        history_len: int,
        frame_shape: tuple[int, ...] = (84, 84),
        frame_headroom: float = 0.02,
    ) -> int:
        """Bytes that ``ReplayMemory(capacity, history_len, frame_shape)`` allocates."""
        frame_bytes = int(np.prod(frame_shape, dtype=np.int64))
        rows = _frame_rows(int(capacity), int(history_len), float(frame_headroom))
        return rows * frame_bytes + int(capacity) * _META_BYTES_PER_TRANSITION

    @staticmethod
    def frames_file_bytes(capacity: int, history_len: int, frame_shape: tuple[int, ...] = (84, 84),
                          frame_headroom: float = 0.02) -> int:
        """The size of the memory-mapped frames file of such a memory."""
        return _frame_rows(int(capacity), int(history_len), float(frame_headroom)) * int(np.prod(frame_shape))

    @classmethod
    def check_saved(cls, frames_file: str, state: dict, journal: str | None, capacity: int, history_len: int,
                    frame_shape: tuple[int, ...] = (84, 84), frame_headroom: float = 0.02) -> str | None:
        """Whether ``frames_file`` with the undo ``journal`` gives back exactly the frames that the saved
        :meth:`state_dict` ``state`` refers to: None if so, else what is wrong. Reads only."""
        rows = _frame_rows(int(capacity), int(history_len), float(frame_headroom))
        row_bytes = int(np.prod(frame_shape))
        expected = rows * row_bytes
        if os.path.getsize(frames_file) != expected:
            return (f"its size is {os.path.getsize(frames_file)} bytes, not the {expected} of this replay memory "
                    "(damaged, or of another --replay_memory_size)")
        if not isinstance(state, dict) or not all(key in state for key in ("num_frames", "state_abs")):
            return "the saved state holds no replay memory"
        records, problem = _read_journal(journal, row_bytes, rows) if journal else ([], None)
        if problem:
            return problem
        crc = state.get("frame_crc")
        if crc is None:  # saved before the frames had checksums: nothing to compare with
            return None
        crc = crc.numpy().view(np.uint32)
        if crc.shape != (rows,):
            return "its checksums do not fit this replay memory"
        restored = {}
        for row, frame in records:  # undo goes newest first: the oldest record of a row is what it held
            restored.setdefault(row, frame)
        frames = np.memmap(frames_file, dtype=np.uint8, mode="r", shape=(rows, row_bytes))
        num_frames = int(state["num_frames"])
        bad = [row for row in (a % rows for a in range(max(0, num_frames - rows), num_frames))
               if zlib.crc32(restored[row] if row in restored else frames[row]) != int(crc[row])]
        del frames
        if bad:
            return (f"{len(bad)} of its frames differ from their checksums (row {bad[0]} first): it was damaged or "
                    "altered")
        return None

    @classmethod
    def check_fits(cls, capacity: int, history_len: int, frame_shape: tuple[int, ...] = (84, 84),
                   frame_headroom: float = 0.02, folder: str | None = None) -> None:
        """Raise :class:`ReplayMemoryTooLargeError` unless the memory fits in the available RAM, or, for a
        memory-mapped memory in ``folder``, in the free disk space there."""
        needed = cls.estimate_bytes(capacity, history_len, frame_shape, frame_headroom)
        if folder is None:
            available, where = psutil.virtual_memory().available, "of memory"
        else:
            probe = folder
            while not os.path.exists(probe):
                probe = os.path.dirname(probe)
            available, where = shutil.disk_usage(probe).free, f"of free disk space in {probe}"
        if needed > available:
            raise ReplayMemoryTooLargeError(
                f"replay memory of {capacity} transitions needs {_gb(needed)} but only {_gb(available)} {where} "
                "is available; lower --replay_memory_size"
            )

    @property
    def nbytes(self) -> int:
        """Total bytes of the allocated arrays."""
        return int(
            self._frames.nbytes
            + self._state_abs.nbytes
            + self._ep_start.nbytes
            + self._actions.nbytes
            + self._rewards.nbytes
            + self._dones.nbytes
        )

    @property
    def bytes_per_transition(self) -> float:
        """Allocated bytes divided by capacity."""
        return self.nbytes / self.capacity

    def __len__(self) -> int:
        return self._num_appended - self._first_valid

    # ----------------------------------------------------------------- append
    def _stack_indices(self, last_abs: np.ndarray | int, ep_start: np.ndarray | int) -> np.ndarray:
        """Frame-ring rows of the stacks ending at ``last_abs`` (shape [..., history_len])."""
        last_abs = np.asarray(last_abs, dtype=np.int64)[..., None]
        ep_start = np.asarray(ep_start, dtype=np.int64)[..., None]
        return np.maximum(last_abs + self._offsets, ep_start) % self._num_frame_rows

    def _continues_previous(self, frame_stack: np.ndarray) -> bool:
        prev = (self._num_appended - 1) % self.capacity
        last = int(self._state_abs[prev]) + 1
        start = int(self._ep_start[prev])
        h1, n_rows = self.history_len - 1, self._num_frame_rows
        rows = [max(last - h1 + k, start) % n_rows for k in range(self.history_len)]
        return bool(np.array_equal(self._frames[rows], frame_stack))

    def _check_stack(self, stack, name: str) -> np.ndarray:
        arr = np.asarray(stack)
        if arr.dtype != np.uint8:
            raise TypeError(f"{name} must have dtype uint8, got {arr.dtype}")
        if arr.shape != (self.history_len, *self.frame_shape):
            raise ValueError(
                f"{name} must have shape {(self.history_len, *self.frame_shape)}, got {arr.shape}"
            )
        return arr

    def append(self, frame_stack, action, reward, done, next_frame_stack) -> None:
        """Store one transition; copies one frame (plus the start frames of a new episode)."""
        frame_stack = self._check_stack(frame_stack, "frame_stack")
        next_frame_stack = self._check_stack(next_frame_stack, "next_frame_stack")

        new_episode = self._last_done or not self._continues_previous(frame_stack)
        if new_episode:
            # Store the leading run of identical frames once.
            first = 0
            while first + 1 < self.history_len and np.array_equal(frame_stack[first + 1], frame_stack[0]):
                first += 1
            new_frames = [frame_stack[k] for k in range(first, self.history_len)]
            ep_start = self._num_frames
        else:
            new_frames = []
            ep_start = int(self._ep_start[(self._num_appended - 1) % self.capacity])
        new_frames.append(next_frame_stack[-1])

        t = self._num_appended
        frames_after = self._num_frames + len(new_frames)
        state_abs = frames_after - 2

        # Drop transitions overwritten in the transition ring, then those whose
        # oldest needed frame is about to be overwritten in the frame ring.
        self._first_valid = max(self._first_valid, t + 1 - self.capacity)
        oldest_kept = frames_after - self._num_frame_rows
        h1 = self.history_len - 1
        while self._first_valid < t:
            slot = self._first_valid % self.capacity
            if max(int(self._state_abs[slot]) - h1, int(self._ep_start[slot])) >= oldest_kept:
                break
            self._first_valid += 1

        rows = self._num_frame_rows
        for k, frame in enumerate(new_frames):
            row = (self._num_frames + k) % rows
            if self._journal is not None and self._num_frames + k >= rows:  # a frame is overwritten: keep it
                record = np.int64(row).tobytes() + self._frames[row].tobytes()
                self._journal.write(record + np.uint32(zlib.crc32(record)).tobytes())
            self._frames[row] = frame
            if self._crc is not None:
                self._crc[row] = zlib.crc32(self._frames[row])
        self._num_frames = frames_after

        slot = t % self.capacity
        self._state_abs[slot] = state_abs
        self._ep_start[slot] = ep_start
        self._actions[slot] = action
        self._rewards[slot] = reward
        self._dones[slot] = bool(done)
        self._num_appended = t + 1
        self._last_done = bool(done)

    # ----------------------------------------------------------------- sample
    def _gather(self, transition_numbers: np.ndarray):
        """Rebuild transitions by absolute transition number (must be sampleable)."""
        slots = np.asarray(transition_numbers, dtype=np.int64) % self.capacity
        state_abs = self._state_abs[slots]
        ep_start = self._ep_start[slots]
        states = self._frames[self._stack_indices(state_abs, ep_start)]
        next_states = self._frames[self._stack_indices(state_abs + 1, ep_start)]
        return states, self._actions[slots], self._rewards[slots], next_states, self._dones[slots]

    def sample(self, batch_size: int) -> Batch:
        """Uniformly sample ``batch_size`` sampleable transitions (with replacement) as CPU tensors."""
        n = len(self)
        if n == 0:
            raise ValueError("cannot sample from an empty replay memory")
        if batch_size < 1 or batch_size > n:
            raise ValueError(f"batch_size must be between 1 and len(memory)={n}, got {batch_size}")
        numbers = self._first_valid + self._rng.integers(0, n, size=batch_size)
        states, actions, rewards, next_states, dones = self._gather(numbers)
        return Batch(
            states=torch.from_numpy(states),
            actions=torch.from_numpy(actions.astype(np.int64)),
            rewards=torch.from_numpy(rewards),
            next_states=torch.from_numpy(next_states),
            dones=torch.from_numpy(dones.astype(np.float32)),
        )

    # ------------------------------------------------------------ persistence
    _META = ("_state_abs", "_ep_start", "_actions", "_rewards", "_dones")

    def state_dict(self) -> dict:
        """Everything but the frames: the transition ring, the counters and the sampling generator's state."""
        state = {
            **{name.lstrip("_"): torch.from_numpy(getattr(self, name).copy()) for name in self._META},
            "num_frames": self._num_frames, "num_appended": self._num_appended, "first_valid": self._first_valid,
            "last_done": self._last_done, "rng": self._rng.bit_generator.state,
        }
        if self._crc is not None:
            state["frame_crc"] = torch.from_numpy(self._crc.view(np.int32).copy())
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in self._META:
            getattr(self, name)[...] = state[name.lstrip("_")].numpy()
        self._num_frames, self._num_appended = int(state["num_frames"]), int(state["num_appended"])
        self._first_valid, self._last_done = int(state["first_valid"]), bool(state["last_done"])
        self._rng.bit_generator.state = state["rng"]
        if self._crc is not None:
            if state.get("frame_crc") is not None:
                self._crc[...] = state["frame_crc"].numpy().view(np.uint32)
            else:  # saved before the frames had checksums: compute those of the rows in use
                for a in range(max(0, self._num_frames - self._num_frame_rows), self._num_frames):
                    self._crc[a % self._num_frame_rows] = zlib.crc32(self._frames[a % self._num_frame_rows])

    def flush(self) -> None:
        """Write the memory-mapped frames to disk (and the undo journal): the frames of a checkpoint."""
        if isinstance(self._frames, np.memmap):
            self._frames.flush()
        if self._journal is not None:
            os.fsync(self._journal.fileno())

    def start_journal(self, path: str) -> None:
        """From now on, copy every frame about to be overwritten to the (new, empty) undo journal ``path``."""
        self.close_journal()
        # Unbuffered: a record must reach the operating system before the frame it saves is overwritten.
        self._journal = open(path, "wb", buffering=0)  # noqa: SIM115 - kept open while the run goes on
        self._journal.write(_JOURNAL_MAGIC)

    def close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def undo(self, path: str) -> int:
        """Put back the frames that the journal ``path`` saved, newest first: the frames as they were when the
        journal was started. Returns the number of frames restored; the journal itself is left unchanged."""
        records, problem = _read_journal(path, int(np.prod(self.frame_shape, dtype=np.int64)), self._num_frame_rows)
        if problem:
            raise ValueError(problem)
        for row, frame in reversed(records):
            self._frames[row] = frame.reshape(self.frame_shape)
            if self._crc is not None:
                self._crc[row] = zlib.crc32(frame)
        return len(records)

    def __repr__(self) -> str:
        return (
            f"ReplayMemory(capacity={self.capacity}, history_len={self.history_len}, "
            f"frame_shape={self.frame_shape}, len={len(self)}, nbytes={self.nbytes})"
        )
