"""The converted spiking network and its simulation.

A :class:`SpikingNetwork` holds copies of the five weight layers of a Dqn (conv1, conv2, conv3, fc1, fc2) with
normalised weights (see :mod:`.normalise`); every one of the five layers feeds a layer of spiking neurons, the
output layer included. The analog input ``x / 255`` (x = the uint8 frame stack) is presented unchanged at each of
the T steps (t = 0 .. T-1) and every layer's bias is added at every step.

Neurons (one membrane voltage V per neuron, V = 0 before the first step, threshold 1, no refractory period)::

    SubtractiveResetIFNodes:  V <- V + I_t;                 s_t = [V >= 1];  V <- V - s_t   (reset by subtraction)
    LIFNodes (tau):           V <- V * exp(-1/tau) + I_t;   s_t = [V >= 1];  V <- 0 where s_t  (hard reset)

IF keeps the residual above threshold; neither has a lower bound on V.

Schedules: which spikes a layer's input current at step t is computed from. The input layer "emits" the analog
frame at every step, so conv1's source is the frame and conv2's is conv1's spikes, and so on.

* ``"delayed"`` (the default, the original code's BindsNET timing): one step of delay per connection. Layer l's
  current at step t is W_l s_{l-1}(t-1) + b_l, where s_{l-1}(-1) = 0: at t = 0 conv1 sees only its bias and
  the frame reaches it from t = 1, so the output layer (fc2) gets image-driven input from t = 5 on.
* ``"same_step"``: no delay, layer l's current at step t is W_l s_{l-1}(t) + b_l (conv1 sees the frame at t = 0).

Two simulations that give the same spikes, bit for bit, under either schedule:

* :meth:`SpikingNetwork.simulate` runs the network LAYER BY LAYER over the whole time window: conv1 applied to the
  frame is computed once; the currents of a later layer for all T steps are one batched conv/linear call over the
  [T * B, ...] spike trains of the layer below (shifted by one step for the delayed schedule); then the neuron
  recurrence runs over T with cheap element-wise in-place operations, before the next layer is touched.
* :meth:`SpikingNetwork.simulate_stepwise` is the naive reference: for t = 0..T-1, for each layer, compute its
  current from its source's output (at step t-1 or t), then update its neurons.

Both use the same neuron update function and the same layer calls; the only difference is the batch size of the
conv/linear calls ([T * B] against [B]). A kernel may sum in another order for another batch size (on this CPU
fc1's float32 currents differ in the last bit), so with arbitrary float32 weights the voltages may differ by
rounding and a spike could flip only when a voltage lands within rounding of the threshold. The tests therefore
check bit-identical spike trains and voltages with weights on a dyadic grid (every spike-fed current is then an
exact float32 sum), and identical spike trains with voltages equal to 1e-10 in float64 on the raw weights.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from neural_network.architecture import LAYER_NAMES, OUTPUT_LAYER, NatureDqnLayers

NODE_TYPES = ("SubtractiveResetIFNodes", "LIFNodes")
SCHEDULES = ("delayed", "same_step")
THRESHOLD = 1.0


@dataclass
class SimulationResult:
    """What one simulation of T steps gives, per layer name (conv1 ... fc2), for a batch of B inputs."""

    T: int
    spike_counts: dict[str, torch.Tensor]  # [B, *neuron_shape], spikes of each neuron summed over T
    final_voltages: dict[str, torch.Tensor]  # [B, *neuron_shape], V after the last step (after its reset)
    output_spike_train: torch.Tensor  # [T, B, n_actions] bool, the output layer's spikes at every step
    output_voltage_trace: torch.Tensor  # [T, B, n_actions], the output layer's V after every step
    spike_trains: dict[str, torch.Tensor] | None = None  # [T, B, *neuron_shape] bool, when recorded

    @property
    def output_counts(self) -> torch.Tensor:
        """[B, n_actions] output spike counts: the 'spike' decoder."""
        return self.spike_counts[OUTPUT_LAYER]

    @property
    def q_mix(self) -> torch.Tensor:
        """[B, n_actions] Q_hat = output spike count over T + output voltage at the last step."""
        return self.spike_counts[OUTPUT_LAYER] + self.final_voltages[OUTPUT_LAYER]

    def q_mix_at(self, steps: int) -> torch.Tensor:
        """[B, n_actions] the mix decoder read after the first ``steps`` steps: the output spike count over those
        steps + the output voltage after the last of them. The simulation is causal, so this is what a
        simulation of ``steps`` steps decodes (``q_mix_at(T) == q_mix``)."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must lie in [1, {self.T}], got {steps}")
        voltage = self.output_voltage_trace[steps - 1]
        return self.output_spike_train[:steps].to(voltage.dtype).sum(0) + voltage

    def layer_spike_totals(self) -> dict[str, torch.Tensor]:
        """Per layer, the total number of spikes of each sample, shape [B]."""
        return {name: counts.flatten(1).sum(1) for name, counts in self.spike_counts.items()}


def neuron_step(v: torch.Tensor, current: torch.Tensor, decay: float | None = None,
                hard_reset: bool = False) -> torch.Tensor:
    """One step of a neuron layer, in place on ``v``; returns the spikes (bool). Shared by both simulations.

    decay: None (no leak) or the factor V is multiplied by before the input is added; hard_reset: a spiking
    neuron's V is set to 0 (else 1 is subtracted from it)."""
    if decay is not None:
        v.mul_(decay)
    v.add_(current)
    spikes = v >= THRESHOLD
    if hard_reset:
        v.masked_fill_(spikes, 0.0)
    else:
        v.sub_(spikes.to(v.dtype))
    return spikes


def check_T(T: int) -> None:
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")


class SpikingNetwork(NatureDqnLayers, nn.Module):
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
        schedule: str = "delayed",
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
        self.schedule = schedule
        self.delay_steps(None)  # refuses an unknown schedule

    @classmethod
    def from_ann(
        cls, ann: nn.Module, lambdas: dict[str, float] | None = None, node_type: str = "SubtractiveResetIFNodes",
        tau: float = 2.0, schedule: str = "delayed",
    ) -> SpikingNetwork:
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
        return cls(*layers, node_type=node_type, tau=tau, lambdas=lambdas, schedule=schedule)

    # -- saving ---------------------------------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the converted network (normalised weights, neuron type, tau, schedule, lambdas) atomically as plain
        tensors and values, readable with ``torch.load(path, weights_only=True)``."""
        from utils.files import atomic_write

        record = {"state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                  "node_type": self.node_type, "tau": self.tau, "schedule": self.schedule,
                  "lambdas": dict(self.lambdas) if self.lambdas else None}
        atomic_write(path, lambda file: torch.save(record, file))

    @classmethod
    def load(cls, path: str) -> SpikingNetwork:
        """A network written by :meth:`save` (read with weights_only=True: the file can never run code)."""
        from utils.files import load_weights_only

        record = load_weights_only(path)
        weights = record["state_dict"]
        from neural_network.networks import nature_dqn_layers

        n_actions = weights[f"{OUTPUT_LAYER}.weight"].shape[0]
        history_len = weights[f"{LAYER_NAMES[0]}.weight"].shape[1]  # conv1's input channels
        layers = nature_dqn_layers(n_actions, history_len).values()
        snn = cls(*layers, node_type=record["node_type"], tau=record["tau"], lambdas=record["lambdas"],
                  schedule=record["schedule"])
        snn.load_state_dict(weights)
        return snn.requires_grad_(False)

    # -- structure ------------------------------------------------------------------------------------------------

    @property
    def decay(self) -> float | None:
        """The leak factor applied to V before each step's input: None for IF, exp(-1/tau) for LIF."""
        return math.exp(-1.0 / self.tau) if self.node_type == "LIFNodes" else None

    @property
    def hard_reset(self) -> bool:
        """LIF neurons reset to 0 after a spike; IF neurons subtract the threshold."""
        return self.node_type == "LIFNodes"

    def delay_steps(self, schedule: str | None = None) -> int:
        """Steps of delay per connection of ``schedule`` (None: this network's own schedule)."""
        schedule = self.schedule if schedule is None else schedule
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        return 1 if schedule == "delayed" else 0

    def _current(self, index: int, inputs: torch.Tensor) -> torch.Tensor:
        """The input current of neuron layer ``index`` for a batch of inputs (spikes or the analog frames)."""
        layer = self.weight_layers[index]
        if isinstance(layer, nn.Linear) and inputs.dim() > 2:
            inputs = inputs.flatten(1)
        return layer(inputs)

    def neuron_shapes(self, input_shape: tuple[int, ...] | None = None) -> dict[str, tuple[int, ...]]:
        """Per layer, the shape of its neuron array for one input of ``input_shape`` (default: the frame stack)."""
        input_shape = self.input_shape if input_shape is None else input_shape
        shapes = {}
        with torch.no_grad():
            x = torch.zeros(1, *input_shape, dtype=self.conv1.weight.dtype, device=self.conv1.weight.device)
            for index, name in enumerate(LAYER_NAMES):
                x = self._current(index, x)
                shapes[name] = tuple(x.shape[1:])
        return shapes

    def neuron_counts(self, input_shape: tuple[int, ...] | None = None) -> dict[str, int]:
        return {name: math.prod(shape) for name, shape in self.neuron_shapes(input_shape).items()}

    def _analog_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(device=self.conv1.weight.device, dtype=self.conv1.weight.dtype) / 255.0

    # -- simulation -----------------------------------------------------------------------------------------------

    def _run_neurons(self, currents: Iterable[torch.Tensor], T: int, like: torch.Tensor, trace: bool = False):
        """Run one neuron layer over the T currents (each shaped like ``like``, [B, ...]). Returns its spikes as a
        float [T + 1, B, ...] tensor whose row 0 is all zeros (nothing before the first step) and row t + 1 holds
        the spikes of step t, its final V and, if ``trace``, its V after every step ([T, B, ...])."""
        decay, hard_reset = self.decay, self.hard_reset
        v = torch.zeros_like(like)
        spikes = like.new_empty(T + 1, *like.shape)
        spikes[0].zero_()
        voltages = like.new_empty(T, *like.shape) if trace else None
        for t, current in enumerate(currents):
            spikes[t + 1] = neuron_step(v, current, decay, hard_reset)
            if voltages is not None:
                voltages[t] = v
        return spikes, v, voltages

    @torch.no_grad()
    def simulate(self, x: torch.Tensor, T: int, record_trains: bool = False,
                 schedule: str | None = None) -> SimulationResult:
        """Layer-by-layer simulation of T steps for a batch of raw frame stacks ``x`` (0..255, [B, 4, 84, 84]);
        ``schedule`` overrides the network's own for this call."""
        check_T(T)
        delay = self.delay_steps(schedule)
        analog = self._analog_input(x)
        driven = self._current(0, analog)  # conv1 on the frame: computed once, the frame is the same at every step
        before = self._current(0, torch.zeros_like(analog))  # conv1's bias alone, while the frame is on its way
        currents = itertools.chain(itertools.repeat(before, delay), itertools.repeat(driven, T - delay))
        like = driven
        counts, voltages, trains = {}, {}, {}
        for index, name in enumerate(LAYER_NAMES):
            is_output = index == len(LAYER_NAMES) - 1
            spikes, voltages[name], trace = self._run_neurons(currents, T, like, trace=is_output)
            counts[name] = spikes[1:].sum(0)
            if record_trains:
                trains[name] = spikes[1:].bool()
            if not is_output:
                # the next layer's step t reads this layer's row of step t - delay (row 0: before the first step)
                source = spikes[1 - delay : T + 1 - delay]
                currents = self._current(index + 1, source.flatten(0, 1)).unflatten(0, (T, x.shape[0]))
                like = currents[0]
        output_train = spikes[1:].bool()
        return SimulationResult(T, counts, voltages, output_train, trace, trains if record_trains else None)

    @torch.no_grad()
    def simulate_stepwise(self, x: torch.Tensor, T: int, record_trains: bool = False,
                          schedule: str | None = None) -> SimulationResult:
        """Reference simulation: for each step t, for each layer, its current from its source's output (at step
        t - 1 for the delayed schedule, at step t for the same-step one), then its neuron update."""
        check_T(T)
        delay = self.delay_steps(schedule)
        decay, hard_reset = self.decay, self.hard_reset
        analog = self._analog_input(x)
        shapes = self.neuron_shapes(tuple(x.shape[1:]))
        voltages = {name: analog.new_zeros(x.shape[0], *shapes[name]) for name in LAYER_NAMES}
        counts = {name: torch.zeros_like(v) for name, v in voltages.items()}
        recorded = LAYER_NAMES if record_trains else (OUTPUT_LAYER,)  # the output train is always kept (it is small)
        trains: dict[str, list[torch.Tensor]] = {name: [] for name in recorded}
        output_voltages = []
        # emitted[l]: the output of layer l's source (the frame for conv1) at the previous step; nothing before t=0
        emitted = [torch.zeros_like(analog)] + [torch.zeros_like(voltages[name]) for name in LAYER_NAMES[:-1]]
        for _ in range(T):
            now = [analog]  # the input layer emits the frame at every step
            for index, name in enumerate(LAYER_NAMES):
                source = emitted[index] if delay else now[index]
                spikes = neuron_step(voltages[name], self._current(index, source), decay, hard_reset)
                counts[name] += spikes
                if name in trains:
                    trains[name].append(spikes)
                now.append(spikes.to(analog.dtype))
            output_voltages.append(voltages[OUTPUT_LAYER].clone())
            emitted = now
        stacked = {name: torch.stack(seq) for name, seq in trains.items()}
        return SimulationResult(T, counts, voltages, stacked[OUTPUT_LAYER], torch.stack(output_voltages),
                                stacked if record_trains else None)
