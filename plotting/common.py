"""Model names, labels, colours, reference scores, number checks and the list of notes shared by the plotting
modules."""

from __future__ import annotations

import contextlib
import csv
import math
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_FILE = os.path.join(REPO_ROOT, "utils", "reference_scores.csv")

PAPER_GAMES = (
    "Atlantis", "BeamRider", "Boxing", "Breakout", "CrazyClimber", "Gopher", "Jamesbond", "Kangaroo", "Krull",
    "NameThisGame", "Pong", "RoadRunner", "SpaceInvaders", "StarGunner", "Tennis", "Tutankham", "VideoPinball",
)
CONVERSION = "ConvSNN"  # the model name of convert.py's runs
RUN_MODELS = ("Dqn", "Dsqn", "DsqnSpike", "DsqnIF")  # run.py's --model choices
DOUBLE = "Double"  # a run.py run with "double": true is the model DOUBLE + its --model
MODEL_ORDER = (*RUN_MODELS, *(DOUBLE + m for m in RUN_MODELS), CONVERSION)
ANN_MODELS = ("Dqn", DOUBLE + "Dqn")  # no spikes; their MACs follow from the architecture
BASELINES = {"Dqn": "pct_dqn", DOUBLE + "Dqn": "pct_double_dqn"}  # the "% DQN" and "% Double DQN" bases
_BASE_LABELS = {"Dqn": "DQN", "Dsqn": "DSQN", "DsqnSpike": "DSQN-Spike", "DsqnIF": "DSQN-IF"}
LABELS = {**_BASE_LABELS, **{DOUBLE + m: f"Double {label}" for m, label in _BASE_LABELS.items()},
          CONVERSION: "conversion SNN"}
COLORS = {"Dqn": "#1f77b4", "Dsqn": "#ff7f0e", "DsqnSpike": "#2ca02c", "DsqnIF": "#d62728",
          "DoubleDqn": "#17becf", "DoubleDsqn": "#bcbd22", "DoubleDsqnSpike": "#8c564b", "DoubleDsqnIF": "#e377c2",
          CONVERSION: "#9467bd"}
HUMAN_SETS = {
    "nature": ("human_nature", "Nature 2015 human scores (Mnih et al. 2015, Extended Data Table 2)"),
    "atari57": ("human_atari57", ("Atari-57 human scores (later literature; only BeamRider, Boxing, Breakout "
                                 "and Pong are filled in, the other games are n/a)")),
}
LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2")


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


@contextlib.contextmanager
def replacing(path: str):
    """Yields a temporary path next to ``path`` to write to; it replaces ``path`` only once the writing succeeded,
    so an existing file is never left half-written (the temporary file is removed on failure)."""
    folder, base = os.path.split(path)
    temporary = os.path.join(folder, f".{base}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
