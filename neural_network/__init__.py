"""Q-networks (Dqn, Dsqn, DsqnSpike, DsqnIF), neuron backends and checkpoints.

The names below are imported from their modules on first use, so that ``neural_network.architecture`` (the models'
names and shapes) can be read without importing torch."""

import logging

from utils.lazy import lazy_exports

# Importing SpikingJelly makes torch log "Triton not available" on machines without Triton (every CPU machine);
# it is not a problem, so keep it off the programs' stderr.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

#: Every public name of the package and the module it lives in.
_HOMES = {
    "BACKENDS": "backend", "BackendError": "backend", "choose_backend": "backend", "probe_kernels": "backend",
    "resolve_backend": "backend", "resolve_device": "backend", "select_backend": "backend",
    "CheckpointError": "checkpoint", "CheckpointInfo": "checkpoint", "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "trained_game": "checkpoint",
    "SpikeMonitor": "monitor",
    "MODELS": "architecture",
    "SURROGATES": "networks", "QNetwork": "networks", "build_network": "networks", "compile_network": "networks",
    "is_spiking": "networks",
}
__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
