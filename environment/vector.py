"""Several evaluation envs stepped together, so that the games of an evaluation are played at once.

:class:`EvaluationEnvs` holds ``num_envs`` envs made by one factory (e.g. ``functools.partial(make_env, env_id,
training=False, ...)``), each called with its slot index. A slot plays the game it is given: ``reset`` starts a
game in a slot from that game's own seed (``reset(seed=...)`` re-seeds the ALE and the generator of the no-op
starts, so a game's course depends on its seed and its actions only, never on what the slot played before), and
``step`` advances a set of slots by one agent step each. Nothing else is shared between the slots, so each game is
played exactly as it would be alone on an env reset with its seed (tests/test_batched_evaluation.py).

``workers`` > 0 steps the envs in that many worker processes (each owns every ``workers``-th slot), so that the
emulators of different games run on different CPU cores; the factory must then be picklable (a module-level
function or a ``functools.partial`` of one). Workers start with the ``spawn`` method: the parent may hold CUDA and
OpenMP threads, which a forked child must not inherit. ``workers`` = 0 steps them one after the other in this
process.

Unlike gymnasium's vector envs there is no automatic reset: a slot whose game ended stays idle until it is given
a new game, which is what an evaluation of whole games needs.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np

StepResult = tuple[np.ndarray, float, bool, bool]  # observation, reward, terminated, truncated


def evaluation_env(slot: int, env_id: str, **options) -> gym.Env:
    """``make_env(env_id, training=False, **options)`` for one slot: a factory for :class:`EvaluationEnvs` as
    ``functools.partial(evaluation_env, env_id=..., ...)`` (module-level, so it reaches worker processes)."""
    from .atari import make_env

    return make_env(env_id, training=False, **options)


class _Group:
    """The envs of some slots, stepped one after the other (in this process or in a worker)."""

    def __init__(self, make: Callable[[int], gym.Env], slots: Sequence[int]):
        self.envs = {slot: make(slot) for slot in slots}

    def reset(self, slots: Sequence[int], seeds: Sequence[int]) -> list[np.ndarray]:
        return [self.envs[slot].reset(seed=int(seed))[0] for slot, seed in zip(slots, seeds)]

    def step(self, slots: Sequence[int], actions: Sequence[int]) -> list[StepResult]:
        out = []
        for slot, action in zip(slots, actions):
            obs, reward, terminated, truncated, _ = self.envs[slot].step(int(action))
            out.append((obs, float(reward), bool(terminated), bool(truncated)))
        return out

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def _worker(connection, make, slots) -> None:
    # Ctrl-C and SIGTERM are the parent's to handle (it saves its state and stops at a safe point, then closes the
    # envs); a worker ends when told to or when the parent's end of the pipe is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    group = None
    try:
        group = _Group(make, slots)
        connection.send(("ok", group.envs[slots[0]].action_space))
        while True:
            command, args = connection.recv()
            if command == "close":
                break
            connection.send(("ok", getattr(group, command)(*args)))
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception as error:  # noqa: BLE001 - sent to the parent, which raises it
        connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        if group is not None:
            group.close()
        connection.close()


class EvaluationEnvs:
    """``num_envs`` evaluation envs from ``make(slot)``; see the module docstring."""

    def __init__(self, make: Callable[[int], gym.Env], num_envs: int, workers: int = 0):
        if num_envs < 1:
            raise ValueError(f"need at least one env, got {num_envs}")
        self.num_envs = num_envs
        self.workers = min(max(int(workers), 0), num_envs)
        self._local: _Group | None = None
        self._pipes: list = []
        self._processes: list = []
        if self.workers == 0:
            self._local = _Group(make, range(num_envs))
            self.action_space = self._local.envs[0].action_space
            return
        context = mp.get_context("spawn")
        for w in range(self.workers):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, make, list(range(w, num_envs, self.workers))),
                                      daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)
        spaces = [self._receive(pipe) for pipe in self._pipes]
        self.action_space = spaces[0]

    def _owner(self, slot: int) -> int:
        return slot % self.workers

    @staticmethod
    def _receive(pipe):
        status, value = pipe.recv()
        if status != "ok":
            raise RuntimeError(f"an evaluation env worker failed: {value}")
        return value

    def _call(self, command: str, slots: Sequence[int], values: Sequence) -> list:
        if self._local is not None:
            return getattr(self._local, command)(slots, values)
        by_worker: dict[int, tuple[list[int], list]] = {}
        for slot, value in zip(slots, values):
            mine = by_worker.setdefault(self._owner(slot), ([], []))
            mine[0].append(slot)
            mine[1].append(value)
        for w, (mine, vals) in by_worker.items():  # all workers step at once ...
            self._pipes[w].send((command, (mine, vals)))
        answers = {w: self._receive(self._pipes[w]) for w in by_worker}  # ... then the answers are gathered
        out, position = [None] * len(slots), {}
        for w, (mine, _) in by_worker.items():
            for slot, answer in zip(mine, answers[w]):
                position[slot] = answer
        for k, slot in enumerate(slots):
            out[k] = position[slot]
        return out

    def reset(self, slots: Sequence[int], seeds: Sequence[int]) -> list[np.ndarray]:
        """Start a game in each of ``slots`` from the matching seed; their first frame stacks."""
        return self._call("reset", list(slots), list(seeds))

    def step(self, slots: Sequence[int], actions: Sequence[int]) -> list[StepResult]:
        """One agent step in each of ``slots``: (frame stack, reward, terminated, truncated) per slot."""
        return self._call("step", list(slots), list(actions))

    def get_state(self) -> dict:
        """Nothing carries over from one game to the next (each starts from its seed): an empty state."""
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        for pipe, process in zip(self._pipes, self._processes):
            try:
                pipe.send(("close", ()))
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
            pipe.close()
        self._pipes, self._processes = [], []

    def __enter__(self) -> EvaluationEnvs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
