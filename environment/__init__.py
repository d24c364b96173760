"""Atari environments with DeepMind / OpenAI-baselines preprocessing (gymnasium 1.x API)."""

from .atari import GAMES, UnknownEnvError, action_count, check_env_id, full_env_id, make_env
from .wrappers import warp_frame

__all__ = ["GAMES", "UnknownEnvError", "action_count", "check_env_id", "full_env_id", "make_env", "warp_frame"]
