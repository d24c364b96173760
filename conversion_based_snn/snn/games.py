"""Full games on the episodic-life env, as the converted network's original code played them.

Both the normalisation data and the evaluation come from the episodic-life env with raw (unclipped) rewards:
a lost life ends the env's episode (``terminated=True``) and the next ``reset()`` continues the same game, with
FIRE pressed by the env (FireReset) and the frame stack started again. :func:`step_game` hides that: it plays
one agent step of a whole game and, after a lost life, resets the env itself, so the agent never has to press
FIRE. A game ends at the real game over or when the time limit cuts it.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from environment import make_env


class GameStep(Enum):
    """How an agent step of a full game ended."""

    PLAYING = "playing"  # the same life goes on
    LIFE_LOST = "life lost"  # a life was lost, the game goes on from a fresh frame stack
    GAME_OVER = "game over"  # the real end of the game
    TIME_LIMIT = "time limit"  # the game was cut by the time limit


def make_game_env(game: str, seed: int | None, max_episode_step: int):
    """The episodic-life env with raw rewards and FIRE pressed after every reset (in games that have FIRE)."""
    return make_env(game, training=False, episodic_life=True, seed=seed, max_episode_step=max_episode_step)


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


def step_game(env, action: int) -> tuple[np.ndarray, float, GameStep]:
    """One agent step of a full game: (the next frame stack, the raw reward, how the step ended).

    After a lost life the env is reset here (EpisodicLife's no-op step, then FIRE), and the frame stack returned
    is the first one of the next life. Those reset steps count towards the time limit; if the limit cuts the
    game during them, the env has already begun a new game (its frame counter went back), and the step is
    reported as TIME_LIMIT."""
    obs, reward, terminated, truncated, info = env.step(action)
    if truncated:
        return obs, reward, GameStep.TIME_LIMIT
    if not terminated:
        return obs, reward, GameStep.PLAYING
    if game_over(env, terminated, truncated, info):
        return obs, reward, GameStep.GAME_OVER
    frame = info.get("episode_frame_number")
    obs, info = env.reset()
    if frame is not None and info.get("episode_frame_number", frame) < frame:
        return obs, reward, GameStep.TIME_LIMIT
    return obs, reward, GameStep.LIFE_LOST
