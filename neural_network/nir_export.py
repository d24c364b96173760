"""Export of the spiking Q-networks to the Neuromorphic Intermediate Representation (NIR), docs/NIR.md.

Two sources: a :class:`~neural_network.QNetwork` of model Dsqn, DsqnIF or DsqnSpike (:func:`qnetwork_to_nir`) and
the converted network of ``conversion_based_snn`` (:func:`spiking_network_to_nir`). Both become one NIR graph::

    input (frames / 255) [-> delay] -> conv1 -> neurons [-> delay] -> conv2 -> neurons [-> delay] -> conv3
    -> neurons [-> delay] -> flatten -> fc1 -> neurons [-> delay] -> fc2 [-> neurons] -> read-out integrator -> output

with one time step of NIR = ``dt`` seconds of NIR time. Every neuron layer is written in NIR's continuous-time
equations so that their forward-Euler discretisation at ``dt`` (the convention of SpikingJelly's and snnTorch's own
NIR exporters, and of snnTorch's and Norse's importers) is our update, term for term:

* SpikingJelly LIF, decay_input=True, hard reset:  nir.LIF(tau = tau * dt, r = 1, v_leak = v_reset, v_reset)
* SpikingJelly IF, hard reset:                     nir.IF(r = 1 / dt, v_reset)
* converted LIF (V <- d V + I, hard reset to 0):   a scale node 1 / (1 - d), then nir.LIF(tau = dt / (1 - d), r = 1)
* soft reset (V <- H - v_th after a spike): NIR's IF and LIF nodes only reset to a value, so the neuron becomes a
  small recurrent subgraph of nodes every importer has (see :meth:`GraphBuilder.neurons`): identity weight layers
  hold the charged voltage H and the kept voltage, a nir.LIF with tau = dt (no memory) fires, a weight layer
  -v_th feeds the spikes back, on the next step (NIR's convention for a recurrent edge).

The read-out (the mean over T steps, or the sum for the converted network's q_mix) is an identity weight layer fed
back to itself. Only NIR nodes that snnTorch 1.0.0 and Norse 1.1.0 import are written (Input, Conv2d, Flatten,
Affine, LIF, Output), except nir.IF for a hard-reset IF (Norse only) and nir.Delay for the converted network's
delayed schedule (neither); :func:`importer_limits` says which importer cannot run a graph and why.
The flatten counts from the end (start_dim = -3), so the graph runs at any batch size in both importers.

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

from .architecture import LAYER_NAMES, OUTPUT_LAYER, frame_stack_shape
from .networks import QNetwork

DEFAULT_DT = 1e-4  # seconds per step, SpikingJelly's NIR default
SNNTORCH_DT = 1e-4  # the step snnTorch 1.0.0's importer assumes (it cannot be told another)
IMPORTERS = {"snntorch": "snnTorch 1.0.0", "norse": "Norse 1.1.0"}
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
    the order in which a simulator sums them). ``limits`` collects, per importer, why it cannot run the graph."""

    def __init__(self, dt: float, threshold_rule: str):
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of seconds, got {dt}")
        export_threshold(1.0, threshold_rule)  # refuses an unknown rule
        self.dt, self.threshold_rule = float(dt), threshold_rule
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.spike_nodes: dict[str, str] = {}  # layer name -> the node that emits its spikes
        self.thresholds: set[float] = set()  # the NIR thresholds written
        self.limits: dict[str, list[str]] = {name: [] for name in IMPORTERS}
        if self.dt != SNNTORCH_DT:
            self.limit("snntorch", f"its importer assumes dt = {SNNTORCH_DT:g} s, this graph's dt is {self.dt:g} s")

    def limit(self, importer: str, reason: str) -> None:
        if reason not in self.limits[importer]:
            self.limits[importer].append(reason)

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
        reason = "it has no nir.Delay node (export the converted network with --schedule same_step)"
        self.limit("snntorch", reason)
        self.limit("norse", reason)
        return self.add(name, nir.Delay(delay=np.full(shape, steps * self.dt)), source)

    def weight_layer(self, name: str, layer: nn.Module, source: str, input_shape: tuple[int, ...],
                     below: str = "") -> str:
        """conv -> nir.Conv2d with its input shape; linear -> nir.Affine (a flatten first if its input is not 1-D).
        The flatten counts its dimensions from the end (start_dim = -3), which means the same with or without a
        batch dimension in front: importers hand start_dim to torch.nn.Flatten as it is."""
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                raise ValueError(f"{name}: only ungrouped, zero-padded convolutions with numeric padding are exported")
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_channels)
            node = nir.Conv2d(input_shape=tuple(input_shape[1:]), weight=_array(layer.weight), stride=layer.stride,
                              padding=layer.padding, dilation=layer.dilation, groups=1, bias=_array(bias))
            return self.add(name, node, source)
        if len(input_shape) > 1:
            source = self.add(f"{below}_flatten", nir.Flatten(input_type={"input": np.array(input_shape)},
                                                             start_dim=-len(input_shape), end_dim=-1), source)
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
        return self.add(name, nir.Affine(weight=_array(layer.weight), bias=_array(bias)), source)

    def scale(self, name: str, source: str, shape: tuple[int, ...], factor: float) -> str:
        """``factor`` times ``source``, element by element, as a weight layer every importer has: a 1x1
        nir.Conv2d for a [C, H, W] signal, a diagonal nir.Affine for a vector; both without bias."""
        if len(shape) == 3:
            weight = np.zeros((shape[0], shape[0], 1, 1), dtype=np.float32)
            weight[np.arange(shape[0]), np.arange(shape[0])] = factor
            node = nir.Conv2d(input_shape=tuple(shape[1:]), weight=weight, stride=1, padding=0, dilation=1, groups=1,
                              bias=np.zeros(shape[0], dtype=np.float32))
        else:
            node = nir.Affine(weight=(np.eye(shape[0]) * factor).astype(np.float32),
                              bias=np.zeros(shape[0], dtype=np.float32))
        return self.add(name, node, source)

    def accumulator(self, name: str, source: str, shape: tuple[int, ...], factor: float = 1.0) -> str:
        """A node holding the running sum of ``source`` times ``factor``: an identity weight layer whose output
        is fed back to itself (a recurrent edge reads the previous step), after a scale node if factor != 1."""
        if factor != 1.0:
            source = self.scale(f"{name}_scale", source, shape, factor)
        node = self.scale(name, source, shape, 1.0)
        self.edges.append((node, node))
        return node

    def neurons(self, layer: str, cell: Neuron, source: str, shape: tuple[int, ...]) -> str:
        """The neuron layer ``layer`` fed by ``source``; returns the node that emits its spikes."""
        dt = self.dt

        def full(value: float) -> np.ndarray:
            return np.full(shape, value, dtype=np.float64)

        written = export_threshold(cell.v_threshold, self.threshold_rule)
        self.thresholds.add(written)
        threshold = full(written)
        if cell.v_reset is not None:
            if cell.v_reset != 0:
                reason = f"its neurons reset to 0, these to {cell.v_reset:g}"
                self.limit("snntorch", reason)
                self.limit("norse", reason)
            if cell.leak is None:
                self.limit("snntorch", "its importer turns nir.IF into a leaky neuron (beta 0.9, reset by subtraction)")
                node = nir.IF(r=full(cell.gain / dt), v_threshold=threshold, v_reset=full(cell.v_reset),
                              metadata={"dt": dt})
                return self._spikes(layer, self.add(f"{layer}_if", node, source))
            if cell.gain != 1.0:  # importers take r = 1 (Norse ignores r): the input gain is a node of its own
                source = self.scale(f"{layer}_gain", source, shape, cell.gain)
            if cell.v_leak != 0:
                reason = f"it requires v_leak = 0, these neurons leak towards {cell.v_leak:g}"
                self.limit("snntorch", reason)
            node = nir.LIF(tau=full(dt / cell.leak), r=full(1.0), v_leak=full(cell.v_leak), v_threshold=threshold,
                           v_reset=full(cell.v_reset), metadata={"dt": dt})
            return self._spikes(layer, self.add(f"{layer}_lif", node, source))
        # soft reset: H_t = x_t + keep V_{t-1}, V_t = H_t - v_th S_t, with x_t the input (times the leak's input
        # gain) and keep the share of the voltage a step keeps (1 - leak; 1 for IF). H and keep V live in identity
        # weight layers fed back to each other (a recurrent edge reads the previous step); every node sums two
        # inputs, so the order in which an importer sums them cannot change a float32 result. The nodes are
        # numbered in the order a step computes them: a file lists its nodes alphabetically, and nirtorch (which
        # snnTorch's importer uses) reads as "previous step" whichever input it has not computed yet.
        keep = 1.0 if cell.leak is None else 1.0 - cell.leak
        factor = cell.gain if cell.leak is None else cell.leak * cell.gain
        if factor != 1.0:
            source = self.scale(f"{layer}_1_input", source, shape, factor)
        voltage = self.scale(f"{layer}_2_voltage", source, shape, 1.0)
        firing = nir.LIF(tau=full(dt), r=full(1.0), v_leak=full(0.0), v_threshold=threshold, v_reset=full(0.0),
                         metadata={"dt": dt})  # tau = dt: v = x at every step, a threshold without memory
        spikes = self.add(f"{layer}_3_spikes", firing, voltage)
        reset = self.scale(f"{layer}_4_reset", spikes, shape, -cell.v_threshold)
        kept = self.scale(f"{layer}_5_kept", voltage, shape, keep)
        self.edges.append((reset, kept))
        self.edges.append((kept, voltage))  # recurrent: acts on the next step
        return self._spikes(layer, spikes)

    def _spikes(self, layer: str, node: str) -> str:
        self.spike_nodes[layer] = node
        return node

    def output(self, name: str, source: str, shape: tuple[int, ...]) -> str:
        return self.add(name, nir.Output(output_type={"output": np.array(shape)}), source)

    def graph(self, metadata: dict) -> nir.NIRGraph:
        record = {"format": FORMAT, "input": INPUT, "dt": self.dt, "threshold_rule": self.threshold_rule,
                  "spike_nodes": json.dumps(self.spike_nodes), "nir_v_threshold": ", ".join(
                      repr(value) for value in sorted(self.thresholds)),
                  "importers": json.dumps(self.limits), **metadata}
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
    input_shape = frame_stack_shape(layers[0].in_channels)
    shapes = neuron_shapes(layers, input_shape)
    node = builder.add("input", nir.Input(input_type={"input": np.array(input_shape)}))
    source_shape = input_shape
    for index, name in enumerate(LAYER_NAMES):
        node = builder.delay(f"{name}_delay", node, source_shape, delay)
        node = builder.weight_layer(name, layers[index], node, source_shape, LAYER_NAMES[index - 1])
        if index < len(cells):
            node = builder.neurons(name, cells[index], node, shapes[index])
        source_shape = shapes[index]
    return node, shapes


def qnetwork_to_nir(net: QNetwork, *, dt: float = DEFAULT_DT, threshold_rule: str = "float32",
                    source: str = "") -> nir.NIRGraph:
    """The NIR graph of a Dsqn, DsqnIF or DsqnSpike network simulated for ``net.T`` steps. Output "q" after the
    T-th step is the network's Q: the running sum of fc2's output / T (an exact rewriting of
    fc2(mean_t s_t) = mean_t (W s_t + b)), or of DsqnSpike's output spikes / T (their firing rate)."""
    if not net.spiking:
        raise ValueError(f"{net.model} has no spiking neurons to export")
    builder = GraphBuilder(dt, threshold_rule)
    cells = [spikingjelly_neuron(module) for module in net.activations]
    last, shapes = _trunk(builder, net.weight_layers, cells, delay=0)
    q = builder.accumulator("readout", last, shapes[-1], 1.0 / net.T)
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
    metadata = {"model": "ConvertedSNN", "T": int(T), "source": source, "neurons": cell.describe(),
                "node_type": snn.node_type, "schedule": schedule or snn.schedule, "delay_steps": delay,
                "readout": "q_mix: output spike count over T steps + the output layer's voltage after step T"}
    if cell.v_reset is None:
        builder.output("q_mix", builder.accumulator("mix", OUTPUT_LAYER, n_actions), n_actions)
        metadata["q_output"] = "q_mix"
    else:
        builder.output("spike_count", builder.accumulator("count", spikes, n_actions), n_actions)
        metadata.update(q_output="spike_count", q_plus_voltage_of="fc2_lif")
        reason = "Q needs the output neurons' voltage after step T, which no NIR node outputs (read it from the state)"
        builder.limit("snntorch", reason)
        builder.limit("norse", reason)
    return builder.graph(metadata)


def importer_limits(graph: nir.NIRGraph) -> dict[str, list[str]]:
    """Per importer (snntorch, norse), why it cannot run ``graph`` whole (empty: it can), from the metadata."""
    return json.loads(graph.metadata.get("importers", "{}"))


def graph_bytes(graph: nir.NIRGraph, compression: str | None = "gzip") -> bytes:
    """The graph as a NIR (HDF5) file's bytes, for an atomic write (gzip: readable by any HDF5 library)."""
    buffer = io.BytesIO()
    nir.write(buffer, graph, compression=compression)
    return buffer.getvalue()
