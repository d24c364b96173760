"""The opt-in speed paths of the Agent: --bf16 (autocast of the spiking networks) and --cuda_graphs (act and update
replayed as CUDA graphs, agent/cuda_graphs.py). On the CPU: the pinned staging of minibatches against plain
sampling, bf16 on small sizes, and that neither option touches what it must not; on a GPU: graphs against eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import run as run_py
from agent import Agent, Config
from agent.cuda_graphs import PinnedStaging
from neural_network import build_network
from replay_memory import ReplayMemory


def filled_memory(seed: int = 0, n: int = 120) -> ReplayMemory:
    memory = ReplayMemory(200, seed=seed, check_memory=False)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (n + 4, 84, 84), dtype=np.uint8)
    for k in range(n):
        memory.append(frames[k:k + 4], int(rng.integers(4)), float(k % 3), k % 40 == 39, frames[k + 1:k + 5])
    return memory


def make_agent(model: str = "Dsqn", T: int = 4, device: str = "cpu", **options) -> Agent:
    config = Config(model=model, T=T, seed=0, **options)
    torch.manual_seed(0)
    nets = [build_network(model, 4, **config.network_kwargs()) for _ in range(2)]
    return Agent(config, nets[0], torch.device(device), target_net=nets[1])


def test_staged_minibatches_equal_plain_sampling():
    """Two memories with the same contents and seed: the staged copies of one give, batch after batch, exactly
    the batches sampled from the other; the buffers are reused, each copy going through the next pinned slot."""
    staged_memory, plain_memory = filled_memory(), filled_memory()
    first = staged_memory.sample(32)
    staging = PinnedStaging(tuple(first), "cpu", slots=2)
    batches = [first] + [staged_memory.sample(32) for _ in range(4)]
    buffers = None
    for k, batch in enumerate(batches):
        out = staging.copy(tuple(batch))
        buffers = buffers or out
        assert all(a is b for a, b in zip(out, buffers))  # static buffers: the same tensors every time
        assert staging.slot == (k + 1) % 2
        for ours, theirs in zip(out, plain_memory.sample(32)):
            assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)


def test_bf16_changes_only_spiking_networks_and_stays_close_to_float32():
    frame = filled_memory().sample(1).states[0].numpy()
    batch = filled_memory().sample(8)
    for model in ("Dqn", "Dsqn"):
        fp32, bf16 = make_agent(model), make_agent(model, bf16=True)
        assert bf16.bf16 == (model == "Dsqn")
        q32, q16 = fp32.q_values(frame), bf16.q_values(frame)
        assert q16.dtype == torch.float32
        if model == "Dqn":  # no autocast at all: bit for bit
            assert torch.equal(q32, q16) and torch.equal(fp32.update(batch), bf16.update(batch))
        else:
            torch.testing.assert_close(q16, q32, atol=0.05, rtol=0.1)
            loss = bf16.update(batch)
            assert loss.dtype == torch.float32 and torch.isfinite(loss)
            assert all(p.dtype == torch.float32 for p in bf16.net.parameters())  # the weights stay float32


def test_cuda_graphs_is_a_no_op_on_the_cpu_and_refused_with_compile(capsys):
    agent = make_agent("Dqn", cuda_graphs=True)
    assert agent.graphs is None and not agent.optimizer.defaults["capturable"]
    with pytest.raises(SystemExit) as exit_info:
        run_py.cli(["--device", "cpu", "--compile", "--cuda_graphs"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "--cuda_graphs" in err[0] and "--compile" in err[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize(("model", "bf16"), [("Dqn", False), ("Dsqn", False), ("Dsqn", True)])
def test_cuda_graphs_give_the_eager_numbers(model, bf16):
    """Same initial weights, same minibatches: the graph path's Q-values, losses and weights after three updates
    are eager's (Adam's capturable arithmetic may round differently), and the capture's warm-up left no trace."""
    eager, graphs = make_agent(model, 8, "cuda", bf16=bf16), make_agent(model, 8, "cuda", bf16=bf16, cuda_graphs=True)
    assert graphs.graphs is not None and graphs.optimizer.defaults["capturable"]
    memory = filled_memory()
    frame = memory.sample(1).states[0].numpy()
    torch.testing.assert_close(graphs.q_values(frame), eager.q_values(frame), rtol=1e-5, atol=1e-6)
    for _ in range(3):
        batch = memory.sample(32)
        torch.testing.assert_close(graphs.update(batch), eager.update(batch), rtol=1e-4, atol=1e-6)
    assert graphs.graphs.failed is None and graphs.graphs.update_graph is not None
    for ours, theirs in zip(graphs.net.parameters(), eager.net.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(graphs.q_values(frame), eager.q_values(frame), rtol=1e-4, atol=1e-5)
    graphs.set_learning_rate(5e-5)  # a new learning rate is captured again, not ignored
    eager.set_learning_rate(5e-5)
    batch = memory.sample(32)
    torch.testing.assert_close(graphs.update(batch), eager.update(batch), rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(graphs.net.parameters(), eager.net.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
