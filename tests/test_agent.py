"""run.py end to end on a real game: learn writes logs, TensorBoard events and a checkpoint; play reloads it."""

from __future__ import annotations

import glob
import json
import os
import re

import pytest
import torch

from agent import epsilon_at
from conftest import GAME, TINY_LEARN, read_scalars, run_program
from neural_network import MODELS, build_network, save_checkpoint


def test_epsilon_schedule_values():
    assert epsilon_at(0, 1.0, 0.1, 1_000_000) == 1.0
    assert epsilon_at(500_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.55)
    assert epsilon_at(250_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.775)
    assert epsilon_at(999_999, 1.0, 0.1, 1_000_000) == pytest.approx(0.1 + 0.9e-6)
    assert epsilon_at(1_000_000, 1.0, 0.1, 1_000_000) == 0.1
    assert epsilon_at(50_000_000, 1.0, 0.1, 1_000_000) == 0.1


@pytest.mark.parametrize("model", MODELS)
def test_learn_writes_log_events_config_and_checkpoint(model, trained_run):
    run = trained_run(model)
    log = open(run.log_path, encoding="utf-8").read()
    assert "Start exploring for 32 steps" in log
    assert re.search(r"timestep: 0\taverage_score: ", log) and re.search(r"timestep: 20\taverage_score: ", log)
    assert "max_average_score" in log

    scalars = read_scalars(run.tensorboard_dir)
    # One loss per update: steps 0, 4, ..., 36.
    assert [step for step, _ in scalars["learn/loss"]] == list(range(0, 40, 4))
    for tag in ("evaluate/average_score", "evaluate/score_std", "evaluate/average_max_q"):
        assert [step for step, _ in scalars[tag]] == [0, 20], tag
    assert scalars["evaluate/max_average_score"][0][0] == 0

    config = json.load(open(run.log_path[: -len(".log")] + ".json", encoding="utf-8"))
    assert config["model"] == model and config["T"] == 4 and config["timestep_num"] == 40
    assert config["learning_rate"] == 1e-4 and config["discount_factor"] == 0.99
    assert config["git_commit"]

    state = torch.load(run.model_path, weights_only=True)
    assert int(state["model_id"]) == MODELS.index(model)
    assert state["fc2.weight"].shape == (4, 512)


@pytest.mark.parametrize("model", MODELS)
def test_play_reloads_the_checkpoint_and_reports(model, trained_run, tmp_path):
    run = trained_run(model)
    video = model == "Dsqn"
    args = ["run.py", "--model", model, "--env_id", GAME, "--method", "play", "--model_path", run.model_path,
            "--eval_episode_num", "2", "--max_episode_step", "40", "--device", "cpu", "--use_spike_monitor",
            "--output_dir", str(tmp_path)]
    if video:
        args.append("--use_video_recorder")
    process = run_program(args)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "average_score" in process.stdout

    summary_path, = glob.glob(str(tmp_path / "log" / f"{model}_{GAME}_play_*_summary.json"))
    summary = json.load(open(summary_path, encoding="utf-8"))
    assert summary["episodes"] == 2 and len(summary["scores"]) == 2
    if model != "Dqn":
        assert summary["T"] == 4  # play takes T from the checkpoint when --T is not given
    log = open(summary_path.replace("_summary.json", ".log"), encoding="utf-8").read()
    assert "Playing is done" in log and "average_max_q" in log

    scalars = read_scalars(summary_path.replace("_summary.json", ""))
    assert [step for step, _ in scalars["play/score"]] == [0, 1]
    assert "play/max_q" in scalars and "play/max_q_std" in scalars
    if model == "Dqn":
        assert "average_firing_rate" not in summary and "play/episode_avg_firing_rate" not in scalars
    else:
        assert "play/episode_avg_firing_rate" in scalars
        layers = ["conv1", "conv2", "conv3", "fc1"] + (["fc2"] if model == "DsqnSpike" else [])
        assert list(summary["layer_firing_rates"]) == layers
        assert summary["greedy_actions"] > 0
        assert 0.0 <= summary["average_firing_rate"] <= 1.0
        assert summary["spike_num_per_action"] == pytest.approx(sum(summary["layer_spikes_per_action"].values()))
        assert "average_firing_rate" in log
    if video:
        assert len(glob.glob(str(tmp_path / "monitor" / "*" / "*.mp4"))) == 2


def test_play_without_the_spike_monitor(trained_run, tmp_path):
    run = trained_run("DsqnIF")
    process = run_program(["run.py", "--model", "DsqnIF", "--env_id", GAME, "--method", "play",
                           "--model_path", run.model_path, "--eval_episode_num", "1", "--max_episode_step", "30",
                           "--device", "cpu", "--output_dir", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    summary_path, = glob.glob(str(tmp_path / "log" / "*_summary.json"))
    assert "average_firing_rate" not in json.load(open(summary_path, encoding="utf-8"))


def _log_body(path: str) -> list[str]:
    """The log lines without their timestamps and the run's own (time-stamped) name."""
    lines = []
    for line in open(path, encoding="utf-8"):
        message = line.split(" | ", 1)[-1]
        lines.append(re.sub(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?", "TIME", message).replace(os.sep, "/"))
    return [re.sub(r"/\S+/model/", "model/", line) for line in lines]


def test_same_seed_gives_identical_runs(trained_run, tmp_path):
    first = trained_run("Dqn")
    process = run_program(["run.py", "--model", "Dqn", "--env_id", GAME, *TINY_LEARN, "--output_dir", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]
    second_log, = glob.glob(str(tmp_path / "log" / "*.log"))
    assert _log_body(first.log_path)[1:] == _log_body(second_log)[1:]  # line 0 names the output folder
    assert read_scalars(first.tensorboard_dir) == read_scalars(second_log[: -len(".log")])
    second_model, = glob.glob(str(tmp_path / "model" / "*.pkl"))
    a, b = torch.load(first.model_path, weights_only=True), torch.load(second_model, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _assert_one_line_error(process, *fragments):
    assert process.returncode == 2, (process.returncode, process.stderr[-2000:])
    assert "Traceback" not in process.stderr
    lines = [line for line in process.stderr.splitlines() if line.strip() and "Triton" not in line
             and not line.startswith(("A.L.E:", "[Powered by Stella]"))]
    assert len(lines) == 1, process.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_errors(tmp_path):
    out = str(tmp_path / "out")
    base = ["run.py", "--output_dir", out, "--device", "cpu"]
    _assert_one_line_error(run_program([*base, "--env_id", "FooNoFrameskip-v4"]), "FooNoFrameskip-v4",
                           "BreakoutNoFrameskip-v4")
    _assert_one_line_error(run_program([*base, "--timestep_num", "-5"]), "--timestep_num")
    _assert_one_line_error(run_program([*base, "--replay_memory_size", "-1"]), "--replay_memory_size")
    _assert_one_line_error(run_program([*base, "--replay_memory_size", "100000000000"]), "--replay_memory_size")
    _assert_one_line_error(run_program([*base, "--method", "play"]), "--model_path")
    _assert_one_line_error(run_program([*base, "--method", "play", "--model_path", str(tmp_path / "nope.pkl")]),
                           "not found")
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x04not a checkpoint")
    _assert_one_line_error(run_program([*base, "--method", "play", "--model_path", str(garbage)]), "garbage.pkl")
    dqn = str(tmp_path / "dqn.pkl")
    save_checkpoint(build_network("Dqn", 4), dqn)
    _assert_one_line_error(run_program([*base, "--model", "Dsqn", "--method", "play", "--model_path", dqn]),
                           "holds a Dqn network", "--model=Dqn")
    pong = str(tmp_path / "pong.pkl")
    save_checkpoint(build_network("Dqn", 6), pong)
    _assert_one_line_error(run_program([*base, "--model", "Dqn", "--method", "play", "--model_path", pong,
                                        "--env_id", GAME]), "6 actions")
    _assert_one_line_error(run_program([*base, "--backend", "cuda"]), "CUDA")
    # A refused run leaves nothing behind.
    assert not os.path.exists(os.path.join(out, "log")) and not os.path.exists(os.path.join(out, "model"))
