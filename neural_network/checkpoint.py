"""Saving and loading network weights safely.

A checkpoint (``best.pkl``) is a dict of plain values and tensors, format 1::

    {"format": 1, "model": "Dsqn", "game": "BreakoutNoFrameskip-v4", "T": 64, "n_actions": 4,
     "state_dict": {...}}

``model`` is the network's name (:data:`MODELS`), ``game`` the env id it was trained on (None when unknown), ``T``
the simulation steps it was trained with (None for Dqn), ``state_dict`` the network's weights with the buffers
``model_id`` and ``time_steps`` (see :class:`QNetwork`). It is always read back with
``torch.load(path, weights_only=True)``, so a model file can hold tensors and plain values only and can never run
code. ``play``, ``convert.py`` and ``export_nir.py`` take the model, the game and T from it when they are not
given, and refuse a model that contradicts it (a given game other than its own is played, with a note).

Files written before format 1 (format 0: a bare state dict, ``torch.save(net.state_dict(), path)``) keep loading:
their model and T come from the two buffers, their game from the ``config.json`` of the run folder that holds them
(:func:`trained_game`). A checkpoint of another model or another number of actions, a newer format, metadata that
contradicts its own weights, or a NaN or infinite weight (from a diverged run) is refused with one line.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from utils.files import atomic_write, read_model_file

from .networks import MODELS, QNetwork

REQUIRED_KEYS = ("conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight", "fc2.bias", "model_id")


class CheckpointError(ValueError):
    """A model file is missing, unreadable, or does not fit the network asked for."""


@dataclass(frozen=True)
class CheckpointInfo:
    model: str
    n_actions: int
    T: int
    game: str | None = None  #: the env id it was trained on; None in files written before format 1
    format: int = 0  #: 0 for a bare state dict, else FORMAT of the file


FORMAT = 1


def checkpoint_payload(net: QNetwork, game: str | None = None) -> dict:
    """The dict ``save_checkpoint`` writes: plain metadata beside the network's state dict."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return {"format": FORMAT, "model": net.model, "game": game, "n_actions": int(net.n_actions),
            "T": int(net.time_steps) if net.model != "Dqn" else None, "state_dict": state}


def save_checkpoint(net: QNetwork, path: str, game: str | None = None) -> None:
    """Write the network and its metadata to ``path`` atomically (a half-written file never replaces a good one)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = checkpoint_payload(net, game)
    atomic_write(path, lambda file: torch.save(payload, file))


def _integer(state: dict, key: str, path: str) -> int:
    value = state.get(key, torch.tensor(0))
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or value.is_floating_point():
        raise CheckpointError(f"{path} is not a network checkpoint saved by run.py ({key} is not an integer)")
    return int(value)


def read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Load a state dict with ``weights_only=True``, check it, and say which model it belongs to."""
    if not path:
        raise CheckpointError("no model file given; pass --model_path PATH to a .pkl saved by run.py")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder without best.pkl; give a checkpoint (.pkl) saved by run.py")
    state = read_model_file(path, "a readable weights-only checkpoint: it is damaged, not a torch file, or holds "
                            "objects other than tensors (refused for safety); give a .pkl saved by run.py",
                            CheckpointError)
    meta: dict = {}
    if isinstance(state, dict) and "state_dict" in state and "format" in state:
        meta, state = state, state["state_dict"]
        version = meta["format"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CheckpointError(f"{path} is not a network checkpoint saved by run.py (format {version!r})")
        if version > FORMAT:
            raise CheckpointError(f"{path} has checkpoint format {version}, newer than this code reads ({FORMAT}); "
                                  "update the code")
    if (not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS)
            or not all(isinstance(value, torch.Tensor) for value in state.values())):
        raise CheckpointError(f"{path} is not a network checkpoint saved by run.py (missing weights or model_id)")
    model_id = _integer(state, "model_id", path)
    if not meta and not 0 <= model_id < len(MODELS):
        raise CheckpointError(f"{path} has an unknown model_id {model_id}")
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights (NaN or infinity in {bad[0]}): it comes from a "
                              "diverged run and is refused")
    fc2 = state["fc2.weight"]
    n_actions, T = int(fc2.shape[0]) if fc2.dim() == 2 else 0, _integer(state, "time_steps", path)
    if not meta:  # format 0: the model by its position in MODELS, the game unknown
        return state, CheckpointInfo(model=MODELS[model_id], n_actions=n_actions, T=T)
    return state, _with_metadata(path, meta, n_actions, T)


def _with_metadata(path: str, meta: dict, n_actions: int, T: int) -> CheckpointInfo:
    """The info of a format-1 file: the model by name, the game and T from its metadata, which must agree with
    the action count and T of its weights."""
    model, game = meta.get("model"), meta.get("game")
    if model not in MODELS:
        raise CheckpointError(f"{path} holds an unknown model {model!r}; models are {', '.join(MODELS)}")
    if not (game is None or isinstance(game, str)):
        raise CheckpointError(f"{path} names its game {game!r}, not an env id; it was not saved by run.py")
    said_T = meta.get("T") if meta.get("T") is not None else 0
    for key, said, found in (("n_actions", meta.get("n_actions"), n_actions), ("T", said_T, T)):
        if said != found:
            raise CheckpointError(f"{path} is inconsistent: its metadata says {key} {said!r}, its weights {found!r}; "
                                  "it was not saved by run.py")
    return CheckpointInfo(model=model, n_actions=n_actions, T=T, game=game, format=meta["format"])


def trained_game(path: str, info: CheckpointInfo, run_config: dict, given: str | None, option: str) -> str | None:
    """The game to play the checkpoint ``path`` on: a ``given`` one, else the game it was trained on (its metadata,
    else, for a file written before format 1, the ``env_id`` of ``run_config``, the config.json of the run folder
    that holds it), else None. A given game other than the trained one is played as asked (a transfer test), with
    one note on stderr (``option``: the program's name for the game option)."""
    game, source = info.game, "its metadata"
    if game is None and isinstance(run_config.get("env_id"), str):
        game, source = run_config["env_id"], "its run's config.json"
    if given is not None and game is not None and given != game:
        print(f"note: {path} was trained on {game} ({source}); it plays {given} as {option} asks", file=sys.stderr)
    return given or game


def load_checkpoint(net: QNetwork, path: str,
                    checkpoint: tuple[dict[str, torch.Tensor], CheckpointInfo] | None = None) -> CheckpointInfo:
    """Load ``path`` into ``net`` after checking that it is a checkpoint of the same model and action count;
    ``checkpoint``: what :func:`read_checkpoint` already returned for ``path`` (the file is not read again)."""
    state, info = checkpoint or read_checkpoint(path)
    if info.model != net.model:
        raise CheckpointError(f"{path} holds a {info.model} network, not {net.model}; pass --model={info.model}")
    if info.n_actions != net.n_actions:
        raise CheckpointError(
            f"{path} has {info.n_actions} actions but this game has {net.n_actions}; was it trained on another game?"
        )
    expected = net.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{path} does not fit the {net.model} network: it has no tensor {key}")
        if key != "time_steps" and tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path} does not fit the {net.model} network: {key} has shape "
                                  f"{tuple(state[key].shape)}, the network needs {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{path} does not fit the {net.model} network: unexpected tensor {extra[0]}")
    state = dict(state)
    state["time_steps"] = net.time_steps.clone()  # T is chosen at run time; the checkpoint's T is informational
    state["model_id"] = net.model_id.clone()  # the same model (checked above by name); the buffer is only a label
    net.load_state_dict(state)
    return info
