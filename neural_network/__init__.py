"""Q-networks (Dqn, Dsqn, DsqnSpike, DsqnIF), neuron backends and checkpoints."""

from .backend import BACKENDS, BackendError, resolve_backend, select_backend
from .checkpoint import CheckpointError, CheckpointInfo, load_checkpoint, read_checkpoint, save_checkpoint
from .networks import MODELS, SURROGATES, QNetwork, build_network, is_spiking

__all__ = [
    "BACKENDS",
    "MODELS",
    "SURROGATES",
    "BackendError",
    "CheckpointError",
    "CheckpointInfo",
    "QNetwork",
    "build_network",
    "is_spiking",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_backend",
    "save_checkpoint",
    "select_backend",
]
