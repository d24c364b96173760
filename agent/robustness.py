"""Generalisation and robustness of a trained agent: its play under perturbations, and sweeps over their levels.

Five perturbations (docs/ROBUSTNESS.md), each an option of ``run.py --method play`` and a ``--robustness`` sweep:

* ``sticky_actions`` p: the ALE's repeat_action_probability. At every emulator frame (4 per agent step) the ALE
  keeps the action it applied at the previous frame with probability p instead of taking the agent's (Machado
  et al. 2018 use 0.25; the paper, and the default, 0).
* ``game_mode`` M and ``game_difficulty`` D: another of the game's ALE modes or difficulty switches (its
  ``getAvailableModes()`` / ``getAvailableDifficulties()``), the same ROM, actions and preprocessing.
* ``obs_noise`` sigma: every preprocessed 84x84 frame becomes ``clip(rint(x + sigma * z), 0, 255)`` as uint8,
  z ~ N(0, 1) per pixel, drawn when the frame arrives; the frame stack holds the noisy frames (a noisy sensor).
* ``fgsm`` epsilon: before every action, the frame stack x the network is given becomes
  ``x' = clip(x - epsilon * sign(grad_x Q(x, a*)), 0, 255)`` with a* = argmax_a Q(x, a): one signed-gradient step
  that lowers the value of the greedy action (FGSM, Goodfellow et al. 2015, as an attack on the policy's input,
  Huang et al. 2017). The gradient is the network's own: through its surrogate gradient for the spiking models.

Units are pixel levels of the uint8 frames (0..255). Perturbed frames stay uint8: the noise is rounded to the
nearest level, and the FGSM budget is a whole number of levels, so ``x'`` is exact; every acting path of the agent
(its CUDA-graph path copies frames into static uint8 buffers) sees them unchanged. The noise draws come from their
own generator, derived from --seed (:func:`perturbation_rng`), never from the agent's explore / replay / evaluate
streams, so that a perturbation changes no other draw.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from dataclasses import replace

import numpy as np

from utils.cli import UserError

from .config import MAX_PIXEL, PERTURBATIONS

#: The play option each perturbation sets.
OPTIONS = {"sticky_actions": "sticky_actions", "obs_noise": "obs_noise", "fgsm": "fgsm_epsilon",
           "game_mode": "game_mode", "game_difficulty": "game_difficulty"}
#: --levels when it is not given (game_mode / game_difficulty: all the game's modes / difficulties).
DEFAULT_LEVELS = {"sticky_actions": (0.0, 0.25, 0.5, 0.75), "obs_noise": (0.0, 4.0, 8.0, 16.0, 32.0),
                  "fgsm": (0.0, 1.0, 2.0, 4.0, 8.0)}
WHOLE_LEVELS = ("fgsm", "game_mode", "game_difficulty")
#: Spawn key of the perturbation generator: far from the agent's streams (children 0, 1, 2 of the same seed).
PERTURBATION_STREAM = 0x726F62
ROBUSTNESS_CSV = "robustness.csv"
CSV_COLUMNS = ["perturbation", "level", "episodes", "average_score", "score_sem", "score_std", "max_score",
               "average_max_q", "summary"]


# -- option values ----------------------------------------------------------------------------------------------------


def format_level(perturbation: str, level: float) -> str:
    return str(int(level)) if perturbation in WHOLE_LEVELS else f"{level:g}"


def perturbation_settings(config) -> dict:
    """The five perturbation options of a configuration (what a play summary records)."""
    return {name: getattr(config, name) for name in OPTIONS.values()}


def check_options(config, given: dict) -> None:
    """--method robustness: its perturbation and levels, refused before anything is written (which options each
    method takes: agent.config.check_methods; the game's modes and difficulties are checked once the game is known,
    :func:`check_game_settings`)."""
    if config.method != "robustness":
        return
    if config.robustness is None:
        raise UserError(f"--method robustness needs --robustness: one of {', '.join(PERTURBATIONS)}")
    swept = OPTIONS[config.robustness]
    if swept in given:
        raise UserError(f"--robustness {config.robustness} sweeps --{swept}: give its values with --levels, not "
                        f"--{swept}")
    if config.levels is not None:
        check_levels(config.robustness, config.levels)


def check_levels(perturbation: str, levels) -> None:
    if not levels:
        raise UserError("--levels: give at least one level")
    seen = set()
    for level in levels:
        shown = f"--levels {level:g}"
        if level in seen:
            raise UserError(f"{shown} is given twice")
        seen.add(level)
        if perturbation == "sticky_actions" and level > 1:
            raise UserError(f"{shown}: a sticky-action probability lies in [0, 1]")
        if perturbation in WHOLE_LEVELS and level != int(level):
            raise UserError(f"{shown}: {perturbation} levels are whole numbers")
        if perturbation == "fgsm" and level > MAX_PIXEL:
            raise UserError(f"{shown}: an FGSM budget is at most {MAX_PIXEL} pixel levels")


def game_settings(env_id: str) -> tuple[list[int], list[int]]:
    """The ALE's available modes and difficulties of a game."""
    import gymnasium as gym

    import environment.atari  # noqa: F401 - registers the ALE's games with gymnasium

    env = gym.make(env_id)
    try:
        ale = env.unwrapped.ale
        return [int(m) for m in ale.getAvailableModes()], [int(d) for d in ale.getAvailableDifficulties()]
    finally:
        env.close()


_PLURAL = {"game_mode": "modes", "game_difficulty": "difficulties"}


def check_game_settings(env_id: str, mode: int | None, difficulty: int | None) -> None:
    """A one-line error (UserError) listing the valid values when the game has no such mode or difficulty."""
    if mode is None and difficulty is None:
        return
    modes, difficulties = game_settings(env_id)
    for name, value, valid in (("game_mode", mode, modes), ("game_difficulty", difficulty, difficulties)):
        if value is not None and value not in valid:
            raise UserError(f"--{name} {value} is not available in {env_id}; its {_PLURAL[name]} are "
                            + ", ".join(map(str, valid)))


def level_value(perturbation: str, level: float) -> int | float:
    """A level as its option's type: a whole number for fgsm, game_mode and game_difficulty."""
    return int(level) if perturbation in WHOLE_LEVELS else float(level)


def sweep_levels(config) -> list[int | float]:
    """The levels of a --method robustness run, in the order given: --levels, or the default ones (for
    game_mode / game_difficulty: all of the game's), checked against the game."""
    perturbation = config.robustness
    levels = list(config.levels) if config.levels is not None else None
    if perturbation in ("game_mode", "game_difficulty"):
        modes, difficulties = game_settings(config.env_id)
        valid = modes if perturbation == "game_mode" else difficulties
        wrong = [level for level in levels or () if level not in valid]
        if wrong:
            raise UserError(f"--levels {wrong[0]:g}: not one of the {_PLURAL[perturbation]} of {config.env_id}: "
                            + ", ".join(map(str, valid)))
        levels = valid if levels is None else levels
    elif levels is None:
        levels = DEFAULT_LEVELS[perturbation]
    return [level_value(perturbation, level) for level in levels]


def level_config(config, level: float):
    """The configuration of one level of a sweep: the swept option set to ``level``."""
    return replace(config, **{OPTIONS[config.robustness]: level_value(config.robustness, level)})


# -- the perturbations ------------------------------------------------------------------------------------------------


def perturbation_rng(seed: int, slot: int = 0) -> np.random.Generator:
    """The generator of the perturbations' draws: from ``seed``, independent of the agent's streams
    (:func:`agent.random_streams`), so that drawing noise never shifts an exploration, replay or evaluation draw;
    one per env slot of games played at once (slot 0: the one of a single env)."""
    key = (PERTURBATION_STREAM,) if slot == 0 else (PERTURBATION_STREAM, slot)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class GaussianNoise:
    """``frame -> clip(rint(frame + sigma * z), 0, 255)`` as uint8, z ~ N(0, 1) per pixel drawn from ``rng``;
    sigma 0 returns the frame itself and draws nothing."""

    def __init__(self, sigma: float, rng: np.random.Generator):
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
        self.sigma, self.rng = float(sigma), rng

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.sigma == 0:
            return frame
        noisy = frame + self.sigma * self.rng.standard_normal(frame.shape, dtype=np.float32)
        return np.clip(np.rint(noisy), 0, MAX_PIXEL).astype(np.uint8)


def fgsm(net, frame_stack: np.ndarray, epsilon: int, device=None, autocast=contextlib.nullcontext) -> np.ndarray:
    """``x' = clip(x - epsilon * sign(grad_x Q(x, a*)), 0, 255)`` (uint8), a* = argmax_a Q(x, a): the signed gradient
    step of budget ``epsilon`` pixel levels that lowers the greedy action's value. The gradient goes through
    ``net`` itself (a spiking network: through its surrogate gradient); only the input's gradient is computed,
    the parameters' ``.grad`` are left alone. epsilon 0 returns the frame stack itself."""
    import torch

    if epsilon == 0:
        return frame_stack
    x = torch.as_tensor(np.asarray(frame_stack), device=device).unsqueeze(0).float().requires_grad_(True)
    with torch.enable_grad(), autocast():
        q = net(x)[0].float()
    greedy = int(q.argmax())
    (grad,) = torch.autograd.grad(q[greedy], x)
    stepped = (x.detach() - float(epsilon) * grad.sign()).clamp_(0, MAX_PIXEL)  # integers: exact in float32
    return stepped[0].to(torch.uint8).cpu().numpy()


class FgsmAttack:
    """The FGSM perturbation of an agent's frame stacks (``run_episode``'s ``perturb``): on the agent's own
    network, device and --bf16 autocast."""

    def __init__(self, agent, epsilon: int):
        self.agent, self.epsilon = agent, int(epsilon)

    def __call__(self, frame_stack: np.ndarray) -> np.ndarray:
        return fgsm(self.agent.net, frame_stack, self.epsilon, self.agent.device, self.agent.autocast)


def env_options(config, slot: int = 0) -> dict:
    """make_env's perturbation arguments for a configuration (the noise with its own generator from --seed, one
    per env slot)."""
    noise = GaussianNoise(config.obs_noise, perturbation_rng(config.seed, slot)) if config.obs_noise > 0 else None
    return dict(sticky_actions=config.sticky_actions, game_mode=config.game_mode,
                game_difficulty=config.game_difficulty, frame_transform=noise)


def play_env(config, video_dir: str | None = None, slot: int = 0):
    """The evaluation env of a play run, with the configuration's perturbations of the env and its frames."""
    from environment import make_env

    return make_env(config.env_id, training=False, **config.env_kwargs(), seed=config.seed, video_dir=video_dir,
                    **env_options(config, slot))


def _play_slot(config, slot: int):
    return play_env(config, slot=slot)


def play_envs(config, device, video_dir: str | None = None):
    """The envs of a play run: with videos one env (each game's video in turn), else the games played at once
    (agent.evaluation.evaluation_envs; the same scores). The noise of --obs_noise is drawn per env slot."""
    import functools

    from .evaluation import evaluation_envs

    if video_dir is not None:
        return play_env(config, video_dir)
    return evaluation_envs(functools.partial(_play_slot, config), config, device)


def observation_attack(config, agent):
    """The perturbation run_episode applies to the frame stacks (FGSM), or None."""
    return FgsmAttack(agent, config.fgsm_epsilon) if config.fgsm_epsilon > 0 else None


# -- a sweep ----------------------------------------------------------------------------------------------------------


def score_sem(scores) -> float:
    """Standard error of the mean score: sample std (n - 1) / sqrt(n); nan for fewer than two episodes."""
    scores = np.asarray(scores, dtype=np.float64)
    return float(scores.std(ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else math.nan


def _write_csv(path: str, rows: list[dict]) -> None:
    from utils.files import atomic_write

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(row[k], float) and not math.isfinite(row[k]) else row[k]
                         for k in CSV_COLUMNS})
    atomic_write(path, lambda file: file.write(text.getvalue().encode("utf-8")))


def run_sweep(config, net, device, run_dir: str, logger, levels: list[float], model_path: str,
              progress: bool = True) -> list[dict]:
    """Play ``config.eval_episode_num`` games at every level of ``config.robustness``; after each level write its
    play summary to ``levels/<perturbation>_<level>.json`` and rewrite ``robustness.csv`` (one row per level so
    far). Every level starts from the same seeds (env, evaluation stream, noise): common random numbers."""
    from neural_network import SpikeMonitor
    from utils.files import write_json

    from .agent import Agent, random_streams
    from .evaluation import play_games, summarize_play

    monitor = SpikeMonitor(net) if config.use_spike_monitor and net.spiking else None
    os.makedirs(os.path.join(run_dir, "levels"), exist_ok=True)
    rows = []
    for level in levels:
        level = level_value(config.robustness, level)
        shown = format_level(config.robustness, level)
        cfg = level_config(config, level)
        agent = Agent(cfg, net, device, rngs=random_streams(cfg.seed))
        env = play_envs(cfg, device, os.path.join(run_dir, "videos", shown) if cfg.use_video_recorder else None)
        try:
            results = play_games(agent, env, cfg, monitor, observation_attack(cfg, agent),
                                 desc=f"{config.robustness} {shown}", progress=progress)
        finally:
            env.close()
        summary = summarize_play(results)
        summary.update(model=cfg.model, env_id=cfg.env_id, model_path=model_path, T=cfg.T,
                       perturbation=config.robustness, level=level, settings=perturbation_settings(cfg),
                       score_sem=score_sem(summary["scores"]))
        relative = os.path.join("levels", f"{config.robustness}_{shown}.json")
        write_json(os.path.join(run_dir, relative), summary)
        rows.append({"perturbation": config.robustness, "level": level, "episodes": summary["episodes"],
                     "average_score": summary["average_score"], "score_sem": summary["score_sem"],
                     "score_std": summary["score_std"], "max_score": summary["max_score"],
                     "average_max_q": summary["average_max_q"], "summary": relative})
        _write_csv(os.path.join(run_dir, ROBUSTNESS_CSV), rows)
        line = (f"{config.robustness} {shown}: average_score {summary['average_score']:.6g} +- "
                f"{summary['score_sem']:.3g} (s.e., {summary['episodes']} games)")
        logger.info(line)
        print(line, flush=True)
    if monitor is not None:
        monitor.remove()
    return rows
