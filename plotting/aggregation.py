"""From runs to numbers: groups (model x game), their scores and the % DQN / % Double DQN columns, per-seed scores,
spike and energy statistics, and the mean curves over seeds."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from plotting.common import (
    ANN_MODELS,
    BASELINES,
    DOUBLE,
    HUMAN_SETS,
    LABELS,
    LAYERS,
    REFERENCE_FILE,
    REPO_ROOT,
    Notes,
    human_normalised,
    is_conversion,
    number,
)
from plotting.loading import LearnRun, PlayRun, checkpoint_key

LOSS_BINS = 200  # the loss curve is shown as the mean of at most this many step bins
ENERGY_KEYS = ("macs_per_action_total", "sops_per_action_total", "energy_uj_per_action")


@dataclass
class Group:
    model: str
    game: str
    learn: list[LearnRun] = field(default_factory=list)
    play: list[PlayRun] = field(default_factory=list)  # play summaries of run.py, or convert.py's runs


def make_groups(learn: list[LearnRun], play: list[PlayRun]) -> dict[tuple[str, str], Group]:
    groups: dict[tuple[str, str], Group] = {}
    for run in learn:
        groups.setdefault((run.model, run.game), Group(run.model, run.game)).learn.append(run)
    for run in play:
        groups.setdefault((run.model, run.game), Group(run.model, run.game)).play.append(run)
    return groups


def pooled_weighted(items: list[tuple[float, float]]) -> float | None:
    """Weighted mean of (value, weight) pairs, None if there is no weight."""
    items = [(v, w) for v, w in items if v is not None and w]
    total = sum(w for _, w in items)
    return sum(v * w for v, w in items) / total if total else None


RULES = {"play": "play", "best_eval": "best eval"}  # --score: the one source of every score in a table
RULE_TEXT = {
    "play": "the play average of the run's best checkpoint (run.py --method play; convert.py's games for a "
            "conversion SNN)",
    "best_eval": "the run's best evaluation average during training (the evaluation that saved its best.pkl)",
}


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
    horizons: list[int] = field(default_factory=list)  # the step caps of its games (max_episode_step)
    best_eval_truncated: int | None = None  # games of the best evaluations cut by the cap (None: not recorded)
    best_eval_games: int | None = None
    play_truncated: int | None = None  # play games cut by the cap (None: not recorded)

    def score(self, rule: str) -> float | None:
        return self.play_average if rule == "play" else self.best_eval

    def truncated(self, rule: str) -> int | None:
        return self.play_truncated if rule == "play" else self.best_eval_truncated

    def games(self, rule: str) -> int | None:
        return self.play_episodes if rule == "play" else self.best_eval_games


def _total(values: list) -> int | None:
    """The sum of counts, None when one of them is unknown (or there is none)."""
    return None if not values or None in values else int(sum(values))


def group_scores(group: Group) -> GroupScores:
    bests = [b for b in (run.best_eval() for run in group.learn) if b is not None]
    best = float(np.mean(bests)) if bests else None
    best_std = float(np.std(bests)) if len(bests) > 1 else None
    episodes = [s for run in group.play for s in run.scores]
    play_avg = float(np.mean(episodes)) if episodes else None
    play_std = float(np.std(episodes)) if episodes else None
    # the seeds of the trained runs; a group without any (the conversion SNN) lists the seeds of its play runs
    seeds = sorted({run.seed for run in (group.learn or group.play) if run.seed is not None})
    scored = [run for run in group.learn if run.best_eval() is not None]
    return GroupScores(group.model, group.game, len(group.learn), seeds, best, best_std, play_avg, play_std,
                       len(episodes), len(group.play), group_horizons(group),
                       _total([run.best_eval_truncated() for run in scored]),
                       _total([run.best_eval_games() for run in scored]),
                       _total([run.truncated_games for run in group.play]))


def group_horizons(group: Group) -> list[int]:
    return sorted({run.horizon for run in (*group.learn, *group.play) if run.horizon is not None})


def _percent_of(score: float | None, base: float | None, random: float | None, game: str, baseline: str,
                notes: Notes):
    """100 * (score - random) / (base - random): the share of the base model's gain over random play, right for
    negative scores too; n/a (with a note) without a random score or when the base is not above random."""
    label = LABELS[baseline]
    if score is None:
        return None
    if base is None:
        notes.add(f"{game}: no {baseline} score under the table's rule, % {label} n/a")
    elif random is None:
        notes.add(f"{game}: no random score, % {label} n/a")
    elif base <= random:
        notes.add(f"{game}: the {baseline} score {base:g} is not above the random score {random:g}, % {label} n/a")
    else:
        return 100.0 * (score - random) / (base - random)
    return None


def seed_units(group: Group, by_checkpoint: dict) -> dict:
    """The group's runs by seed: seed -> (learn runs, play runs); a play or convert run counts for the seed of the
    learn run whose checkpoint it used, and a run without a seed is a unit of its own."""
    units: dict = {}
    for run in group.learn:
        units.setdefault(run.seed if run.seed is not None else ("run", run.name), ([], []))[0].append(run)
    for run in group.play:
        seed = seed_of(run, by_checkpoint)
        units.setdefault(seed if seed is not None else ("run", run.name), ([], []))[1].append(run)
    return units


def choose_rule(requested: str, groups: list[Group], all_learn: list[LearnRun], notes: Notes) -> str:
    """The score rule of the tables: ``requested`` (play or best_eval), or for auto: play when every run of every
    compared group has a play of its checkpoint (a conversion is only ever played), else best_eval."""
    if requested != "auto":
        return requested
    by_checkpoint = {run.checkpoint_key: run for run in all_learn if run.checkpoint_key is not None}
    unplayed = [learn[0].name for group in groups for learn, play in seed_units(group, by_checkpoint).values()
                if any(run.best_eval() is not None for run in learn) and not any(run.scores for run in play)]
    if not unplayed:
        return "play"
    notes.add(f"score rule: best eval, because {len(unplayed)} training run(s) have no play of their checkpoint "
              f"({', '.join(unplayed[:3])}{', ...' if len(unplayed) > 3 else ''}); a model without evaluations "
              "during training (the conversion SNN) has no score under it. Play every run (run.py --method play, "
              "or sweep.py's play runs) to score all models by their play, or pass --score play")
    return "best_eval"


def score_rows(groups: dict[tuple[str, str], Group], games: list[str], models: list[str], refs, human_set: str,
               notes: Notes, rule: str = "best_eval") -> list[dict]:
    """One row per group with a best eval or play score; its score (and HNS, % DQN) by ``rule`` only. % Double DQN
    is reported (and noted when missing) only when some Double model was run at all."""
    human_key = HUMAN_SETS[human_set][0]
    any_double = any(model.startswith(DOUBLE) for model, _ in groups)
    rows = []
    for game in games:
        ref = refs.get(game, {})
        bases = {b: group_scores(groups[(b, game)]) if (b, game) in groups else None for b in BASELINES}
        if game not in refs:
            notes.add(f"{game}: no reference scores in {os.path.relpath(REFERENCE_FILE, REPO_ROOT)}, HNS n/a")
        elif ref.get(human_key) is None:
            notes.add(f"{game}: no {human_set} human score available, HNS n/a")
        for model in models:
            if (model, game) not in groups:
                continue
            scores = group_scores(groups[(model, game)])
            if scores.best_eval is None and scores.play_average is None:
                notes.add(f"{LABELS[model]} on {game}: no evaluation or play score, left out of the table")
                continue
            score = scores.score(rule)
            if score is None:
                notes.add(f"{LABELS[model]} on {game}: no {RULES[rule]} score, so no score under the table's rule "
                          "(its other score is shown in its own column)")
            row = {
                "game": game, "model": model, "runs": scores.runs, "seeds": " ".join(str(s) for s in scores.seeds),
                "best_eval_average": scores.best_eval, "best_eval_std_over_runs": scores.best_eval_std,
                "play_average": scores.play_average, "play_std": scores.play_std,
                "play_episodes": scores.play_episodes, "play_runs": scores.play_runs,
                "score": score, "score_source": RULES[rule] if score is not None else "",
                "scored_games": scores.games(rule) if score is not None else None,
                "truncated_games": scores.truncated(rule) if score is not None else None,
                "horizon": " ".join(str(h) for h in scores.horizons),
                "human_normalised_score": human_normalised(score, ref.get("random"), ref.get(human_key)),
                "random": ref.get("random"), "human": ref.get(human_key), "human_set": human_set,
                "dqn_nature": ref.get("dqn_nature"),
            }
            for baseline, column in BASELINES.items():
                base = bases[baseline]
                prefix = column[len("pct_"):]
                base_score = base.score(rule) if base is not None else None
                row[column] = (_percent_of(score, base_score, ref.get("random"), game, baseline, notes)
                               if baseline == "Dqn" or any_double else None)
                row[f"{prefix}_base"] = base_score
                row[f"{prefix}_base_source"] = RULES[rule] if base_score is not None else ""
            rows.append(row)
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


def seed_of(run: PlayRun, learn_by_checkpoint: dict) -> int | None:
    """The seed a play or convert run counts for: that of the learn run whose checkpoint it used when that run
    is among the inputs, else its own."""
    learn = learn_by_checkpoint.get(checkpoint_key(run.checkpoint))
    return learn.seed if learn is not None and learn.game == run.game else run.seed


def _unit_order(item):
    key = item[0]
    return (1, 0, key[1]) if isinstance(key, tuple) else (0, key, "")


def per_seed_rows(groups: dict[tuple[str, str], Group], games: list[str], models: list[str], refs, human_set: str,
                  all_learn: list[LearnRun], rule: str = "best_eval") -> list[dict]:
    """One row per (game, model, seed) with a score under ``rule``: the average of the seed's play episodes, or the
    mean of its learn runs' best evaluation averages; a seed without one is left out."""
    human_key = HUMAN_SETS[human_set][0]
    by_checkpoint = {run.checkpoint_key: run for run in all_learn if run.checkpoint_key is not None}
    rows = []
    for game in games:
        ref = refs.get(game, {})
        for model in models:
            group = groups.get((model, game))
            if group is None:
                continue
            for seed, (learn, play) in sorted(seed_units(group, by_checkpoint).items(), key=_unit_order):
                if rule == "play":
                    values = [s for run in play for s in run.scores]
                else:
                    values = [b for b in (run.best_eval() for run in learn) if b is not None]
                if not values:
                    continue
                score = float(np.mean(values))
                rows.append({
                    "game": game, "model": model, "seed": "" if isinstance(seed, tuple) else seed,
                    "runs": " ".join(run.name for run in (*learn, *play)), "score": score,
                    "score_source": RULES[rule],
                    "human_normalised_score": human_normalised(score, ref.get("random"), ref.get(human_key)),
                })
    return rows


def _spike_part(run: PlayRun):
    """(weight, layer firing rates, layer spikes per action, average firing rate, spikes per action, T) of one
    run's summary, or None when it holds no (usable) spike statistics."""
    s = run.summary
    if "layer_firing_rates" in s:  # run.py play --use_spike_monitor
        part = (s.get("greedy_actions"), s["layer_firing_rates"], s.get("layer_spikes_per_action"),
                s.get("average_firing_rate"), s.get("spike_num_per_action"), s.get("T"))
    elif "firing_rate_per_layer" in s:  # convert.py
        per_action = s.get("spikes_per_greedy_action")
        per_action = per_action if isinstance(per_action, dict) else {}
        part = (s.get("greedy_steps_total"), s["firing_rate_per_layer"],
                {k: v for k, v in per_action.items() if k != "total"}, s.get("average_firing_rate"),
                per_action.get("total"), s.get("T"))
    else:
        return None
    weight, rates, spikes = number(part[0]), part[1], part[2]
    if not weight or not isinstance(rates, dict) or not isinstance(spikes, dict):
        return None
    return (weight, {k: number(v) for k, v in rates.items()}, {k: number(v) for k, v in spikes.items()},
            number(part[3]), number(part[4]), number(part[5]))


def spike_stats(group: Group, notes: Notes) -> dict | None:
    """Per-layer firing rates and spikes per action of a spiking group, pooled over its play runs (weighted by
    their greedy actions); None when no play run recorded spikes."""
    parts = []
    for run in group.play:
        part = _spike_part(run)
        if part is None and ("layer_firing_rates" in run.summary or "firing_rate_per_layer" in run.summary):
            notes.add(f"{run.name}: damaged spike statistics in its summary, left out")
        elif part is not None:
            parts.append(part)
    if not parts:
        return None
    layers = [name for name in LAYERS if any(name in p[1] for p in parts)]
    return {
        "greedy_actions": int(sum(p[0] for p in parts)),
        "layer_firing_rates": {n: pooled_weighted([(p[1].get(n), p[0]) for p in parts]) for n in layers},
        "layer_spikes_per_action": {n: pooled_weighted([(p[2].get(n), p[0]) for p in parts]) for n in layers},
        "average_firing_rate": pooled_weighted([(p[3], p[0]) for p in parts]),
        "spikes_per_action": pooled_weighted([(p[4], p[0]) for p in parts]),
        "T": sorted({int(p[5]) if p[5] == int(p[5]) else p[5] for p in parts if p[5] is not None}),
    }


def _architecture_n_actions(group: Group, notes: Notes) -> int | None:
    for run in group.learn:
        value = run.config.get("n_actions")
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        notes.add(f"{run.name}: n_actions {value!r} is not a positive integer, not used")
    return None


def energy_stats(group: Group, notes: Notes) -> dict | None:
    """Operation counts and energy per greedy action of a group, from the 'energy' blocks of its play / convert
    summaries (pooled, weighted by greedy actions); for a Dqn without one, from the architecture (MACs do not
    depend on the data). None when there is nothing to report."""
    from neural_network.architecture import nature_dqn_layer_macs
    from utils.energy import PJ_PER_MAC

    parts = []
    for run in group.play:
        energy = run.summary.get("energy")
        if energy is None:
            continue
        values = [number(energy.get(key)) for key in ENERGY_KEYS] if isinstance(energy, dict) else [None]
        if None in values:
            notes.add(f"{run.name}: damaged energy block in its summary (needs {', '.join(ENERGY_KEYS)}), left out")
            continue
        weight = number(run.summary.get("greedy_actions")) or number(run.summary.get("greedy_steps_total")) or 1
        parts.append((weight, values))
    if parts:
        macs, sops, energy_uj = (pooled_weighted([(v[i], w) for w, v in parts]) for i in range(3))
        return {"macs": macs, "sops": sops, "energy_uj": energy_uj,
                "source": "play summary" if not is_conversion(group.model) else "convert.py summary"}
    if group.model in ANN_MODELS:
        n_actions = _architecture_n_actions(group, notes)
        if n_actions:
            macs = float(sum(nature_dqn_layer_macs(n_actions).values()))
            return {"macs": macs, "sops": 0.0, "energy_uj": macs * PJ_PER_MAC / 1e6,
                    "source": f"architecture ({n_actions} actions)"}
    elif group.play:
        notes.add(f"{LABELS[group.model]} on {group.game}: no operation counts (play without --use_spike_monitor, "
                  "or a summary from before they were recorded)")
    return None


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
