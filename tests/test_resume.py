"""A run can be stopped at any moment and continued without losing or changing anything (docs/RELIABILITY.md).

The runs are real run.py processes on Breakout, killed with SIGKILL, SIGTERM and SIGINT at random points and
continued with --resume; the result must equal, bit for bit, the same run never interrupted.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import GAME, REPO_ROOT, read_scalars

import run as run_py
import utils.runs
from agent.persistence import load_state

# Small minibatches let the replay memory be tiny (48 transitions), so that it wraps around early and resuming needs
# its undo journal.
RESUMABLE = ["--model", "Dqn", "--env_id", GAME, "--timestep_num", "150", "--replay_start_size", "16",
             "--minibatch_size", "8", "--replay_memory_size", "48", "--eval_freq", "50", "--eval_episode_num", "1",
             "--max_episode_step", "60", "--target_net_update_freq", "10", "--checkpoint_freq", "5", "--log_freq", "10",
             "--save_replay", "--device", "cpu", "--seed", "3"]


def start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def saved_step(run_dir: str) -> int:
    try:
        with open(os.path.join(run_dir, "state", "manifest.json")) as file:
            return json.load(file)["timestep"]
    except (OSError, ValueError, KeyError):
        return -1


def interrupt_when(process: subprocess.Popen, run_dir: str, step: int, signum: int, delay: float) -> None:
    """Send ``signum`` ``delay`` seconds after this process has saved a state at or beyond learning step ``step``
    (a state of its own: then it is inside the training loop, where a signal is the user's, not a start-up's)."""
    before = saved_step(run_dir)
    while (saved_step(run_dir) < step or saved_step(run_dir) == before) and process.poll() is None:
        time.sleep(0.02)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signum)


def evaluation_lines(run_dir: str) -> dict[int, str]:
    """The last evaluation line logged for each step (a resumed run may log a step again: it is the same line)."""
    lines = {}
    for line in open(os.path.join(run_dir, "run.log"), encoding="utf-8"):
        match = re.search(r"timestep: (\d+)\taverage_score: .*", line)
        if match:
            lines[int(match.group(1))] = match.group(0)
    return lines


def final_network(run_dir: str) -> dict:
    state, _ = load_state(os.path.join(run_dir, "state"))
    return state["net"]


def comparable_scalars(run_dir: str) -> dict:
    scalars = read_scalars(os.path.join(run_dir, "tensorboard"))
    scalars.pop("train/steps_per_s")  # wall-clock speed, not a result
    return scalars


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    process = start([*RESUMABLE, "--output_dir", str(out), "--run_name", "run"])
    assert process.wait(timeout=600) == 0, process.stderr.read()[-3000:]
    return str(out / "run")


@pytest.mark.slow
def test_killed_at_random_points_and_resumed_equals_the_run_never_interrupted(uninterrupted, tmp_path):
    rng = random.Random(0)
    run_dir = str(tmp_path / "run")
    # Five interruptions at random points; SIGTERM and SIGINT save first, SIGKILL gives no warning at all.
    targets = sorted(rng.sample(range(0, 145), 5))
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGKILL]
    process = start([*RESUMABLE, "--output_dir", str(tmp_path), "--run_name", "run"])
    for target, signum in zip(targets, signals):
        interrupt_when(process, run_dir, target, signum, delay=rng.uniform(0.0, 0.3))
        status = process.wait(timeout=600)
        stderr = process.stderr.read()
        if status == 0:  # it finished before the signal arrived
            break
        if signum == signal.SIGKILL:
            assert status == -signal.SIGKILL
        else:
            assert status == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], stderr[-2000:]
            assert f"--resume {run_dir}" in stderr and "Traceback" not in stderr
            assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "stopped"
        process = start(["--resume", run_dir])
    assert process.wait(timeout=600) == 0, process.stderr.read()[-3000:]
    log = open(os.path.join(run_dir, "run.log"), encoding="utf-8").read()
    assert log.count("resumed at learning step") >= 4

    assert evaluation_lines(run_dir) == evaluation_lines(uninterrupted)
    assert sorted(evaluation_lines(run_dir)) == [0, 50, 100, 150]
    assert comparable_scalars(run_dir) == comparable_scalars(uninterrupted)
    ours, theirs = final_network(run_dir), final_network(uninterrupted)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    best_ours = torch.load(os.path.join(run_dir, "best.pkl"), weights_only=True)["state_dict"]
    best_theirs = torch.load(os.path.join(uninterrupted, "best.pkl"), weights_only=True)["state_dict"]
    assert all(torch.equal(best_ours[k], best_theirs[k]) for k in best_theirs)
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "finished"


@pytest.mark.slow
def test_without_the_replay_memory_a_resumed_run_refills_it_and_says_so(tmp_path, capsys):
    args = [a for a in RESUMABLE if a != "--save_replay"]
    args[args.index("--timestep_num") + 1] = "30"
    run_dir = str(tmp_path / "run")
    process = start([*args, "--output_dir", str(tmp_path), "--run_name", "run"])
    interrupt_when(process, run_dir, 8, signal.SIGTERM, delay=0.0)
    assert process.wait(timeout=600) == 143
    run_py.cli(["--resume", run_dir])
    assert "refilled" in capsys.readouterr().out
    log = open(os.path.join(run_dir, "run.log"), encoding="utf-8").read()
    assert "refilling it with 16 random steps" in log and "Learning is done" in log
    # A finished run trains on with a larger budget, and its new final network is evaluated; a smaller one is refused.
    run_py.cli(["--resume", run_dir, "--timestep_num", "35"])
    assert sorted(evaluation_lines(run_dir)) == [0, 30, 35]
    from test_agent import one_line_error

    capsys.readouterr()
    one_line_error(capsys, ["--resume", run_dir, "--timestep_num", "20"], "below the 35 learning steps")
    one_line_error(capsys, ["--resume", run_dir, "--model", "Dsqn"], "--model cannot change")


def test_a_damaged_or_altered_state_is_refused_with_one_line(uninterrupted, tmp_path, capsys):
    import shutil

    from test_agent import one_line_error

    for damage in ("truncate", "alter", "manifest"):
        run_dir = tmp_path / damage
        shutil.copytree(uninterrupted, run_dir)
        manifest = json.load(open(run_dir / "state" / "manifest.json"))
        state_file = run_dir / "state" / manifest["file"]
        data = state_file.read_bytes()
        if damage == "truncate":
            state_file.write_bytes(data[: len(data) // 2])
        elif damage == "alter":
            state_file.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
        else:
            (run_dir / "state" / "manifest.json").write_text("{not json")
        expected = "manifest.json is damaged" if damage == "manifest" else "is damaged"
        one_line_error(capsys, ["--resume", str(run_dir), "--timestep_num", "400"], expected)
        assert state_file.exists()  # refused, never deleted or overwritten


def test_a_full_disk_while_saving_keeps_the_previous_state(tmp_path, capsys, monkeypatch):
    from test_agent import one_line_error

    run_dir = tmp_path / "run"
    args = [a for a in RESUMABLE if a != "--save_replay"]
    args[args.index("--timestep_num") + 1] = "30"
    real_atomic_write, calls = utils.runs.atomic_write, []

    def atomic_write(path, write):  # the disk fills up at the third state file
        if os.path.basename(path).startswith("state-"):
            calls.append(path)
            if len(calls) == 3:
                with open(f"{path}.tmp", "wb") as file:
                    file.write(b"half a state")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{path}.tmp")
        real_atomic_write(path, write)

    monkeypatch.setattr("agent.persistence.atomic_write", atomic_write)
    # exit 4 (a storage failure), naming the file and how to continue (tests/test_reliability.py: a real tmpfs)
    one_line_error(capsys, [*args, "--output_dir", str(tmp_path), "--run_name", "run"], "No space left on device",
                   "state-000003.pt.tmp", f"python run.py --resume {run_dir}", status=4)
    assert json.load(open(run_dir / "status.json"))["status"] == "failed"
    state, manifest = load_state(str(run_dir / "state"))
    assert manifest["sequence"] == 2 and state["progress"]["timestep"] == 6  # saved after steps 0 and 5
    monkeypatch.undo()
    run_py.cli(["--resume", str(run_dir)])
    assert not [f for f in os.listdir(run_dir / "state") if f.endswith(".tmp")]  # cleaned by the resume
    assert json.load(open(run_dir / "status.json"))["status"] == "finished"
