"""DeepMind / OpenAI-baselines Atari preprocessing wrappers on gymnasium 1.x.

Each wrapper mirrors the baselines ``atari_wrappers`` class of the same name, rewritten for
gymnasium's API (``reset(seed=..., options=...) -> (obs, info)`` and
``step -> (obs, reward, terminated, truncated, info)``). "The game ends" below means
``terminated or truncated``.
"""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np

FRAME_SIZE = 84


def as_numpy(value) -> np.ndarray:
    """A saved array as numpy (a state loaded from a checkpoint holds torch tensors)."""
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def warp_frame(frame: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """RGB frame (H, W, 3) -> grayscale (size, size) uint8, as baselines' WarpFrame.

    ``cv2.cvtColor(RGB2GRAY)`` followed by ``cv2.resize(..., interpolation=INTER_AREA)``.
    """
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)


class NoopResetEnv(gym.Wrapper):
    """After each real reset take a uniformly random number 1..noop_max of no-op steps.

    The count is drawn from the ALE env's own ``np_random`` (seeded by ``reset(seed=...)``),
    never from global numpy. If the game ends during the no-ops it is reset again (unseeded)
    and the remaining no-ops continue, as in baselines.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, noop_action: int = 0):
        super().__init__(env)
        assert noop_max >= 1
        assert env.unwrapped.get_action_meanings()[noop_action] == "NOOP"
        self.noop_max = noop_max
        self.noop_action = noop_action

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1))
        for _ in range(noops):
            obs, _, terminated, truncated, info = self.env.step(self.noop_action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)  # never re-seed
        return obs, info


class MaxAndSkipEnv(gym.Wrapper):
    """Repeat the action ``skip`` times, summing rewards; observe the max of the last 2 frames.

    Exactly baselines' MaxAndSkipEnv: a persistent 2-frame buffer receives the frames of
    repeats ``skip - 2`` and ``skip - 1``, and the observation is their pixel-wise max. The
    loop stops early when the game ends; in that (terminal) step the buffer may still hold
    frames of the previous step, as in baselines. ``reset`` returns the inner env's
    observation unchanged.
    """

    def __init__(self, env: gym.Env, skip: int):
        super().__init__(env)
        assert skip >= 2
        self.skip = skip
        self._obs_buffer = np.zeros((2, *env.observation_space.shape), dtype=np.uint8)

    def step(self, action):
        total_reward = 0.0
        for i in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if i == self.skip - 2:
                self._obs_buffer[0] = obs
            if i == self.skip - 1:
                self._obs_buffer[1] = obs
            total_reward += float(reward)
            if terminated or truncated:
                break
        return self._obs_buffer.max(axis=0), total_reward, terminated, truncated, info

    def get_state(self) -> dict:
        return {"buffer": self._obs_buffer.copy()}

    def set_state(self, state: dict) -> None:
        self._obs_buffer[...] = as_numpy(state["buffer"])


class EpisodicLifeEnv(gym.Wrapper):
    """Training only: a life loss ends the episode for learning, not the game.

    A step where ``0 < ale.lives() < lives before`` returns ``terminated=True``. The next
    ``reset()`` then only takes one no-op step (action 0) instead of resetting the game,
    unless the game was really over (``was_real_done``: the inner env reported
    terminated or truncated, e.g. by the time limit). Deviation from baselines: if that
    no-op step itself ends the game, a real reset is done instead of returning a dead state;
    and ``reset(seed=...)`` is always a real reset.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.was_real_done = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.was_real_done = bool(terminated or truncated)
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed=None, options=None):
        if self.was_real_done or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def get_state(self) -> dict:
        return {"lives": int(self.lives), "was_real_done": bool(self.was_real_done)}

    def set_state(self, state: dict) -> None:
        self.lives, self.was_real_done = int(state["lives"]), bool(state["was_real_done"])


class GameReturn(gym.Wrapper):
    """Adds ``info["game_return"]``, the raw (unclipped) score of the whole game, to the step that ends it.

    It sits below EpisodicLife, so it sees every raw reward of the game (the FIRE and no-op steps of the
    resets included) and only the real end of the game (terminated or truncated), not a lost life.
    ``last_game_return`` keeps the score of the last game that ended (None before the first), also when that
    step's info never reaches the caller because a wrapper above ended the game inside its own reset (the no-op
    or FIRE steps of EpisodicLife / FireReset cut by the time limit). It is read right after a game ends and is
    not part of the saved state.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.game_return = 0.0
        self.last_game_return: float | None = None

    def reset(self, *, seed=None, options=None):
        self.game_return = 0.0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_return += float(reward)
        if terminated or truncated:
            info = {**info, "game_return": self.game_return}
            self.last_game_return, self.game_return = self.game_return, 0.0
        return obs, reward, terminated, truncated, info

    def get_state(self) -> dict:
        return {"game_return": self.game_return}

    def set_state(self, state: dict) -> None:
        self.game_return = float(state["game_return"])


class FireResetEnv(gym.Wrapper):
    """For games that need FIRE to start: after reset take action 1 (FIRE), then action 2.

    If either step ends the (learning) episode, reset again, as baselines' FireResetEnv.
    Rewards of these two steps are discarded.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        assert meanings[1] == "FIRE" and len(meanings) >= 3, meanings

    def reset(self, *, seed=None, options=None):
        self.env.reset(seed=seed, options=options)
        obs, info = None, {}
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


class WarpFrame(gym.ObservationWrapper):
    """RGB (H, W, 3) observation -> grayscale (84, 84) uint8 via :func:`warp_frame`."""

    def __init__(self, env: gym.Env, size: int = FRAME_SIZE):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), dtype=np.uint8)

    def observation(self, observation):
        return warp_frame(observation, self.size)


class ClipRewardEnv(gym.RewardWrapper):
    """Training only: reward -> sign(reward) in {-1.0, 0.0, 1.0}."""

    def reward(self, reward):
        return float(np.sign(reward))


class Uint8ArrayObservation(gym.ObservationWrapper):
    """Makes the stacked observation a plain contiguous ``np.uint8`` ndarray (history, 84, 84)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(0, 255, space.shape, dtype=np.uint8)

    def observation(self, observation):
        return np.ascontiguousarray(observation, dtype=np.uint8)
