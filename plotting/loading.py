"""Reading the runs: one folder per run under --runs_dir (config.json, tensorboard/, summary.json, result.csv). A
damaged or unfinished input is skipped with a note; nothing is guessed."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np

from plotting.common import CONVERSION, RUN_MODELS, Notes, conversion_model, model_name, number, short_game
from utils.runs import CONFIG_JSON, SUMMARY_JSON, RunFolder

UNFINISHED = "a run that is starting or died early"

#: The perturbation options of a play (agent/robustness.py) at their defaults: the paper's environment.
SETTINGS = {"sticky_actions": 0.0, "obs_noise": 0.0, "fgsm_epsilon": 0, "game_mode": None, "game_difficulty": None}


def perturbed_settings(config: dict) -> dict:
    """The perturbation options of a run.py configuration that are not at their default (the paper's env)."""
    return {name: config[name] for name, default in SETTINGS.items() if config.get(name, default) != default}


@dataclass
class LearnRun:
    name: str
    model: str
    game: str
    seed: int | None
    event_dir: str
    config: dict
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def checkpoint_key(self) -> tuple[str, str]:
        """How a play or convert run names this run's checkpoint (see :func:`checkpoint_key`)."""
        return ("run", self.name)

    @property
    def horizon(self) -> int | None:
        """The step cap of its games (max_episode_step), None if its configuration does not say."""
        return _horizon(self.config.get("max_episode_step"))

    def _best(self) -> tuple[int, float] | None:
        steps, values = self.scalars.get("evaluate/average_score", (np.empty(0), np.empty(0)))
        finite = np.isfinite(values)
        if not finite.any():
            return None
        index = int(np.flatnonzero(finite)[np.argmax(values[finite])])
        return int(steps[index]), float(values[index])

    def best_eval(self) -> float | None:
        best = self._best()
        return best[1] if best is not None else None

    def best_eval_truncated(self) -> int | None:
        """How many games of its best evaluation were cut by the step cap (None: not recorded, an older run)."""
        best = self._best()
        steps, values = self.scalars.get("evaluate/truncated_games", (np.empty(0), np.empty(0)))
        if best is None or best[0] not in steps:
            return None
        return int(values[np.flatnonzero(steps == best[0])[-1]])

    def best_eval_games(self) -> int | None:
        games = self.config.get("eval_episode_num")
        return games if isinstance(games, int) and not isinstance(games, bool) else None


@dataclass
class PlayRun:
    name: str
    model: str
    game: str
    seed: int | None
    summary: dict
    scores: list[float] = field(default_factory=list)  # the finished episodes
    checkpoint: str | None = None  # the checkpoint it played or converted, as the run recorded it
    horizon: int | None = None  # the step cap of its games (max_episode_step), None if unknown
    truncated_games: int | None = None  # its games cut by that cap, None if not recorded


def _horizon(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _truncated(summary: dict) -> int | None:
    value = summary.get("truncated_games")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _conversion(summary: dict, config: dict) -> str:
    """The conversion variant (T, schedule, neuron type) a convert.py run belongs to."""
    def pick(*keys):
        for source, key in ((summary, keys[0]), (config, keys[-1])):
            if source.get(key) is not None:
                return source[key]
        return None

    return conversion_model(number(pick("T", "time")), pick("schedule"), pick("node_type"))


def checkpoint_key(path) -> tuple[str, str] | None:
    """runs/<name>/best.pkl or the run folder runs/<name> -> ("run", <name>), the key of the learn run that
    trained it; another file -> None."""
    if not isinstance(path, str) or not path.strip():
        return None
    folder, base = os.path.split(path.rstrip("/"))
    if base == "best.pkl":
        return ("run", os.path.basename(folder)) if folder else None
    return None if base.endswith(".pkl") else ("run", base)


def read_scalars(event_dir: str, max_points: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar tags of a TensorBoard run, read with TensorBoard's EventAccumulator.

    A tag with more than ``max_points`` values keeps a uniform reservoir sample of them (the last one included):
    in practice only learn/loss (one value per update) is ever that long."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(event_dir, size_guidance={"scalars": max_points})
    accumulator.Reload()
    scalars = {}
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        steps = np.array([e.step for e in events], dtype=np.int64)
        values = np.array([e.value for e in events], dtype=np.float64)
        order = np.argsort(steps, kind="stable")
        scalars[tag] = (steps[order], values[order])
    return scalars


def episode_scores(value) -> list[float] | None:
    """The finished episodes of a summary's "scores" (None entries are unfinished ones); None if it is damaged."""
    if not isinstance(value, list):
        return None
    scores = [number(v) for v in value if v is not None]
    return None if None in scores else scores


def read_result_csv(path: str, notes: Notes) -> list[float] | None:
    """The scores of a convert.py result CSV (score,mix,spike per episode); None (with a note) if unusable."""
    try:
        with open(path, encoding="utf-8", newline="") as file:
            texts = [row["score"] for row in csv.DictReader(file)]
        scores = [float(text) for text in texts]
    except (OSError, ValueError, TypeError, KeyError, csv.Error):
        scores = None
    if scores is None or not all(np.isfinite(scores)):
        notes.add(f"{path}: not a readable convert.py result CSV, skipped")
        return None
    if not scores:
        notes.add(f"{path}: no finished episode, skipped")
        return None
    return scores


def _seed(config: dict, where: str, notes: Notes) -> int | None:
    seed = config.get("seed")
    if seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
        return seed
    notes.add(f"{where}: seed {seed!r} is not an integer, counted as unknown")
    return None


def run_identity(config: dict, where: str, notes: Notes) -> tuple[str, str, int | None] | None:
    """(model, game, seed) of a run.py configuration; None (with a note) when it is not a usable one."""
    model, env_id, double = config.get("model"), config.get("env_id"), config.get("double", False)
    if model not in RUN_MODELS or not isinstance(env_id, str) or not env_id or not isinstance(double, bool):
        notes.add(f"{where}: not a run.py run configuration (model {model!r}, env_id {env_id!r}, double "
                  f"{double!r}), skipped")
        return None
    return model_name(model, double), short_game(env_id), _seed(config, where, notes)


def _play_run(folder: RunFolder, model, game, seed, checkpoint, notes: Notes, horizon=None) -> PlayRun | None:
    name = folder.name
    if not folder.exists(SUMMARY_JSON):
        notes.add(f"{name}: no play summary {folder.file(SUMMARY_JSON)} (unfinished play?), skipped")
        return None
    found = _scored_summary(folder, notes, "play summary", ", skipped")
    if found is None:
        return None
    summary, scores = found
    if isinstance(summary.get("model_path"), str):  # the checkpoint file it resolved --model_path to
        checkpoint = summary["model_path"]
    return PlayRun(name, model, game, seed, summary, scores, checkpoint,
                   _horizon(summary.get("max_episode_step")) or _horizon(horizon), _truncated(summary))


def _run_py_folder(folder: RunFolder, config, notes, keep) -> LearnRun | PlayRun | None:
    name = folder.name
    identity = run_identity(config, name, notes)
    if identity is None or not keep(identity[0], identity[1]):
        return None
    method = config.get("method")
    if method == "learn":
        event_dir = folder.file("tensorboard")
        if not os.path.isdir(event_dir):
            notes.add(f"{name}: no tensorboard/ in {folder.path} yet ({UNFINISHED}), skipped")
            return None
        return LearnRun(name, *identity, event_dir, config)
    if method == "play":
        if perturbed_settings(config):
            notes.add(f"{name}: a play under perturbation {perturbed_settings(config)}, left out of the scores (see "
                      "robustness runs: docs/ROBUSTNESS.md)")
            return None
        return _play_run(folder, *identity, config.get("model_path"), notes, config.get("max_episode_step"))
    if method == "robustness":
        return None  # read by plotting/robustness.py
    notes.add(f"{name}: unknown method {method!r} in its config.json, skipped")
    return None


def _scored_summary(folder: RunFolder, notes: Notes, what: str, then: str = "") -> tuple[dict, list[float]] | None:
    """A run folder's summary.json with its list of episode scores, or None with a note that it is damaged."""
    summary = folder.summary
    scores = episode_scores(summary.get("scores")) if summary is not None else None
    if scores is None:
        notes.add(f"{folder.file(SUMMARY_JSON)}: damaged {what} (no list of episode scores){then}")
        return None
    return summary, scores


def _convert_folder(folder: RunFolder, config, notes, keep) -> PlayRun | None:
    name = folder.name
    game = config.get("game")
    if not isinstance(game, str) or not game:
        notes.add(f"{name}: convert.py configuration without a game, skipped")
        return None
    game = short_game(game)
    if not keep(CONVERSION, game):
        return None
    seed, checkpoint = _seed(config, name, notes), config.get("model")
    horizon = _horizon(config.get("max_episode_step"))
    csv_path = folder.file("result.csv")
    found = _scored_summary(folder, notes, "convert.py summary") if folder.exists(SUMMARY_JSON) else None
    if found is not None:
        return PlayRun(name, _conversion(found[0], config), game, seed, found[0], found[1], checkpoint, horizon,
                       _truncated(found[0]))
    if not os.path.exists(csv_path):
        notes.add(f"{name}: no summary.json or result.csv in {folder.path} yet ({UNFINISHED}), skipped")
        return None
    scores = read_result_csv(csv_path, notes)
    if scores is None:
        return None
    notes.add(f"{name}: conversion scores without a JSON summary (no spike or energy data)")
    return PlayRun(name, _conversion({}, config), game, seed, {"scores": scores, "T": config.get("time")}, scores,
                   checkpoint, horizon)


def run_folders(runs_dirs: list[str], notes: Notes) -> list[str]:
    """The run folders of the --runs_dir folders (a folder holding a config.json is itself one run)."""
    folders = []
    for root in runs_dirs:
        if os.path.isfile(os.path.join(root, CONFIG_JSON)):
            folders.append(root)
            continue
        try:
            entries = sorted(os.listdir(root))
        except OSError as error:
            notes.add(f"{root}: cannot be read ({error.strerror}), skipped")
            continue
        found = [os.path.join(root, e) for e in entries
                 if not e.startswith(".") and os.path.isdir(os.path.join(root, e))]
        if not found:
            notes.add(f"{root}: no run folders")
        folders += found
    unique = {}  # a run reached twice is read once
    for folder in folders:
        unique.setdefault(os.path.realpath(folder), folder)
    return list(unique.values())


def read_run_folder(path: str, notes: Notes, keep) -> LearnRun | PlayRun | None:
    """One run folder of run.py or convert.py; a LearnRun is returned without its scalars."""
    folder = RunFolder(path)
    if not folder.exists(CONFIG_JSON):
        notes.add(f"{folder.name}: no config.json in {path} ({UNFINISHED}, or not a run folder), skipped")
        return None
    config = folder.config
    if config is None:
        notes.add(f"{folder.file(CONFIG_JSON)}: not a JSON object (damaged?), skipped")
        return None
    status = folder.status
    if status is not None and status.get("status") not in (None, "finished"):
        notes.add(f"{folder.name}: status.json says {status.get('status')!r}; what it wrote so far is used")
    program = config.get("program") or ("convert.py" if "game" in config and "method" not in config else "run.py")
    if program == "run.py":
        return _run_py_folder(folder, config, notes, keep)
    if program == "convert.py":
        return _convert_folder(folder, config, notes, keep)
    notes.add(f"{folder.file(CONFIG_JSON)}: unknown program {program!r}, skipped")
    return None


def find_runs(runs_dirs, notes: Notes, max_points: int, progress: bool = True,
              keep=lambda model, game: True) -> tuple[list[LearnRun], list[PlayRun]]:
    """Every learn run (with its scalars), play summary and conversion run in the --runs_dir folders for which
    ``keep(model, game)`` is true (the event files of the others are not read)."""
    from tqdm import tqdm

    found = [read_run_folder(folder, notes, keep) for folder in run_folders(runs_dirs, notes)]
    pending = [run for run in found if isinstance(run, LearnRun)]
    learn = []
    for run in tqdm(pending, desc="reading TensorBoard events", unit="run", disable=not progress or not pending):
        try:
            run.scalars = read_scalars(run.event_dir, max_points)
        except Exception as error:  # noqa: BLE001 - a damaged event folder must not stop the report
            notes.add(f"{run.name}: unreadable TensorBoard events ({type(error).__name__}: {error}), skipped")
            continue
        if run.best_eval() is None:
            notes.add(f"{run.name}: no finite evaluate/average_score in its events (no evaluation yet?)")
        learn.append(run)
    return learn, [run for run in found if isinstance(run, PlayRun)]
