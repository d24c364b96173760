"""Saving and loading network weights safely.

A checkpoint is a plain state dict (``torch.save(net.state_dict(), path)``) and is always read back with
``torch.load(path, weights_only=True)``, so a model file can hold tensors only and can never run code.
Besides the weights it holds the buffers ``model_id`` and ``time_steps`` (see :class:`QNetwork`), which let
``load_checkpoint`` refuse a checkpoint of another model or another number of actions with a clear message.
A checkpoint with a NaN or infinite weight (from a diverged run) is refused as well.

Since format 1 the file is a dict ``{"format": 1, "model": "Dsqn", "game": env id or None, "T": int or None,
"n_actions": int, "state_dict": {...}}`` of plain values and tensors (still weights-only loadable); the model name
in it wins over the ``model_id`` buffer. Files written before (a bare state dict) keep loading.
"""

from __future__ import annotations

import os
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
        if not isinstance(meta["format"], int) or meta["format"] > FORMAT:
            raise CheckpointError(f"{path} has checkpoint format {meta['format']!r}, newer than this code reads "
                                  f"({FORMAT}); update the code")
    if (not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS)
            or not all(isinstance(value, torch.Tensor) for value in state.values())):
        raise CheckpointError(f"{path} is not a network checkpoint saved by run.py (missing weights or model_id)")
    model_id = _integer(state, "model_id", path)
    if not 0 <= model_id < len(MODELS):
        raise CheckpointError(f"{path} has an unknown model_id {model_id}")
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights (NaN or infinity in {bad[0]}): it comes from a "
                              "diverged run and is refused")
    fc2 = state["fc2.weight"]
    model = meta.get("model", MODELS[model_id])
    if model not in MODELS:
        raise CheckpointError(f"{path} holds an unknown model {model!r}; models are {', '.join(MODELS)}")
    game = meta.get("game")
    info = CheckpointInfo(model=model, n_actions=int(fc2.shape[0]) if fc2.dim() == 2 else 0,
                          T=_integer(state, "time_steps", path), game=game if isinstance(game, str) else None,
                          format=int(meta.get("format", 0)))
    return state, info


def load_checkpoint(net: QNetwork, path: str) -> CheckpointInfo:
    """Load ``path`` into ``net`` after checking that it is a checkpoint of the same model and action count."""
    state, info = read_checkpoint(path)
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
    net.load_state_dict(state)
    return info
