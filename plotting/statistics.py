"""Statistics over games and seeds, after Agarwal et al. 2021 ("Deep Reinforcement Learning at the Edge of the
Statistical Precipice"), written with numpy and scipy.stats.trim_mean (the rliable library itself needs the arch
package, which does not import next to pandas 3).

The input of a model is, per game, the scores of its runs (one per seed, see aggregation.per_seed_rows):
* IQM: the interquartile mean of all runs of all games pooled, scipy.stats.trim_mean(values, 0.25) (as rliable);
* mean / median: the mean / median over games of each game's mean over its runs;
* performance profile at tau: the mean over games of the fraction of the game's runs scoring above tau;
* P(X > Y): the mean over the games both models have of P(x > y) + P(x = y) / 2 over all pairs of a run x of X
  and a run y of Y, i.e. the Mann-Whitney U statistic over n_x n_y;
* 95% intervals: percentile intervals of a bootstrap, of one of two kinds (plot.py --bootstrap):
  - runs (default, stratified): each sample redraws, in every game, as many runs as the game has, with replacement;
    the games stay as they are, and two models are redrawn independently. The interval shows the seed-to-seed
    variation only: a game with one run adds none, and a model with one run in every game gets no interval at all
    (None), rather than a zero-width one;
  - games: each sample redraws the games with replacement, each keeping all its runs (for P(X > Y) the same games
    for both models). The interval shows how the number depends on which games were played.
  Every statistic starts its own generator from the same seed, so a number does not depend on which other models
  are reported.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import trim_mean

CONFIDENCE = 0.95
PROFILE_POINTS = 101


def _game_means(samples: list[np.ndarray]) -> np.ndarray:
    return np.stack([s.mean(axis=-1) for s in samples], axis=-1)


def iqm(samples: list[np.ndarray]) -> np.ndarray:
    """Interquartile mean of the pooled runs; each item holds one game's runs on its last axis."""
    return trim_mean(np.concatenate(samples, axis=-1), 0.25, axis=-1)


def mean_of_games(samples: list[np.ndarray]) -> np.ndarray:
    return _game_means(samples).mean(axis=-1)


def median_of_games(samples: list[np.ndarray]) -> np.ndarray:
    return np.median(_game_means(samples), axis=-1)


AGGREGATES = {"iqm": iqm, "mean": mean_of_games, "median": median_of_games}


def profile(samples: list[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Mean over games of the fraction of runs scoring above each tau (taus on the last axis of the result)."""
    return np.mean([(s[..., None] > taus).mean(axis=-2) for s in samples], axis=0)


def improvement(x: list[np.ndarray], y: list[np.ndarray]) -> np.ndarray:
    """P(X > Y): the mean over games of the Mann-Whitney proportion of run pairs where x beats y (ties count 1/2)."""
    per_game = [((a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :])).mean(axis=(-2, -1))
                for a, b in zip(x, y)]
    return np.mean(per_game, axis=0)


def resample(per_game: list[np.ndarray], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``reps`` stratified bootstrap samples: per game, its runs redrawn with replacement (shape reps x runs)."""
    return [values[rng.integers(0, len(values), size=(reps, len(values)))] for values in per_game]


BOOTSTRAPS = {"runs": "the runs (seeds) of each game, redrawn within the game; the games are kept",
              "games": "the games, redrawn with replacement, each with all its runs"}


def _game_samples(sets: list[list[np.ndarray]], reps: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """``reps`` samples of the games (the same draw for every set), each game with all its runs (shape reps x
    runs per game)."""
    picks = rng.integers(0, len(sets[0]), size=(reps, len(sets[0])))
    out = []
    for values in sets:
        if len({len(v) for v in values}) == 1:  # equal runs per game: one array, indexed at once
            table = np.stack(values)[picks]  # reps x games x runs
            out.append([table[:, j, :] for j in range(table.shape[1])])
        else:
            out.append(None)
    if all(item is not None for item in out):
        return out
    return [[[values[g][None] for g in pick] for pick in picks] for values in sets]  # per sample, ragged


def interval(statistic, per_game_sets: list[list[np.ndarray]], reps: int, seed: int, mode: str = "runs"):
    """Point estimate and percentile 95% interval of ``statistic(*per_game_sets)`` over ``reps`` bootstrap samples
    (``mode`` runs: stratified, each set redrawn on its own; games: the games redrawn). The interval is (None, None)
    when the resampling cannot vary anything: one run in every game of every set, with mode runs."""
    sets = [[np.asarray(v, dtype=float) for v in s] for s in per_game_sets]
    point = statistic(*[[v[None] for v in s] for s in sets])[0]
    if mode == "runs" and all(len(v) == 1 for s in sets for v in s):
        return point, None, None
    rng = np.random.default_rng(seed)
    if mode == "games":
        drawn = _game_samples(sets, reps, rng)
        if isinstance(drawn[0][0], list):  # ragged: one statistic per sample
            samples = np.stack([statistic(*[d[r] for d in drawn])[0] for r in range(reps)])
        else:
            samples = statistic(*drawn)
    else:
        samples = statistic(*[resample(s, reps, rng) for s in sets])
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return point, low, high


def _value(x):
    return None if x is None else float(x)


def by_model_and_game(rows: list[dict], key: str) -> dict[str, dict[str, np.ndarray]]:
    """model -> game -> the values of ``key`` of its per-seed rows (rows without one are left out)."""
    out: dict[str, dict[str, list]] = {}
    for row in rows:
        if row[key] is not None:
            out.setdefault(row["model"], {}).setdefault(row["game"], []).append(row[key])
    return {m: {g: np.array(v, dtype=float) for g, v in sorted(games.items())} for m, games in out.items()}


def comparisons(models: list[str]) -> list[tuple[str, str]]:
    """(X, baseline) pairs of P(X > baseline): every model against Dqn, every other Double model against
    DoubleDqn."""
    pairs = [(m, "Dqn") for m in models if m != "Dqn"]
    pairs += [(m, "DoubleDqn") for m in models if m.startswith("Double") and m != "DoubleDqn"]
    return pairs


def compute(per_seed: list[dict], models: list[str], reps: int, seed: int,
            mode: str = "runs") -> tuple[list[dict], dict]:
    """The statistics rows (aggregates of HNS with intervals, probabilities of improvement) and the performance
    profiles (model -> taus, fraction, low, high, games, runs) of the per-seed rows; an interval that cannot be
    given (see :func:`interval`) is None."""
    hns = by_model_and_game(per_seed, "human_normalised_score")
    scores = by_model_and_game(per_seed, "score")
    rows = []
    for model in (m for m in models if m in hns):
        per_game = list(hns[model].values())
        for name, statistic in AGGREGATES.items():
            point, low, high = interval(statistic, [per_game], reps, seed, mode)
            rows.append({"statistic": f"{name}_hns", "model": model, "baseline": "", "estimate": float(point),
                         "ci_low": _value(low), "ci_high": _value(high), "games": len(per_game),
                         "runs": int(sum(len(v) for v in per_game))})
    for model, baseline in comparisons([m for m in models if m in scores]):
        if baseline not in scores:
            continue
        games = [g for g in scores[model] if g in scores[baseline]]
        if not games:
            continue
        x, y = [scores[model][g] for g in games], [scores[baseline][g] for g in games]
        point, low, high = interval(improvement, [x, y], reps, seed, mode)
        rows.append({"statistic": "probability_of_improvement", "model": model, "baseline": baseline,
                     "estimate": float(point), "ci_low": _value(low), "ci_high": _value(high), "games": len(games),
                     "runs": int(sum(len(v) for v in x + y))})
    profiles = {}
    values = [v for games in hns.values() for a in games.values() for v in a]
    if values:
        taus = np.linspace(min(0.0, min(values)), max(100.0, max(values)), PROFILE_POINTS)
        for model in (m for m in models if m in hns):
            per_game = list(hns[model].values())
            point, low, high = interval(lambda s: profile(s, taus), [per_game], reps, seed, mode)
            profiles[model] = {"taus": taus, "fraction": point, "low": low, "high": high, "games": len(per_game),
                               "runs": int(sum(len(v) for v in per_game))}
    return rows, profiles
