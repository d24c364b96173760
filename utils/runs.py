"""Run folders and safe writes, shared by run.py and convert.py.

Every run writes into its own folder ``<output_dir>/<run name>/``, created with an exclusive ``mkdir`` before
anything else is written: two runs started in the same second never share a folder (the second gets ``_2``).
Files that a later read must trust are written atomically: into a temporary file in the same folder, flushed to
disk (fsync), then renamed over the old one, so a crash or a full disk leaves either the old or the new file,
never half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from datetime import datetime

from utils.files import atomic_write, read_json, sha256_of, write_json  # noqa: F401 - defined there, re-exported here


def shown(path: str) -> str:
    """A path as a user would type it: relative to the current folder when it lies below it."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else os.path.abspath(path)


def timestamp() -> str:
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def create_run_dir(parent: str, name: str) -> str:
    """Create and return ``parent/name``, or ``parent/name_2``, ``_3``, ... if taken (exclusive, race-free)."""
    os.makedirs(parent, exist_ok=True)
    for number in range(1, 10_000):
        path = os.path.join(parent, name if number == 1 else f"{name}_{number}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name for {name} in {parent}")


CONFIG_JSON, STATUS_JSON, SUMMARY_JSON, PROGRESS_JSON = "config.json", "status.json", "summary.json", "progress.json"
MANIFEST_JSON = os.path.join("state", "manifest.json")
EVALUATIONS_CSV = "evaluations.csv"
EVALUATION_COLUMNS = ("step", "games", "mean", "median", "std", "min", "max", "mean_max_q", "truncated_games")


class _JsonFile:
    """A run folder's JSON file as an attribute: its object, read when asked (:meth:`RunFolder.read`)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, run: RunFolder | None, owner=None):
        return self if run is None else run.read(self.name)


class RunFolder:
    """One run folder of run.py or convert.py and the files in it that other code reads:

    * ``config.json``: every option of the run, ``"program"`` (run.py or convert.py) and its provenance;
    * ``status.json``: running / finished / stopped / diverged / failed, the step reached, host, pid and time;
    * ``summary.json``: the scores of a play or a conversion;
    * ``evaluations.csv``: one row per evaluation of a learn run;
    * ``progress.json``: what the run is doing now (written by :class:`ProgressFile`);
    * ``state/manifest.json``: which saved training state is the current one (written and checked by
      agent/persistence.py; read-only here).

    Each reader reads the file when asked (a live run rewrites them) and gives None (``evaluations``: []) when it is
    missing, unreadable, not JSON or not a JSON object: a reader that must tell these apart uses :meth:`load`."""

    def __init__(self, path: str):
        self.path = path

    def __repr__(self) -> str:
        return f"RunFolder({self.path!r})"

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    def file(self, name: str) -> str:
        """The path of the file ``name`` (relative to the folder)."""
        return os.path.join(self.path, name)

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.file(name))

    def load(self, name: str):
        """The JSON value of the file ``name``; raises OSError (missing, unreadable) or ValueError (not JSON)."""
        with open(self.file(name), encoding="utf-8") as file:
            return json.load(file)

    def read(self, name: str) -> dict | None:
        """The JSON object in the file ``name``; None when it is missing, unreadable, not JSON or not an object."""
        try:
            value = self.load(name)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    config = _JsonFile(CONFIG_JSON)
    status = _JsonFile(STATUS_JSON)
    summary = _JsonFile(SUMMARY_JSON)
    progress = _JsonFile(PROGRESS_JSON)
    manifest = _JsonFile(MANIFEST_JSON)  # as it is: agent/persistence.py checks its fields before it trusts them

    def config_of(self, program: str) -> dict:
        """The config.json that ``program`` (run.py or convert.py) wrote here, or {}."""
        config = self.config
        return config if config is not None and config.get("program") == program else {}

    @property
    def evaluations(self) -> list[dict]:
        """The rows of evaluations.csv as text ([] where the file is missing or unreadable)."""
        import csv

        try:
            with open(self.file(EVALUATIONS_CSV), encoding="utf-8", newline="") as file:
                return [row for row in csv.DictReader(file) if row.get("step", "").strip().lstrip("-").isdigit()]
        except (OSError, csv.Error, UnicodeDecodeError):
            return []

    def write_status(self, status: str, **fields) -> None:
        """status.json (atomically): ``status``, the time, host and pid, and ``fields`` (the step reached, ...)."""
        write_json(self.file(STATUS_JSON), {
            "status": status, "updated": datetime.now().isoformat(timespec="seconds"),
            "host": socket.gethostname(), "pid": os.getpid(), **fields,
        })

    def write_summary(self, summary: dict) -> None:
        """summary.json (atomically)."""
        write_json(self.file(SUMMARY_JSON), summary)

    def write_evaluation(self, row: dict) -> None:
        """Add ``row`` to evaluations.csv (atomically). Rows of the same or a later step are replaced: a resumed run
        evaluates again from where its saved state was, like the TensorBoard events it purges."""
        import csv
        import io

        kept = [r for r in self.evaluations if int(r["step"]) < row["step"]]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=EVALUATION_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for item in [*kept, row]:
            writer.writerow({key: ("" if isinstance(item.get(key), float) and not math.isfinite(item[key])
                                   else item.get(key, "")) for key in EVALUATION_COLUMNS})
        atomic_write(self.file(EVALUATIONS_CSV), lambda file: file.write(text.getvalue().encode("utf-8")))


def trained_checkpoint(path: str) -> tuple[str, dict]:
    """A checkpoint path as given, or a run.py run folder's best.pkl; with the configuration of the run that trained
    it ({} if unknown)."""
    path = os.path.abspath(os.path.expanduser(path))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    return (os.path.join(path, "best.pkl") if os.path.isdir(path) else path), RunFolder(folder).config_of("run.py")


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete ``*.tmp`` files left in ``folder`` by a write that was cut off; returns their names."""
    removed = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
                    removed.append(name)
    return removed


class RateMeter:
    """Steps per second since the previous reading."""

    def __init__(self):
        self._time, self._steps = time.perf_counter(), 0

    def rate(self, steps: int) -> float:
        now = time.perf_counter()
        rate = (steps - self._steps) / max(now - self._time, 1e-9)
        self._time, self._steps = now, steps
        return rate


class ProgressFile:
    """``progress.json``: what a run is doing now, for a reader that watches it (the sweep's progress table): phase,
    step, total, unit, steps_per_s (the average since the phase's counting began in this process), eta_s, the last
    evaluation (step and score) and the time. Written atomically at every phase change and at most every
    ``every_s`` seconds otherwise; a call in between costs a clock reading."""

    def __init__(self, run_dir: str, unit: str = "step", every_s: float = 5.0):
        self.path, self.unit, self.every_s = os.path.join(run_dir, PROGRESS_JSON), unit, every_s
        self.phase: str | None = None
        self.step: int | None = None
        self.last_eval: tuple[int | None, float] | None = None  # (its step, its average score)
        self._written = -math.inf
        self._anchor: tuple[str, float, int] | None = None  # (what is counted, when, step) the rate is measured from

    def update(self, phase: str, step: int | None = None, total: int | None = None, counts: str | None = None,
               force: bool = False) -> None:
        """``step`` of ``total`` in ``phase`` (None: the step stays); ``counts`` names what step counts (phases
        with the same ``counts`` share one rate, e.g. learn and eval; default: the phase)."""
        now = time.monotonic()
        if phase == self.phase and not force and now - self._written < self.every_s:
            return
        step = self.step if step is None else int(step)
        counts = counts or phase
        if self._anchor is None or self._anchor[0] != counts or step is None or step < self._anchor[2]:
            self._anchor = (counts, now, step or 0)
        elapsed, done = now - self._anchor[1], (step or 0) - self._anchor[2]
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        eta = max(0, total - step) / rate if rate and total is not None and step is not None else None
        self.phase, self.step, self._written = phase, step, now
        write_json(self.path, {
            "phase": phase, "step": step, "total": total, "unit": self.unit, "steps_per_s": rate, "eta_s": eta,
            "last_eval_step": None if self.last_eval is None else self.last_eval[0],
            "last_eval": None if self.last_eval is None else self.last_eval[1],
            "updated": datetime.now().isoformat(timespec="seconds")})


# -- the evaluation record and the provenance of a run ---------------------------------------------------------------

GIT_DIFF = "git.diff"


def evaluation_row(step: int, scores: list[float], mean_max_q: float, truncated: int) -> dict:
    """One row of evaluations.csv: the evaluation at learning step ``step`` (population std, like the score_std of
    the TensorBoard events); ``truncated``: its games cut by the step cap (max_episode_step) rather than finished."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    return {"step": int(step), "games": len(values), "mean": float(values.mean()),
            "median": float(np.median(values)), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "mean_max_q": float(mean_max_q), "truncated_games": int(truncated)}


def library_versions() -> dict:
    """The versions of the libraries a result depends on (None for one that is not installed)."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name, distribution in (("torch", "torch"), ("spikingjelly", "spikingjelly"), ("gymnasium", "gymnasium"),
                               ("ale_py", "ale-py"), ("numpy", "numpy")):
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_name(device) -> str:
    """The device a run computes on, by name: the GPU's model, or the CPU's."""
    import platform

    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            name = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), "")
    return f"{device.type}: {name or platform.processor() or platform.machine()}"


def git_tree(repo_root: str, run_dir: str) -> dict:
    """Whether the checkout had uncommitted changes to tracked files; if so their diff is saved as ``git.diff`` in
    the run folder (the file's name is returned)."""
    import subprocess

    try:
        diff = subprocess.run(["git", "diff", "HEAD", "--no-color"], cwd=repo_root, capture_output=True,
                              check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_dirty": None}
    if not diff:
        return {"git_dirty": False}
    atomic_write(os.path.join(run_dir, GIT_DIFF), lambda file: file.write(diff))
    return {"git_dirty": True, "git_diff": GIT_DIFF}


def provenance(repo_root: str, run_dir: str, device=None, neuron_kernel: str | None = None) -> dict:
    """What config.json records besides the options: library versions, the device's name, the neuron kernel (absent
    for a network without spiking neurons) and the state of the git checkout (see :func:`git_tree`)."""
    record = {"versions": library_versions(), **git_tree(repo_root, run_dir)}
    if neuron_kernel is not None:
        record["neuron_kernel"] = neuron_kernel
    if device is not None:
        record["device_name"] = device_name(device)
    return record
