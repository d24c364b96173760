"""A tiny synthetic image task for learning tests: the right action is drawn in the frame.

Each episode is one step. The observation is a 4x84x84 uint8 frame stack with a bright block on the left or
the right half; action 0 ("left") earns +1 when the block is on the left, action 1 when it is on the right, any
other answer 0. A network that reads the frame can reach a score of 1 per episode; a blind one averages 0.5.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class SideOfTheBlockEnv(gym.Env):
    metadata: dict = {}

    def __init__(self, n_actions: int = 2, seed: int = 0):
        self.action_space = gym.spaces.Discrete(n_actions)
        self.observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        self._rng = np.random.default_rng(seed)
        self._side = 0

    def _frame(self) -> np.ndarray:
        frame = np.zeros((4, 84, 84), np.uint8)
        columns = slice(4, 38) if self._side == 0 else slice(46, 80)
        frame[:, 20:64, columns] = 255
        return frame

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._side = int(self._rng.integers(2))
        return self._frame(), {}

    def step(self, action):
        reward = 1.0 if int(action) == self._side else 0.0
        return self._frame(), reward, True, False, {}
