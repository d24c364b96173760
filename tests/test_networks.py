"""The four networks: shapes, stateless forward passes, the LIF/IF equations, surrogate gradients, checkpoints."""

import math
import os
import pickle

import pytest
import torch
from conftest import paper_network

from neural_network import (
    MODELS,
    BackendError,
    CheckpointError,
    SpikeMonitor,
    load_checkpoint,
    read_checkpoint,
    resolve_backend,
    save_checkpoint,
)

N_ACTIONS = 6


@pytest.fixture(scope="module")
def frames():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8, generator=generator)


def make(model, **kwargs):
    torch.manual_seed(1)
    return paper_network(model, N_ACTIONS, T=kwargs.pop("T", 8), **kwargs)


@pytest.mark.parametrize("model", MODELS)
def test_output_shape_and_stateless_forward(model, frames):
    net = make(model)
    with torch.no_grad():
        first = net(frames)
        second = net(frames)
        single = net(frames[1:2])
    assert first.shape == (3, N_ACTIONS)
    assert first.dtype == torch.float32
    # The same input gives the same output: no membrane state carries over between calls...
    assert torch.equal(first, second)
    # ...nor between the samples of a batch.
    torch.testing.assert_close(single[0], first[1], rtol=1e-5, atol=1e-6)


def test_dsqn_spike_outputs_are_firing_rates(frames):
    T = 8
    net = make("DsqnSpike", T=T)
    # Scale the weights up so that the output neurons actually fire.
    with torch.no_grad():
        for layer in net.weight_layers:
            layer.weight.mul_(6.0)
        q = net(frames)
    assert q.min() >= 0 and q.max() <= 1
    steps = q * T
    assert torch.allclose(steps, steps.round(), atol=1e-5)
    assert (q > 0).any(), "weights were scaled so that some output neuron fires"


def lif_reference(x: list[float], tau: float, v_th: float, v_reset: float | None) -> tuple[list[float], list[float]]:
    """The LIF equations of docs/METHOD.md by hand: H = V + (X - (V - V_reset)) / tau; S = H >= V_th; hard or soft
    reset."""
    v, spikes, voltages = (0.0 if v_reset is None else v_reset), [], []
    for xt in x:
        h = v + (xt - (v - (0.0 if v_reset is None else v_reset))) / tau
        s = 1.0 if h >= v_th else 0.0
        v = (h - v_th * s) if v_reset is None else (h * (1 - s) + v_reset * s)
        spikes.append(s)
        voltages.append(v)
    return spikes, voltages


@pytest.mark.parametrize("v_reset", [0.0, -1.0])
def test_lif_membrane_trace_matches_the_equation(v_reset):
    net = make("Dsqn", tau=2.0, v_threshold=1.0, v_reset=v_reset)
    lif = net.activations[0]
    assert lif.v_reset == (None if v_reset == -1.0 else v_reset)
    lif.store_v_seq = True
    x = [1.5] * 12
    spikes = lif(torch.tensor(x).reshape(-1, 1))
    expected_spikes, expected_v = lif_reference(x, tau=2.0, v_th=1.0, v_reset=None if v_reset == -1.0 else v_reset)
    assert spikes.flatten().tolist() == expected_spikes
    torch.testing.assert_close(lif.v_seq.flatten(), torch.tensor(expected_v), rtol=0, atol=1e-6)
    assert 0 < sum(expected_spikes) < len(x)


def test_if_neuron_integrates_without_leak():
    net = make("DsqnIF")
    node = net.activations[0]
    node.store_v_seq = True
    spikes = node(torch.full((6, 1), 0.4))
    # V: 0.4, 0.8, 1.2 -> spike, hard reset to 0, 0.4, 0.8, 1.2 -> spike
    assert spikes.flatten().tolist() == [0, 0, 1, 0, 0, 1]
    torch.testing.assert_close(node.v_seq.flatten(), torch.tensor([0.4, 0.8, 0.0, 0.4, 0.8, 0.0]))


@pytest.mark.parametrize("model", ["Dsqn", "DsqnSpike", "DsqnIF"])
@pytest.mark.parametrize("surrogate_func", ["ATan", "Sigmoid"])
def test_surrogate_gradient_reaches_conv1(model, surrogate_func, frames):
    net = make(model, surrogate_func=surrogate_func)
    net(frames).sum().backward()
    # conv1 sits behind every neuron layer: its gradient exists only through the surrogate derivatives,
    # even where the untrained network's deeper layers do not fire yet.
    grad = net.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_spike_monitor_counts_every_layer_from_outside(frames):
    net = make("DsqnIF", T=8)
    with torch.no_grad():
        unwatched = net(frames)
    with SpikeMonitor(net) as monitor, torch.no_grad():
        watched = net(frames)
    assert torch.equal(unwatched, watched)  # watching changes nothing the network computes
    counts, neurons = monitor.spike_counts(), monitor.neurons
    assert list(counts) == ["conv1", "conv2", "conv3", "fc1"]
    assert neurons == {"conv1": 32 * 20 * 20, "conv2": 64 * 9 * 9, "conv3": 64 * 7 * 7, "fc1": 512}
    for name, count in counts.items():
        assert count.shape == (3,)
        assert (count >= 0).all() and (count <= neurons[name] * 8).all()
        assert monitor.maps[name].shape[0] == 3
    assert counts["conv1"].sum() > 0
    # Detached: later passes are not recorded.
    before = {name: spike_map.clone() for name, spike_map in monitor.maps.items()}
    with torch.no_grad():
        net(frames[:1])
    assert all(torch.equal(before[name], monitor.maps[name]) for name in before)


def test_dqn_has_no_spikes_to_watch():
    with pytest.raises(ValueError, match="no spiking neurons"):
        SpikeMonitor(make("Dqn"))


@pytest.mark.parametrize("model", MODELS)
def test_checkpoint_round_trip_gives_identical_predictions(model, frames, tmp_path):
    net = make(model)
    path = str(tmp_path / "net.pkl")
    save_checkpoint(net, path)
    # Plain metadata and a state dict, readable with weights_only=True.
    state = torch.load(path, weights_only=True)
    assert state["model"] == model
    state = state["state_dict"]
    assert "conv1.weight" in state and int(state["model_id"]) == MODELS.index(model)
    torch.manual_seed(123)
    other = paper_network(model, N_ACTIONS, T=8)
    info = load_checkpoint(other, path)
    assert info.model == model and info.n_actions == N_ACTIONS
    with torch.no_grad():
        assert torch.equal(net(frames), other(frames))


def test_checkpoint_errors(tmp_path):
    dqn_path = str(tmp_path / "dqn.pkl")
    save_checkpoint(make("Dqn"), dqn_path)
    with pytest.raises(CheckpointError, match="holds a Dqn network, not Dsqn"):
        load_checkpoint(make("Dsqn"), dqn_path)
    with pytest.raises(CheckpointError, match="6 actions but this game has 4"):
        load_checkpoint(paper_network("Dqn", 4), dqn_path)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(str(tmp_path / "missing.pkl"))
    text = tmp_path / "notes.pkl"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_checkpoint(str(text))
    other_dict = tmp_path / "other.pkl"
    torch.save({"weight": torch.zeros(2)}, other_dict)
    with pytest.raises(CheckpointError, match="not a network checkpoint"):
        read_checkpoint(str(other_dict))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_model_file_cannot_run_code(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as file:
        pickle.dump({"conv1.weight": _RunsCode()}, file)
    with pytest.raises(CheckpointError):
        read_checkpoint(str(path))


def test_backend_resolution_on_cpu():
    assert resolve_backend("auto", "cpu") == "auto"
    assert resolve_backend("torch", "cpu") == "torch"
    for backend in ("cuda", "cupy", "triton"):
        with pytest.raises(BackendError, match="needs a CUDA device"):
            resolve_backend(backend, "cpu")
    with pytest.raises(BackendError, match="unknown backend"):
        resolve_backend("numba", "cpu")


def test_the_networks_read_the_frames_the_environment_makes():
    """The frame size has two homes in one layer (the preprocessing and the network input, which may not import
    each other): they agree."""
    from environment.wrappers import FRAME_SIZE as ENV_FRAME_SIZE
    from neural_network.architecture import FRAME_SIZE

    assert ENV_FRAME_SIZE == FRAME_SIZE and paper_network("Dqn", 4).input_shape == (4, FRAME_SIZE, FRAME_SIZE)


def test_dqn_output_matches_a_hand_written_nature_cnn(frames):
    net = make("Dqn")
    x = frames.float() / 255
    import torch.nn.functional as F

    h = F.relu(F.conv2d(x, net.conv1.weight, net.conv1.bias, stride=4))
    h = F.relu(F.conv2d(h, net.conv2.weight, net.conv2.bias, stride=2))
    h = F.relu(F.conv2d(h, net.conv3.weight, net.conv3.bias, stride=1))
    h = F.relu(F.linear(h.flatten(1), net.fc1.weight, net.fc1.bias))
    expected = F.linear(h, net.fc2.weight, net.fc2.bias)
    with torch.no_grad():
        torch.testing.assert_close(net(frames), expected)
    assert math.prod(net.conv3(net.conv2(net.conv1(x))).shape[1:]) == 3136


def test_compiled_network_matches_eager_and_keeps_plain_keys(frames):
    import copy

    from neural_network import compile_network

    eager = make("Dqn")
    compiled = compile_network(copy.deepcopy(eager), "cpu")
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints stay plain
    with torch.no_grad():
        torch.testing.assert_close(compiled(frames), eager(frames), rtol=1e-4, atol=1e-5)


def test_new_checkpoint_carries_metadata_and_old_format_still_loads(tmp_path):
    from neural_network import read_checkpoint, save_checkpoint
    net = paper_network("Dsqn", 6, T=5)
    new = str(tmp_path / "new.pkl")
    save_checkpoint(net, new, "PongNoFrameskip-v4")
    raw = torch.load(new, weights_only=True)
    assert {k: raw[k] for k in ("format", "model", "game", "T", "n_actions")} == {
        "format": 1, "model": "Dsqn", "game": "PongNoFrameskip-v4", "T": 5, "n_actions": 6}
    _, info = read_checkpoint(new)
    assert (info.model, info.game, info.T, info.n_actions, info.format) == ("Dsqn", "PongNoFrameskip-v4", 5, 6, 1)
    old = str(tmp_path / "old.pkl")  # written exactly as before format 1: a bare state dict
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, old)
    other = paper_network("Dsqn", 6, T=5)
    info = load_checkpoint(other, old)
    assert (info.model, info.game, info.format) == ("Dsqn", None, 0)
    assert torch.equal(other.fc2.weight, net.fc2.weight)
    with pytest.raises(CheckpointError, match="holds a Dsqn network, not Dqn"):
        load_checkpoint(paper_network("Dqn", 6), new)


def test_checkpoint_metadata_must_agree_with_its_weights_and_names_the_game(tmp_path, capsys):
    from neural_network import checkpoint, read_checkpoint, trained_game

    net = paper_network("Dsqn", 6, T=5)
    payload = checkpoint.checkpoint_payload(net, "PongNoFrameskip-v4")
    for name, change, words in (("actions.pkl", {"n_actions": 4}, "n_actions 4"), ("T.pkl", {"T": 7}, "T 7"),
                                ("model.pkl", {"model": "Snn"}, "unknown model 'Snn'"),
                                ("newer.pkl", {"format": 2}, "format 2, newer")):
        torch.save({**payload, **change}, tmp_path / name)
        with pytest.raises(CheckpointError, match=words):
            read_checkpoint(str(tmp_path / name))
    # The model is known by its name: the positional model_id buffer is only a label in a format-1 file.
    torch.save({**payload, "state_dict": {**payload["state_dict"], "model_id": torch.tensor(3)}}, tmp_path / "id.pkl")
    info = load_checkpoint(paper_network("Dsqn", 6, T=5), str(tmp_path / "id.pkl"))
    assert info.model == "Dsqn"

    new, old = str(tmp_path / "new.pkl"), str(tmp_path / "old.pkl")
    save_checkpoint(net, new, "PongNoFrameskip-v4")
    torch.save(net.state_dict(), old)  # as the code before format 1 wrote it
    _, new_info = read_checkpoint(new)
    _, old_info = read_checkpoint(old)
    run_config = {"env_id": "BreakoutNoFrameskip-v4"}  # a config.json beside the file
    assert trained_game(new, new_info, run_config, None, "--env_id") == "PongNoFrameskip-v4"  # metadata first
    assert trained_game(old, old_info, run_config, None, "--env_id") == "BreakoutNoFrameskip-v4"
    assert trained_game(old, old_info, {}, "BoxingNoFrameskip-v4", "--env_id") == "BoxingNoFrameskip-v4"
    # A game given against the trained one is played as asked (a transfer test), with one note.
    assert trained_game(new, new_info, {}, "BreakoutNoFrameskip-v4", "--game") == "BreakoutNoFrameskip-v4"
    assert capsys.readouterr().err.splitlines() == [
        f"note: {new} was trained on PongNoFrameskip-v4 (its metadata); it plays BreakoutNoFrameskip-v4 as --game asks"]
    assert trained_game(old, old_info, run_config, "PongNoFrameskip-v4", "--env_id") == "PongNoFrameskip-v4"
    assert "trained on BreakoutNoFrameskip-v4 (its run's config.json)" in capsys.readouterr().err
