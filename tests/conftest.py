"""Shared fixtures: tiny real training runs of run.py, made once per test session and reused.

Every test, and every program a test starts, computes with one torch (OpenMP) thread: the tests' tensors are small,
and on a 2-core machine two threads contending with another process for the cores are many times slower than one.
It also makes the results of a test's in-process runs and of the programs it starts comparable bit for bit.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from dataclasses import dataclass

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported; inherited by every program a test starts

import pytest
import torch

torch.set_num_threads(1)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAME = "BreakoutNoFrameskip-v4"
# A budget that exercises every phase (exploration, updates, target copies, two evaluations) in seconds.
TINY_LEARN = [
    "--timestep_num", "40", "--replay_start_size", "32", "--eval_freq", "20", "--eval_episode_num", "1",
    "--max_episode_step", "40", "--replay_memory_size", "500", "--target_net_update_freq", "10", "--log_freq", "10",
    "--T", "4", "--seed", "0", "--device", "cpu",
]


def run_program(args: list[str], cwd: str = REPO_ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a Python program of the repo as a user would, capturing its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@dataclass
class TrainedRun:
    model: str
    output_dir: str

    def only(self, pattern: str) -> str:
        matches = glob.glob(os.path.join(self.output_dir, pattern))
        assert len(matches) == 1, (pattern, matches)
        return matches[0]

    @property
    def run_dir(self) -> str:
        return self.only(f"{self.model}_{GAME}_seed0_*")

    @property
    def model_path(self) -> str:
        return os.path.join(self.run_dir, "best.pkl")

    @property
    def log_path(self) -> str:
        return os.path.join(self.run_dir, "run.log")

    @property
    def tensorboard_dir(self) -> str:
        return os.path.join(self.run_dir, "tensorboard")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """``trained_run(model)`` trains ``model`` on Breakout with the tiny budget once per session (run.py's main,
    in this process: the same code as the command, without a new interpreter's start-up)."""
    import run as run_py

    cache: dict[str, TrainedRun] = {}

    def get(model: str) -> TrainedRun:
        if model not in cache:
            output_dir = str(tmp_path_factory.mktemp(f"run_{model}"))
            run_py.main(["--model", model, "--env_id", GAME, *TINY_LEARN, "--output_dir", output_dir])
            cache[model] = TrainedRun(model, output_dir)
        return cache[model]

    return get


def read_scalars(event_dir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of a TensorBoard run directory, read with TensorBoard's own event reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(event_dir, size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
