"""Operation counts and the energy estimate (utils/energy.py): SOPs by fan-out against an explicit enumeration of
synapses, MACs of the Nature DQN, and the SOP fields recorded by the networks, play and the conversion SNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import paper_network
from torch import nn

from agent import EpisodeResult, SpikeStats, summarize_play
from conversion_based_snn.snn import LAYER_NAMES, EpisodeStats, SpikingNetwork, summarise
from neural_network import SpikeMonitor
from neural_network.architecture import nature_dqn_layer_macs
from utils.energy import (
    PJ_PER_AC,
    PJ_PER_MAC,
    ann_energy,
    energy_report,
    layer_sops,
    network_macs,
    snn_energy,
    synaptic_ops,
)

# -- brute force: enumerate every synapse -----------------------------------------------------------------------------


def brute_force_sops(counts: torch.Tensor, successor: nn.Module | None) -> float:
    """sum over every synapse (pre neuron i -> post neuron j) of the spikes of i, for ONE sample."""
    if successor is None:
        return 0.0
    c = counts.detach().double()
    if isinstance(successor, nn.Linear):
        flat = c.flatten().tolist()
        return float(sum(flat[i] for _ in range(successor.out_features) for i in range(len(flat))))
    cin, h, w = c.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = successor.kernel_size, successor.stride, successor.padding, \
        successor.dilation
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    values = c.tolist()
    total = 0.0
    for _oc in range(successor.out_channels):
        for oy in range(out_h):
            for ox in range(out_w):
                for ic in range(cin):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                            if 0 <= iy < h and 0 <= ix < w:  # a real synapse (padding has no neuron)
                                total += values[ic][iy][ix]
    return total


def positional_fanout(successor: nn.Conv2d, shape: tuple[int, int, int]) -> np.ndarray:
    """Fan-out of every neuron of a [C, H, W] map into a conv, by enumerating (output position, kernel offset)."""
    cin, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = successor.kernel_size, successor.stride, successor.padding, \
        successor.dilation
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    fan = np.zeros((h, w))
    for oy in range(out_h):
        for ox in range(out_w):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                    if 0 <= iy < h and 0 <= ix < w:
                        fan[iy, ix] += successor.out_channels
    return np.broadcast_to(fan, shape)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1),
        nn.Conv2d(2, 4, kernel_size=(2, 3), stride=(1, 2), padding=(0, 1)),
        nn.Conv2d(3, 2, kernel_size=3, stride=1, padding=0, dilation=2),
        nn.Conv2d(2, 5, kernel_size=4, stride=3),
    ],
)
def test_conv_sops_equal_an_explicit_count_of_synapses(conv):
    torch.manual_seed(0)
    counts = torch.randint(0, 6, (3, conv.in_channels, 7, 8)).float()  # spikes summed over T, 3 samples
    sops = synaptic_ops(counts, conv)
    assert sops.shape == (3,) and sops.dtype == torch.float64
    for n in range(3):
        assert sops[n].item() == brute_force_sops(counts[n], conv)
    # the border matters: a uniform "spikes x mean fan-out" count would differ
    uniform = counts[0].sum().item() * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1] / (
        conv.stride[0] * conv.stride[1])
    assert sops[0].item() != pytest.approx(uniform)


def test_linear_and_last_layer_sops():
    counts = torch.tensor([[[1.0, 0.0], [2.0, 3.0]], [[0.0, 0.0], [0.0, 4.0]]])  # [2, 2, 2] -> flattened 4
    fc = nn.Linear(4, 7)
    assert synaptic_ops(counts, fc).tolist() == [42.0, 28.0]
    assert synaptic_ops(counts[0:1], fc).item() == brute_force_sops(counts[0], fc)
    # the spikes of the last layer feed nothing: fan-out 0
    assert synaptic_ops(counts, None).tolist() == [0.0, 0.0]


def _firing_net(model: str, T: int = 4) -> nn.Module:
    """A Dsqn-family network whose every layer fires (positive-leaning random weights), on the CPU."""
    torch.manual_seed(1)
    net = paper_network(model, 4, T=T)
    with torch.no_grad():
        for layer in net.weight_layers:
            layer.weight.add_(layer.weight.abs().mean() * 0.6)
    return net.eval()


@pytest.mark.parametrize("model", ["Dsqn", "DsqnSpike"])
def test_monitor_gives_exact_sops_per_layer(model):
    net = _firing_net(model)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with SpikeMonitor(net) as monitor, torch.no_grad():
        net(frames)
    counts, maps = monitor.spike_counts(), monitor.maps
    sops = layer_sops(maps, net)
    layers = ["conv1", "conv2", "conv3", "fc1"] + (["fc2"] if model == "DsqnSpike" else [])
    assert list(sops) == layers and list(maps) == layers
    for name in layers:
        assert maps[name].shape[0] == 2 and torch.equal(maps[name].flatten(1).sum(1), counts[name])
        assert counts[name].sum() > 0, f"{name} does not fire; the test would prove nothing"
    for name, successor in (("conv1", net.conv2), ("conv2", net.conv3)):
        fan = positional_fanout(successor, tuple(maps[name].shape[1:]))
        for n in range(2):
            assert sops[name][n].item() == pytest.approx(float((maps[name][n].double().numpy() * fan).sum()),
                                                         rel=1e-12)
        # border neurons reach fewer outputs than the interior ones: less than spikes x the largest fan-out
        assert sops[name][0].item() < counts[name][0].item() * fan.max()
    # conv3 -> fc1: every conv3 neuron reaches all 512 fc1 neurons; fc1 -> fc2: n_actions (readout or output)
    assert sops["conv3"].tolist() == (counts["conv3"].double() * 512).tolist()
    assert sops["fc1"].tolist() == (counts["fc1"].double() * 4).tolist()
    if model == "DsqnSpike":
        assert sops["fc2"].tolist() == [0.0, 0.0]  # the output spikes go nowhere


def test_sops_equal_spikingjellys_synaptic_operation_counter():
    """SpikingJelly's SynOpCounter counts, per weight layer, the operations of the binary spikes it receives; ours
    count the same operations per layer the spikes come from (conv1's spikes are conv2's operations, ...)."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    net = _firing_net("DsqnSpike")
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    counter = SynOpCounter()
    with SpikeMonitor(net) as monitor, torch.no_grad(), DispatchCounterMode([counter]):
        net(frames)
    ours = {name: float(value.sum()) for name, value in layer_sops(monitor.maps, net).items()}
    theirs = {module.split(".")[-1]: sum(ops.values()) for module, ops in counter.get_counts().items()
              if module.startswith("QNetwork.")}
    assert theirs["conv1"] == 0  # analog input: MACs, not SOPs
    for source, receiver in (("conv1", "conv2"), ("conv2", "conv3"), ("conv3", "fc1"), ("fc1", "fc2")):
        assert ours[source] == theirs[receiver] > 0, source


def test_nature_dqn_macs():
    for n_actions in (4, 6, 18):
        net = paper_network("Dqn", n_actions)
        macs = network_macs(net.named_weight_layers, net.input_shape)
        assert macs == {"conv1": 32 * 20 * 20 * 4 * 64, "conv2": 64 * 9 * 9 * 32 * 16, "conv3": 64 * 7 * 7 * 64 * 9,
                        "fc1": 3136 * 512, "fc2": 512 * n_actions}
        assert sum(macs.values()) == 9_342_976 + 512 * n_actions
        assert nature_dqn_layer_macs(n_actions) == macs
        report = ann_energy(net)
        assert report["macs_per_action_total"] == 9_342_976 + 512 * n_actions and report["sops_per_action_total"] == 0
        assert report["energy_pj_per_action"]["total"] == pytest.approx((9_342_976 + 512 * n_actions) * 4.6)


def test_counts_follow_the_network_input():
    """A network of another frame history counts conv1 with its own input channels, and so does its converted SNN,
    also after a save and load."""
    net = paper_network("Dqn", 4, history_len=2)
    assert ann_energy(net)["macs_per_action"]["conv1"] == 32 * 20 * 20 * 2 * 64
    snn = SpikingNetwork.from_ann(net)
    assert snn_energy(snn, {}, "conversion")["macs_per_action"] == {"conv1": 32 * 20 * 20 * 2 * 64}
    assert snn.neuron_counts() == {"conv1": 12800, "conv2": 5184, "conv3": 3136, "fc1": 512, "fc2": 4}


def test_a_converted_network_of_another_history_loads(tmp_path):
    snn = SpikingNetwork.from_ann(paper_network("Dqn", 4, history_len=2))
    snn.save(str(tmp_path / "snn.pt"))
    loaded = SpikingNetwork.load(str(tmp_path / "snn.pt"))
    assert loaded.input_shape == (2, 84, 84) and torch.equal(loaded.conv1.weight, snn.conv1.weight)


def test_energy_arithmetic_and_labels():
    assert (PJ_PER_MAC, PJ_PER_AC) == (4.6, 0.9)
    report = energy_report({"conv1": 1000.0}, {"conv1": 1500.0, "conv2": 500.0}, "dsqn")
    assert report["macs_per_action_total"] == 1000 and report["sops_per_action_total"] == 2000
    assert report["energy_pj_per_action"] == pytest.approx({"mac": 4600.0, "sop": 1800.0, "total": 6400.0})
    assert report["energy_uj_per_action"] == pytest.approx(0.0064)
    assert report["is_estimate"] is True and "estimate" in report["note"] and "fan-out 0" in report["counting_rule"]
    dsqn = snn_energy(paper_network("Dsqn", 4, T=4), {"conv1": 10.0}, "dsqn")
    assert dsqn["macs_per_action"] == {"conv1": 3_276_800.0}  # conv1 once: analog input computed once


def test_spike_stats_and_play_summary_carry_sops():
    stats = SpikeStats(T=4)
    neurons = {"conv1": 10, "fc1": 2}
    stats.add({"conv1": torch.tensor([8.0]), "fc1": torch.tensor([2.0])}, neurons,
              {"conv1": torch.tensor([100.0], dtype=torch.float64), "fc1": torch.tensor([8.0], dtype=torch.float64)})
    stats.add({"conv1": torch.tensor([4.0]), "fc1": torch.tensor([0.0])}, neurons,
              {"conv1": torch.tensor([60.0], dtype=torch.float64), "fc1": torch.tensor([0.0], dtype=torch.float64)})
    other = SpikeStats(T=4)
    other.add({"conv1": torch.tensor([0.0]), "fc1": torch.tensor([1.0])}, neurons,
              {"conv1": torch.tensor([0.0], dtype=torch.float64), "fc1": torch.tensor([4.0], dtype=torch.float64)})
    assert stats.layer_sops_per_action() == {"conv1": 80.0, "fc1": 4.0}
    results = [EpisodeResult(1.0, 0.5, 0.1, 10, stats), EpisodeResult(3.0, 0.7, 0.2, 12, other)]
    summary = summarize_play(results)
    assert summary["layer_sops_per_action"] == pytest.approx({"conv1": 160 / 3, "fc1": 12 / 3})
    assert summary["sops_per_action"] == pytest.approx(172 / 3)
    assert summary["layer_spikes_per_action"] == pytest.approx({"conv1": 4.0, "fc1": 1.0})  # unchanged fields
    # spike counts recorded without SOPs (the old call) give no SOP fields rather than a false 0
    bare = SpikeStats(T=4)
    bare.add({"conv1": torch.tensor([8.0]), "fc1": torch.tensor([2.0])}, neurons)
    summary = summarize_play([EpisodeResult(1.0, 0.5, 0.1, 10, bare)])
    assert "sops_per_action" not in summary and "layer_sops_per_action" not in summary


def test_conversion_sops_per_layer_and_summary():
    torch.manual_seed(0)
    ann = paper_network("Dqn", 4)
    lambdas = {"conv1": 0.5, "conv2": 0.5, "conv3": 0.5, "fc1": 0.5, "fc2": 0.5}  # makes every layer fire
    snn = SpikingNetwork.from_ann(ann, lambdas)
    x = torch.randint(0, 256, (1, 4, 84, 84), dtype=torch.uint8)
    result = snn.simulate(x, 6)
    sops = layer_sops(result.spike_counts, snn)
    assert list(sops) == list(LAYER_NAMES)
    for name, successor in zip(("conv1", "conv2"), (snn.conv2, snn.conv3)):
        counts = result.spike_counts[name][0]
        assert counts.sum() > 0
        fan = positional_fanout(successor, tuple(counts.shape))
        assert sops[name].item() == pytest.approx(float((counts.double().numpy() * fan).sum()), rel=1e-12)
    assert sops["conv3"].item() == result.spike_counts["conv3"].sum().item() * 512
    assert sops["fc1"].item() == result.spike_counts["fc1"].sum().item() * 4
    assert sops["fc2"].item() == 0.0  # output spikes: fan-out 0

    zero = {name: 0.0 for name in LAYER_NAMES}
    a = EpisodeStats(score=1, steps=3, greedy_steps=2, layer_spikes=dict(zero),
                     layer_sops={**zero, "conv1": 30.0, "fc1": 6.0})
    b = EpisodeStats(score=2, steps=1, greedy_steps=1, layer_spikes=dict(zero), layer_sops={**zero, "conv1": 3.0})
    s = summarise([a, b], {"conv1": 1, "conv2": 1, "conv3": 1, "fc1": 1, "fc2": 1}, T=2)
    assert s["sops_per_greedy_action"]["conv1"] == pytest.approx(11.0)
    assert s["sops_per_greedy_action"]["fc1"] == pytest.approx(2.0)
    assert s["sops_per_greedy_action"]["total"] == pytest.approx(13.0)
