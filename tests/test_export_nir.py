"""The NIR export (utils/export_nir.py, neural_network/nir_export.py) read back with nir.read and simulated step by
step (neural_network/nir_reader.py) gives the same spikes in every layer at every step, and the same Q-values and
greedy actions, as our own networks.

Exactness by construction: weights and biases lie on a 2**-8 grid, so every current fed by spikes is an exact float32
sum whatever order a kernel sums in, and the leak factors are powers of two (SpikingJelly's tau = 2; the converted
LIF with tau = 1 / ln 2, i.e. V <- V / 2 + I). The weights lean positive (each layer's input current has mean and
standard deviation 0.9 on the sample frames) so that every layer fires and the comparison proves something; such
grid weights also put voltages exactly on the threshold, which the float32 threshold rule has to get right.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import nir
import pytest
import torch
from conftest import paper_network
from torch import nn

from conversion_based_snn.snn.simulate import SpikingNetwork
from neural_network import save_checkpoint
from neural_network.nir_export import graph_bytes, importer_limits, qnetwork_to_nir, spiking_network_to_nir
from neural_network.nir_reader import VOLTAGE, GraphSimulator, _simulator_node, compare, network_run
from utils import export_nir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 8
GRID = 2.0**-8


def sample_frames() -> torch.Tensor:
    """Two uniformly random uint8 frame stacks and two smooth ones (upsampled 6x6 noise)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (2, 4, 84, 84), generator=generator, dtype=torch.uint8)
    low = torch.randint(0, 256, (2, 4, 6, 6), generator=generator).float()
    smooth = torch.nn.functional.interpolate(low, size=(84, 84), mode="bilinear", align_corners=False)
    return torch.cat([noise, smooth.round().clamp(0, 255).to(torch.uint8)])


FRAMES = sample_frames()




def on_grid(tensor: torch.Tensor) -> torch.Tensor:
    return torch.round(tensor / GRID) * GRID


@torch.no_grad()
def firing(net, mean: float = 0.9, std: float = 0.9, frames: torch.Tensor | None = None):
    """Give ``net`` (a spiking QNetwork) grid weights whose neuron layers' input currents have about this mean and
    standard deviation on ``frames`` (default FRAMES), layer after layer; a non-spiking fc2 gets small grid
    weights."""
    frames = FRAMES if frames is None else frames
    torch.manual_seed(0)
    neurons, seen = list(net.activations), {}
    for index, layer in enumerate(net.weight_layers):
        layer.weight.normal_()
        layer.bias.zero_()
        if index == len(neurons):
            layer.weight.copy_(on_grid(layer.weight * 0.1))
            break
        hook = neurons[index].register_forward_pre_hook(lambda module, inputs: seen.__setitem__("x", inputs[0]))
        net(frames)
        hook.remove()
        scale = std / seen["x"].std()
        layer.weight.copy_(on_grid(layer.weight * scale))
        layer.bias.fill_(float(on_grid(mean - seen["x"].mean() * scale)))
    return net.eval()


def read_back(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    path = tmp_path / "graph.nir"
    path.write_bytes(graph_bytes(graph, compression=None))
    return nir.read(str(path))


def assert_same(model, graph, frames=FRAMES, **kwargs):
    agreement = compare(model, graph, frames, **kwargs)
    for layer, spikes in agreement.spikes.items():  # every layer fires, none fires at every step
        assert 0 < spikes, (layer, agreement)
    assert agreement.identical, agreement
    return agreement


@pytest.fixture(scope="module")
def if_layers():
    """Firing grid weights for the converted networks (those of a soft-reset DsqnIF)."""
    return firing(paper_network("DsqnIF", 4, T=T, v_reset=None)).weight_layers


# -- the DSQN models --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, v_reset", [("Dsqn", 0.0), ("Dsqn", None), ("DsqnIF", 0.0), ("DsqnIF", None),
                                            ("DsqnSpike", 0.0)])
def test_dsqn_models_give_the_same_spikes_and_actions(model, v_reset, tmp_path):
    net = firing(paper_network(model, 4, T=T, v_reset=v_reset))
    graph = read_back(qnetwork_to_nir(net), tmp_path)
    agreement = assert_same(net, graph)
    assert agreement.actions_equal == len(FRAMES)
    assert graph.metadata["model"] == model and int(graph.metadata["T"]) == T


def test_the_mapping_of_a_hard_reset_lif_and_of_a_soft_reset():
    hard = qnetwork_to_nir(paper_network("Dsqn", 4, T=T, tau=4.0, v_reset=0.0), dt=1e-3)
    lif = hard.nodes["conv2_lif"]
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (64, 9, 9)
    assert float(lif.tau[0, 0, 0]) == pytest.approx(4e-3) and float(lif.r[0, 0, 0]) == 1.0
    assert float(lif.v_leak.max()) == float(lif.v_reset.max()) == 0.0
    assert float(lif.v_threshold[0, 0, 0]) == float(torch.tensor(1.0).nextafter(torch.tensor(0.0)))
    assert tuple(hard.nodes["conv1"].input_type["input"]) == (4, 84, 84)
    assert tuple(hard.nodes["conv3"].output_type["output"]) == (64, 7, 7)
    flatten = hard.nodes["conv3_flatten"]  # counted from the end: the same with a batch dimension in front
    assert isinstance(flatten, nir.Flatten) and (flatten.start_dim, flatten.end_dim) == (-3, -1)
    assert tuple(flatten.output_type["output"]) == (3136,) and isinstance(hard.nodes["fc2"], nir.Affine)
    scale, readout = hard.nodes["readout_scale"], hard.nodes["readout"]  # the mean over T steps: sum of fc2 / T
    assert torch.equal(torch.as_tensor(scale.weight), torch.eye(4) / T) and not scale.bias.any()
    assert torch.equal(torch.as_tensor(readout.weight), torch.eye(4)) and ("readout", "readout") in hard.edges
    assert float(lif.metadata["dt"]) == 1e-3
    soft = qnetwork_to_nir(paper_network("DsqnIF", 4, T=T, v_reset=None), threshold_rule="nominal")
    firing_node = soft.nodes["fc1_3_spikes"]  # tau = dt: no memory, a threshold
    assert isinstance(firing_node, nir.LIF) and float(firing_node.tau[0]) == float(soft.metadata["dt"])
    assert float(firing_node.v_threshold[0]) == 1.0
    assert float(soft.nodes["fc1_4_reset"].weight[0, 0]) == -1.0
    assert float(soft.nodes["fc1_5_kept"].weight[0, 0]) == 1.0
    assert {("fc1_2_voltage", "fc1_3_spikes"), ("fc1_3_spikes", "fc1_4_reset"), ("fc1_4_reset", "fc1_5_kept"),
            ("fc1_2_voltage", "fc1_5_kept"), ("fc1_5_kept", "fc1_2_voltage")} <= set(soft.edges)
    leaky = qnetwork_to_nir(paper_network("Dsqn", 4, T=T, tau=4.0, v_reset=None))
    assert float(leaky.nodes["conv1_1_input"].weight[0, 0, 0, 0]) == 0.25  # x / tau enters H
    assert float(leaky.nodes["conv1_5_kept"].weight[0, 0, 0, 0]) == 0.75  # and (1 - 1 / tau) of V is kept
    assert "conv1_1_input" not in soft.nodes  # IF: the input enters as it is
    assert importer_limits(hard) == {"snntorch": ["its importer assumes dt = 0.0001 s, this graph's dt is 0.001 s"],
                                     "norse": []}
    assert importer_limits(soft) == {"snntorch": [], "norse": []}


class StepModule(nn.Module):
    """A simulator node as nirtorch wants a stateful module: ``out, state = module(x, state)``."""

    def __init__(self, node):
        super().__init__()
        self.node = node

    def forward(self, x: torch.Tensor, state=None):
        return self.node.step(x, state)


class StatelessStepModule(StepModule):
    def forward(self, x: torch.Tensor):
        return self.node.step(x, None)[0]


def nirtorch_module(graph: nir.NIRGraph, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The graph as a PyTorch module built by nirtorch.nir_to_torch, which wires the nodes (input sums, evaluation
    order, a cycle's edge reading the previous step) while the nodes keep the simulator's semantics. One call is one
    step: ``out, state = module(x, state)``, from state None. nirtorch takes graphs with a single Output node."""
    import nirtorch

    dt = float(graph.metadata["dt"])

    def to_module(node: nir.NIRNode) -> nn.Module:
        stateful = isinstance(node, (*VOLTAGE, nir.Delay))
        return (StepModule if stateful else StatelessStepModule)(_simulator_node(node, dt, dtype))

    types = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.Scale, nir.Threshold,
             nir.Delay, *VOLTAGE)
    return nirtorch.nir_to_torch(graph, dict.fromkeys(types, to_module))


@pytest.mark.parametrize("model, v_reset", [("Dsqn", None), ("DsqnSpike", 0.0)])
def test_nirtorch_wires_the_graph_the_same_way(model, v_reset, tmp_path):
    """nirtorch's own reading of the graph (its recurrent edges read the previous step) gives the same spikes and Q;
    the soft reset's cycles and the spiking output are the cases where the wiring matters."""
    net = firing(paper_network(model, 4, T=T, v_reset=v_reset))
    graph = read_back(qnetwork_to_nir(net), tmp_path)
    module = nirtorch_module(graph)
    layer, spike_node = ("fc1", "fc1_3_spikes") if v_reset is None else ("fc2", "fc2_lif")
    spikes = []  # a stateful node returns (output, state)
    module.get_submodule(spike_node).register_forward_hook(
        lambda m, i, out: spikes.append(out[0] if isinstance(out, tuple) else out))
    state = None
    for _ in range(T):
        q, state = module(FRAMES.float() / 255.0, state)
    trains, q_net = network_run(net, FRAMES, T)
    assert trains[layer].any() and torch.equal(torch.stack(spikes).bool(), trains[layer]) and torch.equal(q, q_net)


# -- the converted network --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("node_type, schedule", [("SubtractiveResetIFNodes", "delayed"),
                                                 ("SubtractiveResetIFNodes", "same_step"),
                                                 ("LIFNodes", "delayed"), ("LIFNodes", "same_step")])
def test_the_converted_network_gives_the_same_spikes_and_actions(if_layers, node_type, schedule, tmp_path):
    snn = SpikingNetwork(*if_layers, node_type=node_type, tau=1 / math.log(2), schedule=schedule)
    assert snn.decay == (0.5 if node_type == "LIFNodes" else None)
    graph = read_back(spiking_network_to_nir(snn, T), tmp_path)
    delays = [node for node in graph.nodes.values() if isinstance(node, nir.Delay)]
    assert len(delays) == (5 if schedule == "delayed" else 0)
    assert all(float(node.delay.max()) == float(node.delay.min()) == 1e-4 for node in delays)
    agreement = assert_same(snn, graph)
    assert agreement.actions_equal == len(FRAMES)


def test_the_delay_can_be_exported_under_the_other_schedule(if_layers, tmp_path):
    snn = SpikingNetwork(*if_layers, schedule="delayed")
    graph = read_back(spiking_network_to_nir(snn, T, schedule="same_step"), tmp_path)
    assert graph.metadata["schedule"] == "same_step"
    assert_same(snn, graph, schedule="same_step")


# -- the check proves something ---------------------------------------------------------------------------------------


def test_a_wrong_leak_or_the_nominal_threshold_is_caught():
    net = firing(paper_network("Dsqn", 4, T=T))
    graph = qnetwork_to_nir(net)
    graph.nodes["conv2_lif"].tau = graph.nodes["conv2_lif"].tau * 2
    assert compare(net, graph, FRAMES).layers["conv2"] > 0
    # grid weights and binary frames put voltages exactly on 1: NIR's v > 1 would miss our V >= 1 spikes there
    binary = (FRAMES > 127).to(torch.uint8) * 255
    assert compare(net, qnetwork_to_nir(net), binary).identical
    assert not compare(net, qnetwork_to_nir(net, threshold_rule="nominal"), binary).identical


def test_the_simulator_follows_nir_s_euler_steps_on_a_tiny_graph():
    cell = nir.LIF(tau=torch.full((2,), 4e-4).double().numpy(), r=torch.ones(2).double().numpy(),
                   v_leak=torch.zeros(2).double().numpy(), v_threshold=torch.ones(2).double().numpy())
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": torch.tensor([2]).numpy()}), "lif": cell,
                                "output": nir.Output(output_type={"output": torch.tensor([2]).numpy()})},
                         edges=[("input", "lif"), ("lif", "output")], metadata={"dt": 1e-4, "T": 6})
    run = GraphSimulator(graph).run(torch.tensor([[2.0, 4.0]]))
    v, spikes = torch.zeros(2), []  # v += (dt / tau) (0 - v + x), a spike when v > 1, then v = 0
    for _ in range(6):
        v = v + 0.25 * (torch.tensor([2.0, 4.0]) - v)
        spikes.append(v > 1)
        v = torch.where(v > 1, 0.0, v)
    assert torch.equal(run.outputs["output"][:, 0].bool(), torch.stack(spikes))


# -- the command ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory, if_layers):
    folder = tmp_path_factory.mktemp("models")
    run = folder / "Dsqn_run"
    run.mkdir()
    save_checkpoint(firing(paper_network("Dsqn", 4, T=T, v_reset=None)), str(run / "best.pkl"))
    (run / "config.json").write_text('{"program": "run.py", "v_reset": -1, "tau": 2.0, "v_threshold": 1.0}')
    conversion = folder / "ConvSNN_run"
    conversion.mkdir()
    SpikingNetwork(*if_layers, schedule="delayed").save(str(conversion / "snn.pt"))
    (conversion / "config.json").write_text('{"program": "convert.py", "time": 6}')
    save_checkpoint(paper_network("Dqn", 4), str(folder / "dqn.pkl"))
    (folder / "damaged.pkl").write_bytes((run / "best.pkl").read_bytes()[:5000])
    (folder / "damaged.pt").write_bytes((conversion / "snn.pt").read_bytes()[:5000])
    torch.save({"state_dict": {}, "node_type": "LIFNodes"}, folder / "incomplete.pt")
    (folder / "text.pkl").write_text("not a checkpoint")
    broken = SpikingNetwork(*if_layers)
    broken.fc2 = torch.nn.Linear(512, 4)
    with torch.no_grad():
        broken.fc2.bias.fill_(float("nan"))
    broken.save(str(folder / "nan.pt"))
    (folder / "empty").mkdir()
    return folder


def test_the_command_exports_a_run_folder_with_its_configuration(models, tmp_path, capsys):
    out = tmp_path / "agent.nir"
    export_nir.main(["--model", str(models / "Dsqn_run"), "--out", str(out), "--check_frames", "1"])
    printed = capsys.readouterr().out
    assert "identical spike trains in every layer" in printed and "greedy actions equal in 1/1" in printed
    graph = nir.read(str(out))
    assert isinstance(graph.nodes["conv1_3_spikes"], nir.LIF)  # the run's soft reset (v_reset -1 in its config.json)
    assert graph.metadata["source"] == "Dsqn_run/best.pkl"  # no absolute path
    assert graph.metadata["model"] == "Dsqn" and int(graph.metadata["T"]) == T



def test_an_old_bare_state_dict_exports_with_its_model_and_T(tmp_path, capsys):
    old = tmp_path / "old.pkl"  # as run.py wrote best.pkl before checkpoints had a format
    torch.save(firing(paper_network("DsqnSpike", 4, T=T + 1)).state_dict(), old)
    out = tmp_path / "old.nir"
    export_nir.main(["--model", str(old), "--out", str(out), "--check_frames", "1"])
    assert "identical spike trains in every layer" in capsys.readouterr().out
    graph = nir.read(str(out))
    assert graph.metadata["model"] == "DsqnSpike" and int(graph.metadata["T"]) == T + 1

def test_the_command_exports_a_conversion_run(models, tmp_path, capsys):
    out = tmp_path / "sub" / "snn.nir"
    export_nir.main(["--model", str(models / "ConvSNN_run" / "snn.pt"), "--out", str(out), "--check_frames", "1",
                     "--schedule", "same_step"])
    assert "identical spike trains in every layer" in capsys.readouterr().out
    graph = nir.read(str(out))
    assert int(graph.metadata["T"]) == 6 and graph.metadata["schedule"] == "same_step"  # T: the run's --time
    assert os.listdir(out.parent) == ["snn.nir"]


@pytest.mark.parametrize("args, message", [
    ([], "no model given"),
    (["--model", "{m}/Dsqn_run"], "no output file"),
    (["--model", "{m}/missing.pkl", "--out", "{o}"], "not found"),
    (["--model", "{m}/empty", "--out", "{o}"], "neither best.pkl"),
    (["--model", "{m}/dqn.pkl", "--out", "{o}"], "Dqn network, which has no spiking neurons"),
    (["--model", "{m}/damaged.pkl", "--out", "{o}"], "not readable"),
    (["--model", "{m}/damaged.pt", "--out", "{o}"], "not readable"),
    (["--model", "{m}/text.pkl", "--out", "{o}"], "not readable"),
    (["--model", "{m}/nan.pt", "--out", "{o}"], "non-finite"),
    (["--model", "{m}/incomplete.pt", "--out", "{o}"], "not a converted network"),
    (["--model", "{m}/Dsqn_run", "--out", "{o}", "--schedule", "delayed"], "--schedule"),
    (["--model", "{m}/ConvSNN_run", "--out", "{o}", "--tau", "3"], "--tau"),
    (["--model", "{m}/Dsqn_run", "--out", "{m}"], "is a folder"),
    (["--model", "{m}/Dsqn_run", "--out", "{m}/dqn.pkl/x.nir"], "is a file"),
    (["--model", "{m}/Dsqn_run", "--out", "{o}", "--T", "0"], "--T"),
    (["--model", "{m}/Dsqn_run", "--out", "{o}", "--threshold", "round"], "--threshold"),
])
def test_bad_input_is_one_line_and_exit_2(models, tmp_path, capsys, args, message):
    out = tmp_path / "out.nir"
    with pytest.raises(SystemExit) as exit_info:
        export_nir.cli([arg.format(m=models, o=out) for arg in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith("export_nir.py: error:") and message in lines[0], err
    assert os.listdir(tmp_path) == []


def test_the_command_runs_as_a_program(models, tmp_path):
    process = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "utils", "export_nir.py"), "--model",
                              str(models / "dqn.pkl"), "--out", str(tmp_path / "x.nir")], cwd=str(tmp_path),
                             capture_output=True, text=True, timeout=120, check=False)
    assert process.returncode == 2 and "Dqn network" in process.stderr and "Traceback" not in process.stderr
