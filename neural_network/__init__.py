"""Q-networks (Dqn, Dsqn, DsqnSpike, DsqnIF), neuron backends and checkpoints."""

import logging

# Importing SpikingJelly makes torch log "Triton not available" on machines without Triton (every CPU machine);
# it is not a problem, so keep it off the programs' stderr.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from .backend import (
    BACKENDS,
    BackendError,
    choose_backend,
    probe_kernels,
    resolve_backend,
    resolve_device,
    select_backend,
)
from .checkpoint import CheckpointError, CheckpointInfo, load_checkpoint, read_checkpoint, save_checkpoint
from .monitor import SpikeMonitor
from .networks import MODELS, SURROGATES, QNetwork, build_network, compile_network, is_spiking

__all__ = [
    "BACKENDS",
    "MODELS",
    "SURROGATES",
    "BackendError",
    "CheckpointError",
    "CheckpointInfo",
    "QNetwork",
    "SpikeMonitor",
    "build_network",
    "choose_backend",
    "compile_network",
    "is_spiking",
    "load_checkpoint",
    "probe_kernels",
    "read_checkpoint",
    "resolve_backend",
    "resolve_device",
    "save_checkpoint",
    "select_backend",
]
