"""Shared fixtures: tiny real training runs of run.py, made once per test session and reused.

Every test, and every program a test starts, computes with one torch (OpenMP) thread: the tests' tensors are small,
and on a 2-core machine two threads contending with another process for the cores are many times slower than one.
It also makes the results of a test's in-process runs and of the programs it starts comparable bit for bit.

Tests are isolated from each other's process-wide settings (:func:`process_state`): what a test, or a program's
``main`` it runs in this process, changes in the environment variables, the global random generators, the cuDNN,
TF32 and deterministic-algorithm flags or torch's thread count is put back after it. glibc's allocator settings
cannot be read back, so they are set once for the whole session, as run.py sets them on the CPU.
"""

from __future__ import annotations

import glob
import os
import random
import subprocess
import sys
from dataclasses import dataclass

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported; inherited by every program a test starts

import numpy as np
import pytest
import torch

from utils.malloc import tune_glibc_malloc

torch.set_num_threads(1)
tune_glibc_malloc()  # what run.py's main does in-process: the same allocator for every test, whichever runs first


def _torch_flags() -> tuple:
    return (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())


def _set_torch_flags(flags: tuple) -> None:
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = flags[:4]
    torch.use_deterministic_algorithms(flags[4], warn_only=flags[5])


def _environ() -> dict:
    """os.environ without the variable in which pytest names the test it runs."""
    return {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"}


#: The tests of each extension, marked with its name (pyproject.toml's markers): ``pytest -m "not (sweep or nir or
#: robustness or tracking or harness)"`` tests the reproduction alone, ``pytest -m sweep`` the sweep alone.
EXTENSION_TESTS = {
    "sweep": ("test_sweep.py", "test_cluster.py"),
    "nir": ("test_export_nir.py", "test_nir_importers.py"),
    "robustness": ("test_robustness.py",),
    "tracking": ("test_tracking.py",),
    "harness": ("test_bench.py",),
}


def pytest_collection_modifyitems(items) -> None:
    marker_of = {name: marker for marker, names in EXTENSION_TESTS.items() for name in names}
    for item in items:
        marker = marker_of.get(item.path.name)
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(autouse=True)
def process_state():
    """Put back, after each test, the process-wide settings it may change: os.environ (SpikingJelly's SJ_*
    backend choice, CUBLAS_WORKSPACE_CONFIG, CUDA_VISIBLE_DEVICES from --gpu, ...), the global random generators
    (torch's, CUDA's once initialised, numpy's legacy one, Python's), the cuDNN/TF32/deterministic flags and
    torch's thread count."""
    environ = _environ()
    flags = _torch_flags()
    torch_rng, numpy_rng, python_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    yield
    if _environ() != environ:
        current = os.environ.get("PYTEST_CURRENT_TEST")
        os.environ.clear()
        os.environ.update(environ, **({"PYTEST_CURRENT_TEST": current} if current is not None else {}))
    if _torch_flags() != flags:
        _set_torch_flags(flags)
    torch.set_rng_state(torch_rng)
    np.random.set_state(numpy_rng)
    random.setstate(python_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAME = "BreakoutNoFrameskip-v4"
# A budget that exercises every phase (exploration, updates, target copies, two evaluations) in seconds.
TINY_LEARN = [
    "--timestep_num", "40", "--replay_start_size", "32", "--eval_freq", "20", "--eval_episode_num", "1",
    "--max_episode_step", "40", "--replay_memory_size", "500", "--target_net_update_freq", "10", "--log_freq", "10",
    "--T", "4", "--seed", "0", "--device", "cpu",
]


def paper_env(**overrides) -> dict:
    """make_env's game settings at run.py's defaults (agent.config.Config; the library has none of its own), with
    ``overrides``."""
    from agent.config import Config

    return {**Config().env_kwargs(), **overrides}


def paper_network(model: str, n_actions: int, **overrides):
    """build_network with run.py's defaults (agent.config.Config) for the hyperparameters not in ``overrides``."""
    from agent.config import Config
    from neural_network import build_network

    return build_network(model, n_actions, **{**Config().network_kwargs(), **overrides})


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
