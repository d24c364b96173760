"""Part ``evaluation``: the games of one evaluation played one after the other (one env, batch 1, as the original
code played them) against all at once (agent.evaluation on environment.vector.EvaluationEnvs: one batched forward
pass of the greedy games per step, the emulators stepped by worker processes on CUDA), the same games both ways
(the same seeds give the same games, so both play the same agent steps), and what a paper run takes with its
evaluations."""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from agent.config import Config

from .end_to_end import PAPER_STEPS
from .parts import GAMES
from .timing import ratio_stat, stat

PAPER_EVAL_FREQ = Config.eval_freq
PAPER_EVALUATIONS = PAPER_STEPS // PAPER_EVAL_FREQ + 1  # steps 0, 250,000, ..., and the final network at 50M
PAPER_GAMES = Config.eval_episode_num
PAPER_CAP = Config.max_episode_step


def bench_evaluation(model: str, T: int, games: int, max_steps: int, workers: int | None, repeats: int,
                     device: str, seed: int = 0, learning_rate: float | None = None, progress=print) -> dict:
    """``repeats`` rounds, each timing one evaluation of ``games`` games (cut at ``max_steps``) both ways.
    ``learning_rate``: learning steps/s of the default run (part end_to_end), for the paper run's duration."""
    from agent import Agent, Config
    from agent.evaluation import evaluate, evaluation_envs
    from environment import make_env
    from environment.vector import evaluation_env
    from neural_network import build_network

    config = Config(model=model, T=T, device=device, seed=seed, eval_episode_num=games, eval_workers=workers,
                    max_episode_step=max_steps)
    torch.manual_seed(seed)
    agent = Agent(config, build_network(model, 4, **config.network_kwargs()), torch.device(device))
    options = dict(env_id=GAMES["Breakout"], **config.env_kwargs(), seed=seed)
    single = make_env(training=False, **options)
    envs = evaluation_envs(functools.partial(evaluation_env, **options), config, device)
    seconds: dict[str, list[float]] = {"one after the other": [], "at once": []}
    steps = {}
    try:
        for r in range(repeats):
            for name, env in (("one after the other", single), ("at once", envs))[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                results = evaluate(agent, env, games, config.eval_epsilon, np.random.default_rng(seed + r))
                seconds[name].append(time.perf_counter() - start)
                steps.setdefault(r, []).append(sum(result.steps for result in results))
                progress(f"evaluation {name} round {r + 1}/{repeats}: {seconds[name][-1]:.2f} s")
    finally:
        single.close()
        envs.close()
    if any(len(set(s)) != 1 for s in steps.values()):
        raise RuntimeError(f"the two ways played different games: agent steps {steps}")
    game_steps = [s[0] for s in steps.values()]
    rates = {name: [n / t for n, t in zip(game_steps, values)] for name, values in seconds.items()}
    out = {"model": model, "T": T, "games": games, "max_episode_step": max_steps, "epsilon": config.eval_epsilon,
           "slots": envs.num_envs, "workers": envs.workers, "agent_steps_per_evaluation": game_steps,
           "evaluation_seconds": {name: stat(values, "s") for name, values in seconds.items()},
           "agent_steps_per_s": {name: stat(values, "agent steps/s") for name, values in rates.items()},
           "speedup": ratio_stat(seconds["one after the other"], seconds["at once"])}
    # The paper's evaluations at their worst: every game lasts the 18,000-step cap (30 games at once stay 30 at once
    # all the while), so one evaluation is 540,000 agent steps at the measured rate.
    worst = PAPER_GAMES * PAPER_CAP
    out["paper"] = {"evaluations": PAPER_EVALUATIONS, "agent_steps_per_evaluation_at_most": worst,
                    "evaluation_hours_at_most": {name: PAPER_EVALUATIONS * worst / float(np.median(values)) / 3600
                                                 for name, values in rates.items()}}
    if learning_rate:
        training = PAPER_STEPS / learning_rate / 3600
        out["paper"]["learning_rate"] = learning_rate
        out["paper"]["training_hours"] = training
        out["paper"]["run_hours_at_most"] = {name: training + hours for name, hours in
                                             out["paper"]["evaluation_hours_at_most"].items()}
    return out
