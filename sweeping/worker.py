"""What one Ray task does on its node: run one run.py or convert.py run as a subprocess, to the end.

* Where: in the driver's sweep folder when this node sees it (its token file holds the sweep's token), else in a
  node-local copy under $SWEEP_LOCAL_DIR (default <tmp>/dsqn-sweep)/<token>/, whose run folder is packed and
  returned to the driver when the process ends (finished or not).
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
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from sweeping import packing
from sweeping.progress import read_progress
from utils.runs import RunFolder

TOKEN_FILE = ".sweep-token"
POLL_S = 0.5
REPORT_S = 3.0
LOG_RETURNED = 256 * 1024  # the end of a node-local attempt's output that is sent back to the driver


def node_root(token: str) -> str:
    base = os.environ.get("SWEEP_LOCAL_DIR") or os.path.join(tempfile.gettempdir(), "dsqn-sweep")
    return os.path.join(os.path.abspath(base), token)


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


def execute(job: dict, pack: bytes | None = None, dep_pack: bytes | None = None, board=None) -> dict:
    """Run ``job`` (see :mod:`sweeping.driver`) to its end; returns its outcome (``pack``: the run folder when
    it ran in a node-local copy)."""
    import ray

    started = time.time()
    shared = job["results"] == "shared" or (job["results"] == "auto" and sees_sweep_dir(job["sweep_dir"],
                                                                                       job["token"]))
    if job["results"] == "shared" and not sees_sweep_dir(job["sweep_dir"], job["token"]):
        return {"lost": f"--results shared, but node {socket.gethostname()} does not see {job['sweep_dir']}"}
    if not shared and job["has_copy"] and (pack if job["kind"] == "train" else dep_pack) is None:
        return {"need_pack": True}  # the driver sends its copy of the run folder (or of the Dqn run) along
    root = job["sweep_dir"] if shared else node_root(job["token"])
    runs_dir, name = os.path.join(root, "runs"), job["name"]
    folder = os.path.join(runs_dir, name)
    for sub in ("runs", "locks", "logs"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    context = ray.get_runtime_context()
    where = {"node": context.get_node_id()[:8], "host": socket.gethostname(), "shared": shared,
             "attempt": job["attempt"]}

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
        if not shared:
            if pack is not None and packing.progress_key(folder) < _key_of_pack(pack, root, name):
                packing.unpack(pack, folder)
            if job["kind"] != "train" and dep_pack is not None:  # a conversion or play: the run it starts from
                dqn = os.path.join(runs_dir, job["after"])
                if not _finished(dqn, None):
                    packing.unpack(dep_pack, dqn)
        if _finished(folder, job.get("timestep_num")):
            rc = 0
        else:
            rc = _run(job, runs_dir, folder, root, report, lock.fileno())
    finally:
        lock.close()
    outcome = {**where, "rc": rc, "seconds": time.time() - started,
               "finished": _finished(folder, job.get("timestep_num")),
               "error": None if rc == 0 else _error_line(_log_path(root, job))}
    if not shared:
        if os.path.isdir(folder):
            outcome["pack"] = packing.pack(folder)
        with contextlib.suppress(OSError), open(_log_path(root, job), "rb") as log:
            log.seek(max(0, os.path.getsize(log.name) - LOG_RETURNED))
            outcome["log"] = log.read()
    return outcome


def _log_path(root: str, job: dict) -> str:
    return os.path.join(root, "logs", f"{job['name']}.attempt{job['attempt']}.log")


def _key_of_pack(pack: bytes, root: str, name: str) -> tuple:
    """The progress key of a packed copy (unpacked into a scratch folder, since the key reads two small files)."""
    scratch = os.path.join(root, "runs", f".scratch-{name}")
    try:
        packing.unpack(pack, scratch)
        return packing.progress_key(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
    except BaseException:  # noqa: BLE001 - ray.cancel (TaskCancelledError / KeyboardInterrupt): the run saves and stops, and
        process.send_signal(signal.SIGINT)  # the task returns normally, so that a node-local copy is sent back
        with contextlib.suppress(BaseException):
            process.wait(timeout=300)
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode


def cleanup_node(token: str, names: list[str]) -> int:
    """Remove this node's local copies of the runs ``names`` (the driver holds them); returns how many."""
    root = node_root(token)
    removed = 0
    for name in names:
        folder = os.path.join(root, "runs", name)
        if os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        for sub, suffix in (("locks", ".lock"), ("logs", ".attempt")):
            for file in glob.glob(os.path.join(glob.escape(os.path.join(root, sub, name)) + suffix + "*")):
                with contextlib.suppress(OSError):
                    os.remove(file)
    with contextlib.suppress(OSError):
        if not os.listdir(os.path.join(root, "runs")):
            shutil.rmtree(root, ignore_errors=True)
    return removed
