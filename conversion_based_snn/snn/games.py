"""Full games on the episodic-life env, as the converted network's original code played them.

Both the normalisation data and the evaluation come from the episodic-life env with raw (unclipped) rewards:
a lost life ends the env's episode (``terminated=True``) and the next ``reset()`` continues the same game, with
FIRE pressed by the env (FireReset) and the frame stack started again. :func:`step_game` hides that: it plays
one agent step of a whole game and, after a lost life, resets the env itself, so the agent never has to press
FIRE. A game ends at the real game over or when the time limit cuts it.

A game's score is the env's whole raw return, :func:`game_score`: the rewards of the agent's steps and of the
env's own reset steps in that game (the two FIRE-reset steps at its start and, after each lost life, EpisodicLife's
no-op and the two FIRE-reset steps), as the original's score (its Monitor's episode return) was. The no-ops of
the real reset (NoopReset) come before the game's return starts, in both.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import numpy as np

from environment import make_env


class GameStep(Enum):
    """How an agent step of a full game ended."""

    PLAYING = "playing"  # the same life goes on
    LIFE_LOST = "life lost"  # a life was lost, the game goes on from a fresh frame stack
    GAME_OVER = "game over"  # the real end of the game
    TIME_LIMIT = "time limit"  # the game was cut by the time limit


class GameStepResult(NamedTuple):
    """What :func:`step_game` returns."""

    obs: np.ndarray  # the frame stack the agent acts on next (after a lost life: the first of the next life)
    reward: float  # the raw reward of the agent step (the env's reset steps that may follow it: see game_score)
    end: GameStep  # how the step ended
    lives: int  # the game's lives (ale.lives()) after the agent step; 0 in games without lives


def make_game_env(game: str, seed: int | None, **settings):
    """The episodic-life env with raw rewards and FIRE pressed after every reset (in games that have FIRE);
    ``settings``: make_env's max_episode_step, history_len and action_repeat."""
    return make_env(game, training=False, episodic_life=True, seed=seed, **settings)


def game_over(env, terminated: bool, truncated: bool, info: dict) -> bool:
    """True when a step of the episodic-life env ended the real game, not just a life (or hit the time limit)."""
    if truncated:
        return True
    if not terminated:
        return False
    try:
        return bool(env.get_wrapper_attr("was_real_done"))
    except AttributeError:
        return int(info.get("lives", 0)) == 0


def game_score(env) -> float:
    """The whole raw return of the game that has just ended (GameReturn's record, the env's reset steps included);
    read it right after :func:`step_game` reported GAME_OVER or TIME_LIMIT."""
    score = env.get_wrapper_attr("last_game_return")
    if score is None:
        raise RuntimeError("no game of this env has ended yet")
    return float(score)


def step_game(env, action: int) -> GameStepResult:
    """One agent step of a full game: (the next frame stack, the raw reward, how the step ended, the lives left).

    After a lost life the env is reset here (EpisodicLife's no-op step, then FIRE), and the frame stack returned
    is the first one of the next life. Those reset steps count towards the time limit; if the limit cuts the
    game during them, the env has already begun a new game (its frame counter went back), and the step is
    reported as TIME_LIMIT."""
    obs, reward, terminated, truncated, info = env.step(action)
    lives = int(info.get("lives", 0))
    if truncated:
        return GameStepResult(obs, float(reward), GameStep.TIME_LIMIT, lives)
    if not terminated:
        return GameStepResult(obs, float(reward), GameStep.PLAYING, lives)
    if game_over(env, terminated, truncated, info):
        return GameStepResult(obs, float(reward), GameStep.GAME_OVER, lives)
    frame = info.get("episode_frame_number")
    obs, info = env.reset()
    if frame is not None and info.get("episode_frame_number", frame) < frame:
        return GameStepResult(obs, float(reward), GameStep.TIME_LIMIT, lives)
    return GameStepResult(obs, float(reward), GameStep.LIFE_LOST, lives)
