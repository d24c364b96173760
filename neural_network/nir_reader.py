"""Reading a NIR graph back into PyTorch: a small step-by-step simulator, and a check of an export against the
network it came from (docs/NIR.md).

Semantics, one step = ``dt`` seconds of NIR time, forward Euler, the input of step t acting in step t::

    I:    v += dt r x                                  out = v
    LI:   v += (dt / tau) (v_leak - v + r x)           out = v
    IF:   v += dt r x;  z = [v > v_th];  v = v_reset where z          out = z
    LIF:  v += (dt / tau) (v_leak - v + r x);  then z and the reset as IF   out = z
    Threshold: z = [x > threshold];   Scale: x * scale;   Delay: x of round(delay / dt) steps ago (0 before)
    Affine, Linear, Conv2d, Flatten: as in PyTorch, with a batch dimension in front

Initial state: v = v_reset for IF and LIF, v = 0 for I and LI, empty delay lines. A node's input is the sum of its
incoming edges in edge order. An edge that closes a cycle (found by a depth-first search from the inputs) carries
its source's output of the previous step, zero at the first step; every other edge the output of the same step.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SPIKING = (nir.IF, nir.LIF, nir.Threshold)
VOLTAGE = (nir.I, nir.LI, nir.IF, nir.LIF)


def _tensor(values, dtype: torch.dtype) -> torch.Tensor:
    """Parameters are combined in float64 and rounded once to the simulation's dtype."""
    return torch.as_tensor(np.asarray(values, dtype=np.float64)).to(dtype)


def _ints(value) -> tuple[int, ...] | str:
    return value if isinstance(value, str) else tuple(int(v) for v in np.atleast_1d(value))


class _Voltage:
    """I, LI, IF and LIF nodes: one voltage per neuron."""

    def __init__(self, node: nir.NIRNode, dt: float, dtype: torch.dtype):
        leaky = isinstance(node, (nir.LI, nir.LIF))
        self.leak = _tensor(dt / np.asarray(node.tau, dtype=np.float64), dtype) if leaky else None
        self.gain = _tensor(node.r if leaky else dt * np.asarray(node.r, dtype=np.float64), dtype)
        self.v_leak = _tensor(node.v_leak, dtype) if leaky else None
        spiking = isinstance(node, (nir.IF, nir.LIF))
        self.threshold = _tensor(node.v_threshold, dtype) if spiking else None
        self.v0 = _tensor(node.v_reset if spiking else np.zeros_like(node.r), dtype)

    def step(self, x: torch.Tensor, v: torch.Tensor | None):
        v = self.v0.expand_as(x).clone() if v is None else v
        v = v + self.gain * x if self.leak is None else v + self.leak * ((self.v_leak - v) + self.gain * x)
        if self.threshold is None:
            return v, v
        spikes = v > self.threshold
        return spikes.to(x.dtype), torch.where(spikes, self.v0, v)


class _Delay:
    def __init__(self, node: nir.Delay, dt: float):
        steps = np.unique(np.round(np.asarray(node.delay, dtype=np.float64) / dt))
        if steps.size != 1 or steps[0] < 0:
            raise ValueError("only uniform, non-negative delays are simulated")
        self.steps = int(steps[0])

    def step(self, x: torch.Tensor, line: list | None):
        line = [torch.zeros_like(x)] * self.steps if line is None else line
        line = [*line, x]
        return line[0], line[1:]


class _Stateless:
    def __init__(self, function):
        self.function = function

    def step(self, x: torch.Tensor, state):
        return self.function(x), None


def _stateless(node: nir.NIRNode, dtype: torch.dtype):
    def weights(name):
        return torch.as_tensor(np.asarray(getattr(node, name))).to(dtype)

    if isinstance(node, nir.Affine):
        weight, bias = weights("weight"), weights("bias")
        return lambda x: F.linear(x, weight, bias)
    if isinstance(node, nir.Linear):
        weight = weights("weight")
        return lambda x: F.linear(x, weight)
    if isinstance(node, nir.Conv2d):
        weight, bias = weights("weight"), weights("bias")
        options = {"stride": _ints(node.stride), "padding": _ints(node.padding), "dilation": _ints(node.dilation),
                   "groups": int(node.groups)}
        return lambda x: F.conv2d(x, weight, bias, **options)
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        return lambda x: x.flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    if isinstance(node, nir.Scale):
        scale = weights("scale")
        return lambda x: x * scale
    if isinstance(node, nir.Threshold):
        threshold = _tensor(node.threshold, dtype)
        return lambda x: (x > threshold).to(x.dtype)
    if isinstance(node, (nir.Input, nir.Output)):
        return lambda x: x
    raise ValueError(f"the NIR simulator has no {type(node).__name__} node")


def _simulator_node(node: nir.NIRNode, dt: float, dtype: torch.dtype):
    if isinstance(node, VOLTAGE):
        return _Voltage(node, dt, dtype)
    if isinstance(node, nir.Delay):
        return _Delay(node, dt)
    return _Stateless(_stateless(node, dtype))


def _schedule(graph: nir.NIRGraph) -> tuple[list[str], dict[str, list[tuple[str, bool]]]]:
    """A step's evaluation order and, per node, its sources in edge order with a flag: True for an edge that closes
    a cycle (it reads the previous step)."""
    successors = {name: [] for name in graph.nodes}
    for source, target in graph.edges:
        successors[source].append(target)
    marks, back, finished = {}, set(), []

    def visit(name: str) -> None:
        marks[name] = "open"
        for target in successors[name]:
            if marks.get(target) == "open":
                back.add((name, target))
            elif target not in marks:
                visit(target)
        marks[name] = "done"
        finished.append(name)

    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            visit(name)
    unreached = sorted(set(graph.nodes) - set(marks))
    if unreached:
        raise ValueError(f"nodes not reachable from an input: {', '.join(unreached)}")
    sources = {name: [] for name in graph.nodes}
    for source, target in graph.edges:
        sources[target].append((source, (source, target) in back))
    return finished[::-1], sources


@dataclass
class GraphRun:
    """What a simulation of T steps gives: per Output node and per spiking node (IF, LIF, Threshold) its output at
    every step ([T, B, ...]), and the final voltage of every I, LI, IF and LIF node ([B, ...])."""

    outputs: dict[str, torch.Tensor]
    spikes: dict[str, torch.Tensor]
    voltages: dict[str, torch.Tensor] = field(default_factory=dict)


class GraphSimulator:
    """Runs a NIR graph (an nir.NIRGraph or a .nir file) step by step on a batch; see the module doc."""

    def __init__(self, graph: nir.NIRGraph | str, dt: float | None = None, dtype: torch.dtype = torch.float32):
        self.graph = nir.read(graph) if isinstance(graph, str) else graph
        self.metadata = dict(self.graph.metadata or {})
        dt = float(self.metadata["dt"]) if dt is None else float(dt)
        self.order, self.sources = _schedule(self.graph)
        self.nodes = {name: _simulator_node(node, dt, dtype) for name, node in self.graph.nodes.items()}
        self.dtype = dtype

    @torch.no_grad()
    def run(self, x: torch.Tensor, T: int | None = None) -> GraphRun:
        """Present ``x`` ([B, *input shape], float) at each of ``T`` steps (default: the graph's metadata T)."""
        T = int(self.metadata["T"]) if T is None else T
        x = x.to(self.dtype)
        graph, states, previous = self.graph.nodes, {}, {}
        record = {name: [] for name, node in graph.items() if isinstance(node, (nir.Output, *SPIKING))}
        for _ in range(T):
            now = {}
            for name in self.order:
                if isinstance(graph[name], nir.Input):
                    value = x
                else:
                    terms = [previous.get(source) if recurrent else now[source]
                             for source, recurrent in self.sources[name]]
                    terms = [term for term in terms if term is not None]  # a cycle's edge is zero at the first step
                    value = terms[0]
                    for term in terms[1:]:
                        value = value + term
                now[name], states[name] = self.nodes[name].step(value, states.get(name))
                if name in record:
                    record[name].append(now[name])
            previous = now
        outputs = {name: torch.stack(seq) for name, seq in record.items() if isinstance(graph[name], nir.Output)}
        spikes = {name: torch.stack(seq).bool() for name, seq in record.items() if name not in outputs}
        voltages = {name: states[name] for name, node in graph.items() if isinstance(node, VOLTAGE)}
        return GraphRun(outputs, spikes, voltages)


# -- checking an export against its network ---------------------------------------------------------------------------


def graph_q(graph_run: GraphRun, metadata: dict) -> torch.Tensor:
    """[B, n_actions] the Q-values an exported graph decodes after its last step (metadata written by nir_export)."""
    q = graph_run.outputs[metadata["q_output"]][-1]
    voltage = metadata.get("q_plus_voltage_of")
    return q + graph_run.voltages[voltage] if voltage else q


def network_run(model, frames: torch.Tensor, T: int, schedule: str | None = None):
    """Per layer the spike trains ([T, B, ...] bool) and the Q-values ([B, n_actions]) of our own network on uint8
    ``frames``: a spiking QNetwork, or a converted SpikingNetwork (Q = its mix decoder)."""
    if hasattr(model, "simulate"):
        result = model.simulate(frames, T, record_trains=True, schedule=schedule)
        return result.spike_trains, result.q_mix
    trains, hooks = {}, []
    for name, module in model.neuron_layers().items():
        hooks.append(module.register_forward_hook(lambda m, i, out, name=name: trains.__setitem__(name, out.bool())))
    try:
        with torch.no_grad():
            q = model(frames)
    finally:
        for hook in hooks:
            hook.remove()
    return trains, q


@dataclass
class Agreement:
    """How an export's simulation compares with the network on the same frames."""

    layers: dict[str, int]  # per layer, the number of (step, sample, neuron) spikes that differ
    spikes: dict[str, int]  # per layer, the network's number of spikes
    actions_equal: int  # samples whose greedy action (argmax Q) is the same
    samples: int
    max_q_difference: float

    @property
    def identical(self) -> bool:
        return not any(self.layers.values()) and self.actions_equal == self.samples and self.max_q_difference == 0


def compare(model, graph: nir.NIRGraph | str, frames: torch.Tensor, T: int | None = None,
            schedule: str | None = None, importer: str | None = None) -> Agreement:
    """Run ``graph`` on ``frames`` / 255 (in our simulator, or imported by ``importer``, "snntorch" or "norse") and
    ``model`` on ``frames`` and compare spikes per layer and Q."""
    graph = nir.read(graph) if isinstance(graph, str) else graph
    metadata = dict(graph.metadata or {})
    T = int(metadata["T"]) if T is None else T
    x = frames.float() / 255.0
    graph_run = GraphSimulator(graph).run(x, T) if importer is None else run_imported(graph, x, importer, T)
    trains, q = network_run(model, frames, T, schedule)
    spike_nodes = json.loads(metadata["spike_nodes"])
    differ = {layer: int((graph_run.spikes[node] != trains[layer]).sum()) for layer, node in spike_nodes.items()}
    counts = {layer: int(trains[layer].sum()) for layer in spike_nodes}
    q_graph = graph_q(graph_run, metadata).to(q.dtype)
    equal = int((q_graph.argmax(1) == q.argmax(1)).sum())
    return Agreement(differ, counts, equal, len(frames), float((q_graph - q).abs().max()))


# -- running a graph in snnTorch and Norse (docs/NIR.md, "In snnTorch and Norse") ------------------------------------


def import_graph(graph: nir.NIRGraph, importer: str) -> nn.Module:
    """``graph`` as a PyTorch module built by snnTorch's or Norse's own NIR importer. One call is one step:
    ``out, state = module(x, state)``, from state None; Norse is told the graph's dt (its default is 1e-3 s;
    snnTorch assumes 1e-4 s, the export's default)."""
    if importer == "snntorch":
        import snntorch.import_nir

        with contextlib.redirect_stdout(io.StringIO()):  # its importer prints a line on every import
            return snntorch.import_nir.import_from_nir(copy.deepcopy(graph))
    if importer == "norse":
        import norse.torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Norse 1.1.0 uses nirtorch.load
            return norse.torch.from_nir(graph, dt=float(graph.metadata["dt"]), ignore_warnings=True)
    raise ValueError(f"unknown importer {importer!r}; choose snntorch or norse")


def reset_imported(module: nn.Module) -> None:
    """Start a new action: snnTorch's neurons keep their voltage inside the module (Norse's live in the state)."""
    for layer in module.modules():
        if hasattr(layer, "reset_mem") and getattr(layer, "init_hidden", False):
            layer.reset_mem()


@torch.no_grad()
def run_imported(graph: nir.NIRGraph, x: torch.Tensor, importer: str, T: int | None = None) -> GraphRun:
    """Import ``graph`` with ``importer`` and present ``x`` ([B, *input shape]) at each of ``T`` steps; the spikes
    of the nodes in the metadata's spike_nodes, the Output's value at every step and, for the node named by
    q_plus_voltage_of, its voltage after the last step (taken from the importer's state)."""
    metadata = dict(graph.metadata or {})
    T = int(metadata["T"]) if T is None else T
    module = import_graph(graph, importer)
    reset_imported(module)
    modules = dict(module.named_modules())
    record = {node: [] for node in json.loads(metadata["spike_nodes"]).values()}
    hooks = [modules[node].register_forward_hook(
        lambda m, i, out, node=node: record[node].append(out[0] if isinstance(out, tuple) else out))
        for node in record]
    outputs, state = [], None
    try:
        for _ in range(T):
            out, state = module(x, state)
            outputs.append(out)
    finally:
        for hook in hooks:
            hook.remove()
    spikes = {node: torch.stack(seq).bool() for node, seq in record.items()}
    voltages = {}
    name = metadata.get("q_plus_voltage_of")
    if name:
        if importer == "norse":
            voltages[name] = state.state[name][0].v
        else:  # snnTorch holds v / (r dt / tau) and, after two spikes in a row, the value before the reset
            node = graph.nodes[name]
            scale = torch.as_tensor(np.asarray(node.r * float(metadata["dt"]) / node.tau)).to(x.dtype)
            voltages[name] = torch.where(spikes[name][-1], 0.0, modules[name].mem * scale)
    return GraphRun({metadata["q_output"]: torch.stack(outputs)}, spikes, voltages)
