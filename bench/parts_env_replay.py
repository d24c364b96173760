"""Parts ``env`` (wrapped training-env steps per second) and ``replay`` (bytes, append and sample costs)."""

from __future__ import annotations

import numpy as np

from .timing import interleave, inverse_stat, ratio_stat, stat

# -- env ------------------------------------------------------------------------------------------------------------


class RandomStepper:
    """Steps a wrapped training env with uniformly random actions, resetting when an episode ends."""

    def __init__(self, game: str, seed: int = 0):
        from environment import make_env

        self.env = make_env(game, training=True, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.n_actions = int(self.env.action_space.n)
        self.env.reset()

    def step(self) -> None:
        _, _, terminated, truncated, _ = self.env.step(int(self.rng.integers(self.n_actions)))
        if terminated or truncated:
            self.env.reset()

    def close(self) -> None:
        self.env.close()


def bench_env(games: list[str], steps: int, repeats: int, seed: int = 0) -> dict:
    """Agent steps per second of the training env of each game (random actions, resets included)."""
    steppers = {game: RandomStepper(game, seed) for game in games}
    try:
        samples = interleave({g: s.step for g, s in steppers.items()}, repeats, inner=steps, warmup=steps // 10 or 1)
    finally:
        for stepper in steppers.values():
            stepper.close()
    result = {
        "steps_per_sample": steps,
        "games": {
            g: {"steps_per_s": inverse_stat(samples[g], "steps/s"), "us_per_step": stat(samples[g], "us", 1e6)}
            for g in games
        },
    }
    if len(games) >= 2:
        a, b = games[0], games[1]
        result["ratio"] = {"what": f"{short(a)} / {short(b)} seconds per step",
                           "value": ratio_stat(samples[a], samples[b])}
    return result


def short(game: str) -> str:
    return game.replace("NoFrameskip-v4", "")


# -- replay ---------------------------------------------------------------------------------------------------------


class TransitionStream:
    """An endless, consistent stream of (frame_stack, action, reward, done, next_frame_stack) transitions.

    Episodes of ``episode_len`` transitions over random frames; the first stack of an episode repeats its first
    frame ([f0, f0, f0, f0], as FrameStack does after a reset), later stacks are zero-copy views of consecutive
    frames, exactly what the replay memory expects. Built up front so that building costs nothing while timing.
    """

    def __init__(self, history_len: int = 4, episode_len: int = 200, pool: int = 2048, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.frames = rng.integers(0, 256, size=(pool, 84, 84), dtype=np.uint8)
        self.history_len, self.episode_len, self.rng = history_len, episode_len, rng
        self.pool = pool
        self._buffer: list = []

    def _episode(self) -> list:
        h, L = self.history_len, self.episode_len
        o = int(self.rng.integers(0, self.pool - L - 1))
        g = self.frames[o: o + L + 1]

        def stack(k: int) -> np.ndarray:
            if k >= h - 1:
                return g[k - h + 1: k + 1]
            return np.stack([g[max(j, 0)] for j in range(k - h + 1, k + 1)])

        stacks = [stack(k) for k in range(L + 1)]
        return [(stacks[k], int(self.rng.integers(4)), float(k % 7 == 0), k == L - 1, stacks[k + 1]) for k in range(L)]

    def take(self, n: int) -> list:
        while len(self._buffer) < n:
            self._buffer.extend(self._episode())
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def bench_replay(capacity: int, appends: int, repeats: int, batch_size: int = 32, sample_inner: int = 20,
                 seed: int = 0) -> dict:
    """Bytes per transition (paper layout and this memory), append with and without the continuity check,
    and sample(batch_size) including the conversion to tensors, all on full memories (steady state)."""
    from replay_memory import ReplayMemory

    paper_capacity = 1_000_000
    paper_bytes = ReplayMemory.estimate_bytes(paper_capacity)
    memories = {
        "check_continuity": ReplayMemory(capacity, seed=seed, check_continuity=True),
        "no_check": ReplayMemory(capacity, seed=seed, check_continuity=False),
    }
    streams = {name: TransitionStream(seed=seed) for name in memories}
    # Steady state first (untimed): fill each memory once, so that the rings wrap, old transitions are dropped
    # and every page of the frame ring has been touched, as for 49 of the 50 million steps of a paper run.
    for name, memory in memories.items():
        for transition in streams[name].take(capacity + 10):
            memory.append(*transition)
    total = appends * (repeats + 1)
    batches = {name: iter(streams[name].take(total)) for name in memories}

    def appender(name):
        memory, batch = memories[name], batches[name]

        def run():
            memory.append(*next(batch))

        return run

    samples = interleave({name: appender(name) for name in memories}, repeats, inner=appends, warmup=appends)
    memory = memories["check_continuity"]
    sample_times = interleave({"sample": lambda: memory.sample(batch_size)}, repeats, inner=sample_inner, warmup=2)
    del memories
    return {
        "default_layout": {
            "capacity": paper_capacity,
            "bytes_per_transition": paper_bytes / paper_capacity,
            "total_gb": paper_bytes / 1e9,
            "whole_stack_bytes_per_transition": 2 * 4 * 84 * 84,
        },
        "measured_capacity": capacity,
        "measured_bytes_per_transition": memory.bytes_per_transition,
        "append_us": {
            "check_continuity": stat(samples["check_continuity"], "us", 1e6),
            "no_check": stat(samples["no_check"], "us", 1e6),
        },
        "append_ratio": {"what": "append with / without the continuity check",
                         "value": ratio_stat(samples["check_continuity"], samples["no_check"])},
        "sample_batch_size": batch_size,
        "sample_us": stat(sample_times["sample"], "us", 1e6),
    }
