"""Tests for conversion_based_snn/: the conversion-based SNN baseline (PAPER_NOTES §6)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conversion_based_snn import convert
from conversion_based_snn.snn import (
    LAYER_NAMES,
    EpisodeStats,
    NormalisationError,
    SpikingNetwork,
    StreamingPercentile,
    collect_normalisation_states,
    compute_lambdas,
    epsilon_greedy,
    exact_percentile,
    neuron_step,
    pre_activations,
    summarise,
)
from neural_network import build_network, save_checkpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERT_DIR = os.path.join(REPO_ROOT, "conversion_based_snn")
GAME = "BreakoutNoFrameskip-v4"
NODE_TYPES = ("SubtractiveResetIFNodes", "LIFNodes")


# -- helpers ----------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine's cores are shared: many small ops are much faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smooth_frames(n: int, seed: int) -> torch.Tensor:
    """n uint8 frame stacks [n, 4, 84, 84] that look a little like images (upsampled 12x12 noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 4, 12, 12), generator=g).float()
    up = torch.nn.functional.interpolate(low, size=(84, 84), mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def ann():
    torch.manual_seed(0)
    return build_network("Dqn", 4).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def norm_data():
    return smooth_frames(64, seed=1)


@pytest.fixture(scope="module")
def lambdas(ann, norm_data):
    return compute_lambdas(ann, [s.numpy() for s in norm_data], 99.9, batch=16)


def firing_network(ann, lambdas, node_type, dtype=torch.float32, grid_bits=None) -> SpikingNetwork:
    """The normalised Dqn; LIF layers get a gain of 1 / (1 - exp(-1/tau)) so that every layer fires.
    grid_bits: round all weights and biases to multiples of 2**-grid_bits, which makes the currents of layers fed
    by spikes exact in float32 whatever order a conv/linear kernel sums in."""
    snn = SpikingNetwork.from_ann(ann, lambdas, node_type, tau=2.0).to(dtype)
    gain = 1.0 / (1.0 - math.exp(-0.5)) if node_type == "LIFNodes" else 1.0
    with torch.no_grad():
        for layer in snn.weight_layers:
            for p in (layer.weight, layer.bias):
                p.mul_(gain)
                if grid_bits is not None:
                    p.copy_(torch.round(p * 2**grid_bits) / 2**grid_bits)
    return snn


def run_convert(args: list[str], cwd: str = REPO_ROOT, script: str = "conversion_based_snn/convert.py"):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


# -- exact percentiles ------------------------------------------------------------------------------------------------


def test_streaming_percentile_equals_numpy_linear_bit_for_bit():
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=1001).astype(np.float32),
        rng.integers(-3, 4, size=777).astype(np.float32),  # many ties
        np.concatenate([np.zeros(500, np.float32), -np.zeros(7, np.float32), rng.normal(size=20).astype(np.float32)]),
        (rng.normal(size=300) * 1e-30).astype(np.float32),  # subnormal-ish magnitudes
        np.array([3.5], np.float32),
        rng.exponential(size=4096).astype(np.float32) * 1e4,
    ]
    for a in arrays:
        for p in (1e-3, 0.1, 25.0, 50.0, 99.0, 99.9, 99.99, 100.0, float(rng.uniform(0, 100))):
            expected = np.percentile(a.astype(np.float64), p)
            assert exact_percentile(torch.from_numpy(a), p) == expected, (a[:5], p)
            assert exact_percentile(torch.from_numpy(a), p) == pytest.approx(float(np.percentile(a, p)), rel=1e-6,
                                                                              abs=1e-35)
    # streamed in pieces, in another order on the second pass
    a = rng.normal(size=5000).astype(np.float32)
    acc = StreamingPercentile(99.9)
    for chunk in np.array_split(a, 7):
        acc.add(torch.from_numpy(chunk))
    acc.start_second_pass()
    for chunk in np.array_split(a[::-1].copy(), 3):
        acc.add(torch.from_numpy(chunk))
    assert acc.result() == np.percentile(a.astype(np.float64), 99.9)


# -- neurons ----------------------------------------------------------------------------------------------------------


def trace(current: float, steps: int, decay=None, dtype=torch.float32):
    v = torch.zeros(1, dtype=dtype)
    voltages, spikes = [], []
    for _ in range(steps):
        s = neuron_step(v, torch.tensor([current], dtype=dtype), decay)
        voltages.append(float(v))
        spikes.append(int(s))
    return voltages, spikes


def test_subtractive_reset_keeps_the_residual():
    voltages, spikes = trace(0.7, 9)
    # 0.7; 1.4 -> spike -> 0.4; 1.1 -> spike -> 0.1; 0.8; 1.5 -> 0.5; 1.2 -> 0.2; 0.9; 1.6 -> 0.6; 1.3 -> 0.3
    assert spikes == [0, 1, 1, 0, 1, 1, 0, 1, 1]
    assert voltages == pytest.approx([0.7, 0.4, 0.1, 0.8, 0.5, 0.2, 0.9, 0.6, 0.3], abs=1e-6)
    # exactly representable input: the threshold is reached exactly at step 4 (V >= 1 fires) and V returns to 0
    voltages, spikes = trace(0.75, 8)
    assert spikes == [0, 1, 1, 1, 0, 1, 1, 1]
    assert voltages == [0.75, 0.5, 0.25, 0.0, 0.75, 0.5, 0.25, 0.0]
    # no leak and no lower bound: a negative input just integrates
    assert trace(-0.25, 4) == ([-0.25, -0.5, -0.75, -1.0], [0, 0, 0, 0])


def test_lif_leaks_then_integrates_then_subtracts():
    decay = math.exp(-1.0 / 2.0)
    voltages, spikes = trace(0.7, 12, decay, torch.float64)
    v, expected_v, expected_s = 0.0, [], []
    for _ in range(12):
        v = v * decay + 0.7
        s = v >= 1.0
        v -= s
        expected_v.append(v)
        expected_s.append(int(s))
    assert spikes == expected_s and 0 < sum(spikes) < 12
    assert voltages == pytest.approx(expected_v, abs=1e-12)
    # below the LIF's rheobase (V converges to I / (1 - decay) < 1) it never fires
    assert sum(trace(0.39 * (1 - decay) / 0.4, 200, decay)[1]) == 0


def test_network_neurons_see_constant_input_and_bias_every_step(ann):
    """Through the real layout: conv1 with zero weights and bias 0.7 drives all its neurons with 0.7 per step."""
    snn = SpikingNetwork.from_ann(ann)
    with torch.no_grad():
        snn.conv1.weight.zero_()
        snn.conv1.bias.fill_(0.75)
    x = smooth_frames(1, seed=3)
    for simulate in (snn.simulate, snn.simulate_stepwise):
        result = simulate(x, 6, record_trains=True)
        train = result.spike_trains["conv1"]
        assert train.shape == (6, 1, 32, 20, 20)
        assert torch.equal(train.flatten(1).float().mean(1), torch.tensor([0.0, 1, 1, 1, 0, 1]))
        assert torch.all(result.final_voltages["conv1"] == 0.5)
        assert torch.all(result.spike_counts["conv1"] == 4)


# -- layer by layer == step by step ---------------------------------------------------------------------------------


def assert_same_simulation(snn, x, T, voltage_atol=0.0):
    fast = snn.simulate(x, T, record_trains=True)
    slow = snn.simulate_stepwise(x, T, record_trains=True)
    for name in LAYER_NAMES:
        rate = fast.spike_trains[name].float().mean().item()
        assert 0.005 < rate < 0.9, (name, rate)  # the test is meaningless if a layer is silent or saturated
        assert torch.equal(fast.spike_trains[name], slow.spike_trains[name]), name
        if voltage_atol == 0:
            assert torch.equal(fast.final_voltages[name], slow.final_voltages[name]), name
        else:
            assert torch.allclose(fast.final_voltages[name], slow.final_voltages[name], rtol=0, atol=voltage_atol)
        assert torch.equal(fast.spike_counts[name], slow.spike_counts[name]), name
        assert torch.equal(fast.spike_counts[name], fast.spike_trains[name].sum(0).to(fast.spike_counts[name].dtype))
    assert torch.allclose(fast.q_mix, slow.q_mix, rtol=0, atol=voltage_atol)


@pytest.mark.parametrize("node_type", NODE_TYPES)
def test_layer_by_layer_equals_step_by_step_float32(ann, lambdas, node_type):
    # weights on a 2**-12 grid: every current fed by spikes is an exact float32 sum, so the two simulations must
    # agree bit for bit (spike trains and voltages) whatever the batch size of the conv/linear calls
    snn = firing_network(ann, lambdas, node_type, torch.float32, grid_bits=12)
    assert_same_simulation(snn, smooth_frames(2, seed=5), T=50)


@pytest.mark.parametrize("node_type", NODE_TYPES)
def test_layer_by_layer_equals_step_by_step_float64(ann, lambdas, node_type):
    # unrounded weights: a linear layer may sum in another order for another batch size, so the voltages may
    # differ in the last bits; in float64 that never flips a spike here
    snn = firing_network(ann, lambdas, node_type, torch.float64)
    assert_same_simulation(snn, smooth_frames(2, seed=6), T=40, voltage_atol=1e-10)


# -- rate coding converges to the ANN -------------------------------------------------------------------------------


def test_if_rates_approach_the_normalised_ann_as_T_grows(ann, lambdas):
    snn = SpikingNetwork.from_ann(ann, lambdas, "SubtractiveResetIFNodes")
    x = smooth_frames(8, seed=7)
    with torch.no_grad():
        targets = [a.clamp(0, 1) for a in pre_activations(snn, x)]  # normalised ANN outputs clipped to [0, 1]
    errors = {}
    for T in (50, 200, 800):
        result = snn.simulate(x, T)
        errors[T] = [(result.spike_counts[n] / T - a).abs().mean().item() for n, a in zip(LAYER_NAMES, targets)]
    for layer in range(len(LAYER_NAMES)):
        assert errors[50][layer] > errors[200][layer] > errors[800][layer], (LAYER_NAMES[layer], errors)
    # measured on this CPU: output layer 0.0130, 0.0037, 0.0014 (T = 50, 200, 800); all layers at T=800 <= 0.0020
    assert errors[800][-1] < 0.005 and errors[800][-1] < errors[50][-1] / 3, errors
    assert max(errors[800]) < 0.006, errors
    assert targets[-1].gt(0).any() and targets[-1].lt(1).any()  # outputs really inside (0, 1), not all clipped


# -- normalisation --------------------------------------------------------------------------------------------------


def test_lambdas_are_the_exact_percentiles_and_normalise_to_one(ann, norm_data, lambdas):
    with torch.no_grad():
        batches = [pre_activations(ann, norm_data[i : i + 16]) for i in range(0, 64, 16)]
        full = [torch.cat([b[layer] for b in batches]).numpy() for layer in range(len(LAYER_NAMES))]
    for name, acts in zip(LAYER_NAMES, full):
        assert acts.size == 64 * {"conv1": 12800, "conv2": 5184, "conv3": 3136, "fc1": 512, "fc2": 4}[name]
        assert lambdas[name] == np.percentile(acts.astype(np.float64), 99.9), name
        assert lambdas[name] == pytest.approx(float(np.percentile(acts, 99.9)), rel=1e-6)
    assert len(set(lambdas.values())) == 5 and all(v > 0 for v in lambdas.values())
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    snn = SpikingNetwork.from_ann(ann, lambdas)
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())  # the ANN itself is not changed
    # W_l <- W_l * lambda_{l-1} / lambda_l, b_l <- b_l / lambda_l
    previous = 1.0
    for name in LAYER_NAMES:
        original, scaled = getattr(ann, name), getattr(snn, name)
        assert torch.allclose(scaled.weight.double(), original.weight.double() * previous / lambdas[name], rtol=1e-6)
        assert torch.allclose(scaled.bias.double(), original.bias.double() / lambdas[name], rtol=1e-6)
        previous = lambdas[name]
    with torch.no_grad():
        normalised = [torch.cat([b[layer] for b in (pre_activations(snn, norm_data[i : i + 16])
                                                    for i in range(0, 64, 16))]) for layer in range(5)]
    for name, acts in zip(LAYER_NAMES, normalised):
        assert np.percentile(acts.numpy().astype(np.float64), 99.9) == pytest.approx(1.0, abs=1e-5), name


def test_lambdas_on_other_percentiles_and_batches(ann, norm_data):
    states = [s.numpy() for s in norm_data[:20]]
    a = compute_lambdas(ann, states, 95.0, batch=7)
    b = compute_lambdas(ann, states, 95.0, batch=20)
    for name in LAYER_NAMES:
        assert a[name] == pytest.approx(b[name], rel=1e-5)
    with pytest.raises(NormalisationError, match="fc1"):  # the median pre-activation of fc1 is negative here
        compute_lambdas(ann, states, 50.0, batch=20)
    m = compute_lambdas(ann, states, 100.0, batch=20)
    with torch.no_grad():
        outs = pre_activations(ann, norm_data[:20])
    for name, z in zip(LAYER_NAMES, outs):
        assert m[name] == float(z.max())


# -- normalisation data: whole games --------------------------------------------------------------------------------


class FakeTrainingEnv:
    """Mimics the training env: games of `lives` lives of `life_len` steps; a life loss gives terminated=True and
    the next reset() continues the game; `truncate_at` steps into a game give truncated=True. obs[0, 0, :2] holds
    (game number, step in game)."""

    def __init__(self, lives=3, life_len=4, truncate_at=None):
        self.lives, self.life_len, self.truncate_at = lives, life_len, truncate_at
        self.game, self.t, self.lives_left, self.was_real_done = 0, 0, lives, True

    def _obs(self):
        obs = np.zeros((4, 84, 84), np.uint8)
        obs[0, 0, 0], obs[0, 0, 1] = self.game, self.t
        return obs

    def reset(self):
        if self.was_real_done:
            self.game, self.t, self.lives_left, self.was_real_done = self.game + 1, 0, self.lives, False
        return self._obs(), {"lives": self.lives_left}

    def step(self, action):
        self.t += 1
        terminated = truncated = False
        if self.t % self.life_len == 0:
            self.lives_left -= 1
            terminated = True
            self.was_real_done = self.lives_left == 0
        if self.truncate_at is not None and self.t >= self.truncate_at:
            truncated = self.was_real_done = True
        return self._obs(), 0.0, terminated, truncated, {"lives": self.lives_left}

    def get_wrapper_attr(self, name):
        return getattr(self, name)


@pytest.mark.parametrize(
    "env_kwargs, n_examples, expected_games",
    [
        (dict(lives=3, life_len=4), 20, [12, 12]),  # 12 < 20: add a second game, which crosses 20: keep it whole
        (dict(lives=3, life_len=4), 24, [12, 12]),  # exactly reached: stop
        (dict(lives=3, life_len=4), 25, [12, 12, 12]),
        (dict(lives=3, life_len=4), 1, [12]),
        (dict(lives=3, life_len=50, truncate_at=7), 15, [7, 7, 7]),  # time-limit truncation ends a game
    ],
)
def test_normalisation_data_are_whole_games(ann, env_kwargs, n_examples, expected_games):
    env = FakeTrainingEnv(**env_kwargs)
    states, lengths = collect_normalisation_states(ann, env, n_examples, np.random.default_rng(0))
    assert lengths == expected_games and len(states) == sum(expected_games)
    tags = [(int(s[0, 0, 0]), int(s[0, 0, 1])) for s in states]
    expected = [(g + 1, t) for g, n in enumerate(expected_games) for t in range(n)]
    assert tags == expected  # every step the agent acted on, across life losses, game after game
    assert all(s.dtype == np.uint8 and s.shape == (4, 84, 84) for s in states)


# -- decoding, metrics, files ---------------------------------------------------------------------------------------


def test_epsilon_greedy_first_max_and_probabilities():
    rng = np.random.default_rng(0)
    q = torch.tensor([1.0, 3.0, 3.0, -1.0])
    assert epsilon_greedy(q, 0.0, rng) == (1, 1)
    actions = [epsilon_greedy(q, 0.05, rng)[0] for _ in range(4000)]
    counts = np.bincount(actions, minlength=4) / 4000
    assert counts[1] == pytest.approx(1 - 0.05 + 0.0125, abs=0.015)
    assert counts[0] == pytest.approx(0.0125, abs=0.01) and counts[2] == pytest.approx(0.0125, abs=0.01)


def test_summary_arithmetic():
    a = EpisodeStats(score=10, steps=4, mix_agree=3, spike_agree=2, greedy_steps=2,
                     layer_spikes={"conv1": 40, "conv2": 20, "conv3": 10, "fc1": 6, "fc2": 4}, firing_rate_sum=0.5)
    b = EpisodeStats(score=20, steps=2, mix_agree=2, spike_agree=1, greedy_steps=1,
                     layer_spikes={"conv1": 10, "conv2": 0, "conv3": 0, "fc1": 0, "fc2": 0}, firing_rate_sum=0.1)
    counts = {"conv1": 10, "conv2": 5, "conv3": 4, "fc1": 2, "fc2": 1}
    s = summarise([a, b], counts, T=10)
    assert s["score_mean"] == 15 and s["score_std"] == 5
    assert s["mix"] == [0.75, 1.0] and s["spike"] == [0.5, 0.5] and s["mix_mean"] == 0.875
    assert s["average_firing_rate"] == pytest.approx((0.25 + 0.1) / 2)
    assert s["spikes_per_greedy_action"]["total"] == pytest.approx(90 / 3)
    assert s["spikes_per_greedy_action"]["conv1"] == pytest.approx(50 / 3)
    assert s["firing_rate_per_layer"]["conv1"] == pytest.approx(50 / (10 * 10 * 3))
    assert s["neuron_total"] == 22


def test_create_new_file_never_overwrites(tmp_path):
    path = str(tmp_path / "r" / "game_x.csv")
    first = convert.create_new_file(path)
    with open(first, "w") as f:
        f.write("keep me")
    second = convert.create_new_file(path)
    third = convert.create_new_file(path)
    assert (first, second, third) == (path, str(tmp_path / "r" / "game_x_1.csv"), str(tmp_path / "r" / "game_x_2.csv"))
    assert open(first).read() == "keep me"


# -- the program ----------------------------------------------------------------------------------------------------

E2E = ["--episode", "1", "--time", "50", "--norm_examples", "500", "--device", "cpu", "--max_episode_step", "300"]


def check_outputs(process, output_dir, episodes=1, T=50):
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    csv_path = os.path.join(output_dir, "result", f"game_{GAME}_episode_{episodes}_time_{T}_percentile_99.9.csv")
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["score", "mix", "spike"] and len(rows) == episodes + 1
    score, mix, spike = map(float, rows[1])
    assert 0 <= mix <= 1 and 0 <= spike <= 1 and score >= 0
    log_path = os.path.join(output_dir, "log", f"{GAME}_{T}.log")
    assert "lambdas" in open(log_path).read()
    with open(os.path.join(output_dir, "log", f"{GAME}_{T}.json")) as f:
        summary = json.load(f)
    assert summary["T"] == T and summary["percentile"] == 99.9 and summary["node_type"] == "SubtractiveResetIFNodes"
    assert summary["scores"] == [score] and summary["mix_mean"] == mix and summary["spike_mean"] == spike
    assert summary["neuron_counts"] == {"conv1": 12800, "conv2": 5184, "conv3": 3136, "fc1": 512, "fc2": 4}
    assert set(summary["lambdas"]) == set(LAYER_NAMES) and all(v > 0 for v in summary["lambdas"].values())
    assert summary["norm_states"] >= 500 and summary["greedy_steps_total"] > 0
    per_greedy = summary["spikes_per_greedy_action"]
    assert per_greedy["total"] == pytest.approx(sum(per_greedy[n] for n in LAYER_NAMES))
    assert 0 < summary["average_firing_rate"] < 1
    assert "score: mean" in process.stdout and "firing rate" in process.stdout and csv_path in process.stdout
    return summary


def test_convert_end_to_end_from_the_repo_root(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "Dqn_random.pkl"
    save_checkpoint(build_network("Dqn", 4), str(model))
    out = tmp_path / "out"
    process = run_convert(["--game", GAME, "--model", os.path.relpath(model, REPO_ROOT), *E2E,
                           "--output_dir", str(out)])
    check_outputs(process, str(out))


def test_convert_end_to_end_inside_the_folder_on_a_run_py_checkpoint(trained_run, tmp_path):
    model = trained_run("Dqn").model_path  # trained by run.py with a tiny budget (tests/conftest.py)
    out = tmp_path / "out"
    process = run_convert([f"--model={os.path.relpath(model, CONVERT_DIR)}", *E2E, "--output_dir", str(out)],
                          cwd=CONVERT_DIR, script="convert.py")
    summary = check_outputs(process, str(out))
    assert summary["model"] == os.path.abspath(model)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_models")
    save_checkpoint(build_network("Dsqn", 4, T=4), str(folder / "dsqn.pkl"))
    save_checkpoint(build_network("Dqn", 6), str(folder / "dqn6.pkl"))
    save_checkpoint(build_network("Dqn", 4), str(folder / "dqn4.pkl"))
    (folder / "garbage.pkl").write_text("not a checkpoint")
    return folder


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no model given"),
        (["--model", "{folder}/missing.pkl"], "not found"),
        (["--model", "{folder}/garbage.pkl"], "not a readable"),
        (["--model", "{folder}/dsqn.pkl"], "Dsqn"),
        (["--model", "{folder}/dqn6.pkl"], "6 actions"),
        (["--model", "{folder}/dqn4.pkl", "--percentile", "0"], "--percentile"),
        (["--model", "{folder}/dqn4.pkl", "--percentile", "101"], "--percentile"),
        (["--model", "{folder}/dqn4.pkl", "--time", "0"], "--time"),
        (["--model", "{folder}/dqn4.pkl", "--game", "NoSuchGameNoFrameskip-v4"], "unknown env id"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(bad_models, tmp_path, args, message):
    args = [a.format(folder=bad_models) for a in args]
    process = run_convert([*args, "--device", "cpu", "--output_dir", str(tmp_path)])
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert.py: error:"), process.stderr
    assert message in lines[0] and "Traceback" not in process.stderr
    assert not os.path.exists(tmp_path / "result")
