"""sweep.py on a Ray cluster as docs/CLUSTER.md starts it: real `ray start` processes on this machine (loopback
only), token authentication on, a token left in ~/.ray by an earlier local Ray (as a local sweep leaves it); and a
wrong or dead --address: one line, exit 2, within the stated time.

Each test has its own HOME (its own ~/.ray) and Ray temp folder, and stops only the Ray processes it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import pytest

from sweeping.driver import CONNECT_TIMEOUT_S

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
TINY = ["--timestep_num", "40", "--replay_start_size", "32", "--eval_freq", "20", "--eval_episode_num", "1",
        "--max_episode_step", "40", "--replay_memory_size", "500", "--target_net_update_freq", "10",
        "--log_freq", "10", "--T", "4", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sweep(args: list[str], env: dict, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    process = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "sweep.py"), *args], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=timeout, check=False)
    return process, time.monotonic() - start


def one_line_exit_2(process: subprocess.CompletedProcess) -> str:
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1, process.stderr[-3000:]
    assert lines[0].startswith("sweep.py: error: --address"), lines
    return lines[0]


@pytest.fixture
def shell(tmp_path):
    """A fresh shell's environment with its own HOME."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return dict(env, HOME=str(home), PYTHONUNBUFFERED="1")


@pytest.mark.slow
def test_a_dead_or_wrong_address_is_one_line_and_exit_2_in_time(shell, tmp_path):
    dead = free_port()  # nothing listens there
    process, seconds = sweep(["--address", f"127.0.0.1:{dead}", "--sweep_dir", str(tmp_path / "s"),
                              "--models", "Dsqn", "--seeds", "0"], shell)
    assert "no Ray head node answers there" in one_line_exit_2(process) and seconds < 30
    assert not (tmp_path / "s").exists()  # refused before anything is written
    listener = socket.create_server(("127.0.0.1", 0))  # something listens, but it is not Ray: it never answers
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        process, seconds = sweep(["--address", f"127.0.0.1:{listener.getsockname()[1]}", "--sweep_dir",
                                  str(tmp_path / "s"), "--models", "Dsqn", "--seeds", "0"],
                                 dict(shell, SWEEP_CONNECT_TIMEOUT="4"))
    finally:
        listener.close()
    assert "no Ray cluster answered within 4 s" in one_line_exit_2(process) and seconds < 4 + 30
    process, _ = sweep(["--address", "head-without-port", "--models", "Dsqn", "--seeds", "0", "--dry_run"], shell)
    assert process.returncode == 0  # --dry_run connects to nothing
    process, _ = sweep(["--address", "head-without-port", "--models", "Dsqn", "--seeds", "0"], shell)
    assert "host:port" in one_line_exit_2(process)


def start_node(args: list[str], env: dict, log: str) -> subprocess.Popen:
    """`ray start ... --block` as docs/CLUSTER.md has it; returns once the node runs."""
    with open(log, "w") as out:
        process = subprocess.Popen([RAY, "start", *args, "--block"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in open(log).read():
        assert process.poll() is None and time.monotonic() < deadline, open(log).read()[-3000:]
        time.sleep(0.5)
    return process


@pytest.mark.slow
def test_a_sweep_joins_a_two_node_cluster_with_token_authentication(shell, tmp_path):
    # a token in ~/.ray, as a local ray.init() (a local sweep) leaves it: Ray's `ray start --head` then turns token
    # authentication on by itself, and the nodes and the driver need RAY_AUTH_MODE=token (docs/CLUSTER.md)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=shell, capture_output=True, check=True, timeout=60)
    assert (tmp_path / "home" / ".ray" / "auth_token").is_file()
    cluster = dict(shell, RAY_AUTH_MODE="token")
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths
    loopback = ["--node-ip-address=127.0.0.1", "--num-cpus=1"]
    nodes = [start_node(["--head", f"--port={port}", f"--ray-client-server-port={free_port()}",
                         "--include-dashboard=false", f"--temp-dir={temp}", *loopback], cluster,
                        str(tmp_path / "head.log"))]
    try:
        nodes.append(start_node([f"--address=127.0.0.1:{port}", *loopback], cluster, str(tmp_path / "worker.log")))
        ray_processes = [child for node in nodes for child in psutil.Process(node.pid).children(recursive=True)]
        # meanwhile, a driver from a shell without RAY_AUTH_MODE: refused, in one line naming the fix
        refused = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "sweep.py"), "--address",
                                    f"127.0.0.1:{port}", "--sweep_dir", str(tmp_path / "refused"), "--games",
                                    "Breakout", "--models", "Dsqn", "--seeds", "0"], cwd=REPO_ROOT, env=shell,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        process, _ = sweep(["--address", f"127.0.0.1:{port}", "--sweep_dir", str(tmp_path / "sweep"), "--games",
                            "Breakout", "--models", "Dsqn", "--seeds", "0", "1", "--refresh", "1", "--play_games", "0",
                            "--", *TINY],
                           cluster, timeout=400)
        assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
        assert "Ray: 2 node(s), 2 CPUs" in process.stdout
        runs = sorted(os.listdir(tmp_path / "sweep" / "runs"))
        assert runs == [f"Dsqn_BreakoutNoFrameskip-v4_seed{seed}" for seed in (0, 1)]
        assert all((tmp_path / "sweep" / "runs" / run / "best.pkl").is_file() for run in runs)
        _, err = refused.communicate(timeout=CONNECT_TIMEOUT_S + 30)
        line = one_line_exit_2(subprocess.CompletedProcess(refused.args, refused.returncode, "", err))
        assert "refused this driver's authentication" in line and "RAY_AUTH_MODE=token" in line
    finally:
        for node in reversed(nodes):  # stop only this cluster: end each node's blocking `ray start`
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=60)
    gone, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert not alive, alive
