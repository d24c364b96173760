"""The opt-in speed paths of the Agent: --bf16 (autocast of the spiking networks) and --cuda_graphs (act and update
replayed as CUDA graphs, agent/cuda_graphs.py, the default on CUDA). On the CPU: the pinned staging of minibatches
against plain sampling, bf16 on small sizes, and that neither option touches what it must not; on a GPU: graphs
against eager, bit for bit under --deterministic and within eager's own noise in the default regime, and the two
Adam implementations they may use."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import run as run_py
from agent import Agent, Config
from agent.cuda_graphs import PinnedStaging
from neural_network import build_network
from replay_memory import ReplayMemory

# --deterministic's cuBLAS setting, before any test of this process creates a cuBLAS handle (neural_network/backend.py)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def filled_memory(seed: int = 0, n: int = 120) -> ReplayMemory:
    memory = ReplayMemory(200, history_len=4, seed=seed, check_memory=False)
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


def test_cuda_graphs_are_the_default_and_give_way_to_compile():
    from utils.cli import UserError

    assert Config().cuda_graphs and not Config().deterministic and not Config().bf16
    run_py.check_config(Config(compile=True), {"compile": True})  # the default graphs step aside for --compile
    with pytest.raises(UserError, match="--cuda_graphs"):
        run_py.check_config(Config(compile=True), {"compile": True, "cuda_graphs": True})


# -- on a GPU ---------------------------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
UPDATES = 3


@pytest.fixture
def numeric_regime():
    """Every GPU test starts from the default regime (run.py's) and leaves the global flags as it found them, so
    that no test depends on which ran before it."""
    from neural_network.backend import apply_numeric_regime

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    apply_numeric_regime(False, "cuda")
    yield apply_numeric_regime
    (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic,
     torch.backends.cudnn.benchmark) = saved[:4]
    torch.use_deterministic_algorithms(saved[4])


def train_both(model: str, **options) -> tuple[Agent, Agent, list[tuple[torch.Tensor, torch.Tensor]]]:
    """An eager agent and a graph agent from the same weights, UPDATES updates on the same minibatches."""
    eager = make_agent(model, 8, "cuda", cuda_graphs=False, **options)
    graphs = make_agent(model, 8, "cuda", cuda_graphs=True, **options)
    memory, losses = filled_memory(), []
    for _ in range(UPDATES):
        batch = memory.sample(32)
        losses.append((graphs.update(batch), eager.update(batch)))
    assert graphs.graphs.failed is None and graphs.graphs.update_graph is not None and eager.graphs is None
    return eager, graphs, losses


@cuda
@pytest.mark.parametrize("model", ["Dqn", "Dsqn"])
def test_under_deterministic_graphs_and_eager_give_identical_bits(model, numeric_regime):
    numeric_regime(True, "cuda")
    eager, graphs, losses = train_both(model, deterministic=True)
    assert eager.optimizer.defaults["capturable"] and graphs.optimizer.defaults["capturable"]  # the same Adam
    for ours, theirs in losses:
        assert torch.equal(ours, theirs)
    for ours, theirs in zip(graphs.net.parameters(), eager.net.parameters()):
        assert torch.equal(ours, theirs)
    frame = filled_memory().sample(1).states[0].numpy()
    assert torch.equal(graphs.q_values(frame), eager.q_values(frame))
    stacks = filled_memory().sample(8).states.numpy()  # the batched act of evaluations
    assert torch.equal(graphs.q_values_batch(stacks), eager.q_values_batch(stacks))
    # 5 stacks run in the graph of 8 (3 zero rows): the same Q up to the rounding of another batch size
    torch.testing.assert_close(graphs.q_values_batch(stacks[:5]), eager.q_values_batch(stacks[:5]))
    graphs.set_learning_rate(5e-5)  # a new learning rate is captured again, not ignored
    eager.set_learning_rate(5e-5)
    batch = filled_memory().sample(32)
    assert torch.equal(graphs.update(batch), eager.update(batch))
    for ours, theirs in zip(graphs.net.parameters(), eager.net.parameters()):
        assert torch.equal(ours, theirs)


@cuda
def test_plain_and_capturable_adam_on_fixed_gradients(numeric_regime):
    """The two Adam implementations the graphs and eager paths can use, on the same fixed gradients: the same
    step up to float32 rounding of its arithmetic (a few units in the last place of the step, far below lr)."""
    torch.manual_seed(0)
    start = torch.randn(4096, device="cuda")
    grads = [torch.randn(4096, device="cuda") for _ in range(5)]
    params = {}
    for capturable in (False, True):
        p = torch.nn.Parameter(start.clone())
        optimizer = torch.optim.Adam([p], lr=1e-4, capturable=capturable)
        for g in grads:
            p.grad = g.clone()
            optimizer.step()
        params[capturable] = p.detach()
    difference = (params[True] - params[False]).abs().max().item()
    assert difference <= 1e-4 * 1e-3  # a thousandth of the learning rate
    assert not torch.equal(params[True], start)


@cuda
@pytest.mark.parametrize("model", ["Dqn", "Dsqn"])
def test_in_the_default_regime_graphs_stay_within_eagers_own_noise(model, numeric_regime):
    """The default regime (TF32 convolutions, no deterministic algorithms, capturable Adam for graphs only): after
    UPDATES updates the graphs' weights differ from eager's by no more than two eager runs differ from each other
    or, where eager repeats itself exactly, by less than one learning rate per update."""
    eager, graphs, losses = train_both(model)
    again, _, _ = train_both(model)
    lr = eager.config.learning_rate
    for ours, theirs in losses:
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-6)
    for ours, theirs, repeat in zip(graphs.net.parameters(), eager.net.parameters(), again.net.parameters()):
        noise = (repeat - theirs).abs().max().item()
        assert (ours - theirs).abs().max().item() <= max(noise, UPDATES * lr)
