"""Tests do not inherit each other's process-wide settings (conftest.process_state): the first test changes them
the way run.py's main and the GPU tests do in-process, the second (the next on the same worker: one file runs on
one worker, in order) finds them as the first test found them."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

BEFORE: dict = {}


def snapshot() -> dict:
    return {"environ": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
            "torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].copy(),
            "python": random.getstate(), "threads": torch.get_num_threads(),
            "flags": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
                      torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                      torch.are_deterministic_algorithms_enabled())}


def test_a_test_changes_process_wide_settings():
    BEFORE.update(snapshot())
    random.seed(7)  # what run.py's main and the CUDA tests do in-process
    np.random.seed(7)
    torch.manual_seed(7)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
    torch.backends.cudnn.allow_tf32 = not torch.backends.cudnn.allow_tf32
    os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] = "torch"  # neural_network.backend's choice of SpikingJelly kernels
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    os.environ.pop("OMP_NUM_THREADS")
    torch.set_num_threads(2)
    now = snapshot()
    assert now["flags"] != BEFORE["flags"] and now["environ"] != BEFORE["environ"]
    assert not torch.equal(now["torch"], BEFORE["torch"]) and now["python"] != BEFORE["python"]


def test_the_next_test_finds_them_as_before():
    assert BEFORE, "runs after test_a_test_changes_process_wide_settings"
    now = snapshot()
    assert now["environ"] == BEFORE["environ"]
    assert torch.equal(now["torch"], BEFORE["torch"]) and np.array_equal(now["numpy"], BEFORE["numpy"])
    assert now["python"] == BEFORE["python"]
    assert now["flags"] == BEFORE["flags"] and now["threads"] == 1
