"""Part ``end_to_end``: learning steps per second of a short real :meth:`agent.Agent.learn` run on Breakout.

Each run: a real training env (wrapped in a clock that stamps every ``step``), a small replay memory, a
``replay_start_size``-step exploration phase, then ``steps`` learning steps with epsilon held at 0.1 (the value
for 98 % of a 50M-step paper run; during the first 1M steps epsilon falls from 1.0 and most actions are random,
which costs nothing). Evaluation is effectively off (eval_freq 10^9; the one evaluation learn() runs at step 0 is
a single game cut at a few steps and is excluded from the timing). The learning rate is measured from the
stamps of learning steps 1 .. steps-1: exactly (steps-2) loop iterations with (steps-2)/4 updates.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import gymnasium as gym

from .networks import case_key
from .timing import inverse_stat, ratio_stat, stat

GAME = "BreakoutNoFrameskip-v4"
EPSILON = 0.1


class StepClock(gym.Wrapper):
    """Records ``time.perf_counter()`` after every ``step``."""

    def __init__(self, env):
        super().__init__(env)
        self.stamps: list[float] = []

    def step(self, action):
        result = self.env.step(action)
        self.stamps.append(time.perf_counter())
        return result


def learn_run(model: str, T: int | None, steps: int, replay_start_size: int, replay_capacity: int, device: str,
              seed: int = 0) -> float:
    """One short learn() run; returns seconds per learning step (loop iterations 1 .. steps-1)."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from agent import Agent, Config
    from environment import make_env
    from neural_network import build_network
    from replay_memory import ReplayMemory

    config = Config(model=model, T=T or 64, device=device, seed=seed, timestep_num=steps, eval_freq=10**9,
                    eval_episode_num=1, replay_memory_size=replay_capacity, replay_start_size=replay_start_size,
                    init_epsilon=EPSILON, final_epsilon=EPSILON)
    torch.manual_seed(seed)
    train_env = StepClock(make_env(GAME, training=True, seed=seed))
    eval_env = make_env(GAME, training=False, max_episode_step=5, seed=seed)
    replay = ReplayMemory(replay_capacity, seed=seed)
    net = build_network(model, int(train_env.action_space.n), **config.network_kwargs())
    target = build_network(model, int(train_env.action_space.n), **config.network_kwargs())
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as out_dir, open(os.devnull, "w") as devnull:
        writer = SummaryWriter(log_dir=os.path.join(out_dir, "tb"))
        agent = Agent(config, net, torch.device(device), writer=writer)
        try:
            # tqdm still formats its bar; only the terminal output goes to /dev/null
            with contextlib.redirect_stderr(devnull):
                agent.learn(train_env, eval_env, replay, target, os.path.join(out_dir, "model.pkl"))
        finally:
            writer.close()
            train_env.close()
            eval_env.close()
    stamps = train_env.stamps[replay_start_size:]
    assert len(stamps) == steps, (len(stamps), steps)
    return (stamps[steps - 1] - stamps[1]) / (steps - 2)


def run_key(model: str, T: int | None, threads: int, default_threads: int) -> str:
    key = case_key(model, T)
    return key if threads == default_threads else f"{key}@{threads}t"


def bench_end_to_end(cases: list[tuple[str, int | None, int]], repeats: int, replay_start_size: int,
                     replay_capacity: int, device: str, seed: int = 0, threads: list[int] | None = None,
                     progress=None) -> dict:
    """``cases``: (model, T, learning steps per run), each run at every thread count in ``threads`` (the first
    is torch's default); runs interleaved: A, B, C, D, then the next round in a rotated order."""
    import torch

    default = torch.get_num_threads()
    threads = threads or [default]
    variants = [(m, T, steps, n) for m, T, steps in cases for n in threads]
    samples: dict[str, list[float]] = {run_key(m, T, n, default): [] for m, T, _, n in variants}
    try:
        for r in range(repeats):
            shift = r % len(variants)
            for model, T, steps, n in variants[shift:] + variants[:shift]:
                torch.set_num_threads(n)
                key = run_key(model, T, n, default)
                samples[key].append(learn_run(model, T, steps, replay_start_size, replay_capacity, device, seed))
                if progress is not None:
                    progress(f"end_to_end {key} run {r + 1}/{repeats}: {1 / samples[key][-1]:.3g} steps/s")
    finally:
        torch.set_num_threads(default)
    out = {
        "game": GAME,
        "epsilon": EPSILON,
        "replay_start_size": replay_start_size,
        "replay_capacity": replay_capacity,
        "default_threads": default,
        "runs": {
            run_key(m, T, n, default): {
                "case": case_key(m, T), "threads": n, "learning_steps_per_run": steps,
                "updates_timed_per_run": (steps - 2) // 4,
                "steps_per_s": inverse_stat(samples[run_key(m, T, n, default)], "steps/s"),
                "ms_per_step": stat(samples[run_key(m, T, n, default)], "ms", 1e3)}
            for m, T, steps, n in variants
        },
        "ratios": [],
    }
    base = [case_key(m, T) for m, T, _ in cases]
    if len(base) >= 2:
        out["ratios"].append({"what": f"{base[1]} / {base[0]} seconds per learning step ({default} threads)",
                              "value": ratio_stat(samples[base[1]], samples[base[0]])})
    for m, T, _ in cases:
        for n in threads:
            if n != default:
                key = run_key(m, T, n, default)
                out["ratios"].append({"what": f"{case_key(m, T)}: {n} thread(s) / {default} threads seconds per "
                                              "learning step", "value": ratio_stat(samples[key],
                                                                                   samples[case_key(m, T)])})
    return out


def limits(case: str, network: dict, env_us: float, append_us: float, sample_us: float, update_freq: int = 4,
           epsilon: float = EPSILON) -> dict:
    """The update-bound limits of one case from the parts' medians (seconds per step, then steps per second).

    network-bound: the loop costs only acting and updating:
        t = (1 - epsilon) * act + update / update_freq
    sum of parts: the loop costs acting, updating, the env step, the replay append and the sampling:
        t = env + append + (1 - epsilon) * act + (sample + update) / update_freq
    """
    act_s = network["act_ms"]["median"] / 1e3
    update_s = network["update_ms"]["median"] / 1e3
    net_bound = (1 - epsilon) * act_s + update_s / update_freq
    parts = env_us / 1e6 + append_us / 1e6 + net_bound + sample_us / 1e6 / update_freq
    return {"case": case, "network_bound_steps_per_s": 1 / net_bound, "sum_of_parts_steps_per_s": 1 / parts,
            "inputs": {"act_ms": act_s * 1e3, "update_ms": update_s * 1e3, "env_us": env_us,
                       "append_us": append_us, "sample_us": sample_us, "epsilon": epsilon,
                       "update_freq": update_freq}}
