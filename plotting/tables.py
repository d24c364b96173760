"""The tables: scores.md / scores.csv, energy.csv, per_seed_scores.csv and statistics.md / statistics.csv. Each is
written to a temporary file and moved into place once complete."""

from __future__ import annotations

import csv
import math
from collections import Counter

from plotting.aggregation import RULE_TEXT, RULES
from plotting.common import HUMAN_SETS, LABELS, PAPER_HORIZON, Notes, replacing
from plotting.statistics import BOOTSTRAPS

SCORE_COLUMNS = [
    "game", "model", "runs", "seeds", "best_eval_average", "best_eval_std_over_runs", "play_average", "play_std",
    "play_episodes", "play_runs", "score", "score_source", "scored_games", "truncated_games", "horizon",
    "human_normalised_score", "pct_dqn", "dqn_base", "dqn_base_source", "pct_double_dqn", "double_dqn_base",
    "double_dqn_base_source", "random", "human", "human_set", "dqn_nature",
]
ENERGY_COLUMNS = [
    "game", "model", "T", "macs_per_action", "sops_per_action", "energy_uj_per_action", "average_firing_rate",
    "spikes_per_action", "greedy_actions", "source",
]
PER_SEED_COLUMNS = ["game", "model", "seed", "runs", "score", "score_source", "human_normalised_score"]
STATISTICS_COLUMNS = [
    "statistic", "model", "baseline", "estimate", "ci_low", "ci_high", "games", "runs", "human_set", "bootstrap",
    "bootstrap_samples", "bootstrap_seed",
]


def _cell(value, spec=".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, float) else str(value)


def _write_text(path: str, lines: list[str]) -> None:
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})


def _score_cell(r: dict) -> str:
    if r["score"] is None:
        return "n/a"
    cut = r.get("truncated_games")
    mark = " †" if cut else (" ?" if cut is None else "")
    return f"{r['score']:.2f}{mark}"


def _score_lines(rows: list[dict], double: bool, rule: str) -> list[str]:
    extra_head, extra_rule = (" % Double DQN | Double DQN base |", "---|---|") if double else ("", "")
    lines = [
        (f"| game | model | seeds | learn / play runs | best eval | play (games) | score ({RULES[rule]}) | "
         f"HNS % | % DQN | DQN base |{extra_head} horizon | random | human | DQN (Nature) |"),
        f"|---|---|---|---|---|---|---|---|---|---|{extra_rule}---|---|---|---|",
    ]
    for r in rows:
        best = _cell(r["best_eval_average"])
        if r["best_eval_std_over_runs"] is not None:
            best += f" ± {r['best_eval_std_over_runs']:.2f}"
        play = "n/a" if r["play_average"] is None else \
            f"{r['play_average']:.2f} ± {r['play_std']:.2f} ({r['play_episodes']})"
        extra = (f" {_cell(r['pct_double_dqn'], '.1f')} | {_cell(r['double_dqn_base'])} |") if double else ""
        lines.append(
            f"| {r['game']} | {LABELS[r['model']]} | {r['seeds'] or 'n/a'} | {r['runs']} / {r['play_runs']} | "
            f"{best} | {play} | {_score_cell(r)} | {_cell(r['human_normalised_score'], '.1f')} | "
            f"{_cell(r['pct_dqn'], '.1f')} | {_cell(r['dqn_base'])} |{extra} {r.get('horizon') or 'n/a'} | "
            f"{_cell(r['random'], 'g')} | {_cell(r['human'], 'g')} | {_cell(r['dqn_nature'], 'g')} |")
    return lines


def horizon_warning(horizons: set) -> list[str]:
    """The heading's warning when some runs did not play the paper's 18,000-step games (empty otherwise)."""
    other = sorted(h for h in horizons if h != PAPER_HORIZON)
    if not other:
        return []
    return [f"**Not the paper's horizon:** games of some runs were cut at max_episode_step = "
            f"{', '.join(f'{h:,}' for h in other)} agent steps, not the paper's {PAPER_HORIZON:,}: their scores are "
            "those of shortened games and do not compare with published ones.", ""]


def _energy_lines(energy_rows: list[dict]) -> list[str]:
    from utils.energy import ENERGY_NOTE, SOP_RULES

    lines = ["", "## Operations and energy per greedy action (ESTIMATE)", "", f"{ENERGY_NOTE}.", "",
             f"* DQN: {SOP_RULES['ann']}.", f"* DSQN: {SOP_RULES['dsqn']}.",
             f"* conversion SNN: {SOP_RULES['conversion']}.", "",
             "| game | model | T | MACs | SOPs | energy (µJ, estimate) | firing rate | spikes / action | source |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in energy_rows:
        lines.append(
            f"| {r['game']} | {LABELS[r['model']]} | {r.get('T') or 'n/a'} | {_cell(r['macs_per_action'], '.4g')} | "
            f"{_cell(r['sops_per_action'], '.4g')} | {_cell(r['energy_uj_per_action'], '.4g')} | "
            f"{_cell(r['average_firing_rate'], '.4f')} | {_cell(r['spikes_per_action'], '.4g')} | "
            f"{r['source']} |")
    return lines


def write_markdown(path, rows, summary, energy_rows, human_set, notes: Notes, inputs: dict,
                   double: bool = False, rule: str = "best_eval", horizons: set = frozenset()) -> None:
    """scores.md; ``double``: some Double model was run, so the % Double DQN columns are shown; ``rule``: the score
    rule of every row; ``horizons``: the step caps of the runs in the table."""
    short = any(h != PAPER_HORIZON for h in horizons)
    lines = [
        "# Scores" + (f" (shortened games: horizon not {PAPER_HORIZON:,} steps)" if short else ""), "",
        *horizon_warning(horizons),
        (f"Human set: **{HUMAN_SETS[human_set][1]}**. Random and Nature-DQN scores: Mnih et al. 2015, no-op starts "
        "(`utils/reference_scores.csv`)."), "",
        ("* **best eval** = mean over the runs (seeds) of the group of each run's best `evaluate/average_score` "
        "(± its std over the runs when there are several)."),
        ("* **play** = average ± population std over all games of the group's play runs (run.py --method play, "
        "or convert.py's games for a conversion SNN), pooled; in brackets the number of games."),
        (f"* **score** = one rule for every row of this table: **{RULES[rule]}**, {RULE_TEXT[rule]} (plot.py "
        "--score; auto takes play only when every run of every compared model was played). A model without such a "
        "score has n/a here and its other score in its own column: scores from the two sources are never mixed."),
        "* HNS = 100 · (score − random) / (human − random).",
        ("* **% DQN** = 100 · (score − random) / (DQN base − random): the share of our Dqn group's gain over random "
        "play on the same game, under the same rule (*DQN base*). Right for negative scores too (Pong, Tennis); n/a "
        "when the DQN base is not above random or a random score is missing."),
        ("* **†**: some of the scored games were cut by the step cap (`truncated_games` in scores.csv), so the score "
        "is that of unfinished games; **?**: not recorded (runs from before the record was kept)."),
        ("* **horizon** = the step cap of the group's games (max_episode_step); the paper's is "
         f"{PAPER_HORIZON:,}. Conversion SNNs are one model per T (and schedule, neuron type)."),
    ]
    if double:
        lines.append("* **% Double DQN** = the same with our Double DQN group (run.py runs with `double`) as base; "
                     "every Double model is a model of its own.")
    lines += [""] + _score_lines(rows, double, rule)
    lines += ["", "## Human-normalised score over games", "",
              "Statistics over games and seeds with confidence intervals: `statistics.md`.", "",
              "| model | mean HNS % | median HNS % | games |", "|---|---|---|---|"]
    for model, s in summary.items():
        lines.append(f"| {LABELS[model]} | {s['mean']:.1f} | {s['median']:.1f} | {s['games']} |")
    if energy_rows:
        lines += _energy_lines(energy_rows)
    lines += ["", "## Inputs", ""] + [f"* {k}: {', '.join(v) or 'none'}" for k, v in inputs.items()]
    lines += ["", "## Skipped and missing data", ""]
    lines += [f"* {line}" for line in notes.lines] or ["* none"]
    _write_text(path, lines)


def _interval(row: dict | None, spec: str) -> str:
    if row is None:
        return "n/a"
    if row["ci_low"] is None:
        return f"{row['estimate']:{spec}} (no interval)"
    return f"{row['estimate']:{spec}} [{row['ci_low']:{spec}}, {row['ci_high']:{spec}}]"


def write_statistics(md_path: str, csv_path: str, stats: list[dict], per_seed: list[dict], human_set: str,
                     reps: int, seed: int, bootstrap: str = "runs", rule: str = "best_eval",
                     horizons: set = frozenset()) -> None:
    """statistics.md and statistics.csv from statistics.compute's rows."""
    common = {"human_set": human_set, "bootstrap": bootstrap, "bootstrap_samples": reps, "bootstrap_seed": seed}
    write_csv(csv_path, STATISTICS_COLUMNS, [{**row, **common} for row in stats])
    short = any(h != PAPER_HORIZON for h in horizons)
    if bootstrap == "runs":
        resampled = (f"**[low, high]** = 95% percentile interval of a stratified bootstrap over runs ({reps} samples, "
                     f"seed {seed}): {BOOTSTRAPS['runs']}. It shows the seed-to-seed variation only. A game with "
                     "one run adds none, and a model with one seed per game gets **no interval** (a bootstrap over "
                     "runs cannot vary anything); `plot.py --bootstrap games` redraws the games instead.")
    else:
        resampled = (f"**[low, high]** = 95% percentile interval of a bootstrap over games ({reps} samples, seed "
                     f"{seed}): {BOOTSTRAPS['games']} (for P(X > Y) the same games for both models). It shows how "
                     "the number depends on which games were played, not the variation between seeds.")
    lines = [
        "# Statistics over games and seeds" + (f" (shortened games: horizon not {PAPER_HORIZON:,} steps)"
                                               if short else ""), "",
        *horizon_warning(horizons),
        (f"Human set: **{HUMAN_SETS[human_set][1]}**. After Agarwal et al. 2021, \"Deep Reinforcement Learning at "
        "the Edge of the Statistical Precipice\"; the per-seed scores are in `per_seed_scores.csv`."), "",
        (f"* **per-seed score** = by the rule of `scores.md`, for every model: **{RULES[rule]}**, {RULE_TEXT[rule]} "
        "(a play or convert run counts for the seed of the learn run whose checkpoint it used); a seed without "
        "such a score is left out. HNS as in `scores.md`."),
        ("* **IQM** = mean of the middle 50% of all runs of all games pooled; **mean** / **median** = over games of "
        "each game's mean over its runs."),
        ("* **P(X > Y)** = mean over the games both models have of the probability that a run of X scores above a "
        "run of Y (ties count one half), from the raw scores, so games without a human score count too."),
        f"* {resampled}", "",
        "## Human-normalised score (%)", "",
    ]
    aggregate = {(r["model"], r["statistic"]): r for r in stats}
    models = list(dict.fromkeys(r["model"] for r in stats if r["statistic"] == "iqm_hns"))
    if models:
        lines += ["| model | IQM [95% CI] | mean [95% CI] | median [95% CI] | games | runs |",
                  "|---|---|---|---|---|---|"]
        for model in models:
            iqm = aggregate[(model, "iqm_hns")]
            cells = " | ".join(_interval(aggregate.get((model, f"{k}_hns")), ".1f") for k in ("iqm", "mean", "median"))
            lines.append(f"| {LABELS[model]} | {cells} | {iqm['games']} | {iqm['runs']} |")
        if len({aggregate[(m, "iqm_hns")]["games"] for m in models}) > 1:
            lines += ["", "The models cover different numbers of games: their aggregates are not directly comparable."]
    else:
        lines.append("No human-normalised score (no game with a human score in this set has a per-seed score).")
    lines += ["", "## Probability of improvement", ""]
    improvements = [r for r in stats if r["statistic"] == "probability_of_improvement"]
    if improvements:
        lines += ["| model X | baseline Y | P(X > Y) [95% CI] | games | runs (X + Y) |", "|---|---|---|---|---|"]
        lines += [f"| {LABELS[r['model']]} | {LABELS[r['baseline']]} | {_interval(r, '.3f')} | {r['games']} | "
                  f"{r['runs']} |" for r in improvements]
    else:
        lines.append("n/a: no model shares a game with the Dqn (or DoubleDqn) runs.")
    single = [key for key, n in Counter((r["model"], r["game"]) for r in per_seed).items() if n == 1]
    if single:
        lines += ["", "## Single runs", "", "One run only (no spread within the game): " + ", ".join(
            f"{LABELS[m]} on {g}" for m, g in single) + "."]
    _write_text(md_path, lines)
