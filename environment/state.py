"""Save and restore the complete state of a preprocessed Atari env, so that a resumed run continues bit for bit.

The state of an env made by :func:`environment.make_env` lives in three places: the emulator (the ALE's own
state, its random generator included), the generator of the raw env that draws the no-op counts, and the
wrappers (lives and the game-over flag of EpisodicLife, the step count of the time limit, the frame buffer of
max-and-skip, the frame stack, the raw-return counters). :func:`env_state` collects all of it as plain Python
values, bytes and numpy arrays; :func:`restore_env_state` puts it back into an env built with the same
arguments. A layer that has ``get_state()`` / ``set_state(state)`` methods (this project's stateful wrappers,
and any env of a test) provides its own; a layer this module does not know is an error, never skipped.
"""

from __future__ import annotations

import copy
from collections import deque

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation, TimeLimit
from gymnasium.wrappers.common import OrderEnforcing, PassiveEnvChecker

from .wrappers import ClipRewardEnv, FireResetEnv, NoopResetEnv, Uint8ArrayObservation, WarpFrame, as_numpy

_STATELESS = (NoopResetEnv, FireResetEnv, WarpFrame, ClipRewardEnv, Uint8ArrayObservation, PassiveEnvChecker)


def _chain(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _layer_state(layer: gym.Env) -> dict:
    if hasattr(layer, "get_state"):  # this project's stateful wrappers (and test envs) say it themselves
        return layer.get_state()
    if isinstance(layer, _STATELESS):
        return {}
    if isinstance(layer, FrameStackObservation):
        return {"frames": np.stack(list(layer.obs_queue)), "padding": np.array(layer.padding_value)}
    if isinstance(layer, TimeLimit):
        return {"elapsed_steps": int(layer._elapsed_steps or 0)}
    if isinstance(layer, OrderEnforcing):
        return {"has_reset": bool(layer._has_reset)}
    if isinstance(layer, ale_py.env.AtariEnv):
        return {
            "ale": layer.ale.cloneState(include_rng=True).serialize(),
            "np_random": copy.deepcopy(layer.np_random.bit_generator.state),
        }
    raise TypeError(f"cannot save the state of the env layer {type(layer).__name__}")


def _restore_layer(layer: gym.Env, state: dict) -> None:
    if hasattr(layer, "set_state"):
        layer.set_state(state)
    elif isinstance(layer, FrameStackObservation):
        layer.padding_value = as_numpy(state["padding"]).copy()
        layer.obs_queue = deque(list(as_numpy(state["frames"]).copy()), maxlen=layer.stack_size)
    elif isinstance(layer, TimeLimit):
        layer._elapsed_steps = state["elapsed_steps"]
    elif isinstance(layer, OrderEnforcing):
        layer._has_reset = state["has_reset"]
    elif isinstance(layer, ale_py.env.AtariEnv):
        layer.ale.restoreState(ale_py.ALEState(state["ale"]))
        layer.np_random.bit_generator.state = state["np_random"]


def env_state(env: gym.Env) -> list[dict]:
    """The state of every layer of ``env``, outermost first, each tagged with its class name."""
    return [{"layer": type(layer).__name__, "state": _layer_state(layer)} for layer in _chain(env)]


def restore_env_state(env: gym.Env, state: list[dict]) -> None:
    """Put a state from :func:`env_state` back into ``env`` (built by make_env with the same arguments)."""
    layers = _chain(env)
    names = [type(layer).__name__ for layer in layers]
    if names != [entry["layer"] for entry in state]:
        raise ValueError(f"the saved env has the layers {[e['layer'] for e in state]}, this one {names}")
    for layer, entry in zip(layers, state):
        _restore_layer(layer, entry["state"])
