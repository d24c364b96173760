"""The sweep's own state in its folder: what each run came to, so the same command continues where it stopped.

    <sweep_dir>/sweep.json     per run: state (running / done / failed / interrupted / stopped), attempts, last exit
                               status and error line, node; written atomically after every change
    <sweep_dir>/.sweep-token   a random token: a task that can read it sees the driver's folder (see worker.py)
    <sweep_dir>/.driver.lock   held by the one sweep.py that drives this folder
    <sweep_dir>/runs/          one folder per run (what plot.py reads)

The run folders are the truth about progress (status.json, the saved state); sweep.json only remembers what the
folders cannot say: that a run failed for a reason of its own (exit 2 or 3) with these options.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from datetime import datetime

from sweeping.worker import TOKEN_FILE
from utils.cli import UserError
from utils.runs import RunFolder, write_json

STATE_FILE = "sweep.json"
OWN_FAILURE = {2: "bad option or input (exit 2)", 3: "diverged: NaN (exit 3)"}


class SweepState:
    def __init__(self, sweep_dir: str):
        self.sweep_dir = sweep_dir
        self.path = os.path.join(sweep_dir, STATE_FILE)
        self.data = _read(self.path) or {"runs": {}}
        self.data.setdefault("runs", {})

    def token(self) -> str:
        """The sweep folder's token, made once (exclusively, so two starts agree on it)."""
        path = os.path.join(self.sweep_dir, TOKEN_FILE)
        try:
            with open(path, "x", encoding="utf-8") as file:
                file.write(secrets.token_hex(8) + "\n")
        except FileExistsError:
            pass
        with open(path, encoding="utf-8") as file:
            return file.read().strip()

    def run(self, name: str) -> dict:
        return self.data["runs"].get(name, {})

    def record(self, name: str, **fields) -> None:
        entry = self.data["runs"].setdefault(name, {})
        entry.update(fields, updated=datetime.now().isoformat(timespec="seconds"))
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise UserError(f"{path} is damaged; move it away to start the sweep's bookkeeping afresh (the run "
                        "folders keep every result)") from None
    return data if isinstance(data, dict) else None


def lock_sweep_dir(sweep_dir: str):
    """Hold the sweep folder for this driver; a second sweep.py on the same folder is refused."""
    os.makedirs(os.path.join(sweep_dir, "runs"), exist_ok=True)
    lock = open(os.path.join(sweep_dir, ".driver.lock"), "a+")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise UserError(f"another sweep.py is driving {sweep_dir}; wait for it or stop it first") from None
    return lock


def run_finished(folder: str, spec) -> bool:
    status = RunFolder(folder).status or {}
    if status.get("status") != "finished":
        return False
    return spec.kind != "train" or int(status.get("timestep") or 0) >= spec.config["timestep_num"]


def classify(specs, runs_dir: str, state: SweepState, retry_failed: bool) -> list[tuple]:
    """[(spec, action, learning steps done)], action one of: finished (skipped), failed (reported again, not
    retried: it failed for a reason of its own with the same options), start, resume, convert, play."""
    plan = []
    for spec in specs:
        folder = os.path.join(runs_dir, spec.name)
        record = state.run(spec.name)
        status = RunFolder(folder).status or {}
        if run_finished(folder, spec):
            plan.append((spec, "finished", 0))
        elif (record.get("state") == "failed" and record.get("exit") in OWN_FAILURE
              and record.get("words") == spec.words and not retry_failed):
            plan.append((spec, "failed", 0))
        elif spec.kind in ("convert", "play"):
            plan.append((spec, spec.kind, 0))
        elif os.path.isfile(os.path.join(folder, "config.json")):
            plan.append((spec, "resume", int(status.get("timestep") or 0)))
        else:
            plan.append((spec, "start", 0))
    return plan
