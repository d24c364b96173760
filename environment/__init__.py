"""Atari environments with DeepMind / OpenAI-baselines preprocessing (gymnasium 1.x API).

The names below are imported from their modules on first use, so that ``environment.games`` (the paper's games)
can be read without importing the emulator."""

from utils.lazy import lazy_exports

#: Every public name of the package and the module it lives in.
_HOMES = {
    "GAMES": "games", "UnknownEnvError": "atari", "action_count": "atari", "check_env_id": "atari",
    "full_env_id": "atari", "make_env": "atari", "warp_frame": "wrappers",
}
__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
