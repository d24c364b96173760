"""Atari environments with DeepMind / OpenAI-baselines preprocessing (gymnasium 1.x API).

The names below are imported from their modules on first use, so that ``environment.games`` (the paper's games)
can be read without importing the emulator."""

import importlib

#: Every public name of the package and the module it lives in.
_HOMES = {
    "GAMES": "games", "UnknownEnvError": "atari", "action_count": "atari", "check_env_id": "atari",
    "full_env_id": "atari", "make_env": "atari", "warp_frame": "wrappers",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_HOMES})
