"""The converted spiking network and its simulation (PAPER_NOTES §6).

A :class:`SpikingNetwork` holds copies of the five weight layers of a Dqn (conv1, conv2, conv3, fc1, fc2) with
normalised weights (see :mod:`.normalise`); every one of the five layers feeds a layer of spiking neurons, the
output layer included. The analog input ``x / 255`` (x = the uint8 frame stack) is presented unchanged at each of
the T steps and every layer's bias is added at every step.

Neurons (one membrane voltage V per neuron, V = 0 before the first step, threshold 1)::

    SubtractiveResetIFNodes:  V <- V + I_t;                 s_t = [V >= 1];  V <- V - s_t
    LIFNodes (tau):           V <- V * exp(-1/tau) + I_t;   s_t = [V >= 1];  V <- V - s_t

i.e. integrate-and-fire with reset by subtraction (the residual above threshold is kept), no refractory period,
no lower bound on V; the LIF option only adds a multiplicative leak towards 0 before the input is added.

Two simulations that give the same spikes, bit for bit:

* :meth:`SpikingNetwork.simulate` runs the network LAYER BY LAYER over the whole time window: the input current
  of the first layer is constant and computed once; the currents of a later layer for all T steps are one
  batched conv/linear call over the [T * B, ...] spike trains of the layer below; then the neuron recurrence runs
  over T with cheap element-wise in-place operations, before the next layer is touched.
* :meth:`SpikingNetwork.simulate_stepwise` is the naive reference: for t = 1..T, for each layer, compute its
  current from the spikes of the layer below at step t, then update its neurons.

Both use the same neuron update function and the same layer calls; the only difference is the batch size of the
conv/linear calls ([T * B] against [B]). A kernel may sum in another order for another batch size (on this CPU
fc1's float32 currents differ in the last bit), so with arbitrary float32 weights the voltages may differ by
rounding and a spike could flip only when a voltage lands within rounding of the threshold. The tests therefore
check bit-identical spike trains and voltages with weights on a dyadic grid (every spike-fed current is then an
exact float32 sum), and identical spike trains with voltages equal to 1e-10 in float64 on the raw weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

NODE_TYPES = ("SubtractiveResetIFNodes", "LIFNodes")
LAYER_NAMES = ("conv1", "conv2", "conv3", "fc1", "fc2")
THRESHOLD = 1.0


@dataclass
class SimulationResult:
    """What one simulation of T steps gives, per layer name (conv1 ... fc2), for a batch of B inputs."""

    T: int
    spike_counts: dict[str, torch.Tensor]  # [B, *neuron_shape], spikes of each neuron summed over T
    final_voltages: dict[str, torch.Tensor]  # [B, *neuron_shape], V after the last step (after its reset)
    spike_trains: dict[str, torch.Tensor] | None = None  # [T, B, *neuron_shape] bool, when recorded

    @property
    def output_counts(self) -> torch.Tensor:
        """[B, n_actions] output spike counts: the 'spike' decoder."""
        return self.spike_counts["fc2"]

    @property
    def q_mix(self) -> torch.Tensor:
        """[B, n_actions] Q_hat = output spike count over T + output voltage at the last step."""
        return self.spike_counts["fc2"] + self.final_voltages["fc2"]

    def layer_spike_totals(self) -> dict[str, torch.Tensor]:
        """Per layer, the total number of spikes of each sample, shape [B]."""
        return {name: counts.flatten(1).sum(1) for name, counts in self.spike_counts.items()}


def neuron_step(v: torch.Tensor, current: torch.Tensor, decay: float | None) -> torch.Tensor:
    """One step of a neuron layer, in place on ``v``; returns the spikes (bool). Shared by both simulations."""
    if decay is not None:
        v.mul_(decay)
    v.add_(current)
    spikes = v >= THRESHOLD
    v.sub_(spikes.to(v.dtype))
    return spikes


class SpikingNetwork(nn.Module):
    """The converted network: five weight layers, each followed by a layer of IF (or LIF) neurons."""

    def __init__(
        self,
        conv1: nn.Conv2d,
        conv2: nn.Conv2d,
        conv3: nn.Conv2d,
        fc1: nn.Linear,
        fc2: nn.Linear,
        node_type: str = "SubtractiveResetIFNodes",
        tau: float = 2.0,
        lambdas: dict[str, float] | None = None,
    ):
        super().__init__()
        if node_type not in NODE_TYPES:
            raise ValueError(f"unknown node type {node_type!r}; choose one of {', '.join(NODE_TYPES)}")
        if node_type == "LIFNodes" and not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.conv1, self.conv2, self.conv3, self.fc1, self.fc2 = conv1, conv2, conv3, fc1, fc2
        self.node_type = node_type
        self.tau = float(tau)
        self.lambdas = dict(lambdas) if lambdas is not None else None

    @classmethod
    def from_ann(
        cls, ann: nn.Module, lambdas: dict[str, float] | None = None, node_type: str = "SubtractiveResetIFNodes",
        tau: float = 2.0,
    ) -> "SpikingNetwork":
        """Copy the weight layers of a Dqn ``ann`` and, if ``lambdas`` are given, normalise them:
        W_l <- W_l * lambda_{l-1} / lambda_l and b_l <- b_l / lambda_l with lambda_0 = 1 (computed in float64,
        rounded once to the layer's dtype). The ANN itself is not changed."""
        layers = [copy.deepcopy(getattr(ann, name)) for name in LAYER_NAMES]
        if lambdas is not None:
            previous = 1.0
            with torch.no_grad():
                for name, layer in zip(LAYER_NAMES, layers):
                    scale = float(lambdas[name])
                    layer.weight.copy_(layer.weight.double() * (previous / scale))
                    if layer.bias is not None:
                        layer.bias.copy_(layer.bias.double() / scale)
                    previous = scale
        for layer in layers:
            layer.requires_grad_(False)
        return cls(*layers, node_type=node_type, tau=tau, lambdas=lambdas)

    # -- structure ------------------------------------------------------------------------------------------------

    @property
    def weight_layers(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.conv3, self.fc1, self.fc2]

    @property
    def decay(self) -> float | None:
        """The leak factor applied to V before each step's input: None for IF, exp(-1/tau) for LIF."""
        return math.exp(-1.0 / self.tau) if self.node_type == "LIFNodes" else None

    def _current(self, index: int, inputs: torch.Tensor) -> torch.Tensor:
        """The input current of neuron layer ``index`` for a batch of inputs (spikes or the analog frames)."""
        layer = self.weight_layers[index]
        if isinstance(layer, nn.Linear) and inputs.dim() > 2:
            inputs = inputs.flatten(1)
        return layer(inputs)

    def neuron_shapes(self, input_shape: tuple[int, ...] = (4, 84, 84)) -> dict[str, tuple[int, ...]]:
        """Per layer, the shape of its neuron array for one input of ``input_shape``."""
        shapes = {}
        with torch.no_grad():
            x = torch.zeros(1, *input_shape, dtype=self.conv1.weight.dtype, device=self.conv1.weight.device)
            for index, name in enumerate(LAYER_NAMES):
                x = self._current(index, x)
                shapes[name] = tuple(x.shape[1:])
        return shapes

    def neuron_counts(self, input_shape: tuple[int, ...] = (4, 84, 84)) -> dict[str, int]:
        return {name: math.prod(shape) for name, shape in self.neuron_shapes(input_shape).items()}

    def _analog_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.conv1.weight.device, dtype=self.conv1.weight.dtype) / 255.0

    # -- simulation -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def simulate(self, x: torch.Tensor, T: int, record_trains: bool = False) -> SimulationResult:
        """Layer-by-layer simulation of T steps for a batch of raw frame stacks ``x`` (0..255, [B, 4, 84, 84])."""
        if T < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        decay = self.decay
        batch = x.shape[0]
        counts, voltages, trains = {}, {}, {}
        spikes_below = None  # [T, B, ...] float spike trains of the layer below
        for index, name in enumerate(LAYER_NAMES):
            if index == 0:
                constant = self._current(0, self._analog_input(x))
                current = constant.unsqueeze(0).expand(T, *constant.shape)
            else:
                current = self._current(index, spikes_below.flatten(0, 1))
                current = current.reshape(T, batch, *current.shape[1:])
            v = torch.zeros_like(current[0])
            out = torch.empty_like(current)  # float spikes: the next layer's input
            for t in range(T):
                out[t] = neuron_step(v, current[t], decay)
            counts[name] = out.sum(0)
            voltages[name] = v
            if record_trains:
                trains[name] = out.bool()
            spikes_below = out
        return SimulationResult(T, counts, voltages, trains if record_trains else None)

    @torch.no_grad()
    def simulate_stepwise(self, x: torch.Tensor, T: int, record_trains: bool = False) -> SimulationResult:
        """Reference simulation: for each step t, for each layer, its current then its neuron update."""
        if T < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        decay = self.decay
        analog = self._analog_input(x)
        voltages: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        trains: dict[str, list[torch.Tensor]] = {name: [] for name in LAYER_NAMES}
        for _ in range(T):
            inputs = analog
            for index, name in enumerate(LAYER_NAMES):
                current = self._current(index, inputs)
                if name not in voltages:
                    voltages[name] = torch.zeros_like(current)
                    counts[name] = torch.zeros_like(current)
                spikes = neuron_step(voltages[name], current, decay)
                counts[name] += spikes
                if record_trains:
                    trains[name].append(spikes)
                inputs = spikes.to(current.dtype)
        stacked = {name: torch.stack(seq) for name, seq in trains.items()} if record_trains else None
        return SimulationResult(T, counts, voltages, stacked)
