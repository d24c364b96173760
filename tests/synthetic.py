"""Tiny synthetic image tasks for learning tests: the right action can be read from the frame.

SideOfTheBlockEnv: each episode is one step. The observation is a 4x84x84 uint8 frame stack with a bright block
on the left or the right half; action 0 ("left") earns +1 when the block is on the left, action 1 when it is on
the right, any other answer 0. A network that reads the frame can reach a score of 1 per episode; a blind one
averages 0.5.

RememberTheSideEnv: the same choice, but its reward comes one step later. After the choice the agent sees a
"lit" frame (right choice) or a dark one (wrong choice); there any action ends the episode, with +1 in the lit
room and 0 in the dark one. The choice itself earns nothing, so its value can only be learned through the
bootstrap term gamma * max_a' Q(s', a') of the target. Its observations are a rolling stack of 4 frames, as the
Atari frame stack: the room's frame is appended to the three newest frames of the first state.

Both keep their whole state in a numpy generator and a few numbers, and expose it (``get_state`` /
``set_state``) the way the training loop saves and restores envs.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def block_frame(side: int) -> np.ndarray:
    frame = np.zeros((4, 84, 84), np.uint8)
    columns = slice(4, 38) if side == 0 else slice(46, 80)
    frame[:, 20:64, columns] = 255
    return frame


class SideOfTheBlockEnv(gym.Env):
    metadata: dict = {}

    def __init__(self, n_actions: int = 2, seed: int = 0):
        self.action_space = gym.spaces.Discrete(n_actions)
        self.observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        self._rng = np.random.default_rng(seed)
        self._side = 0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._side = int(self._rng.integers(2))
        return block_frame(self._side), {}

    def step(self, action):
        reward = 1.0 if int(action) == self._side else 0.0
        return block_frame(self._side), reward, True, False, {"game_return": reward}

    def get_state(self) -> dict:
        return {"rng": self._rng.bit_generator.state, "side": self._side}

    def set_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._side = int(state["side"])


class RememberTheSideEnv(SideOfTheBlockEnv):
    LIT, DARK = 200, 0

    def __init__(self, n_actions: int = 2, seed: int = 0):
        super().__init__(n_actions, seed)
        self._room = None  # None: the choice is still to be made; True / False: lit / dark room

    def reset(self, *, seed=None, options=None):
        self._room = None
        return super().reset(seed=seed, options=options)

    def _room_stack(self) -> np.ndarray:
        stack = block_frame(self._side)
        stack[:-1] = stack[1:].copy()
        stack[-1] = self.LIT if self._room else self.DARK
        return stack

    def step(self, action):
        if self._room is None:
            self._room = int(action) == self._side
            return self._room_stack(), 0.0, False, False, {}
        reward = 1.0 if self._room else 0.0
        return self._room_stack(), reward, True, False, {"game_return": reward}

    def get_state(self) -> dict:
        return {**super().get_state(), "room": -1 if self._room is None else int(self._room)}

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._room = None if state["room"] == -1 else bool(state["room"])
