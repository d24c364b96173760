"""Export of the spiking Q-networks to the Neuromorphic Intermediate Representation (NIR), docs/NIR.md.

Two sources: a :class:`~neural_network.QNetwork` of model Dsqn, DsqnIF or DsqnSpike (:func:`qnetwork_to_nir`) and
the converted network of ``conversion_based_snn`` (:func:`spiking_network_to_nir`). Both become one NIR graph::

    input (frames / 255) [-> delay] -> conv1 -> neurons [-> delay] -> conv2 -> neurons [-> delay] -> conv3
    -> neurons [-> delay] -> flatten -> fc1 -> neurons [-> delay] -> fc2 [-> neurons] -> read-out integrator -> output

with one time step of NIR = ``dt`` seconds of NIR time. Every neuron layer is written in NIR's continuous-time
equations so that their forward-Euler discretisation at ``dt`` (the convention of SpikingJelly's and snnTorch's own
NIR exporters) is our update, term for term:

* SpikingJelly LIF, decay_input=True, hard reset:  nir.LIF(tau = tau * dt, r = 1, v_leak = v_reset, v_reset)
* SpikingJelly IF, hard reset:                     nir.IF(r = 1 / dt, v_reset)
* converted LIF (V <- d V + I, hard reset to 0):   nir.LIF(tau = dt / (1 - d), r = 1 / (1 - d), v_leak = 0)
* soft reset (V <- H - v_th after a spike): NIR's IF and LIF nodes only reset to a value, so the neuron becomes a
  small recurrent subgraph: nir.I (IF) or nir.LI (LIF) holding the charged voltage H -> nir.Threshold (the
  spikes) -> nir.Scale(c) -> back into the integrator, a recurrent edge that acts one step later (NIR's
  convention for cycles), with c = -v_th / r (I) or c = -(1 - k) v_th / (k r) (LI, k = dt / tau).

Thresholds: NIR fires on v > v_th, our neurons on V >= v_th. ``threshold_rule="float32"`` (the default) writes the
largest float32 below v_th, so NIR's rule is ours for every float32 voltage; ``"nominal"`` writes v_th itself
(the two then differ only when a voltage lands exactly on the threshold).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import nir
import numpy as np
import torch
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from .networks import LAYER_NAMES, QNetwork

DEFAULT_DT = 1e-4  # seconds per step, SpikingJelly's NIR default
THRESHOLD_RULES = ("float32", "nominal")
FORMAT = "dsqn-nir/1"  # the graph-level metadata layout written here (docs/NIR.md)
INPUT = "frame stack / 255 (float, [history_len, 84, 84]), the same at every step"


@dataclass(frozen=True)
class Neuron:
    """A neuron layer's discrete update, in NIR's terms: H = V + leak * (v_leak - V + gain * X) (leak None: no leak,
    H = V + gain * X); a spike when H >= v_threshold; then V = v_reset (hard) or V = H - v_threshold (soft,
    v_reset None)."""

    leak: float | None
    gain: float
    v_leak: float
    v_threshold: float
    v_reset: float | None

    def describe(self) -> str:
        kind = "IF" if self.leak is None else f"LIF (leak {self.leak:g} per step, input gain {self.gain:g})"
        reset = "soft reset (subtract v_th)" if self.v_reset is None else f"hard reset to {self.v_reset:g}"
        return f"{kind}, v_th {self.v_threshold:g}, {reset}"


def spikingjelly_neuron(module: nn.Module) -> Neuron:
    """The :class:`Neuron` of a SpikingJelly LIFNode (H = V + (X - (V - V_reset)) / tau with decay_input, else
    H = V - (V - V_reset) / tau + X) or IFNode (H = V + X)."""
    v_reset = module.v_reset
    if isinstance(module, sj_neuron.LIFNode):
        tau = float(module.tau)
        return Neuron(leak=1.0 / tau, gain=1.0 if module.decay_input else tau, v_leak=v_reset or 0.0,
                      v_threshold=float(module.v_threshold), v_reset=v_reset)
    if isinstance(module, sj_neuron.IFNode):
        return Neuron(leak=None, gain=1.0, v_leak=0.0, v_threshold=float(module.v_threshold), v_reset=v_reset)
    raise ValueError(f"no NIR mapping for {type(module).__name__}")


def export_threshold(v_threshold: float, rule: str) -> float:
    """The v_th to write so that NIR's "v > v_th" reproduces our "V >= v_threshold" (see the module doc)."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLD_RULES)}")
    if rule == "nominal":
        return float(v_threshold)
    return float(np.nextafter(np.float32(v_threshold), np.float32(-np.inf)))


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().float().numpy().copy()


class GraphBuilder:
    """Nodes and edges of one graph, added in the order the signal flows (the order of a node's incoming edges is
    the order in which a simulator sums them)."""

    def __init__(self, dt: float, threshold_rule: str):
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of seconds, got {dt}")
        export_threshold(1.0, threshold_rule)  # refuses an unknown rule
        self.dt, self.threshold_rule = float(dt), threshold_rule
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.spike_nodes: dict[str, str] = {}  # layer name -> the node that emits its spikes
        self.thresholds: set[float] = set()  # the NIR thresholds written

    def add(self, name: str, node: nir.NIRNode, *sources: str) -> str:
        if name in self.nodes:
            raise ValueError(f"duplicate node {name}")
        self.nodes[name] = node
        self.edges += [(source, name) for source in sources]
        return name

    def delay(self, name: str, source: str, shape: tuple[int, ...], steps: int) -> str:
        """``source`` seen ``steps`` steps later (no node for 0 steps)."""
        if steps == 0:
            return source
        return self.add(name, nir.Delay(delay=np.full(shape, steps * self.dt)), source)

    def weight_layer(self, name: str, layer: nn.Module, source: str, input_shape: tuple[int, ...]) -> str:
        """conv -> nir.Conv2d with its input shape; linear -> nir.Affine (a flatten first if its input is not 1-D)."""
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                raise ValueError(f"{name}: only ungrouped, zero-padded convolutions with numeric padding are exported")
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_channels)
            node = nir.Conv2d(input_shape=tuple(input_shape[1:]), weight=_array(layer.weight), stride=layer.stride,
                              padding=layer.padding, dilation=layer.dilation, groups=1, bias=_array(bias))
            return self.add(name, node, source)
        if len(input_shape) > 1:
            source = self.add(f"{name}_flatten", nir.Flatten(input_type={"input": np.array(input_shape)},
                                                             start_dim=0, end_dim=-1), source)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
        return self.add(name, nir.Affine(weight=_array(layer.weight), bias=_array(bias)), source)

    def neurons(self, layer: str, cell: Neuron, source: str, shape: tuple[int, ...]) -> str:
        """The neuron layer ``layer`` fed by ``source``; returns the node that emits its spikes."""
        dt = self.dt

        def full(value: float) -> np.ndarray:
            return np.full(shape, value, dtype=np.float64)

        written = export_threshold(cell.v_threshold, self.threshold_rule)
        self.thresholds.add(written)
        threshold = full(written)
        if cell.v_reset is not None:
            if cell.leak is None:
                node = nir.IF(r=full(cell.gain / dt), v_threshold=threshold, v_reset=full(cell.v_reset))
            else:
                node = nir.LIF(tau=full(dt / cell.leak), r=full(cell.gain), v_leak=full(cell.v_leak),
                               v_threshold=threshold, v_reset=full(cell.v_reset))
            spikes = self.add(f"{layer}_{'if' if cell.leak is None else 'lif'}", node, source)
        else:
            if cell.leak is None:
                integrator, feedback = nir.I(r=full(cell.gain / dt)), -cell.v_threshold / cell.gain
            else:
                integrator = nir.LI(tau=full(dt / cell.leak), r=full(cell.gain), v_leak=full(cell.v_leak))
                feedback = -(1.0 - cell.leak) * cell.v_threshold / (cell.leak * cell.gain)
            voltage = self.add(f"{layer}_v", integrator, source)
            spikes = self.add(f"{layer}_spikes", nir.Threshold(threshold=threshold), voltage)
            self.add(f"{layer}_reset", nir.Scale(scale=full(feedback)), spikes)
            self.edges.append((f"{layer}_reset", voltage))  # recurrent: acts on the next step
        self.spike_nodes[layer] = spikes
        return spikes

    def integrator(self, name: str, source: str, shape: tuple[int, ...], steps: int) -> str:
        """A non-spiking read-out: nir.I with r = 1 / (steps dt), i.e. after ``steps`` steps it holds the mean of its
        input over them (steps = 1: the sum)."""
        return self.add(name, nir.I(r=np.full(shape, 1.0 / (steps * self.dt), dtype=np.float64)), source)

    def output(self, name: str, source: str, shape: tuple[int, ...]) -> str:
        return self.add(name, nir.Output(output_type={"output": np.array(shape)}), source)

    def graph(self, metadata: dict) -> nir.NIRGraph:
        record = {"format": FORMAT, "input": INPUT, "dt": self.dt, "threshold_rule": self.threshold_rule,
                  "spike_nodes": json.dumps(self.spike_nodes), "nir_v_threshold": ", ".join(
                      repr(value) for value in sorted(self.thresholds)), **metadata}
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=record, type_check=True)


def neuron_shapes(layers: list[nn.Module], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The output shape of each weight layer for one input of ``input_shape`` (no batch dimension)."""
    shapes, x = [], torch.zeros(1, *input_shape)
    with torch.no_grad():
        for layer in layers:
            x = layer((x.flatten(1) if isinstance(layer, nn.Linear) else x).to(layer.weight.dtype))
            shapes.append(tuple(x.shape[1:]))
    return shapes


def _trunk(builder: GraphBuilder, layers: list[nn.Module], cells: list[Neuron], delay: int) -> tuple[str, list]:
    """input -> (delay, weight layer, neurons) for each of ``cells``; returns the last node and the shapes."""
    input_shape = (layers[0].in_channels, 84, 84)
    shapes = neuron_shapes(layers, input_shape)
    node = builder.add("input", nir.Input(input_type={"input": np.array(input_shape)}))
    source_shape = input_shape
    for index, name in enumerate(LAYER_NAMES):
        node = builder.delay(f"{name}_delay", node, source_shape, delay)
        node = builder.weight_layer(name, layers[index], node, source_shape)
        if index < len(cells):
            node = builder.neurons(name, cells[index], node, shapes[index])
        source_shape = shapes[index]
    return node, shapes


def qnetwork_to_nir(net: QNetwork, *, dt: float = DEFAULT_DT, threshold_rule: str = "float32",
                    source: str = "") -> nir.NIRGraph:
    """The NIR graph of a Dsqn, DsqnIF or DsqnSpike network simulated for ``net.T`` steps. Output "q" after the
    T-th step is the network's Q: fc2 applied to fc1's firing rate (the read-out integrator on fc2's output, an
    exact rewriting of fc2(mean_t s_t) = mean_t (W s_t + b)), or DsqnSpike's output firing rate."""
    if not net.spiking:
        raise ValueError(f"{net.model} has no spiking neurons to export")
    builder = GraphBuilder(dt, threshold_rule)
    cells = [spikingjelly_neuron(module) for module in net.activations]
    last, shapes = _trunk(builder, net.weight_layers, cells, delay=0)
    q = builder.integrator("readout", last, shapes[-1], net.T)
    builder.output("q", q, shapes[-1])
    readout = ("firing rate of the fc2 neurons over T steps" if net.kind.spiking_output
               else "fc2 applied to the firing rate of the fc1 neurons over T steps (non-spiking)")
    return builder.graph({
        "model": net.model, "T": int(net.T), "source": source, "neurons": cells[0].describe(),
        "q_output": "q", "readout": readout, "delay_steps": 0,
    })


def converted_neuron(node_type: str, decay: float | None) -> Neuron:
    """SubtractiveResetIFNodes (V += I, V -= 1 at a spike) or LIFNodes (V = d V + I, V = 0 at a spike)."""
    if node_type == "LIFNodes":
        return Neuron(leak=1.0 - decay, gain=1.0 / (1.0 - decay), v_leak=0.0, v_threshold=1.0, v_reset=0.0)
    return Neuron(leak=None, gain=1.0, v_leak=0.0, v_threshold=1.0, v_reset=None)


def spiking_network_to_nir(snn, T: int, *, schedule: str | None = None, dt: float = DEFAULT_DT,
                           threshold_rule: str = "float32", source: str = "") -> nir.NIRGraph:
    """The NIR graph of a converted network (conversion_based_snn.snn.SpikingNetwork) for ``T`` steps under
    ``schedule`` (default: its own). Outputs after the T-th step: "spike_count" (the output layer's spikes) and,
    for IF neurons, "q_mix" = spike count + final voltage, which for reset by subtraction is exactly the sum over
    the T steps of the output layer's input current. For LIF neurons (hard reset) q_mix is spike_count + the
    final voltage of node fc2_lif, which NIR has no node for (docs/NIR.md)."""
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    delay = snn.delay_steps(schedule)
    builder = GraphBuilder(dt, threshold_rule)
    cell = converted_neuron(snn.node_type, snn.decay)
    spikes, shapes = _trunk(builder, snn.weight_layers, [cell] * len(LAYER_NAMES), delay)
    n_actions = shapes[-1]
    builder.output("spike_count", builder.integrator("count", spikes, n_actions, 1), n_actions)
    metadata = {"model": "ConvertedSNN", "T": int(T), "source": source, "neurons": cell.describe(),
                "node_type": snn.node_type, "schedule": schedule or snn.schedule, "delay_steps": delay,
                "input": "frame stack / 255 (float, [history_len, 84, 84]), the same at every step",
                "readout": "q_mix: output spike count over T steps + the output layer's voltage after step T"}
    if cell.v_reset is None:
        builder.output("q_mix", builder.integrator("mix", "fc2", n_actions, 1), n_actions)
        metadata["q_output"] = "q_mix"
    else:
        metadata.update(q_output="spike_count", q_plus_voltage_of="fc2_lif")
    return builder.graph(metadata)


def graph_bytes(graph: nir.NIRGraph, compression: str | None = "gzip") -> bytes:
    """The graph as a NIR (HDF5) file's bytes, for an atomic write (gzip: readable by any HDF5 library)."""
    buffer = io.BytesIO()
    nir.write(buffer, graph, compression=compression)
    return buffer.getvalue()
