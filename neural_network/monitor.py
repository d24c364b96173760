"""Watching the spikes of a Q-network from outside: the network itself only computes.

:class:`SpikeMonitor` hooks the neuron layers of a spiking :class:`~neural_network.QNetwork` (PyTorch forward
hooks) and keeps, for the latest forward pass, the spike count of every neuron summed over the T steps. The
firing rates, spikes per action and synaptic operations of a play report are computed from these maps
(``agent.evaluation`` and ``utils.energy``, for ``run.py --method play --use_spike_monitor``).
"""

from __future__ import annotations

import torch
from torch import nn


class SpikeMonitor:
    """Spike maps of the latest forward pass of ``net``, per neuron layer; use as a context manager or call
    :meth:`remove` to detach it."""

    def __init__(self, net: nn.Module):
        layers = net.neuron_layers()
        if not layers:
            raise ValueError(f"{net.model} has no spiking neurons to watch")
        self.maps: dict[str, torch.Tensor] = {}
        self.neurons: dict[str, int] = {}
        self._handles = [module.register_forward_hook(self._recorder(name)) for name, module in layers.items()]

    def _recorder(self, name: str):
        def record(module, inputs, spikes):  # spikes: [T, N, *neuron_shape]
            self.maps[name] = spikes.detach().sum(0)
            self.neurons[name] = spikes[0, 0].numel()

        return record

    def spike_counts(self) -> dict[str, torch.Tensor]:
        """Per layer, the spikes of each sample of the latest forward pass, summed over T and neurons ([N])."""
        return {name: spike_map.flatten(1).sum(1) for name, spike_map in self.maps.items()}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> SpikeMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
