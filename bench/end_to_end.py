"""Part ``end_to_end``: learning steps per second of the real training loop (agent.Trainer) on Breakout, and what a
50M-step run takes at that rate.

Each run builds what run.py's learn() builds (both envs from make_env, the networks, the Agent, the replay memory,
a Trainer writing TensorBoard events and its state into a temporary run folder), explores for replay_start_size
steps, then learns for ``steps`` steps at epsilon 0.1 (held: its value for 98 % of a paper run). The evaluation
at step 0 (one game cut at 5 steps) and the state saved at step 0 come before the timed window: the rate is taken
from the training env's step stamps of learning steps 1 .. steps-1 (steps-2 steps holding (steps-2)/4 updates).
The original DSQN code (bench/original.py) is timed the same way, interleaved with ours.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import gymnasium as gym
import torch

from agent.config import Config

from .parts import GAMES
from .timing import rate_stat, ratio_stat, stat

EPSILON = 0.1
PAPER_STEPS = Config.timestep_num  # run.py's default: the paper's budget


class StepClock(gym.Wrapper):
    """Records ``time.perf_counter()`` after every ``step``."""

    def __init__(self, env):
        super().__init__(env)
        self.stamps: list[float] = []

    def step(self, action):
        result = self.env.step(action)
        self.stamps.append(time.perf_counter())
        return result

    def get_state(self) -> dict:  # the Trainer saves the state of every layer of its envs: the clock has none
        return {}


@dataclass(frozen=True)
class Run:
    model: str
    T: int | None
    mode: str = "eager"  # or graphs (--cuda_graphs)
    bf16: bool = False

    @property
    def key(self) -> str:
        case = self.model if self.T is None else f"{self.model}_T{self.T}"
        return " ".join([case] + ([self.mode] if self.mode != "eager" else []) + (["bf16"] if self.bf16 else []))


class Stages:
    """--breakdown of a learning step: the time of each stage of Trainer.train_step (the env step, act, the replay
    sample, the update), each closed by a device sync so that a stage's GPU work is charged to it (the syncs make
    the sum a little longer than an unsynchronised step), over learning steps 1 .. steps-1."""

    NAMES = ("env", "act", "replay sample", "update")

    def __init__(self, device: str):
        self.cuda = device == "cuda"
        self.seconds = dict.fromkeys(self.NAMES, 0.0)
        self.on = False
        self.steps = 0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def wrap(self, name: str, function):
        def timed(*args, **kwargs):
            if not self.on:
                return function(*args, **kwargs)
            self._sync()
            start = time.perf_counter()
            out = function(*args, **kwargs)
            self._sync()
            self.seconds[name] += time.perf_counter() - start
            return out

        return timed

    def install(self, trainer) -> None:
        trainer.agent.act = self.wrap("act", trainer.agent.act)
        trainer.agent.update = self.wrap("update", trainer.agent.update)
        trainer.replay.sample = self.wrap("replay sample", trainer.replay.sample)
        trainer.train_env.step = self.wrap("env", trainer.train_env.step)
        train_step = trainer.train_step

        def step(t: int) -> None:
            self.on = t >= 1
            try:
                train_step(t)
            finally:
                self.steps += self.on
                self.on = False

        trainer.train_step = step

    def per_step_ms(self) -> dict[str, float]:
        return {name: 1e3 * value / max(self.steps, 1) for name, value in self.seconds.items()}


def learn_window(run: Run, steps: int, replay_start: int, capacity: int, device: str, seed: int = 0,
                 stages: Stages | None = None, before_learning=None) -> tuple[float, float]:
    """One short Trainer.learn(); the training env's clock at learning steps 1 and steps-1 (perf_counter: the
    system's monotonic clock, comparable between processes). ``stages``: also time the stages of each step;
    ``before_learning``: called once, after the exploration phase, before learning step 0."""
    from torch.utils.tensorboard import SummaryWriter

    from agent import Agent, Config, Trainer, random_streams
    from environment import make_env
    from neural_network import build_network
    from replay_memory import ReplayMemory

    config = Config(model=run.model, T=run.T or 64, device=device, seed=seed, timestep_num=steps, eval_freq=10**9,
                    eval_episode_num=1, replay_memory_size=capacity, replay_start_size=replay_start,
                    init_epsilon=EPSILON, final_epsilon=EPSILON, cuda_graphs=run.mode == "graphs", bf16=run.bf16,
                    final_eval="at_budget")  # exactly `steps` learning steps
    torch.manual_seed(seed)
    train_env = StepClock(make_env(GAMES["Breakout"], training=True, **config.env_kwargs(), seed=seed))
    eval_env = make_env(GAMES["Breakout"], training=False, **{**config.env_kwargs(), "max_episode_step": 5}, seed=seed)
    n = int(train_env.action_space.n)
    net, target = (build_network(run.model, n, **config.network_kwargs()) for _ in range(2))
    rngs = random_streams(seed)
    agent = Agent(config, net, torch.device(device), target_net=target, rngs=rngs)
    replay = ReplayMemory(capacity, config.history_len, seed=rngs["replay"], check_memory=False)
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as run_dir, open(os.devnull, "w") as devnull:
        writer = SummaryWriter(log_dir=os.path.join(run_dir, "tensorboard"))
        try:
            trainer = Trainer(config, agent, train_env, eval_env, replay, run_dir, writer)
            if stages is not None:
                stages.install(trainer)
            if before_learning is not None:
                train_step = trainer.train_step

                def first_step(t: int) -> None:
                    before_learning()
                    trainer.train_step = train_step
                    train_step(t)

                trainer.train_step = first_step
            with contextlib.redirect_stderr(devnull):  # tqdm still draws its bar, into /dev/null
                trainer.learn()
        finally:
            writer.close()
            train_env.close()
            eval_env.close()
    if agent.graphs is not None and agent.graphs.failed:
        raise RuntimeError(f"CUDA graph capture failed: {agent.graphs.failed}")
    stamps = train_env.stamps[replay_start:]
    assert len(stamps) == steps, (len(stamps), steps)
    return stamps[1], stamps[steps - 1]


def learn_run(run: Run, steps: int, replay_start: int, capacity: int, device: str, seed: int = 0) -> float:
    """One short Trainer.learn(); seconds per learning step."""
    first, last = learn_window(run, steps, replay_start, capacity, device, seed)
    return (last - first) / (steps - 2)


def breakdown(run: Run, steps: int, replay_start: int, capacity: int, device: str, seed: int = 0) -> dict:
    """A learning step taken apart (:class:`Stages`): ms per step of each stage, the rest, and the largest."""
    stages = Stages(device)
    first, last = learn_window(run, steps, replay_start, capacity, device, seed, stages)
    per_step = stages.per_step_ms()
    total = 1e3 * (last - first) / (steps - 2)
    return {"run": run.key, "ms_per_step": total, "stages_ms": per_step,
            "rest_ms": total - sum(per_step.values()), "largest": max(per_step, key=per_step.get)}


def bench_end_to_end(runs: list[Run], steps: dict[str, int], repeats: int, replay_start: int, capacity: int,
                     device: str, seed: int = 0, original=None, progress=print) -> dict:
    """Every run ``repeats`` times, interleaved (A, B, C, then the next round rotated); ``steps``: learning steps
    per run by model. ``original``: (name, a callable giving the original code's seconds per step), one more run."""
    variants = {run.key: (lambda run=run: learn_run(run, steps[run.model], replay_start, capacity, device, seed))
                for run in runs}
    if original is not None:
        variants[original[0]] = original[1]
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    errors = {}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name in errors:
                continue
            try:
                samples[name].append(variants[name]())
                progress(f"end_to_end {name} round {r + 1}/{repeats}: {1 / samples[name][-1]:.3g} steps/s")
            except Exception as error:  # noqa: BLE001 - reported; the other runs go on
                errors[name] = f"{type(error).__name__}: {error}"
                progress(f"end_to_end {name} FAILED: {errors[name]}")
    timed = {name: values for name, values in samples.items() if name not in errors}
    out = {"game": GAMES["Breakout"], "epsilon": EPSILON, "replay_start_size": replay_start,
           "replay_capacity": capacity,
           "learning_steps": steps, "errors": errors,
           "runs": {name: {"steps_per_s": rate_stat(v, "steps/s"), "ms_per_step": stat(v, "ms", 1e3),
                           "paper_run_days": PAPER_STEPS * statistics.median(v) / 86400}
                    for name, v in timed.items()},
           "ratios": []}
    base = {run.model: run.key for run in runs if run.mode == "eager" and not run.bf16}
    for name, values in timed.items():
        model = "Dsqn" if "Dsqn" in name else "Dqn"
        if base.get(model) in timed and name != base[model]:
            out["ratios"].append({"what": f"{name} / {base[model]} learning steps per second",
                                  "value": ratio_stat(timed[base[model]], values)})
    if "Dqn" in base and "Dsqn" in base and base["Dqn"] in timed and base["Dsqn"] in timed:
        out["ratios"].append({"what": f"{base['Dsqn']} / Dqn time per learning step",
                              "value": ratio_stat(timed[base["Dsqn"]], timed[base["Dqn"]])})
    return out
