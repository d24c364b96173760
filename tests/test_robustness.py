"""Perturbed play (agent/robustness.py, docs/ROBUSTNESS.md): each option changes what the ALE or the network sees,
and only that; FGSM lowers the greedy action's Q of small trained networks (a Dqn, and a Dsqn through its surrogate
gradient); --method robustness end to end on a trained checkpoint, and utils/plot.py's figure and table from it;
every bad input is one line and exit 2."""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import pytest
import torch
from conftest import GAME, paper_env, paper_network
from synthetic import SideOfTheBlockEnv
from test_agent import one_line_error

import run as run_py
from agent import Config, random_streams
from agent.evaluation import run_episode
from agent.robustness import (
    GaussianNoise,
    check_game_settings,
    env_options,
    fgsm,
    observation_attack,
    perturbation_rng,
    sweep_levels,
)
from environment import make_env
from neural_network import save_checkpoint
from plotting import cli as plot_cli
from utils.cli import UserError

NOOP = 0


# -- what the ALE sees ------------------------------------------------------------------------------------------------


def _raw_ram(env, actions) -> np.ndarray:
    """The ALE's RAM after each of ``actions`` stepped on the raw env under ``env``'s wrappers."""
    raw = env.unwrapped
    rams = []
    for action in actions:
        raw.step(action)
        rams.append(raw.ale.getRAM().copy())
    return np.array(rams)


def test_sticky_actions_one_repeats_the_previous_action_forever():
    actions = np.random.default_rng(0).integers(1, 4, size=100)  # FIRE, RIGHT, LEFT: never the NOOP
    runs = {}
    for p in (0.0, 1.0):
        env = make_env(GAME, training=False, seed=0, sticky_actions=p, **paper_env())
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == p
        runs[p] = _raw_ram(env, actions)
        env.close()
        env = make_env(GAME, training=False, seed=0, sticky_actions=p, **paper_env())
        runs[p, "noop"] = _raw_ram(env, [NOOP] * len(actions))
        env.close()
    # p = 1: every frame repeats the action applied before it, the NOOP of the reset, whatever the agent asks.
    np.testing.assert_array_equal(runs[1.0], runs[1.0, "noop"])
    assert (runs[0.0] != runs[0.0, "noop"]).any()  # p = 0: the agent's actions are applied
    default = make_env(GAME, training=False, **paper_env())
    assert default.unwrapped.ale.getFloat("repeat_action_probability") == 0.0


def test_game_mode_and_difficulty_reach_the_ale():
    def ram_after_reset(**settings):
        env = make_env(GAME, training=False, seed=0, **settings, **paper_env())
        env.reset()
        ram = env.unwrapped.ale.getRAM().copy()
        env.close()
        return ram

    default = ram_after_reset()
    np.testing.assert_array_equal(ram_after_reset(game_mode=0, game_difficulty=0), default)  # Breakout's defaults
    assert (ram_after_reset(game_mode=4) != default).any()
    assert (ram_after_reset(game_difficulty=1) != default).any()
    with pytest.raises(UserError, match=r"--game_mode 3 is not available in BreakoutNoFrameskip-v4; its modes are "
                                        r"0, 4, 8, .*, 44$"):
        check_game_settings(GAME, 3, None)
    with pytest.raises(UserError, match=r"its difficulties are 0, 1$"):
        check_game_settings(GAME, 4, 2)
    config = Config(method="robustness", robustness="game_difficulty", env_id=GAME)
    assert sweep_levels(config) == [0, 1]


# -- what the network sees --------------------------------------------------------------------------------------------


def _frames(env, steps=40):
    frames = [env.reset()[0]]
    for action in np.random.default_rng(1).integers(env.action_space.n, size=steps):
        frames.append(env.step(int(action))[0])
    return np.array(frames)


def test_noise_of_sigma_zero_changes_nothing_and_noise_draws_its_own_stream():
    plain = _frames(make_env(GAME, training=False, seed=0, **paper_env()))
    rng = perturbation_rng(0)
    state = rng.bit_generator.state
    np.testing.assert_array_equal(_frames(make_env(GAME, training=False, seed=0,
                                                   frame_transform=GaussianNoise(0.0, rng), **paper_env())), plain)
    assert rng.bit_generator.state == state  # nothing drawn
    assert env_options(Config(obs_noise=0.0))["frame_transform"] is None

    noisy = _frames(make_env(GAME, training=False, seed=0, **env_options(Config(obs_noise=8.0, seed=0)), **paper_env()))
    again = _frames(make_env(GAME, training=False, seed=0, **env_options(Config(obs_noise=8.0, seed=0)), **paper_env()))
    np.testing.assert_array_equal(noisy, again)  # reproducible from --seed
    assert noisy.dtype == np.uint8 and noisy.shape == plain.shape
    difference = noisy.astype(np.int16) - plain
    inside = (plain > 30) & (plain < 225)  # away from the clipping at 0 and 255
    assert 7.0 < difference[inside].std() < 9.0 and abs(difference[inside].mean()) < 0.5
    # a stack holds the noisy frames: frame t of stack t is frame t-1 of stack t+1 (a noisy sensor, drawn once)
    np.testing.assert_array_equal(noisy[1:, :-1], noisy[:-1, 1:])
    # the noise stream is none of the agent's streams
    first = perturbation_rng(0).random(4)
    assert all(not np.allclose(first, stream.random(4)) for stream in random_streams(0).values())


def _side_frames(n_actions=2) -> torch.Tensor:
    """SideOfTheBlockEnv's two frames (block left, block right), dimmed to grey levels 40 and 200 so that a step
    in either direction stays inside 0..255."""
    env, frames = SideOfTheBlockEnv(n_actions, seed=0), {}
    while len(frames) < 2:
        frame, _ = env.reset()
        frames[env.get_state()["side"]] = (frame // 255 * 160 + 40).astype(np.uint8)
    return torch.from_numpy(np.stack([frames[0], frames[1]]))


@pytest.fixture(scope="module")
def trained_nets():
    """A Dqn and a Dsqn (T = 4) regressed for 20 Adam steps onto Q = 1 for the block's side, 0 for the other."""
    frames, nets = _side_frames(), {}
    for model, kwargs in (("Dqn", {}), ("Dsqn", {"T": 4, "v_threshold": 0.5})):
        torch.manual_seed(0)
        net = paper_network(model, 2, **kwargs)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(20):
            loss = torch.nn.functional.mse_loss(net(frames), torch.eye(2))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert loss.item() < 0.05, (model, loss.item())
        net.zero_grad(set_to_none=True)
        nets[model] = net.eval()
    return frames.numpy(), nets


def _q(net, frame: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return net(torch.from_numpy(frame).unsqueeze(0))[0]


def test_fgsm_of_epsilon_zero_changes_nothing(trained_nets):
    frames, nets = trained_nets
    frame = frames[0]
    for net in nets.values():
        assert fgsm(net, frame, 0) is frame
    assert observation_attack(Config(fgsm_epsilon=0), agent=None) is None


@pytest.mark.parametrize("model, epsilon", [("Dqn", 8), ("Dsqn", 32)])
def test_fgsm_lowers_the_greedy_q_of_a_trained_network(trained_nets, model, epsilon):
    frames, nets = trained_nets
    net = nets[model]
    for side, frame in enumerate(frames):
        q = _q(net, frame)
        assert int(q.argmax()) == side
        x = torch.from_numpy(frame).unsqueeze(0).float().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(x)[0, side], x)
        assert torch.isfinite(grad).all() and (grad != 0).float().mean() > 0.5  # it flows (the surrogate's, Dsqn)

        attacked = fgsm(net, frame, epsilon)
        step = attacked.astype(np.int16) - frame
        assert attacked.dtype == np.uint8 and np.abs(step).max() == epsilon
        np.testing.assert_array_equal(step, -epsilon * np.sign(grad[0].numpy()).astype(np.int16))
        opposite = (frame.astype(np.int16) - step).astype(np.uint8)
        lowered, raised = _q(net, attacked)[side].item(), _q(net, opposite)[side].item()
        assert lowered < q[side].item() - 0.1 and lowered < raised, (q.tolist(), lowered, raised)
    assert all(p.grad is None for p in net.parameters())  # only the input's gradient was taken


def test_run_episode_gives_the_agent_the_perturbed_stacks(trained_nets):
    _, nets = trained_nets
    seen = []

    class Spy:
        net, n_actions = nets["Dqn"], 2

        def act(self, frame_stack, epsilon, rng):
            seen.append(frame_stack)
            return 0, None

    run_episode(Spy(), SideOfTheBlockEnv(), 0.0, np.random.default_rng(0), perturb=lambda stack: stack // 2)
    assert len(seen) == 1 and seen[0].max() == 127


# -- the programs -----------------------------------------------------------------------------------------------------


def _json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def test_robustness_method_end_to_end_and_its_figure(trained_run, tmp_path, capsys):
    run = trained_run("Dqn")
    out, figures = tmp_path / "runs", tmp_path / "figures"
    common = ["--model_path", run.run_dir, "--eval_episode_num", "1", "--max_episode_step", "30", "--device", "cpu",
              "--output_dir", str(out)]
    run_py.cli(["--method", "robustness", "--robustness", "fgsm", "--levels", "0", "2", *common])
    folder, = glob.glob(str(out / f"Dqn_{GAME}_robustness-fgsm_*"))
    assert sorted(set(os.listdir(folder)) - {"git.diff"}) == ["config.json", "levels", "robustness.csv", "run.log",
                                                              "status.json"]
    with open(os.path.join(folder, "robustness.csv"), encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [(r["perturbation"], r["level"], r["episodes"]) for r in rows] == [("fgsm", "0", "1"), ("fgsm", "2", "1")]
    levels = [_json(os.path.join(folder, r["summary"])) for r in rows]
    assert [s["settings"]["fgsm_epsilon"] for s in levels] == [0, 2] and levels[0]["score_sem"] is None
    config = _json(os.path.join(folder, "config.json"))
    assert config["method"] == "robustness" and config["levels"] == [0, 2]

    # level 0 is the plain play of the same seed; a perturbed play records its settings
    run_py.cli(["--method", "play", *common])
    run_py.cli(["--method", "play", "--sticky_actions", "0.25", "--obs_noise", "4", "--game_difficulty", "1",
                *common])
    plays = sorted(glob.glob(str(out / f"Dqn_{GAME}_play_*" / "summary.json")))
    plain, perturbed = (_json(path) for path in plays)
    assert plain["scores"] == levels[0]["scores"] and plain["average_max_q"] == levels[0]["average_max_q"]
    assert perturbed["perturbation"] == {"sticky_actions": 0.25, "obs_noise": 4.0, "fgsm_epsilon": 0,
                                         "game_mode": None, "game_difficulty": 1}
    capsys.readouterr()

    result = plot_cli.main(["--runs_dir", str(out), "--output_dir", str(figures), "--no_progress"])
    assert {"robustness_fgsm_Breakout.png", "robustness.md", "robustness.csv"} <= set(os.listdir(figures))
    assert [(r["model"], r["level"], r["episodes"]) for r in result["robustness_rows"]] == [("Dqn", 0, 1),
                                                                                          ("Dqn", 2, 1)]
    table = (figures / "robustness.md").read_text(encoding="utf-8")
    assert "## Breakout: fgsm" in table and "| level | DQN |" in table
    assert "a play under perturbation" in capsys.readouterr().out  # the perturbed play is not a paper score
    assert [r["play_episodes"] for r in result["rows"]] == [1]  # only the plain play counts


def test_levels_is_a_list_option():
    args = run_py.build_parser().parse_args(["--method", "robustness", "--levels", "0", "0.25", "1"])
    assert args.levels == [0.0, 0.25, 1.0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    checkpoint = str(tmp_path / "dqn.pkl")
    save_checkpoint(paper_network("Dqn", 4), checkpoint)
    out = str(tmp_path / "out")
    play = ["--method", "play", "--model_path", checkpoint, "--device", "cpu", "--output_dir", out]
    sweep = ["--method", "robustness", "--model_path", checkpoint, "--device", "cpu", "--output_dir", out]
    one_line_error(capsys, [*play, "--game_mode", "3"], "--game_mode 3", "0, 4, 8, 12")
    one_line_error(capsys, [*play, "--game_difficulty", "2"], "--game_difficulty 2", "0, 1")
    one_line_error(capsys, [*play, "--sticky_actions", "1.5"], "--sticky_actions")
    one_line_error(capsys, [*play, "--obs_noise", "-1"], "--obs_noise")
    one_line_error(capsys, [*play, "--obs_noise", "nan"], "--obs_noise")
    one_line_error(capsys, [*play, "--fgsm_epsilon", "0.5"], "--fgsm_epsilon", "whole number")
    one_line_error(capsys, [*play, "--fgsm_epsilon", "256"], "--fgsm_epsilon")
    one_line_error(capsys, [*play, "--levels", "1"], "--levels is for --method robustness")
    one_line_error(capsys, ["--sticky_actions", "0.25", "--output_dir", out], "--sticky_actions", "--method play")
    one_line_error(capsys, sweep, "--robustness")
    one_line_error(capsys, [*sweep, "--robustness", "noise"], "--robustness")
    one_line_error(capsys, [*sweep, "--robustness", "obs_noise", "--obs_noise", "2"], "--levels")
    one_line_error(capsys, [*sweep, "--robustness", "sticky_actions", "--levels", "0", "2"], "[0, 1]")
    one_line_error(capsys, [*sweep, "--robustness", "fgsm", "--levels", "0.5"], "whole numbers")
    one_line_error(capsys, [*sweep, "--robustness", "fgsm", "--levels", "1", "1"], "twice")
    one_line_error(capsys, [*sweep, "--robustness", "fgsm", "--levels"], "--levels")
    one_line_error(capsys, [*sweep, "--robustness", "game_mode", "--levels", "0", "5"], "--levels 5", "0, 4, 8")
    one_line_error(capsys, ["--method", "robustness", "--robustness", "fgsm", "--output_dir", out],
                   "--model_path")
    assert not os.path.exists(out) or os.listdir(out) == []  # nothing written


def _robustness_folder(root, name, model, perturbation, levels: dict, seed=0, checkpoint="runs/a/best.pkl",
                       **settings):
    """A hand-made run folder of --method robustness: ``levels`` maps each level to its episode scores."""
    folder = root / name
    os.makedirs(folder / "levels")
    config = {"program": "run.py", "method": "robustness", "model": model, "env_id": GAME, "seed": seed,
              "double": False, "robustness": perturbation, **settings}
    (folder / "config.json").write_text(json.dumps(config))
    lines = ["perturbation,level,summary"]
    for level, scores in levels.items():
        summary = f"levels/{perturbation}_{level:g}.json"
        (folder / summary).write_text(json.dumps({"scores": scores, "model_path": checkpoint}))
        lines.append(f"{perturbation},{level},{summary}")
    (folder / "robustness.csv").write_text("\n".join(lines) + "\n")


def test_plot_pools_episodes_per_level_and_notes_what_is_missing(tmp_path, capsys):
    runs = tmp_path / "runs"
    _robustness_folder(runs, "dqn_s0", "Dqn", "sticky_actions", {0.0: [1, 3], 0.25: [0, 2]}, seed=0)
    _robustness_folder(runs, "dqn_s1", "Dqn", "sticky_actions", {0.0: [5], 0.25: [4]}, seed=1,
                       checkpoint="runs/b/best.pkl")
    _robustness_folder(runs, "dqn_s0_again", "Dqn", "sticky_actions", {0.25: [0, 2]}, seed=0)  # a repeat
    _robustness_folder(runs, "dsqn", "Dsqn", "sticky_actions", {0.0: [2, 4]})  # no level 0.25
    _robustness_folder(runs, "dsqn_noisy", "Dsqn", "sticky_actions", {0.0: [7, 9]}, obs_noise=4.0)
    os.makedirs(runs / "unfinished")
    (runs / "unfinished" / "config.json").write_text(json.dumps(
        {"program": "run.py", "method": "robustness", "model": "Dqn", "env_id": GAME, "robustness": "fgsm"}))
    result = plot_cli.main(["--runs_dir", str(runs), "--output_dir", str(tmp_path / "figures"), "--format", "pdf",
                            "--no_progress"])
    rows = {(r["study"], r["model"], r["level"]): r for r in result["robustness_rows"]}
    assert set(rows) == {("sticky_actions", "Dqn", 0.0), ("sticky_actions", "Dqn", 0.25),
                         ("sticky_actions", "Dsqn", 0.0), ("sticky_actions_obs_noise4", "Dsqn", 0.0)}
    dqn = rows["sticky_actions", "Dqn", 0.0]
    assert (dqn["mean_score"], dqn["episodes"], dqn["runs"], dqn["seeds"]) == (3.0, 3, 2, "0 1")
    assert dqn["sem"] == pytest.approx(np.std([1, 3, 5], ddof=1) / np.sqrt(3))
    assert rows["sticky_actions", "Dqn", 0.25]["episodes"] == 3  # the repeat is counted once
    assert rows["sticky_actions_obs_noise4", "Dsqn", 0.0]["mean_score"] == 8.0  # a study of its own
    figures = set(os.listdir(tmp_path / "figures"))
    assert {"robustness_sticky_actions_Breakout.pdf", "robustness_sticky_actions_obs_noise4_Breakout.pdf"} <= figures
    table = (tmp_path / "figures" / "robustness.md").read_text()
    assert "| 0.25 | 2.00 +- 1.15 (3) | n/a |" in table and "with obs_noise 4" in table
    out = capsys.readouterr().out
    for fragment in ("dqn_s0_again: sticky_actions level 0.25 repeats dqn_s0", "no data at level 0.25 for DSQN",
                     "unfinished: no robustness.csv"):
        assert fragment in out and fragment in table, fragment
