"""Model names, labels, colours, reference scores, number checks and the list of notes shared by the plotting
modules."""

from __future__ import annotations

import csv
import math
import os
import re

from environment.games import SHORT_NAMES
from neural_network.architecture import LAYER_NAMES, MODELS
from utils import files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_FILE = os.path.join(REPO_ROOT, "utils", "reference_scores.csv")

PAPER_GAMES = SHORT_NAMES  # the paper's 17 games, short names
CONVERSION = "ConvSNN"  # the model name of convert.py's runs
RUN_MODELS = MODELS  # run.py's --model choices
DOUBLE = "Double"  # a run.py run with "double": true is the model DOUBLE + its --model
MODEL_ORDER = (*RUN_MODELS, *(DOUBLE + m for m in RUN_MODELS), CONVERSION)
ANN_MODELS = ("Dqn", DOUBLE + "Dqn")  # no spikes; their MACs follow from the architecture
BASELINES = {"Dqn": "pct_dqn", DOUBLE + "Dqn": "pct_double_dqn"}  # the "% DQN" and "% Double DQN" bases
_BASE_LABELS = {"Dqn": "DQN", "Dsqn": "DSQN", "DsqnSpike": "DSQN-Spike", "DsqnIF": "DSQN-IF"}
PAPER_HORIZON = 18_000  # agent steps per game (max_episode_step) of the paper's evaluation
DEFAULT_SCHEDULE, DEFAULT_NODE = "delayed", "SubtractiveResetIFNodes"  # convert.py's defaults
CONVERSION_COLORS = ("#9467bd", "#7f3fbf", "#c5b0d5", "#5e3c99", "#b07aa1", "#4b2a6b")


def conversion_model(T, schedule=None, node_type=None) -> str:
    """The model name of the conversion SNNs simulated with ``T`` steps (and a schedule or neuron type other than
    convert.py's defaults): each such variant is a model of its own (ConvSNN_T500, ConvSNN_T100_same_step_LIF)."""
    name = CONVERSION
    if isinstance(T, (int, float)) and not isinstance(T, bool) and math.isfinite(T):
        name += f"_T{int(T) if T == int(T) else T}"
    if isinstance(schedule, str) and schedule and schedule != DEFAULT_SCHEDULE:
        name += f"_{schedule}"
    if isinstance(node_type, str) and node_type and node_type != DEFAULT_NODE:
        name += "_" + node_type.removesuffix("Nodes")
    return name


def is_conversion(model: str) -> bool:
    return model == CONVERSION or model.startswith(CONVERSION + "_")


def family(model: str) -> str:
    """The --models choice a model belongs to (every conversion variant to ConvSNN)."""
    return CONVERSION if is_conversion(model) else model


def _conversion_label(model: str) -> str:
    if not is_conversion(model):
        raise KeyError(model)
    rest, details = model[len(CONVERSION):], []
    steps = re.match(r"_T([\d.]+)", rest)
    if steps:
        details.append(f"T={steps.group(1)}")
        rest = rest[steps.end():]
    if rest.startswith("_same_step"):
        details.append("same-step schedule")
        rest = rest[len("_same_step"):]
    if rest.strip("_"):
        details.append(f"{rest.strip('_')} neurons")
    return "conversion SNN" + (f" ({', '.join(details)})" if details else "")


class _ByModel(dict):
    """A model -> value table that makes the value of a conversion variant on first use."""

    def __init__(self, values: dict, make):
        super().__init__(values)
        self._make = make

    def __missing__(self, model: str):
        value = self[model] = self._make(model)
        return value


def _conversion_color(model: str) -> str:
    if not is_conversion(model):
        raise KeyError(model)
    used = sum(is_conversion(m) for m in COLORS)
    return CONVERSION_COLORS[used % len(CONVERSION_COLORS)]


LABELS = _ByModel({**_BASE_LABELS, **{DOUBLE + m: f"Double {label}" for m, label in _BASE_LABELS.items()},
                   CONVERSION: "conversion SNN"}, _conversion_label)
COLORS = _ByModel({"Dqn": "#1f77b4", "Dsqn": "#ff7f0e", "DsqnSpike": "#2ca02c", "DsqnIF": "#d62728",
                   "DoubleDqn": "#17becf", "DoubleDsqn": "#bcbd22", "DoubleDsqnSpike": "#8c564b",
                   "DoubleDsqnIF": "#e377c2"}, _conversion_color)


def model_order(models) -> list[str]:
    """Models in the order of MODEL_ORDER, conversion variants by T (then name) in the place of ConvSNN."""
    def key(model):
        if is_conversion(model):
            digits = model[len(CONVERSION) + 2:].split("_")[0] if model.startswith(CONVERSION + "_T") else ""
            return (MODEL_ORDER.index(CONVERSION), float(digits) if digits.replace(".", "", 1).isdigit() else -1, model)
        return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), 0, model)

    return sorted(dict.fromkeys(models), key=key)
HUMAN_SETS = {
    "nature": ("human_nature", "Nature 2015 human scores (Mnih et al. 2015, Extended Data Table 2)"),
    "atari57": ("human_atari57", ("Atari-57 human scores (later literature; only BeamRider, Boxing, Breakout "
                                 "and Pong are filled in, the other games are n/a)")),
}
LAYERS = LAYER_NAMES


def short_game(env_id: str) -> str:
    """BreakoutNoFrameskip-v4 -> Breakout (other names are returned unchanged)."""
    return env_id.removesuffix("NoFrameskip-v4")


def model_name(model: str, double: bool) -> str:
    """run.py's --model plus its "double" flag -> the model name of the tables (Dqn, DoubleDqn, ...)."""
    return DOUBLE + model if double else model


def number(value) -> float | None:
    """A finite int or float as a float; None for anything else (bool, text, None, nan, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_references(path: str = REFERENCE_FILE) -> dict[str, dict[str, float | None]]:
    """game -> {random, human_nature, human_atari57, dqn_nature}; an empty cell is None (not available)."""
    with open(path, encoding="utf-8") as file:
        rows = csv.DictReader(line for line in file if not line.startswith("#"))
        return {row["game"]: {k: (float(v) if v.strip() else None) for k, v in row.items() if k != "game"}
                for row in rows}


def human_normalised(score: float | None, random: float | None, human: float | None) -> float | None:
    """100 * (score - random) / (human - random); None when a number is missing."""
    if score is None or random is None or human is None or human == random:
        return None
    return 100.0 * (score - random) / (human - random)


class Notes:
    """Everything skipped or unavailable: printed as it is found and listed in scores.md."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.lines:
            self.lines.append(text)
            print(f"note: {text}", flush=True)


def replacing(path: str):
    """Yields a temporary path next to ``path`` to write to; it replaces ``path`` only once the writing succeeded,
    so an existing file is never left half-written (:func:`utils.files.replacing`; a hidden name of this process,
    so that two plot.py runs writing the same folder do not share it)."""
    folder, base = os.path.split(path)
    return files.replacing(path, os.path.join(folder, f".{base}.{os.getpid()}.tmp"))
