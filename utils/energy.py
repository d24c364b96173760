"""Operation counts and an energy ESTIMATE per greedy action (docs/METHOD.md, Energy).

Counting rules (per greedy action = one forward pass of the network on one frame stack):

* ANN (Dqn): multiply-accumulates (MACs) of every conv / linear layer, for one forward pass. A conv layer does
  out_channels x out_h x out_w x (in_channels / groups) x k_h x k_w MACs, a linear layer in x out. Biases,
  ReLUs and pooling-free bookkeeping are not counted. The Nature DQN does 9,342,976 + 512 x n_actions MACs.
* DSQN (Dsqn, DsqnSpike, DsqnIF): conv1 sees the analog frame stack and is computed once per action (its output
  is the constant input current of the first LIF layer for all T steps), so it costs its MACs once. Every later
  weight layer is driven by spikes: a spike of neuron i costs one accumulate (AC) per outgoing synapse (its
  fan-out), and the synaptic operations (SOPs) of a neuron layer are sum over T and over its neurons of
  spikes_i x fanout_i, counted into the layer the spikes come FROM. For Dsqn / DsqnIF the readout
  fc2(firing rate of fc1) = (1/T) sum_t W s_t + b is linear, so it is done by accumulating fc2's weights on fc1's
  spikes: fc1's spikes have fan-out n_actions (the final 1/T scaling of n_actions numbers is not counted).
  Spikes of the LAST neuron layer (fc2 of DsqnSpike, the output of the conversion SNN) go nowhere: fan-out 0.
* Conversion SNN (conversion_based_snn): its analog input is the same frame stack at each of the T steps, and the
  simulation computes conv1's current once and reuses it, so conv1 is counted as MACs once, like DSQN; conv2,
  conv3, fc1 and fc2 are counted as SOPs of the spikes of the layer below (fc2's output spikes: fan-out 0).
* Not counted for the SNNs: membrane updates (leak, threshold, reset) and the per-step bias additions, as is
  usual for SOP counts.

Fan-out at the borders: a conv neuron near the edge of its map feeds fewer output positions than one in the
middle, so exact SOPs need per-position spike counts. For a conv successor
``sum_i s_i * fanout_i = out_channels * sum(conv2d(S, ones(k_h, k_w), stride, padding, dilation))`` where S is the
spike-count map summed over the input channels (each input channel connects to every output channel, groups = 1);
for a linear successor it is ``total spikes * out_features``.

The networks name their layers and their input (``net.named_weight_layers``: conv1 ... fc2 in the order the input
flows through them; ``net.input_shape``: one frame stack), so this module, below the networks in the layers, spells
neither.

Energy: E = MACs x 4.6 pJ + SOPs x 0.9 pJ, the 45 nm 32-bit float figures of Horowitz (ISSCC 2014). It is an
ESTIMATE for comparison only (no memory access, no neuron update costs); the counts themselves are reported too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PJ_PER_MAC = 4.6  # 32-bit float multiply-accumulate, 45 nm (Horowitz 2014)
PJ_PER_AC = 0.9  # 32-bit float accumulate, 45 nm (Horowitz 2014)
ENERGY_NOTE = (
    "estimate: MACs x 4.6 pJ + SOPs x 0.9 pJ (45 nm, 32-bit float, Horowitz ISSCC 2014); "
    "memory access and neuron updates not counted"
)
SOP_RULES = {
    "ann": "MACs of every conv/linear layer per forward pass; no SOPs",
    "dsqn": "conv1 MACs once (analog input, computed once per action) + SOPs: spikes of each neuron layer x their "
            "fan-out into the next weight layer, summed over T (fc1 -> fc2 readout included); spikes of a last "
            "spiking layer with no successor (DsqnSpike's fc2) have fan-out 0",
    "conversion": "conv1 MACs once (constant analog input; its current is computed once and reused for all T "
                  "steps) + SOPs of conv1..fc1 spikes into conv2..fc2, summed over T; output (fc2) spikes have "
                  "fan-out 0",
}


# -- MACs -------------------------------------------------------------------------------------------------------------


def layer_macs(layer: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """MACs of one conv/linear layer on one input of ``input_shape`` (no batch dim), and its output shape."""
    if isinstance(layer, nn.Conv2d):
        c, h, w = input_shape
        kh, kw = layer.kernel_size
        out_h = (h + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
        out_w = (w + 2 * layer.padding[1] - layer.dilation[1] * (kw - 1) - 1) // layer.stride[1] + 1
        macs = layer.out_channels * out_h * out_w * (c // layer.groups) * kh * kw
        return macs, (layer.out_channels, out_h, out_w)
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features, (layer.out_features,)
    raise TypeError(f"cannot count MACs of {type(layer).__name__}")


def network_macs(layers: dict[str, nn.Module], input_shape: tuple[int, ...]) -> dict[str, int]:
    """Per layer (in order), the MACs of one forward pass; a linear layer after a conv sees the flattened map."""
    macs, shape = {}, tuple(input_shape)
    for name, layer in layers.items():
        if isinstance(layer, nn.Linear):
            shape = (math.prod(shape),)
        macs[name], shape = layer_macs(layer, shape)
    return macs


# -- SOPs -------------------------------------------------------------------------------------------------------------


def synaptic_ops(spike_counts: torch.Tensor, successor: nn.Module | None) -> torch.Tensor:
    """Per sample, the SOPs caused by the spikes of one neuron layer: sum_i s_i x fanout_i into ``successor``.

    ``spike_counts``: [N, *neuron_shape], each neuron's spikes summed over T (SOPs are linear in the spikes, so
    summing over T first gives the same total). ``successor``: the conv/linear layer the spikes feed, or None
    for a layer whose spikes go nowhere (fan-out 0). Returns a float64 tensor of shape [N].
    """
    n = spike_counts.shape[0]
    if successor is None:
        return torch.zeros(n, dtype=torch.float64, device=spike_counts.device)
    counts = spike_counts.detach().to(torch.float64)
    if isinstance(successor, nn.Linear):
        return counts.reshape(n, -1).sum(1) * successor.out_features
    if isinstance(successor, nn.Conv2d):
        if successor.groups != 1:
            raise ValueError("SOP counting supports groups=1 convolutions only")
        if counts.dim() != 4:
            raise ValueError(f"a conv successor needs [N, C, H, W] spike counts, got shape {tuple(counts.shape)}")
        if successor.padding_mode != "zeros" or isinstance(successor.padding, str):
            raise ValueError("SOP counting supports numeric zero padding only")
        per_position = counts.sum(1, keepdim=True)  # every input channel feeds every output channel
        ones = torch.ones(1, 1, *successor.kernel_size, dtype=torch.float64, device=counts.device)
        covered = F.conv2d(per_position, ones, stride=successor.stride, padding=successor.padding,
                           dilation=successor.dilation)
        return covered.flatten(1).sum(1) * successor.out_channels
    raise TypeError(f"cannot count synaptic operations into {type(successor).__name__}")


def layer_sops(spike_maps: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Per neuron layer (named after the weight layer that feeds it), the SOPs of its spikes into the NEXT weight
    layer of ``net`` (conv1 -> conv2 -> conv3 -> fc1 -> fc2; the spikes of a layer fed by fc2 go nowhere).
    ``spike_maps``: [N, *neuron_shape] spike counts summed over T, e.g. a ``SpikeMonitor``'s maps."""
    layers = list(net.named_weight_layers.items())
    successor = {name: (layers[i + 1][1] if i + 1 < len(layers) else None) for i, (name, _) in enumerate(layers)}
    return {name: synaptic_ops(spike_map, successor[name]) for name, spike_map in spike_maps.items()}


# -- the report -------------------------------------------------------------------------------------------------------


def energy_report(macs: dict[str, float], sops: dict[str, float], kind: str) -> dict:
    """The JSON-ready energy block of a play / convert summary.

    ``macs``: per layer, MACs per greedy action (analog layers only for SNNs). ``sops``: per SOURCE neuron layer,
    SOPs per greedy action. ``kind``: "ann", "dsqn" or "conversion" (selects the documented counting rule).
    """
    macs_total = float(sum(macs.values()))
    sops_total = float(sum(sops.values()))
    mac_pj, sop_pj = macs_total * PJ_PER_MAC, sops_total * PJ_PER_AC
    return {
        "is_estimate": True,
        "note": ENERGY_NOTE,
        "counting_rule": SOP_RULES[kind],
        "pj_per_mac": PJ_PER_MAC,
        "pj_per_ac": PJ_PER_AC,
        "macs_per_action": {k: float(v) for k, v in macs.items()},
        "sops_per_action": {k: float(v) for k, v in sops.items()},
        "macs_per_action_total": macs_total,
        "sops_per_action_total": sops_total,
        "energy_pj_per_action": {"mac": mac_pj, "sop": sop_pj, "total": mac_pj + sop_pj},
        "energy_uj_per_action": (mac_pj + sop_pj) / 1e6,
    }


def ann_energy(net: nn.Module) -> dict:
    """The energy block of a Dqn (MACs of every layer, no SOPs)."""
    return energy_report(network_macs(net.named_weight_layers, net.input_shape), {}, "ann")


def snn_energy(net: nn.Module, sops_per_action: dict[str, float], kind: str) -> dict:
    """The energy block of a spiking network: the first layer's MACs once + the measured SOPs per greedy action."""
    first = dict([next(iter(net.named_weight_layers.items()))])
    return energy_report(network_macs(first, net.input_shape), sops_per_action, kind)


def format_energy(report: dict) -> str:
    """One line for logs and the terminal."""
    return (
        f"per greedy action: {report['macs_per_action_total']:.4g} MACs, {report['sops_per_action_total']:.4g} SOPs, "
        f"estimated energy {report['energy_uj_per_action']:.4g} uJ ({report['note']})"
    )

