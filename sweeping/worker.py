"""What one Ray task does on its node: run one run.py or convert.py run as a subprocess, to the end.

* Where: in the driver's sweep folder, which every node must see (its token file holds the sweep's token); on a
  node that does not, the task ends at once with one line saying so, and the driver counts it as interrupted.
* One process per run folder at a time: a lock file, held by the task and inherited by the subprocess, so a retry
  waits until a previous attempt's process (which may outlive a killed worker for a moment) has saved and exited.
* A run folder that has a config.json is continued with ``run.py --resume`` (the same options: run.py refuses any
  that cannot change); a conversion, which cannot be resumed, starts again in a clean folder.
* The subprocess gets SIGTERM when the worker dies (Linux PR_SET_PDEATHSIG, see LAUNCHER): run.py then saves its
  state and stops.
* Progress (phase, step, steps/s, last evaluation score) goes to the driver's progress board every few seconds.

This module is sent to the workers by value (cloudpickle), so a node needs the repository and its virtualenv at
the same path as the driver (or $SWEEP_REPO), not this module importable.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from sweeping.progress import read_progress
from utils.runs import RunFolder

TOKEN_FILE = ".sweep-token"
POLL_S = 0.5
REPORT_S = 3.0


def sees_sweep_dir(sweep_dir: str, token: str) -> bool:
    try:
        with open(os.path.join(sweep_dir, TOKEN_FILE), encoding="utf-8") as file:
            return file.read().strip() == token
    except OSError:
        return False


#: Run in front of the program (then replaced by it, same process): unblock every signal (a Ray worker blocks SIGINT,
#: and a blocked mask is inherited), restore the default SIGINT/SIGTERM actions, and ask Linux for SIGTERM when the
#: worker dies (PR_SET_PDEATHSIG = 1), so the run saves and stops instead of running on without its task. This is a
#: separate exec rather than a preexec_fn, which is unsafe in a process with threads (a Ray worker has several).
LAUNCHER = ("import ctypes, os, signal, sys\n"
            "signal.pthread_sigmask(signal.SIG_SETMASK, [])\n"
            "for signum in (signal.SIGINT, signal.SIGTERM):\n"
            "    signal.signal(signum, signal.SIG_DFL)\n"
            "try:\n"
            "    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
            "except (OSError, AttributeError):\n"
            "    pass\n"
            "if os.getppid() != int(sys.argv[1]):\n"
            "    sys.exit(143)  # the worker is already gone\n"
            "os.execv(sys.argv[2], sys.argv[2:])\n")


def _error_line(log_path: str) -> str | None:
    """The program's one-line error (``run.py: error: ...``) from the end of its output."""
    with contextlib.suppress(OSError):
        with open(log_path, "rb") as file:
            file.seek(max(0, os.path.getsize(log_path) - 16384))
            lines = file.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
        for line in reversed(lines):
            if ": error: " in line or "Error" in line.split(":")[0]:
                return line.strip()[:500]
        return next((line.strip()[:500] for line in reversed(lines) if line.strip()), None)
    return None


def _finished(folder: str, timestep_num: int | None) -> bool:
    status = RunFolder(folder).status or {}
    if status.get("status") != "finished":
        return False
    return timestep_num is None or int(status.get("timestep") or 0) >= timestep_num


def _command(job: dict, runs_dir: str, folder: str) -> list[str]:
    repo = os.environ.get("SWEEP_REPO") or job["repo_root"]
    if job["kind"] == "convert":
        if os.path.exists(folder):  # an interrupted conversion: convert.py has no resume, start it again
            shutil.rmtree(folder)
        return [sys.executable, os.path.join(repo, "conversion_based_snn", "convert.py"),
                "--model", os.path.join(runs_dir, job["after"]), *job["words"],
                "--output_dir", runs_dir, "--run_name", job["name"]]
    run_py = os.path.join(repo, "run.py")
    if job["kind"] == "play":
        if os.path.exists(folder):  # an interrupted play: start it again
            shutil.rmtree(folder)
        return [sys.executable, run_py, *job["words"], "--model_path", os.path.join(runs_dir, job["after"]),
                "--output_dir", runs_dir, "--run_name", job["name"]]
    if os.path.isfile(os.path.join(folder, "config.json")):
        return [sys.executable, run_py, "--resume", folder, "--output_dir", runs_dir, *job["words"]]
    if os.path.exists(folder):  # created but stopped before it wrote its configuration: nothing to keep
        shutil.rmtree(folder)
    return [sys.executable, run_py, *job["words"], "--output_dir", runs_dir, "--run_name", job["name"]]


def execute(job: dict, board=None) -> dict:
    """Run ``job`` (see :mod:`sweeping.driver`) to its end in the sweep folder; returns its outcome."""
    started = time.time()
    root = job["sweep_dir"]
    if not sees_sweep_dir(root, job["token"]):
        return {"lost": f"node {socket.gethostname()} does not see the sweep folder {root}: a sweep needs a folder "
                        "that every node sees (docs/CLUSTER.md)"}
    import ray

    runs_dir, name = os.path.join(root, "runs"), job["name"]
    folder = os.path.join(runs_dir, name)
    for sub in ("runs", "locks", "logs"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    context = ray.get_runtime_context()
    where = {"node": context.get_node_id()[:8], "host": socket.gethostname(), "attempt": job["attempt"]}

    def report(**info) -> None:
        if board is not None:
            board.update.remote(name, {**where, **info})

    lock = open(os.path.join(root, "locks", f"{name}.lock"), "a+")  # noqa: SIM115 - held by the child too
    try:
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                report(phase="waiting for the previous attempt to stop")
                time.sleep(POLL_S)
        if _finished(folder, job.get("timestep_num")):
            rc = 0
        else:
            rc = _run(job, runs_dir, folder, root, report, lock.fileno())
    finally:
        lock.close()
    return {**where, "rc": rc, "seconds": time.time() - started, "finished": _finished(folder, job.get("timestep_num")),
            "error": None if rc == 0 else _error_line(_log_path(root, job))}


def _log_path(root: str, job: dict) -> str:
    return os.path.join(root, "logs", f"{job['name']}.attempt{job['attempt']}.log")


def _run(job: dict, runs_dir: str, folder: str, root: str, report, lock_fd: int) -> int:
    command = _command(job, runs_dir, folder)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(max(1, int(job["cpus"]))),
               MKL_NUM_THREADS=str(max(1, int(job["cpus"]))))
    if not job["gpus"]:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a run that holds no GPU uses none (device auto -> cpu)
    log_path = _log_path(root, job)
    with open(log_path, "wb") as log:
        log.write((" ".join(command) + "\n").encode())
        log.flush()
        process = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(os.getpid()), *command],
                                   cwd=os.environ.get("SWEEP_REPO") or job["repo_root"], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(lock_fd,))
    report(phase="starting", pid=process.pid, started=time.time())
    last = 0.0
    try:
        while process.poll() is None:
            time.sleep(POLL_S)
            if time.time() - last >= REPORT_S:
                last = time.time()
                report(**read_progress(folder), pid=process.pid)
    except BaseException:  # noqa: BLE001 - ray.cancel (TaskCancelledError / KeyboardInterrupt): the run saves and stops,
        process.send_signal(signal.SIGINT)  # and the task returns its outcome normally
        with contextlib.suppress(BaseException):
            process.wait(timeout=300)
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode
