"""Experiment tracking of a learning run (utils/tracking.py): --track logs the run to Weights & Biases (offline mode,
no network), the full configuration is in TensorBoard as text and hyperparameters, and --capture_video records
every --video_freq-th training game. One tiny real Breakout run, as a program (wandb patches TensorBoard in the
process that uses it)."""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import pytest
from conftest import REPO_ROOT, paper_env

from agent.config import Config

ARGS = ["--model", "Dqn", "--env_id", "BreakoutNoFrameskip-v4", "--timestep_num", "300", "--replay_start_size", "200",
        "--eval_freq", "300", "--eval_episode_num", "1", "--max_episode_step", "200", "--replay_memory_size", "1000",
        "--target_net_update_freq", "10", "--log_freq", "50", "--seed", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked")
    env = dict(os.environ, WANDB_MODE="offline", HOME=str(out), WANDB_SILENT="true")
    process = run_program_env([os.path.join(REPO_ROOT, "run.py"), *ARGS, "--output_dir", str(out / "runs"),
                               "--track", "--capture_video", "--video_freq", "2"], env)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    (run_dir,) = glob.glob(str(out / "runs" / "Dqn_*"))
    process = run_program_env([os.path.join(REPO_ROOT, "run.py"), "--resume", run_dir, "--timestep_num", "350",
                               "--track"], env)  # continued with a larger budget: the same W&B run goes on
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return run_dir


def run_program_env(args, env):
    import subprocess
    import sys

    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=env, check=False)


@pytest.mark.slow
def test_the_config_is_in_tensorboard_as_text_and_hyperparameters(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = json.load(open(os.path.join(tracked_run, "config.json")))
    events = EventAccumulator(os.path.join(tracked_run, "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    (text,) = events.Tensors("hyperparameters/text_summary")
    table = text.tensor_proto.string_val[0].decode()
    assert "|learning_rate|0.0001|" in table and "|capture_video|True|" in table  # once: not again on resume
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    options = {field.name for field in dataclasses.fields(Config)}  # every option of run.py
    assert options <= set(config)
    assert options <= set(start.hparams), options - set(start.hparams)
    assert start.hparams["replay_start_size"].number_value == 200 and start.hparams["model"].string_value == "Dqn"


@pytest.mark.slow
def test_track_logs_the_run_to_wandb_offline(tracked_run):
    logs = glob.glob(os.path.join(tracked_run, "wandb", "offline-run-*", "run-*.wandb"))
    run_id = open(os.path.join(tracked_run, "wandb-run-id")).read().strip()
    assert len(logs) == 2 and all(log.endswith(f"run-{run_id}.wandb") for log in logs)  # started, then resumed
    data = b"".join(open(log, "rb").read() for log in logs)
    for key in (b"replay_start_size", b"target_net_update_freq", b"evaluate/average_score", b"train/epsilon",
                b"learn/loss", b"videos/train"):  # the config, the TensorBoard scalars and the videos
        assert key in data, key


@pytest.mark.slow
def test_capture_video_records_every_n_th_training_game(tracked_run):
    from moviepy import VideoFileClip

    videos = sorted(glob.glob(os.path.join(tracked_run, "videos", "train", "*.mp4")),
                    key=lambda path: int(path.rsplit("step", 1)[1].split(".")[0]))
    steps = [int(path.rsplit("step", 1)[1].split(".")[0]) for path in videos]
    assert len(videos) >= 2 and steps[0] == 0, videos  # game 0, then every second game
    for path in videos[:2]:
        clip = VideoFileClip(path)
        try:
            assert clip.fps == 15 and tuple(clip.size) == (160, 210) and clip.duration > 1
            first = clip.get_frame(0)
            assert first.std() > 0  # the Breakout screen, not a blank one
        finally:
            clip.close()


def test_the_recorder_writes_every_n_th_game_whole(tmp_path):
    """A real Breakout training env (episodic life: a game spans several episodes) under random actions: games 0
    and 2 of three are written, each with one frame per agent step of that game."""
    import numpy as np
    from moviepy import VideoFileClip

    from environment.atari import make_env
    from utils.tracking import TrainingVideo

    env = make_env("BreakoutNoFrameskip-v4", training=True, seed=0, **paper_env(max_episode_step=60))
    rng = np.random.default_rng(0)
    video = TrainingVideo(str(tmp_path / "videos"), 2, "Breakout")
    steps, lengths, length, games = 0, [], 0, 0
    env.reset()
    while games < 3:
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        video.step(env, "game_return" in info, steps)
        steps, length = steps + 1, length + 1
        if "game_return" in info:
            games, lengths, length = games + 1, [*lengths, (steps - length, length)], 0
        if terminated or truncated:
            env.reset()
    video.close()
    env.close()
    written = sorted(os.listdir(tmp_path / "videos"))
    expected = {f"Breakout-step{start}.mp4": length for start, length in (lengths[0], lengths[2])}
    assert written == sorted(expected), (written, lengths)
    for name, length in expected.items():
        clip = VideoFileClip(str(tmp_path / "videos" / name))
        try:
            assert round(clip.duration * clip.fps) == length
        finally:
            clip.close()
