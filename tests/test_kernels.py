"""The neuron kernel a run uses is one known to run: each SpikingJelly kernel is probed on the device
(neural_network.backend.probe_kernels), --backend auto resolves to the fastest that runs, a kernel that does not
run is refused with one line, and the choice is recorded in config.json and run.log."""

from __future__ import annotations

import json
import os

import pytest
import torch

from neural_network import BackendError, choose_backend, probe_kernels
from neural_network.backend import CHOSEN, CUDA_KERNELS, describe_choice

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_the_cpu_probe_runs_the_torch_kernel_and_auto_resolves_to_it():
    assert probe_kernels("cpu") == {"torch": None}
    assert choose_backend("auto", "cpu") == ("torch", {"torch": None})
    assert CHOSEN == {"backend": "auto", "kernel": "torch", "probe": {"torch": None}}
    assert describe_choice(CHOSEN) == "neuron kernel torch (--backend auto)"
    for backend in ("cuda", "cupy", "triton"):
        with pytest.raises(BackendError, match="needs a CUDA device"):
            choose_backend(backend, "cpu")


def test_a_run_records_its_neuron_kernel(trained_run):
    run = trained_run("Dsqn")
    with open(os.path.join(run.run_dir, "config.json")) as file:
        config = json.load(file)
    assert config["backend"] == "auto" and config["neuron_kernel"] == "torch"
    assert config["neuron_kernel_probe"] == {"torch": None}
    with open(run.log_path) as file:
        assert "neuron kernel torch (--backend auto)" in file.read()
    with open(os.path.join(trained_run("Dqn").run_dir, "config.json")) as file:
        assert "neuron_kernel" not in json.load(file)  # no spiking neurons, no kernel


@cuda
def test_cuda_probe_names_every_kernel_and_auto_takes_the_first_that_runs():
    probe = probe_kernels("cuda")
    assert list(probe) == list(CUDA_KERNELS) and probe["torch"] is None
    running = [k for k, error in probe.items() if error is None]
    assert choose_backend("auto", "cuda")[0] == running[0]
    for kernel, error in probe.items():
        if error is not None:
            with pytest.raises(BackendError, match=f"kernels that run: {', '.join(running)}"):
                choose_backend(kernel, "cuda")
    choose_backend("auto", "cuda")


@cuda
def test_run_py_refuses_a_kernel_that_does_not_run_and_bf16_on_cuda(tmp_path, capsys):
    import run as run_py

    tiny = ["--model", "Dsqn", "--device", "cuda", "--T", "4", "--timestep_num", "8", "--replay_start_size", "32",
            "--replay_memory_size", "500", "--output_dir", str(tmp_path)]
    broken = [kernel for kernel, error in probe_kernels("cuda").items() if error is not None]
    for extra, words in [(["--bf16"], "--bf16")] + [(["--backend", k], "kernels that run") for k in broken]:
        with pytest.raises(SystemExit) as exit_info:
            run_py.cli(tiny + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and words in err[0], err
    assert os.listdir(tmp_path) == []  # refused before any run folder was made
    choose_backend("auto", "cuda")
