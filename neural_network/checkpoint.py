"""Saving and loading network weights safely.

A checkpoint is a plain state dict (``torch.save(net.state_dict(), path)``) and is always read back with
``torch.load(path, weights_only=True)``, so a model file can hold tensors only and can never run code.
Besides the weights it holds the buffers ``model_id`` and ``time_steps`` (see :class:`QNetwork`), which let
``load_checkpoint`` refuse a checkpoint of another model or another number of actions with a clear message.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass

import torch

from .networks import MODELS, QNetwork

REQUIRED_KEYS = ("conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight", "fc2.bias")


class CheckpointError(ValueError):
    """A model file is missing, unreadable, or does not fit the network asked for."""


@dataclass(frozen=True)
class CheckpointInfo:
    model: str
    n_actions: int
    T: int


def save_checkpoint(net: QNetwork, path: str) -> None:
    """Write the network's state dict to ``path`` atomically (a half-written file never replaces a good one)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Load a state dict with ``weights_only=True`` and say which model it belongs to."""
    if not path:
        raise CheckpointError("no model file given; pass --model_path PATH to a .pkl saved by run.py")
    if not os.path.isfile(path):
        raise CheckpointError(f"model file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing a file
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError):
        raise CheckpointError(
            f"{path} is not a readable weights-only checkpoint: it is damaged, not a torch file, or holds "
            "objects other than tensors (refused for safety); give a .pkl saved by run.py"
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS + ("model_id",)):
        raise CheckpointError(f"{path} is not a network checkpoint saved by run.py (missing weights or model_id)")
    model_id = int(state["model_id"])
    if not 0 <= model_id < len(MODELS):
        raise CheckpointError(f"{path} has an unknown model_id {model_id}")
    info = CheckpointInfo(
        model=MODELS[model_id], n_actions=int(state["fc2.weight"].shape[0]), T=int(state.get("time_steps", 0))
    )
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
    state = dict(state)
    state["time_steps"] = net.time_steps.clone()  # T is chosen at run time; the checkpoint's T is informational
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit the {net.model} network: {str(error).splitlines()[0]}") from None
    return info
