"""Figures, score tables and energy estimates from the runs of run.py and convert.py.

    python utils/plot.py
    python utils/plot.py --games Breakout Pong --models Dqn Dsqn --format pdf --human_set atari57

Inputs (every folder option takes one or more folders):
    --log_dir                 run.py's log/: run configs {name}.json, TensorBoard events {name}/, play summaries
                              {name}_summary.json (read with TensorBoard's EventAccumulator, never the text logs)
    --conversion_log_dir      convert.py's log/: JSON summaries {game}_{T}.json
    --conversion_result_dir   convert.py's result/: score CSVs (used alone when no JSON summary names them)
Outputs in --output_dir (default figures/):
    score_{game}, max_q_{game}, loss_{game}   curves over training steps, one line per model (mean over seeds)
    hns                                       human-normalised scores per game and model, with mean and median
    spikes_{game}, energy_{game}              firing rate / spikes per action per layer; operations and energy
    scores.md, scores.csv, energy.csv         the tables (definitions in scores.md)

Definitions (also written into scores.md):
* runs of the same model and game (run config: model, env_id, seed) form a group;
* best eval average of a group = the mean over its runs of each run's best evaluate/average_score (each run
  saves its best checkpoint, so this is the mean score of the checkpoints a user would play);
* play average +- std = over all episodes of all play logs of the group pooled (population std);
* the score of a group = its play average when it has a play log, else its best eval average; the
  human-normalised score (HNS) = 100 * (score - random) / (human - random), and % DQN = 100 * score / the score of
  the Dqn group of the same game under the same rule (so the column says which of the two it used).
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import csv  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

from utils.cli import ArgumentParser, UserError, positive_int, run_cli  # noqa: E402

PROG = "plot.py"
REFERENCE_FILE = os.path.join(REPO_ROOT, "utils", "reference_scores.csv")
DEFAULT_LOG_DIRS = [os.path.join(REPO_ROOT, "log")]
DEFAULT_CONVERSION_LOG_DIRS = [os.path.join(REPO_ROOT, "conversion_based_snn", "log")]
DEFAULT_CONVERSION_RESULT_DIRS = [os.path.join(REPO_ROOT, "conversion_based_snn", "result")]
DEFAULT_OUTPUT_DIR = os.path.join(REPO_ROOT, "figures")

PAPER_GAMES = (
    "Atlantis", "BeamRider", "Boxing", "Breakout", "CrazyClimber", "Gopher", "Jamesbond", "Kangaroo", "Krull",
    "NameThisGame", "Pong", "RoadRunner", "SpaceInvaders", "StarGunner", "Tennis", "Tutankham", "VideoPinball",
)
CONVERSION = "ConvSNN"  # the model name of convert.py's runs
MODEL_ORDER = ("Dqn", "Dsqn", "DsqnSpike", "DsqnIF", CONVERSION)
LABELS = {"Dqn": "DQN", "Dsqn": "DSQN", "DsqnSpike": "DSQN-Spike", "DsqnIF": "DSQN-IF", CONVERSION: "conversion SNN"}
COLORS = {"Dqn": "#1f77b4", "Dsqn": "#ff7f0e", "DsqnSpike": "#2ca02c", "DsqnIF": "#d62728", CONVERSION: "#9467bd"}
HUMAN_SETS = {
    "nature": ("human_nature", "Nature 2015 human scores (Mnih et al. 2015, Extended Data Table 2)"),
    "atari57": ("human_atari57", "Atari-57 human scores (later literature; only BeamRider, Boxing, Breakout "
                                 "and Pong are given in PAPER_NOTES, the other games are n/a)"),
}
LAYERS = ("conv1", "conv2", "conv3", "fc1", "fc2")
LOSS_BINS = 200  # the loss curve is shown as the mean of at most this many step bins
CSV_NAME = re.compile(r"^game_(?P<game>.+?)_episode_\d+_time_(?P<T>\d+)_percentile_[^_]+(_\d+)?\.csv$")

SCORE_COLUMNS = [
    "game", "model", "runs", "seeds", "best_eval_average", "best_eval_std_over_runs", "play_average", "play_std",
    "play_episodes", "play_runs", "score", "score_source", "human_normalised_score", "pct_dqn", "dqn_base",
    "dqn_base_source",
    "random", "human", "human_set", "dqn_nature",
]
ENERGY_COLUMNS = [
    "game", "model", "macs_per_action", "sops_per_action", "energy_uj_per_action", "average_firing_rate",
    "spikes_per_action", "greedy_actions", "source",
]


def short_game(env_id: str) -> str:
    """BreakoutNoFrameskip-v4 -> Breakout (other names are returned unchanged)."""
    return env_id[: -len("NoFrameskip-v4")] if env_id.endswith("NoFrameskip-v4") else env_id


# -- reference scores -------------------------------------------------------------------------------------------------


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


# -- reading the runs -------------------------------------------------------------------------------------------------


@dataclass
class LearnRun:
    name: str
    model: str
    game: str
    seed: int | None
    event_dir: str
    config: dict
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def best_eval(self) -> float | None:
        steps, values = self.scalars.get("evaluate/average_score", (np.empty(0), np.empty(0)))
        return float(values.max()) if len(values) else None


@dataclass
class PlayRun:
    name: str
    model: str
    game: str
    seed: int | None
    summary: dict


@dataclass
class Group:
    model: str
    game: str
    learn: list[LearnRun] = field(default_factory=list)
    play: list[PlayRun] = field(default_factory=list)  # play summaries of run.py, or convert.py's runs


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


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


class Notes:
    """Everything skipped or unavailable: printed as it is found and listed in scores.md."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.lines:
            self.lines.append(text)
            print(f"note: {text}", flush=True)


def find_runs(log_dirs, conversion_log_dirs, conversion_result_dirs, notes: Notes, max_points: int,
              progress: bool = True, keep=lambda model, game: True) -> tuple[list[LearnRun], list[PlayRun]]:
    """Every learn run (with its scalars), play summary and conversion run in the given folders for which
    ``keep(model, game)`` is true (the event files of the others are not read)."""
    from tqdm import tqdm

    learn, play = [], []
    pending = []
    for folder in log_dirs:
        for config_path in sorted(glob.glob(os.path.join(folder, "*.json"))):
            if config_path.endswith("_summary.json"):
                continue
            config = read_json(config_path)
            if not isinstance(config, dict) or not {"model", "env_id", "method"} <= set(config):
                notes.add(f"{config_path}: not a run.py run configuration, skipped")
                continue
            base = config_path[: -len(".json")]
            name = os.path.basename(base)
            game, seed = short_game(str(config["env_id"])), config.get("seed")
            if not keep(str(config["model"]), game):
                continue
            if config["method"] == "learn":
                if not os.path.isdir(base):
                    notes.add(f"{name}: no TensorBoard event folder {base}, skipped")
                    continue
                pending.append(LearnRun(name, str(config["model"]), game, seed, base, config))
            elif config["method"] == "play":
                summary = read_json(base + "_summary.json")
                if not isinstance(summary, dict) or "scores" not in summary:
                    notes.add(f"{name}: no play summary {base}_summary.json (unfinished play?), skipped")
                    continue
                play.append(PlayRun(name, str(config["model"]), game, seed, summary))

    for run in tqdm(pending, desc="reading TensorBoard events", unit="run", disable=not progress or not pending):
        run.scalars = read_scalars(run.event_dir, max_points)
        if run.best_eval() is None:
            notes.add(f"{run.name}: no evaluate/average_score in its events (no evaluation yet?)")
        learn.append(run)

    covered = set()
    for folder in conversion_log_dirs:
        for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
            summary = read_json(path)
            if not isinstance(summary, dict) or not {"game", "scores", "T"} <= set(summary):
                continue  # not a convert.py summary
            if not keep(CONVERSION, short_game(str(summary["game"]))):
                continue
            play.append(PlayRun(os.path.basename(path), CONVERSION, short_game(str(summary["game"])),
                                summary.get("seed"), summary))
            if summary.get("csv"):
                csv_name = os.path.basename(summary["csv"])
                covered.add(os.path.realpath(summary["csv"]))
                covered.add(os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(path)), "result",
                                                          csv_name)))
    for folder in conversion_result_dirs:
        for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
            match = CSV_NAME.match(os.path.basename(path))
            if not match or os.path.realpath(path) in covered or not keep(CONVERSION, short_game(match["game"])):
                continue
            try:
                with open(path, encoding="utf-8") as file:
                    scores = [float(row["score"]) for row in csv.DictReader(file)]
            except (OSError, KeyError, ValueError):
                notes.add(f"{path}: not a readable convert.py result CSV, skipped")
                continue
            if not scores:
                notes.add(f"{path}: no finished episode, skipped")
                continue
            notes.add(f"{os.path.basename(path)}: conversion scores without a JSON summary (no spike or energy data)")
            play.append(PlayRun(os.path.basename(path), CONVERSION, short_game(match["game"]), None,
                                {"scores": scores, "T": int(match["T"])}))
    return learn, play


# -- numbers ----------------------------------------------------------------------------------------------------------


def pooled_weighted(items: list[tuple[float, float]]) -> float | None:
    """Weighted mean of (value, weight) pairs, None if there is no weight."""
    items = [(v, w) for v, w in items if v is not None and w]
    total = sum(w for _, w in items)
    return sum(v * w for v, w in items) / total if total else None


@dataclass
class GroupScores:
    model: str
    game: str
    runs: int
    seeds: list
    best_eval: float | None
    best_eval_std: float | None
    play_average: float | None
    play_std: float | None
    play_episodes: int
    play_runs: int

    @property
    def score(self) -> float | None:
        return self.play_average if self.play_average is not None else self.best_eval

    @property
    def source(self) -> str:
        return "play" if self.play_average is not None else ("best eval" if self.best_eval is not None else "")


def group_scores(group: Group) -> GroupScores:
    bests = [b for b in (run.best_eval() for run in group.learn) if b is not None]
    best = float(np.mean(bests)) if bests else None
    best_std = float(np.std(bests)) if len(bests) > 1 else None
    episodes = [float(s) for run in group.play for s in run.summary["scores"] if s is not None]
    play_avg = float(np.mean(episodes)) if episodes else None
    play_std = float(np.std(episodes)) if episodes else None
    # the seeds of the trained runs; a group without any (the conversion SNN) lists the seeds of its play runs
    seeds = sorted({run.seed for run in (group.learn or group.play) if run.seed is not None})
    return GroupScores(group.model, group.game, len(group.learn), seeds, best, best_std, play_avg, play_std,
                       len(episodes), len(group.play))


def score_rows(groups: dict[tuple[str, str], Group], games: list[str], models: list[str], refs, human_set: str,
               notes: Notes) -> list[dict]:
    human_key = HUMAN_SETS[human_set][0]
    rows = []
    for game in games:
        ref = refs.get(game, {})
        dqn_group = groups.get(("Dqn", game))
        dqn = group_scores(dqn_group) if dqn_group else None
        if game not in refs:
            notes.add(f"{game}: no reference scores in {os.path.relpath(REFERENCE_FILE, REPO_ROOT)}, HNS n/a")
        elif ref.get(human_key) is None:
            notes.add(f"{game}: no {human_set} human score available, HNS n/a")
        for model in models:
            if (model, game) not in groups:
                continue
            scores = group_scores(groups[(model, game)])
            if scores.score is None:
                notes.add(f"{LABELS[model]} on {game}: no evaluation or play score, left out of the table")
                continue
            base = dqn.score if dqn is not None else None
            if base is None:
                pct = None
                notes.add(f"{game}: no Dqn score, % DQN n/a")
            elif base == 0:
                pct = None
                notes.add(f"{game}: the Dqn score is 0, % DQN n/a")
            else:
                pct = 100.0 * scores.score / base
            rows.append({
                "game": game, "model": model, "runs": scores.runs,
                "seeds": " ".join(str(s) for s in scores.seeds),
                "best_eval_average": scores.best_eval, "best_eval_std_over_runs": scores.best_eval_std,
                "play_average": scores.play_average, "play_std": scores.play_std,
                "play_episodes": scores.play_episodes, "play_runs": scores.play_runs,
                "score": scores.score, "score_source": scores.source,
                "human_normalised_score": human_normalised(scores.score, ref.get("random"), ref.get(human_key)),
                "pct_dqn": pct, "dqn_base": base, "dqn_base_source": dqn.source if dqn is not None else "",
                "random": ref.get("random"), "human": ref.get(human_key), "human_set": human_set,
                "dqn_nature": ref.get("dqn_nature"),
            })
    return rows


def hns_summary(rows: list[dict], models: list[str]) -> dict[str, dict]:
    """Per model: mean and median HNS over the games where it has one, and the number of those games."""
    out = {}
    for model in models:
        values = [r["human_normalised_score"] for r in rows
                  if r["model"] == model and r["human_normalised_score"] is not None]
        if values:
            out[model] = {"mean": float(np.mean(values)), "median": float(np.median(values)), "games": len(values)}
    return out


def spike_stats(group: Group) -> dict | None:
    """Per-layer firing rates and spikes per action of a spiking group, pooled over its play runs (weighted by
    their greedy actions); None when no play run recorded spikes."""
    parts = []
    for run in group.play:
        s = run.summary
        if "layer_firing_rates" in s and s.get("greedy_actions"):  # run.py play --use_spike_monitor
            parts.append((s["greedy_actions"], s["layer_firing_rates"], s["layer_spikes_per_action"],
                          s.get("average_firing_rate"), s.get("spike_num_per_action"), s.get("T")))
        elif "firing_rate_per_layer" in s and s.get("greedy_steps_total"):  # convert.py
            per_action = {k: v for k, v in s["spikes_per_greedy_action"].items() if k != "total"}
            parts.append((s["greedy_steps_total"], s["firing_rate_per_layer"], per_action,
                          s.get("average_firing_rate"), s["spikes_per_greedy_action"].get("total"), s.get("T")))
    if not parts:
        return None
    layers = [name for name in LAYERS if any(name in p[1] for p in parts)]
    return {
        "greedy_actions": int(sum(p[0] for p in parts)),
        "layer_firing_rates": {n: pooled_weighted([(p[1].get(n), p[0]) for p in parts]) for n in layers},
        "layer_spikes_per_action": {n: pooled_weighted([(p[2].get(n), p[0]) for p in parts]) for n in layers},
        "average_firing_rate": pooled_weighted([(p[3], p[0]) for p in parts]),
        "spikes_per_action": pooled_weighted([(p[4], p[0]) for p in parts]),
        "T": sorted({p[5] for p in parts if p[5] is not None}),
    }


def energy_stats(group: Group, notes: Notes) -> dict | None:
    """Operation counts and energy per greedy action of a group, from the 'energy' blocks of its play / convert
    summaries (pooled, weighted by greedy actions); for a Dqn without one, from the architecture (MACs do not
    depend on the data). None when there is nothing to report."""
    from utils.energy import PJ_PER_MAC, nature_dqn_layer_macs

    parts = []
    for run in group.play:
        energy = run.summary.get("energy")
        if not isinstance(energy, dict):
            continue
        weight = run.summary.get("greedy_actions") or run.summary.get("greedy_steps_total") or 1
        parts.append((weight, energy))
    if parts:
        macs = pooled_weighted([(e["macs_per_action_total"], w) for w, e in parts])
        sops = pooled_weighted([(e["sops_per_action_total"], w) for w, e in parts])
        energy_uj = pooled_weighted([(e["energy_uj_per_action"], w) for w, e in parts])
        return {"macs": macs, "sops": sops, "energy_uj": energy_uj,
                "source": "play summary" if group.model != CONVERSION else "convert.py summary"}
    if group.model == "Dqn":
        n_actions = next((run.config.get("n_actions") for run in group.learn if run.config.get("n_actions")), None)
        if n_actions:
            macs = float(sum(nature_dqn_layer_macs(int(n_actions)).values()))
            return {"macs": macs, "sops": 0.0, "energy_uj": macs * PJ_PER_MAC / 1e6,
                    "source": f"architecture ({n_actions} actions)"}
    elif group.play:
        notes.add(f"{LABELS[group.model]} on {group.game}: no operation counts (play without --use_spike_monitor, "
                  "or a summary from before they were recorded)")
    return None


# -- figures ----------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, written: list[str]) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    written.append(path)


def mean_curve(runs: list[LearnRun], tag: str, std_tag: str | None = None):
    """Steps, mean over runs and a (low, high) band: +-std over runs, or with one run +-its ``std_tag`` values."""
    curves = [run.scalars[tag] for run in runs if tag in run.scalars and len(run.scalars[tag][0])]
    if not curves:
        return None
    steps = np.unique(np.concatenate([s for s, _ in curves]))
    table = np.full((len(curves), len(steps)), np.nan)
    for i, (s, v) in enumerate(curves):
        table[i, np.searchsorted(steps, s)] = v
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns: no run has that step
        mean = np.nanmean(table, axis=0)
        band = None
        if len(curves) > 1:
            std = np.nanstd(table, axis=0)
            band = (mean - std, mean + std)
        elif std_tag is not None and std_tag in runs[0].scalars:
            s, v = runs[0].scalars[std_tag]
            std = np.full(len(steps), np.nan)
            std[np.searchsorted(steps, s[np.isin(s, steps)])] = v[np.isin(s, steps)]
            band = (mean - std, mean + std)
    return steps, mean, band, len(curves)


def binned_curve(runs: list[LearnRun], tag: str, bins: int = LOSS_BINS):
    """A long, noisy series as the mean of each run's values in at most ``bins`` equal step bins, averaged over
    runs; returns bin centres, mean and (min, max) over runs."""
    curves = [run.scalars[tag] for run in runs if tag in run.scalars and len(run.scalars[tag][0])]
    if not curves:
        return None
    low = min(int(s.min()) for s, _ in curves)
    high = max(int(s.max()) for s, _ in curves)
    edges = np.linspace(low, high + 1, min(bins, high - low + 1) + 1)
    per_run = np.full((len(curves), len(edges) - 1), np.nan)
    for i, (s, v) in enumerate(curves):
        index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
        sums = np.bincount(index, weights=v, minlength=len(edges) - 1)
        counts = np.bincount(index, minlength=len(edges) - 1)
        with np.errstate(all="ignore"):
            per_run[i] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    keep = ~np.all(np.isnan(per_run), axis=0)
    centres = (edges[:-1] + edges[1:]) / 2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty bins of a run
        return (centres[keep], np.nanmean(per_run, axis=0)[keep], np.nanmin(per_run, axis=0)[keep],
                np.nanmax(per_run, axis=0)[keep], len(curves))


def _label(model: str, n_runs: int) -> str:
    return f"{LABELS[model]} ({n_runs} run{'s' if n_runs != 1 else ''})"


def _finish_curve_figure(fig, ax, drew: bool, title: str, ylabel: str, path: str, written: list[str],
                         notes=None, missing_note: str | None = None) -> None:
    """Label and save a curve-vs-training-steps figure, or drop it (with a note) when nothing was drawn."""
    if drew:
        ax.set(title=title, xlabel="training steps (agent steps)", ylabel=ylabel)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
        _save(fig, path, written)
        return
    _pyplot().close(fig)
    if missing_note is not None:
        notes.add(missing_note)


def _draw_mean_curves(ax, learn: dict, tag: str, episode_std_tag: str | None = None) -> bool:
    """Draw each model's mean curve of ``tag`` over its runs, with its band; True if anything was drawn."""
    drew = False
    for model, runs in learn.items():
        curve = mean_curve(runs, tag, episode_std_tag)
        if curve is None:
            continue
        steps, mean, band, n = curve
        ax.plot(steps, mean, color=COLORS[model], marker="o" if len(steps) < 30 else None, ms=3,
                label=_label(model, n))
        if band is not None:
            ax.fill_between(steps, band[0], band[1], color=COLORS[model], alpha=0.2, linewidth=0)
        drew = True
    return drew


def plot_curves(game, groups, models, refs, human_set, out_dir, fmt, written, notes):
    plt = _pyplot()
    learn = {m: groups[(m, game)].learn for m in models if (m, game) in groups and groups[(m, game)].learn}
    if not learn:
        return
    human_key, _ = HUMAN_SETS[human_set]
    # evaluation score
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drew = _draw_mean_curves(ax, learn, "evaluate/average_score", "evaluate/score_std")
    for model in models:
        group = groups.get((model, game))
        if group is not None and group.play:
            scores = group_scores(group)
            ax.axhline(scores.play_average, color=COLORS[model], linestyle="--", linewidth=1,
                       label=f"{LABELS[model]} play average ({scores.play_episodes} episodes)")
    ref = refs.get(game, {})
    if ref.get(human_key) is not None:
        ax.axhline(ref[human_key], color="0.4", linestyle=":", linewidth=1, label=f"human ({human_set})")
    if ref.get("random") is not None:
        ax.axhline(ref["random"], color="0.7", linestyle=":", linewidth=1, label="random")
    _finish_curve_figure(fig, ax, drew, f"{game}: evaluation average score (band: std over seeds, or over episodes "
                         "for one seed)", "average score per episode", os.path.join(out_dir, f"score_{game}.{fmt}"),
                         written, notes, f"{game}: no evaluation scores in the events, no score figure")
    # max Q
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drew = _draw_mean_curves(ax, learn, "evaluate/average_max_q")
    _finish_curve_figure(fig, ax, drew, f"{game}: average max Q per evaluation episode (band: std over seeds)",
                         "average max Q", os.path.join(out_dir, f"max_q_{game}.{fmt}"), written)
    # loss
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drew, positive = False, True
    for model, runs in learn.items():
        curve = binned_curve(runs, "learn/loss")
        if curve is None:
            continue
        centres, mean, low, high, n = curve
        ax.plot(centres, mean, color=COLORS[model], label=_label(model, n))
        if n > 1:
            ax.fill_between(centres, low, high, color=COLORS[model], alpha=0.2, linewidth=0)
        positive = positive and bool(np.nanmin(low) > 0)
        drew = True
    if drew and positive:
        ax.set_yscale("log")
    _finish_curve_figure(fig, ax, drew, f"{game}: training loss (Huber), mean per step bin (at most {LOSS_BINS} "
                         "bins; band: min-max over seeds)", "loss", os.path.join(out_dir, f"loss_{game}.{fmt}"),
                         written, notes, f"{game}: no learn/loss in the events, no loss figure")


def _grouped_bars(ax, categories, series: dict[str, list], log=False):
    """Bars per category, one per model of ``series`` (model -> values, None for missing)."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(categories))
    for i, (model, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, color=COLORS[model], label=LABELS[model])
    ax.set_xticks(x)
    ax.set_xticklabels(categories, rotation=30 if len(categories) > 6 else 0, ha="right" if len(categories) > 6
                       else "center", fontsize=8)
    if log:
        ax.set_yscale("log")


def plot_hns(rows, summary, models, human_set, out_dir, fmt, written):
    plt = _pyplot()
    present = [m for m in models if any(r["model"] == m and r["human_normalised_score"] is not None for r in rows)]
    if not present:
        return
    games = []
    for r in rows:
        if r["human_normalised_score"] is not None and r["game"] not in games:
            games.append(r["game"])
    lookup = {(r["game"], r["model"]): r["human_normalised_score"] for r in rows}
    categories = games + ["mean", "median"]
    series = {m: [lookup.get((g, m)) for g in games] + [summary[m]["mean"], summary[m]["median"]] for m in present}
    fig, ax = plt.subplots(figsize=(max(7.5, 0.7 * len(categories) * max(1, len(present)) / 2), 4.8))
    _grouped_bars(ax, categories, series)
    values = [v for vs in series.values() for v in vs if v is not None]
    if values and (max(values) > 1000 or min(values) < -1000):
        ax.set_yscale("symlog", linthresh=100)
    ax.axhline(100, color="0.3", linestyle="--", linewidth=1, label="human level (100%)")
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.axvline(len(games) - 0.5, color="0.6", linewidth=0.8)
    ax.set(title=f"Human-normalised score, {human_set} human set (score = play average, else best eval average)",
           ylabel="human-normalised score (%)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    _save(fig, os.path.join(out_dir, f"hns.{fmt}"), written)


def plot_spikes(game, stats: dict[str, dict], out_dir, fmt, written):
    plt = _pyplot()
    layers = [n for n in LAYERS if any(n in s["layer_firing_rates"] for s in stats.values())]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    _grouped_bars(ax1, layers, {m: [s["layer_firing_rates"].get(n) for n in layers] for m, s in stats.items()})
    ax1.set(title=f"{game}: firing rate per layer (spikes / (neurons x T))", xlabel="neuron layer",
            ylabel="firing rate")
    positive = all((v or 0) > 0 for s in stats.values() for v in s["layer_spikes_per_action"].values())
    _grouped_bars(ax2, layers, {m: [s["layer_spikes_per_action"].get(n) for n in layers] for m, s in stats.items()},
                  log=positive)
    ax2.set(title=f"{game}: spikes per greedy action (summed over T)", xlabel="neuron layer",
            ylabel="spikes per action")
    for ax in (ax1, ax2):
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, title="T: " + ", ".join(f"{LABELS[m]} {'/'.join(map(str, s['T']))}"
                                                     for m, s in stats.items()), title_fontsize=7)
    _save(fig, os.path.join(out_dir, f"spikes_{game}.{fmt}"), written)


def plot_energy(game, energy: dict[str, dict], out_dir, fmt, written):
    from matplotlib.patches import Patch

    from utils.energy import PJ_PER_AC, PJ_PER_MAC

    plt = _pyplot()
    models = list(energy)
    colors = [COLORS[m] for m in models]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    x = np.arange(len(models))
    for offset, key, hatch in ((-0.2, "macs", ""), (0.2, "sops", "//")):
        heights = [energy[m][key] or np.nan for m in models]  # a zero count has no bar on the log axis
        ax1.bar(x + offset, heights, 0.4, color=colors, hatch=hatch, edgecolor="black")
        for xi, value in zip(x + offset, (energy[m][key] for m in models)):
            if not value:
                ax1.annotate("0", (xi, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    ax1.set_yscale("log")
    ax1.set(title=f"{game}: operations per greedy action", ylabel="operations per action")
    legend = [Patch(facecolor="white", edgecolor="black", label="MACs"),
              Patch(facecolor="white", edgecolor="black", hatch="//", label="SOPs (accumulates)")]
    ax1.legend(handles=legend, fontsize=7)
    mac_uj = [(energy[m]["macs"] or 0.0) * PJ_PER_MAC / 1e6 for m in models]
    sop_uj = [(energy[m]["sops"] or 0.0) * PJ_PER_AC / 1e6 for m in models]
    ax2.bar(x, mac_uj, 0.6, color=colors, edgecolor="black")
    ax2.bar(x, sop_uj, 0.6, bottom=mac_uj, color=colors, hatch="//", edgecolor="black")
    ax2.legend(handles=[Patch(facecolor="white", edgecolor="black", label="MAC energy (4.6 pJ each)"),
                        Patch(facecolor="white", edgecolor="black", hatch="//", label="SOP energy (0.9 pJ each)")],
               fontsize=7)
    ax2.set(title=f"{game}: ESTIMATED energy per greedy action (45 nm figures)", ylabel="energy per action (µJ)")
    for ax in (ax1, ax2):
        ax.set_xticks(x)
        ax.set_xticklabels([LABELS[m] for m in models], fontsize=8)
        ax.title.set_fontsize(9)
    _save(fig, os.path.join(out_dir, f"energy_{game}.{fmt}"), written)


# -- tables -----------------------------------------------------------------------------------------------------------


def _cell(value, spec=".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, float) else str(value)


def write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})


def write_markdown(path, rows, summary, energy_rows, human_set, notes: Notes, inputs: dict) -> None:
    from utils.energy import ENERGY_NOTE, SOP_RULES

    lines = [
        "# Scores", "",
        f"Human set: **{HUMAN_SETS[human_set][1]}**. Random and Nature-DQN scores: Mnih et al. 2015, no-op starts "
        "(`utils/reference_scores.csv`).", "",
        "* **best eval** = mean over the runs (seeds) of the group of each run's best `evaluate/average_score` "
        "(± its std over the runs when there are several).",
        "* **play** = average ± population std over all episodes of the group's play logs (run.py --method play, "
        "or convert.py's episodes for the conversion SNN), pooled.",
        "* **score** = the play average when the group has a play log, else its best eval average (column "
        "*from*); HNS = 100 · (score − random) / (human − random).",
        "* **% DQN** = 100 · score / the score of our Dqn group on the same game under the same rule (the *DQN base* "
        "column gives it and whether it is a play or a best-eval score).", "",
        "| game | model | seeds | learn / play runs | best eval | play (episodes) | score (from) | HNS % | % DQN "
        "| DQN base (from) | random | human | DQN (Nature) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = _cell(r["best_eval_average"])
        if r["best_eval_std_over_runs"] is not None:
            best += f" ± {r['best_eval_std_over_runs']:.2f}"
        play = "n/a" if r["play_average"] is None else \
            f"{r['play_average']:.2f} ± {r['play_std']:.2f} ({r['play_episodes']})"
        base = "n/a" if r["dqn_base"] is None else f"{r['dqn_base']:.2f} ({r['dqn_base_source']})"
        lines.append(
            f"| {r['game']} | {LABELS[r['model']]} | {r['seeds'] or 'n/a'} | {r['runs']} / {r['play_runs']} | "
            f"{best} | {play} | "
            f"{r['score']:.2f} ({r['score_source']}) | {_cell(r['human_normalised_score'], '.1f')} | "
            f"{_cell(r['pct_dqn'], '.1f')} | {base} | {_cell(r['random'], 'g')} | {_cell(r['human'], 'g')} | "
            f"{_cell(r['dqn_nature'], 'g')} |")
    lines += ["", "## Human-normalised score over games", "",
              "| model | mean HNS % | median HNS % | games |", "|---|---|---|---|"]
    for model, s in summary.items():
        lines.append(f"| {LABELS[model]} | {s['mean']:.1f} | {s['median']:.1f} | {s['games']} |")
    if energy_rows:
        lines += ["", "## Operations and energy per greedy action (ESTIMATE)", "", f"{ENERGY_NOTE}.", "",
                  f"* DQN: {SOP_RULES['ann']}.", f"* DSQN: {SOP_RULES['dsqn']}.",
                  f"* conversion SNN: {SOP_RULES['conversion']}.", "",
                  "| game | model | MACs | SOPs | energy (µJ, estimate) | firing rate | spikes / action | source |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in energy_rows:
            lines.append(
                f"| {r['game']} | {LABELS[r['model']]} | {_cell(r['macs_per_action'], '.4g')} | "
                f"{_cell(r['sops_per_action'], '.4g')} | {_cell(r['energy_uj_per_action'], '.4g')} | "
                f"{_cell(r['average_firing_rate'], '.4f')} | {_cell(r['spikes_per_action'], '.4g')} | "
                f"{r['source']} |")
    lines += ["", "## Inputs", ""] + [f"* {k}: {', '.join(v) or 'none'}" for k, v in inputs.items()]
    lines += ["", "## Skipped and missing data", ""]
    lines += [f"* {line}" for line in notes.lines] or ["* none"]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


# -- the program ------------------------------------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--log_dir", nargs="+", default=None,
                        help="run.py log folder(s) (default: log/ of the repository)")
    parser.add_argument("--conversion_log_dir", nargs="+", default=None,
                        help="convert.py log folder(s) with the JSON summaries (default: conversion_based_snn/log/)")
    parser.add_argument("--conversion_result_dir", nargs="+", default=None,
                        help="convert.py result folder(s) with the score CSVs (default: conversion_based_snn/result/)")
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR, help="where figures and tables go "
                        "(default: figures/ of the repository)")
    parser.add_argument("--games", nargs="+", default=None, help="games to report, e.g. Breakout or "
                        "BreakoutNoFrameskip-v4 (default: the paper's 17 games and any other game with data)")
    parser.add_argument("--models", nargs="+", choices=MODEL_ORDER, default=list(MODEL_ORDER),
                        help=f"models to report (default: all; {CONVERSION} = the conversion SNN of convert.py)")
    parser.add_argument("--format", choices=("png", "pdf"), default="png", help="figure format (default png)")
    parser.add_argument("--human_set", choices=tuple(HUMAN_SETS), default="nature",
                        help="human scores of the HNS: nature (Mnih et al. 2015, default) or atari57 (later set; "
                        "only 4 games available)")
    parser.add_argument("--max_points", type=positive_int, default=10000,
                        help="advanced: values kept per scalar tag (a longer tag, i.e. learn/loss, keeps a uniform "
                        "sample; default %(default)s)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def _input_dirs(given, default, option) -> list[str]:
    """Explicitly given folders must exist; a missing default folder just contributes nothing."""
    if given is None:
        return [d for d in default if os.path.isdir(d)]
    folders = [os.path.abspath(os.path.expanduser(d)) for d in given]
    for folder in folders:
        if not os.path.isdir(folder):
            raise UserError(f"{option}: folder {folder} not found")
    return folders


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    log_dirs = _input_dirs(args.log_dir, DEFAULT_LOG_DIRS, "--log_dir")
    conversion_log_dirs = _input_dirs(args.conversion_log_dir, DEFAULT_CONVERSION_LOG_DIRS, "--conversion_log_dir")
    conversion_result_dirs = _input_dirs(args.conversion_result_dir, DEFAULT_CONVERSION_RESULT_DIRS,
                                         "--conversion_result_dir")
    if not (log_dirs or conversion_log_dirs or conversion_result_dirs):
        raise UserError("no input folder found (log/, conversion_based_snn/log/, conversion_based_snn/result/); "
                        "pass --log_dir or --conversion_log_dir")
    out_dir = os.path.abspath(os.path.expanduser(args.output_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--output_dir: {out_dir} is not a folder")
    refs = load_references()
    notes = Notes()
    models = [m for m in MODEL_ORDER if m in args.models]

    wanted_games = {short_game(g).lower() for g in args.games} if args.games else None

    def keep(model: str, game: str) -> bool:  # Dqn is always read: it is the % DQN base
        return (model in models or model == "Dqn") and (wanted_games is None or game.lower() in wanted_games)

    learn, play = find_runs(log_dirs, conversion_log_dirs, conversion_result_dirs, notes, args.max_points,
                            progress=not args.no_progress, keep=keep)
    groups: dict[tuple[str, str], Group] = {}
    for run in learn:
        groups.setdefault((run.model, run.game), Group(run.model, run.game)).learn.append(run)
    for run in play:
        groups.setdefault((run.model, run.game), Group(run.model, run.game)).play.append(run)
    all_groups = groups  # the Dqn group stays the % DQN base even when --models leaves Dqn out
    groups = {k: g for k, g in groups.items() if k[0] in models}
    found_games = {game for _, game in groups}
    if args.games:
        known = {g.lower(): g for g in (*PAPER_GAMES, *sorted({game for _, game in all_groups}))}
        games = list(dict.fromkeys(known.get(short_game(g).lower(), short_game(g)) for g in args.games))
    else:
        games = [g for g in PAPER_GAMES] + sorted(found_games - set(PAPER_GAMES))
    skipped = [g for g in games if g not in found_games]
    games = [g for g in games if g in found_games]
    if skipped:
        notes.add(f"no data for {len(skipped)} game(s), skipped: {', '.join(skipped)}")
    if not games:
        raise UserError("no run data for the selected games and models in " + ", ".join(
            log_dirs + conversion_log_dirs + conversion_result_dirs))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output_dir: cannot create {out_dir}: {error.strerror}") from None

    rows = score_rows(all_groups, games, models, refs, args.human_set, notes)
    summary = hns_summary(rows, models)
    written: list[str] = []
    from tqdm import tqdm

    energy_rows = []
    for game in tqdm(games, desc="figures", unit="game", disable=args.no_progress):
        plot_curves(game, groups, models, refs, args.human_set, out_dir, args.format, written, notes)
        spikes, energy = {}, {}
        for model in models:
            group = groups.get((model, game))
            if group is None:
                continue
            stats = spike_stats(group) if model != "Dqn" else None
            if stats is not None:
                spikes[model] = stats
            ops = energy_stats(group, notes)
            if ops is not None:
                energy[model] = ops
                energy_rows.append({
                    "game": game, "model": model, "macs_per_action": ops["macs"], "sops_per_action": ops["sops"],
                    "energy_uj_per_action": ops["energy_uj"],
                    "average_firing_rate": stats["average_firing_rate"] if stats else None,
                    "spikes_per_action": stats["spikes_per_action"] if stats else None,
                    "greedy_actions": stats["greedy_actions"] if stats else None, "source": ops["source"],
                })
        if spikes:
            plot_spikes(game, spikes, out_dir, args.format, written)
        if energy:
            plot_energy(game, energy, out_dir, args.format, written)
    plot_hns(rows, summary, models, args.human_set, out_dir, args.format, written)

    write_csv(os.path.join(out_dir, "scores.csv"), SCORE_COLUMNS, rows)
    write_csv(os.path.join(out_dir, "energy.csv"), ENERGY_COLUMNS, energy_rows)
    inputs = {"run.py logs": log_dirs, "convert.py logs": conversion_log_dirs,
              "convert.py results": conversion_result_dirs}
    write_markdown(os.path.join(out_dir, "scores.md"), rows, summary, energy_rows, args.human_set, notes, inputs)
    written += [os.path.join(out_dir, name) for name in ("scores.md", "scores.csv", "energy.csv")]
    print(f"{len(rows)} score rows for {len(games)} game(s); wrote {len(written)} files to {out_dir}")
    return {"rows": rows, "summary": summary, "energy_rows": energy_rows, "written": written, "skipped": skipped}


if __name__ == "__main__":
    run_cli(lambda: main(), PROG)
