"""Robustness figures and tables from ``run.py --method robustness`` run folders (docs/ROBUSTNESS.md).

A robustness run folder holds config.json ("method": "robustness", "robustness": the perturbation), robustness.csv
(one row per level, naming its play summary) and levels/<perturbation>_<level>.json (a play summary with the
episode scores). Runs are pooled by game, model (Double* included, as everywhere) and study: the swept perturbation
plus any other perturbation option the run held fixed (a sweep of obs_noise under --sticky_actions 0.25 is a study
of its own). At each level the episodes of all pooled runs are pooled: mean score and its standard error, sample
std / sqrt(episodes). A run that repeats another (same checkpoint, seed and study) adds only the levels the other
lacks: its games are the same games, not new ones.

Outputs: robustness_<study>_<game>.{png,pdf} (score vs level, one line per model, error bars +- 1 s.e.),
robustness.md and robustness.csv.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field

import numpy as np

from plotting.common import COLORS, LABELS, MODEL_ORDER, Notes, number, replacing
from plotting.loading import UNFINISHED, episode_scores, perturbed_settings, run_folders, run_identity
from utils.runs import RunFolder

# What a level is, with its unit (the options themselves: agent/robustness.py).
LEVEL_LABELS = {
    "sticky_actions": "sticky-action probability (ALE repeat_action_probability)",
    "obs_noise": "Gaussian frame noise sigma (pixel levels, 0-255)",
    "fgsm": "FGSM budget epsilon (pixel levels, 0-255)",
    "game_mode": "ALE game mode",
    "game_difficulty": "ALE game difficulty",
}
SWEPT = {"sticky_actions": "sticky_actions", "obs_noise": "obs_noise", "fgsm": "fgsm_epsilon",
         "game_mode": "game_mode", "game_difficulty": "game_difficulty"}
COLUMNS = ["game", "study", "perturbation", "fixed", "level", "model", "mean_score", "sem", "std", "episodes", "runs",
           "seeds"]


@dataclass
class RobustnessRun:
    name: str
    model: str
    game: str
    seed: int | None
    perturbation: str
    study: str
    fixed: dict  # the other perturbation options at a setting other than the default
    checkpoint: str | None
    levels: dict[float, list[float]] = field(default_factory=dict)


def _study(perturbation: str, fixed: dict) -> str:
    return perturbation + "".join(f"_{name}{value:g}" for name, value in sorted(fixed.items()))


def read_folder(path: str, notes: Notes, keep) -> RobustnessRun | None:
    """One run folder, if it is a robustness run of a kept model and game (None otherwise; a note if damaged)."""
    folder = RunFolder(path)
    name, config = folder.name, folder.config
    if config is None or config.get("method") != "robustness":
        return None
    identity = run_identity(config, name, notes)
    if identity is None or not keep(identity[0], identity[1]):
        return None
    perturbation = config.get("robustness")
    if perturbation not in SWEPT:
        notes.add(f"robustness run {name}: unknown perturbation {perturbation!r} in its config.json, skipped")
        return None
    fixed = {k: v for k, v in perturbed_settings(config).items() if k != SWEPT[perturbation]}
    path = folder.file("robustness.csv")
    try:
        with open(path, encoding="utf-8", newline="") as file:
            table = list(csv.DictReader(file))
    except FileNotFoundError:
        notes.add(f"robustness run {name}: no robustness.csv in {folder.path} yet ({UNFINISHED}), skipped")
        return None
    except (OSError, csv.Error, UnicodeDecodeError):
        notes.add(f"robustness run {name}: {path} is unreadable, skipped")
        return None
    run = RobustnessRun(name, *identity, perturbation, _study(perturbation, fixed), fixed, None)
    for row in table:
        try:
            level = float(row["level"])
            summary = folder.read(row["summary"])
        except (KeyError, TypeError, ValueError):
            notes.add(f"robustness run {name}: a row of robustness.csv without a level or summary, skipped")
            continue
        scores = episode_scores(summary.get("scores")) if summary is not None else None
        if not scores or not math.isfinite(level):
            notes.add(f"robustness run {name}: level {row['level']}: missing or damaged summary {row['summary']}, "
                      "skipped")
            continue
        run.levels[level] = scores
        run.checkpoint = run.checkpoint or summary.get("model_path")
    if not run.levels:
        notes.add(f"robustness run {name}: no finished level in robustness.csv, skipped")
        return None
    return run


def find_runs(runs_dirs: list[str], notes: Notes, keep=lambda model, game: True) -> list[RobustnessRun]:
    """The robustness runs in the --runs_dir folders, for which ``keep(model, game)`` is true."""
    runs = [read_folder(folder, notes, keep) for folder in run_folders(runs_dirs, notes)]
    return [run for run in runs if run is not None]


def pooled_rows(runs: list[RobustnessRun], models: list[str], notes: Notes) -> list[dict]:
    """One row per (game, study, level, model): the episodes of its runs pooled, repeated games counted once."""
    episodes: dict[tuple, list[float]] = {}
    sources: dict[tuple, list[RobustnessRun]] = {}
    counted: dict[tuple, str] = {}
    for run in runs:
        if run.model not in models:
            continue
        for level, scores in sorted(run.levels.items()):
            repeat = (run.model, run.game, run.study, run.checkpoint, run.seed, level)
            if repeat in counted:
                notes.add(f"robustness run {run.name}: {run.study} level {level:g} repeats {counted[repeat]} (same "
                          "checkpoint and seed), counted once")
                continue
            counted[repeat] = run.name
            key = (run.game, run.study, level, run.model)
            episodes.setdefault(key, []).extend(scores)
            sources.setdefault(key, []).append(run)
    rows = []
    order = {m: i for i, m in enumerate(MODEL_ORDER)}
    for key in sorted(episodes, key=lambda k: (k[0], k[1], k[2], order[k[3]])):
        game, study, level, model = key
        scores = np.asarray(episodes[key], dtype=np.float64)
        std = float(scores.std(ddof=1)) if len(scores) > 1 else None
        rows.append({
            "game": game, "study": study, "perturbation": sources[key][0].perturbation,
            "fixed": ", ".join(f"{k} {v:g}" for k, v in sorted(sources[key][0].fixed.items())), "level": level,
            "model": model, "mean_score": float(scores.mean()), "sem": std / math.sqrt(len(scores)) if std is not None
            else None, "std": std, "episodes": len(scores), "runs": len(sources[key]),
            "seeds": " ".join(str(s) for s in sorted({r.seed for r in sources[key] if r.seed is not None})),
        })
    for (game, study), levels in _by_study(rows).items():
        for level, cells in levels.items():
            missing = [LABELS[m] for m in dict.fromkeys(r["model"] for r in rows if (r["game"], r["study"]) ==
                                                        (game, study)) if m not in cells]
            if missing:
                notes.add(f"robustness {study} on {game}: no data at level {level:g} for {', '.join(missing)}")
    return rows


def _by_study(rows: list[dict]) -> dict[tuple[str, str], dict[float, dict[str, dict]]]:
    studies: dict[tuple[str, str], dict[float, dict[str, dict]]] = {}
    for row in rows:
        studies.setdefault((row["game"], row["study"]), {}).setdefault(row["level"], {})[row["model"]] = row
    return studies


def _title(row: dict) -> str:
    return LEVEL_LABELS[row["perturbation"]] + (f", with {row['fixed']}" if row["fixed"] else "")


def plot(game: str, study: str, rows: list[dict], out_dir: str, fmt: str, written: list[str]) -> None:
    from plotting.figures import pyplot, save_figure

    plt = pyplot()
    perturbation = rows[0]["perturbation"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for model in dict.fromkeys(r["model"] for r in rows):
        line = sorted((r for r in rows if r["model"] == model), key=lambda r: r["level"])
        levels = [r["level"] for r in line]
        errors = [r["sem"] if r["sem"] is not None else 0.0 for r in line]
        runs = max(r["runs"] for r in line)
        ax.errorbar(levels, [r["mean_score"] for r in line], yerr=errors, color=COLORS[model], marker="o", ms=4,
                    capsize=3, label=f"{LABELS[model]} ({runs} run{'s' if runs != 1 else ''})")
    if perturbation in ("game_mode", "game_difficulty", "fgsm"):
        ax.set_xticks(sorted({r["level"] for r in rows}))
    ax.set(title=f"{game}: score under {study}", xlabel=_title(rows[0]),
           ylabel="game score (mean +- s.e. over episodes)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    save_figure(fig, os.path.join(out_dir, f"robustness_{study}_{game}.{fmt}"), written)


def _cell(row: dict | None) -> str:
    if row is None:
        return "n/a"
    sem = "n/a" if row["sem"] is None else f"{row['sem']:.2f}"
    return f"{row['mean_score']:.2f} +- {sem} ({row['episodes']})"


def write_markdown(path: str, rows: list[dict], notes: list[str]) -> None:
    lines = [
        "# Robustness", "",
        ("Score of each model's checkpoint(s) under one perturbation (run.py --method robustness, "
         "docs/ROBUSTNESS.md): mean game score +- its standard error (sample std / sqrt(episodes)), with the number "
         "of episodes pooled over the runs of the model. A study is the swept perturbation plus any other "
         "perturbation a run held fixed."), "",
    ]
    for (game, study), levels in _by_study(rows).items():
        models = list(dict.fromkeys(r["model"] for r in rows if (r["game"], r["study"]) == (game, study)))
        first = next(iter(next(iter(levels.values())).values()))
        lines += [f"## {game}: {study}", "", f"Level: {_title(first)}.", "",
                  "| level | " + " | ".join(LABELS[m] for m in models) + " |",
                  "|---|" + "---|" * len(models)]
        for level in sorted(levels):
            lines.append(f"| {level:g} | " + " | ".join(_cell(levels[level].get(m)) for m in models) + " |")
        lines.append("")
    lines += ["## Notes", ""] + ([f"* {line}" for line in notes] or ["* none"])
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def write_outputs(runs: list[RobustnessRun], models: list[str], fmt: str, out_dir: str, notes: Notes) -> tuple:
    """The figures, robustness.md and robustness.csv of ``runs`` (nothing when there is none); returns (rows,
    written paths)."""
    from plotting.tables import write_csv

    if not runs:
        return [], []
    rows = pooled_rows(runs, models, notes)
    written: list[str] = []
    for (game, study) in _by_study(rows):
        plot(game, study, [r for r in rows if (r["game"], r["study"]) == (game, study)], out_dir, fmt, written)
    own_notes = [line for line in notes.lines if "robustness" in line]  # every note of this module says so
    csv_path, md_path = os.path.join(out_dir, "robustness.csv"), os.path.join(out_dir, "robustness.md")
    write_csv(csv_path, COLUMNS, [{**{k: number(v) if isinstance(v, float) else v for k, v in row.items()},
                                   "level": f"{row['level']:g}"} for row in rows])
    write_markdown(md_path, rows, own_notes)
    return rows, written + [csv_path, md_path]
