"""run.py end to end on a real game: learn writes its run folder (log, TensorBoard, config, best.pkl, state);
play reloads the checkpoint; the same seed gives the same run; every user mistake is one line and exit 2."""

from __future__ import annotations

import csv
import glob
import json
import os
import re

import pytest
import torch
from conftest import GAME, TINY_LEARN, paper_network, read_scalars, run_program

import run as run_py
from neural_network import MODELS, save_checkpoint


@pytest.mark.parametrize("model", MODELS)
def test_learn_writes_its_run_folder(model, trained_run):
    run = trained_run(model)
    # (git.diff: the uncommitted changes of the checkout, when there are any)
    assert sorted(set(os.listdir(run.run_dir)) - {"git.diff"}) == ["best.pkl", "config.json", "evaluations.csv",
                                                                   "progress.json", "run.log", "state", "status.json",
                                                                   "tensorboard"]
    progress = json.load(open(os.path.join(run.run_dir, "progress.json"), encoding="utf-8"))
    last = list(csv.DictReader(open(os.path.join(run.run_dir, "evaluations.csv"), encoding="utf-8")))[-1]
    assert progress["phase"] == "finished" and progress["step"] == progress["total"] == 40
    assert progress["unit"] == "step" and progress["steps_per_s"] > 0 and progress["eta_s"] == 0
    assert progress["last_eval_step"] == 40 and progress["last_eval"] == float(last["mean"])
    log = open(run.log_path, encoding="utf-8").read()
    assert "Start exploring for 32 steps" in log
    evaluated = [int(step) for step in re.findall(r"timestep: (\d+)\taverage_score: ", log)]
    assert evaluated == [0, 20, 40]  # every eval_freq steps from 0, and the final network at timestep_num
    assert "max_average_score" in log

    scalars = read_scalars(run.tensorboard_dir)
    assert [step for step, _ in scalars["learn/loss"]] == [9, 19, 29, 39]  # --log_freq 10: the mean of the interval
    assert [step for step, _ in scalars["train/epsilon"]] == [9, 19, 29, 39]
    assert all(rate > 0 for _, rate in scalars["train/steps_per_s"])
    for tag in ("evaluate/average_score", "evaluate/score_std", "evaluate/average_max_q"):
        assert [step for step, _ in scalars[tag]] == [0, 20, 40], tag
    assert scalars["evaluate/max_average_score"][0][0] == 0

    config = json.load(open(os.path.join(run.run_dir, "config.json"), encoding="utf-8"))
    assert config["model"] == model and config["T"] == 4 and config["timestep_num"] == 40
    assert config["learning_rate"] == 1e-4 and config["discount_factor"] == 0.99
    assert config["program"] == "run.py" and config["git_commit"] and config["n_actions"] == 4
    assert json.load(open(os.path.join(run.run_dir, "status.json")))["status"] == "finished"

    saved = torch.load(run.model_path, weights_only=True)
    assert saved["model"] == model and saved["format"] == 1
    state = saved["state_dict"]
    assert int(state["model_id"]) == MODELS.index(model)
    assert state["fc2.weight"].shape == (4, 512)


@pytest.mark.parametrize("model", MODELS)
def test_play_reloads_the_checkpoint_and_reports(model, trained_run, tmp_path, capsys):
    run = trained_run(model)
    video = model == "Dsqn"
    # A run folder is a valid --model_path: its best.pkl, model, game and T are taken from it.
    args = ["--method", "play", "--model_path", run.run_dir, "--eval_episode_num", "2",
            "--max_episode_step", "40", "--device", "cpu", "--use_spike_monitor", "--output_dir", str(tmp_path)]
    if video:
        args.append("--use_video_recorder")
    run_py.cli(args)
    assert "average_score" in capsys.readouterr().out

    play_dir, = glob.glob(str(tmp_path / f"{model}_{GAME}_play_*"))
    progress = json.load(open(os.path.join(play_dir, "progress.json"), encoding="utf-8"))
    assert progress["phase"] == "finished" and progress["step"] == progress["total"] == 2
def test_play_without_the_spike_monitor(trained_run, tmp_path, capsys):
    run = trained_run("DsqnIF")
    run_py.cli(["--method", "play", "--model_path", run.model_path, "--eval_episode_num", "1",
                "--max_episode_step", "30", "--device", "cpu", "--output_dir", str(tmp_path)])
    summary_path, = glob.glob(str(tmp_path / "*" / "summary.json"))
    assert "average_firing_rate" not in json.load(open(summary_path, encoding="utf-8"))
    assert "energy" not in json.load(open(summary_path, encoding="utf-8"))


PLAY_FAST = ["--method", "play", "--eval_episode_num", "1", "--max_episode_step", "20", "--device", "cpu"]


def _played(output_dir) -> dict:
    summary_path, = glob.glob(str(output_dir / "*" / "summary.json"))
    return json.load(open(summary_path, encoding="utf-8"))


def test_a_checkpoint_plays_its_own_model_game_and_T_without_options(tmp_path, capsys):
    # Pong and SpaceInvaders both have 6 actions: only the checkpoint's game tells them apart.
    path = str(tmp_path / "net.pkl")
    save_checkpoint(paper_network("DsqnIF", 6, T=3), path, "PongNoFrameskip-v4")
    out = tmp_path / "out"
    run_py.cli([*PLAY_FAST, "--model_path", path, "--output_dir", str(out)])
    summary = _played(out)
    assert (summary["model"], summary["env_id"], summary["T"]) == ("DsqnIF", "PongNoFrameskip-v4", 3)
    assert glob.glob(str(out / "DsqnIF_PongNoFrameskip-v4_play_*"))
    capsys.readouterr()
    # Another game with as many actions is played as asked (a transfer test), with one note.
    run_py.cli([*PLAY_FAST, "--model_path", path, "--env_id", "SpaceInvaders", "--output_dir", str(tmp_path / "x")])
    assert _played(tmp_path / "x")["env_id"] == "SpaceInvadersNoFrameskip-v4"
    assert "was trained on PongNoFrameskip-v4 (its metadata); it plays SpaceInvadersNoFrameskip-v4" in \
        capsys.readouterr().err
    refused = tmp_path / "refused"
    one_line_error(capsys, [*PLAY_FAST, "--model_path", path, "--model", "Dsqn", "--output_dir", str(refused)],
                   "holds a DsqnIF network, not Dsqn")
    assert not refused.exists()


def test_an_old_bare_state_dict_still_plays(tmp_path, capsys):
    # Written as run.py wrote best.pkl before checkpoints had a format: a bare state dict, in a run folder whose
    # config.json names the game.
    run_dir = tmp_path / "Dsqn_PongNoFrameskip-v4_seed0_2026-01-01_00-00-00"
    run_dir.mkdir()
    torch.save(paper_network("Dsqn", 6, T=2).state_dict(), run_dir / "best.pkl")
    (run_dir / "config.json").write_text(json.dumps({"program": "run.py", "model": "Dsqn", "T": 2,
                                                     "env_id": "PongNoFrameskip-v4", "double": False}))
    run_py.cli([*PLAY_FAST, "--model_path", str(run_dir / "best.pkl"), "--output_dir", str(tmp_path / "a")])
    summary = _played(tmp_path / "a")
    assert (summary["model"], summary["env_id"], summary["T"]) == ("Dsqn", "PongNoFrameskip-v4", 2)
    run_py.cli([*PLAY_FAST, "--model_path", str(run_dir), "--env_id", "SpaceInvaders", "--output_dir",
                str(tmp_path / "b")])
    assert _played(tmp_path / "b")["env_id"] == "SpaceInvadersNoFrameskip-v4"
    assert "trained on PongNoFrameskip-v4 (its run's config.json)" in capsys.readouterr().err
    # Alone, without its run's config.json, it plays on the game given.
    alone = tmp_path / "alone.pkl"
    torch.save(paper_network("Dqn", 6).state_dict(), alone)
    run_py.cli([*PLAY_FAST, "--model_path", str(alone), "--env_id", "SpaceInvaders", "--output_dir",
                str(tmp_path / "c")])
    summary = _played(tmp_path / "c")
    assert (summary["model"], summary["env_id"]) == ("Dqn", "SpaceInvadersNoFrameskip-v4")


def _log_body(path: str) -> list[str]:
    """The log lines without their timestamps and the run's own (time-stamped, folder-dependent) names."""
    lines = []
    for line in open(path, encoding="utf-8"):
        message = line.split(" | ", 1)[-1]
        lines.append(re.sub(r"\S*_seed0_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?", "RUN", message))
    return lines


@pytest.mark.slow
def test_same_seed_gives_identical_runs(trained_run, tmp_path):
    first = trained_run("Dqn")
    process = run_program(["run.py", "--model", "Dqn", "--env_id", GAME, *TINY_LEARN, "--output_dir", str(tmp_path)])
    assert process.returncode == 0, process.stderr[-3000:]  # a separate process: nothing shared but the seed
    second, = glob.glob(str(tmp_path / "*"))
    assert _log_body(first.log_path)[1:] == _log_body(os.path.join(second, "run.log"))[1:]  # line 0: the options
    ours, theirs = read_scalars(first.tensorboard_dir), read_scalars(os.path.join(second, "tensorboard"))
    ours.pop("train/steps_per_s"), theirs.pop("train/steps_per_s")  # wall-clock speed, not a result
    assert ours == theirs
    a = torch.load(first.model_path, weights_only=True)["state_dict"]
    b = torch.load(os.path.join(second, "best.pkl"), weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def one_line_error(capsys, argv: list[str], *fragments: str, status: int = 2) -> str:
    """Run run.py in-process; assert it exits with ``status`` and exactly one line on stderr, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run_py.cli(argv)
    assert exit_info.value.code == status
    err = capsys.readouterr().err
    # The progress bar (tqdm, redrawn with carriage returns) may stand before the error: it is not an error line.
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and not re.search(r"\d+/\d+ \[", line)]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_cli_errors(tmp_path, capsys):
    out = str(tmp_path / "out")
    base = ["--output_dir", out, "--device", "cpu"]
    one_line_error(capsys, [*base, "--env_id", "FooNoFrameskip-v4"], "FooNoFrameskip-v4", "BreakoutNoFrameskip-v4")
    one_line_error(capsys, [*base, "--timestep_num", "-5"], "--timestep_num")
    for value in ("-1", str(2**32), "zero"):
        one_line_error(capsys, [*base, "--seed", value], "--seed")
    for value in ("0.5", "nan", "inf"):
        one_line_error(capsys, [*base, "--tau", value], "--tau")
    for value in ("inf", "nan", "0"):
        one_line_error(capsys, [*base, "--learning_rate", value], "--learning_rate")
    one_line_error(capsys, [*base, "--replay_memory_size", "-1"], "--replay_memory_size")
    one_line_error(capsys, [*base, "--replay_memory_size", "1"], "--replay_memory_size 1 is too small")
    one_line_error(capsys, [*base, "--replay_memory_size", "100000000000"], "--replay_memory_size")
    one_line_error(capsys, [*base, "--replay_start_size", "3"], "--replay_start_size")
    one_line_error(capsys, [*base, "--action_repeat", "3"], "--action_repeat")
    one_line_error(capsys, [*base, "--run_name", "a/b"], "--run_name")
    one_line_error(capsys, [*base, "--model_path", "x.pkl"], "--model_path is for --method play", "--resume")
    one_line_error(capsys, [*base, "--method", "play"], "--model_path")
    one_line_error(capsys, [*base, "--method", "play", "--model_path", str(tmp_path / "nope.pkl")], "not found")
    one_line_error(capsys, [*base, "--backend", "cuda"], "CUDA")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line_error(capsys, ["--output_dir", str(a_file), "--device", "cpu"], "a_file is a file")
    one_line_error(capsys, [*base, "--resume", str(tmp_path)], "no run folder there")

    # Model files that are not checkpoints of this game and model.
    for name, content in (("garbage.pkl", b"\x80\x04not a checkpoint"), ("notes.txt", b"hello\n"),
                          ("scores.csv", b"score,mix\n1,2\n")):
        (tmp_path / name).write_bytes(content)
        one_line_error(capsys, [*base, "--method", "play", "--model_path", str(tmp_path / name)], name)
    dqn = str(tmp_path / "dqn.pkl")
    save_checkpoint(paper_network("Dqn", 4), dqn)
    one_line_error(capsys, [*base, "--model", "Dsqn", "--method", "play", "--model_path", dqn],
                   "holds a Dqn network", "--model=Dqn")
    pong = str(tmp_path / "pong.pkl")
    save_checkpoint(paper_network("Dqn", 6), pong)
    one_line_error(capsys, [*base, "--method", "play", "--model_path", pong, "--env_id", GAME], "6 actions")
    state = paper_network("Dqn", 4).state_dict()
    for name, change in (("string_id.pkl", {"model_id": "Dqn"}), ("float_id.pkl", {"model_id": torch.tensor(1.5)}),
                         ("nan.pkl", {"fc1.weight": torch.full((512, 3136), float("nan"))}),
                         ("misfit.pkl", {"conv2.weight": torch.zeros(64, 32, 5, 5)})):
        torch.save({**state, **change}, tmp_path / name)
        line = one_line_error(capsys, [*base, "--method", "play", "--model_path", str(tmp_path / name)], name)
        if name == "nan.pkl":
            assert "non-finite" in line and "fc1.weight" in line
        if name == "misfit.pkl":
            assert "conv2.weight" in line and "(64, 32, 4, 4)" in line
    # A refused run leaves nothing behind.
    assert not os.path.exists(out) or os.listdir(out) == []


@pytest.mark.slow
def test_two_runs_started_at_once_get_their_own_folders(tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    args = [sys.executable, "run.py", "--model", "Dqn", *TINY_LEARN, "--timestep_num", "4", "--eval_freq", "4",
            "--output_dir", str(tmp_path), "--run_name", "same"]
    processes = [subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    folders = sorted(os.listdir(tmp_path))
    assert folders == ["same", "same_2"]
    for folder in folders:
        files = set(os.listdir(tmp_path / folder))
        assert {"best.pkl", "config.json", "run.log", "tensorboard"} <= files
        assert json.load(open(tmp_path / folder / "config.json"))["run_name"] == folder
        assert open(tmp_path / folder / "run.log").read().count("Learning is done") == 1


def test_video_without_moviepy_is_one_line(monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moviepy" else
                        real_find_spec(name, *a))
    one_line_error(capsys, ["--method", "play", "--model_path", "x.pkl", "--use_video_recorder"], "pip install")


def test_cuda_visible_devices_is_left_alone_unless_gpu_is_given(monkeypatch, capsys):
    from conversion_based_snn import convert

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as a scheduler (SLURM, Ray) would have set it
    one_line_error(capsys, ["--env_id", "FooNoFrameskip-v4"], "FooNoFrameskip-v4")
    with pytest.raises(SystemExit):
        convert.cli(["--game", "FooNoFrameskip-v4", "--model", "x.pkl"])
    assert "unknown env id" in capsys.readouterr().err
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    one_line_error(capsys, ["--env_id", "FooNoFrameskip-v4", "--gpu", "1"], "FooNoFrameskip-v4")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
