"""The exported NIR file, as written, runs whole in snnTorch 1.0.0 and Norse 1.1.0 (their own importers, the recipe
of docs/NIR.md): on real Breakout frame stacks, several at once, the same spikes in every layer at every step, the
same Q read-out and greedy actions as our own network; and where an importer cannot run a graph, the export says
so, and it is true.

The networks get grid weights that make every layer fire on these frames (tests/test_export_nir.py's ``firing``).
"""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
from conftest import paper_env, paper_network
from test_export_nir import firing

from conversion_based_snn.snn.simulate import SpikingNetwork
from environment.atari import make_env
from neural_network.nir_export import graph_bytes, importer_limits, qnetwork_to_nir, spiking_network_to_nir
from neural_network.nir_reader import compare, import_graph, network_run, reset_imported, run_imported

T = 8
IMPORTERS = ("snntorch", "norse")


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Six frame stacks of a real Breakout game under random actions (every 8th agent step)."""
    env = make_env("BreakoutNoFrameskip-v4", training=False, seed=0, **paper_env())
    rng = np.random.default_rng(0)
    observation, _ = env.reset()
    stacks = []
    while len(stacks) < 48:
        observation, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        stacks.append(np.array(observation))
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return torch.from_numpy(np.stack(stacks[7::8]))


def written(graph: nir.NIRGraph, tmp_path) -> nir.NIRGraph:
    """The graph as the file holds it (nodes come back in alphabetical order, which nirtorch's wiring sees)."""
    path = tmp_path / "graph.nir"
    path.write_bytes(graph_bytes(graph))
    return nir.read(str(path))


def assert_runs_whole(model, graph, frames, importer, q_tolerance=1e-5):
    agreement = compare(model, graph, frames, importer=importer)
    assert all(count > 0 for count in agreement.spikes.values()), agreement  # every layer fires
    assert not any(agreement.layers.values()), agreement  # the same spike in every layer at every step
    assert agreement.actions_equal == len(frames) and agreement.max_q_difference < q_tolerance, agreement
    return agreement


@pytest.mark.parametrize("importer", IMPORTERS)
@pytest.mark.parametrize("model, v_reset", [("Dsqn", 0.0), ("DsqnSpike", 0.0), ("Dsqn", None), ("DsqnIF", None)])
def test_a_dsqn_export_runs_whole_in_the_importer(model, v_reset, importer, frames, tmp_path):
    net = firing(paper_network(model, 4, T=T, v_reset=v_reset), frames=frames)
    graph = written(qnetwork_to_nir(net), tmp_path)
    assert importer_limits(graph) == {"snntorch": [], "norse": []}
    assert_runs_whole(net, graph, frames, importer)


@pytest.mark.parametrize("importer", IMPORTERS)
@pytest.mark.parametrize("node_type", ["SubtractiveResetIFNodes", "LIFNodes"])
def test_a_converted_network_runs_in_the_importer(node_type, importer, frames, tmp_path):
    layers = firing(paper_network("DsqnIF", 4, T=T, v_reset=None), frames=frames).weight_layers
    snn = SpikingNetwork(*layers, node_type=node_type, tau=1 / math.log(2), schedule="same_step")
    graph = written(spiking_network_to_nir(snn, T), tmp_path)
    # IF: Q (q_mix) is the graph's output; LIF: the output is the spike count, and Q adds the output neurons'
    # voltage, which the export says is read from the importer's state
    assert bool(importer_limits(graph)[importer]) == (node_type == "LIFNodes")
    assert_runs_whole(snn, graph, frames, importer)


def test_one_import_serves_many_actions_with_a_reset_between(frames, tmp_path):
    """docs/NIR.md's recipe: import once, reset the neurons before each action (snnTorch keeps them inside)."""
    net = firing(paper_network("Dsqn", 4, T=T), frames=frames)
    graph = written(qnetwork_to_nir(net), tmp_path)
    for importer in IMPORTERS:
        module = import_graph(graph, importer)
        for batch in (frames[:2], frames[2:5]):  # two actions, batch sizes 2 and 3
            reset_imported(module)
            state = None
            with torch.no_grad():
                for _ in range(T):
                    q, state = module(batch.float() / 255.0, state)
            assert torch.allclose(q, network_run(net, batch, T)[1], atol=1e-5), importer


def test_what_an_importer_cannot_run_is_said_and_true(frames, tmp_path):
    """A hard-reset IF network: Norse runs it, snnTorch's importer refuses nir.IF with r != 1 (and would make it
    leaky); a delayed schedule: neither has nir.Delay."""
    net = firing(paper_network("DsqnIF", 4, T=T, v_reset=0.0), frames=frames)
    graph = written(qnetwork_to_nir(net), tmp_path)
    limits = importer_limits(graph)
    assert limits["norse"] == [] and "nir.IF" in limits["snntorch"][0]
    assert_runs_whole(net, graph, frames, "norse")
    with pytest.raises(AssertionError, match="r != 1"):
        run_imported(graph, frames.float() / 255.0, "snntorch")
    layers = firing(paper_network("DsqnIF", 4, T=T, v_reset=None), frames=frames).weight_layers
    delayed = written(spiking_network_to_nir(SpikingNetwork(*layers, schedule="delayed"), T), tmp_path)
    for importer in IMPORTERS:
        assert "nir.Delay" in importer_limits(delayed)[importer][0]
        with pytest.raises((ValueError, KeyError)):
            run_imported(delayed, frames.float() / 255.0, importer)


def test_norse_needs_the_graph_s_time_step(frames, tmp_path):
    """The time step is in the neurons' parameters (tau = tau_ours x dt); Norse integrates with the dt it is given,
    and its default (1e-3 s) on a graph exported with dt 1e-4 s makes every leak ten times faster."""
    net = firing(paper_network("Dsqn", 4, T=T), frames=frames)
    graph = written(qnetwork_to_nir(net), tmp_path)
    assert float(graph.nodes["conv1_lif"].tau[0, 0, 0]) == pytest.approx(2 * float(graph.metadata["dt"]))
    import norse.torch

    module = norse.torch.from_nir(graph)  # Norse's default dt
    state = None
    with torch.no_grad():
        for _ in range(T):
            q, state = module(frames.float() / 255.0, state)
    assert not torch.allclose(q, network_run(net, frames, T)[1], atol=1e-3)
