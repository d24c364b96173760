"""The figures: curves over training steps per game, human-normalised score bars, firing rates, energy and the
performance profile. Each is written to a temporary file and moved into place once complete."""

from __future__ import annotations

import os

import numpy as np

from plotting.aggregation import LOSS_BINS, binned_curve, group_scores, mean_curve
from plotting.common import COLORS, HUMAN_SETS, LABELS, LAYERS, replacing


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, written: list[str]) -> None:
    try:
        fig.tight_layout()
        with replacing(path) as temporary:
            fig.savefig(temporary, dpi=120, format=os.path.splitext(path)[1][1:])
    finally:
        pyplot().close(fig)
    written.append(path)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _label(model: str, n_runs: int) -> str:
    return f"{LABELS[model]} ({_count(n_runs, 'run')})"


LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _style(index: int, count: int, points: int) -> dict:
    """Line style, marker and marker size of the ``index``-th of ``count`` curves: each curve has its own dashes
    and marker shape, and the curves drawn first have the larger markers, so that identical curves stay visible
    one above the other. Markers are shown on short curves (fewer than 30 points; a single point is only a
    marker)."""
    return {"linestyle": LINE_STYLES[index % len(LINE_STYLES)],
            "marker": MARKERS[index % len(MARKERS)] if points < 30 else None,
            "ms": 3 + 2 * (count - 1 - index), "markerfacecolor": "none" if index % 2 else None}


def _finish_curve_figure(fig, ax, drew: bool, title: str, ylabel: str, path: str, written: list[str],
                         notes=None, missing_note: str | None = None) -> None:
    """Label and save a curve-vs-training-steps figure, or drop it (with a note) when nothing was drawn."""
    if drew:
        ax.set(title=title, xlabel="training steps (agent steps)", ylabel=ylabel)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
        save_figure(fig, path, written)
        return
    pyplot().close(fig)
    if missing_note is not None:
        notes.add(missing_note)


def _draw_mean_curves(ax, learn: dict, tag: str, episode_std_tag: str | None = None) -> bool:
    """Draw each model's mean curve of ``tag`` over its runs, with its band; True if anything was drawn."""
    drew = False
    for index, (model, runs) in enumerate(learn.items()):
        curve = mean_curve(runs, tag, episode_std_tag)
        if curve is None:
            continue
        steps, mean, band, n = curve
        ax.plot(steps, mean, color=COLORS[model], label=_label(model, n), **_style(index, len(learn), len(steps)))
        if band is not None:
            ax.fill_between(steps, band[0], band[1], color=COLORS[model], alpha=0.2, linewidth=0)
        drew = True
    return drew


def _draw_loss(ax, learn: dict) -> bool:
    """Draw each model's binned training loss (min-max band over seeds); a log axis when every value is positive.
    True if anything was drawn."""
    drew, positive = False, True
    for index, (model, runs) in enumerate(learn.items()):
        curve = binned_curve(runs, "learn/loss")
        if curve is None:
            continue
        centres, mean, low, high, n = curve
        ax.plot(centres, mean, color=COLORS[model], label=_label(model, n), **_style(index, len(learn), len(centres)))
        if n > 1:
            ax.fill_between(centres, low, high, color=COLORS[model], alpha=0.2, linewidth=0)
        positive = positive and bool(np.nanmin(low) > 0)
        drew = True
    if drew and positive:
        ax.set_yscale("log")
    return drew


def plot_curves(game, groups, models, refs, human_set, out_dir, fmt, written, notes):
    plt = pyplot()
    learn = {m: groups[(m, game)].learn for m in models if (m, game) in groups and groups[(m, game)].learn}
    if not learn:
        return
    human_key, _ = HUMAN_SETS[human_set]
    # evaluation score
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drew = _draw_mean_curves(ax, learn, "evaluate/average_score", "evaluate/score_std")
    played = [m for m in models if (m, game) in groups and groups[(m, game)].play]
    for index, model in enumerate(played):  # equal averages stay visible: the first drawn is the widest
        scores = group_scores(groups[(model, game)])
        if scores.play_average is not None:
            ax.axhline(scores.play_average, color=COLORS[model], linestyle=LINE_STYLES[(index + 1) % len(LINE_STYLES)],
                       linewidth=1 + 1.2 * (len(played) - 1 - index),
                       label=f"{LABELS[model]} play average ({_count(scores.play_episodes, 'game')})")
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
    drew = _draw_loss(ax, learn)
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


def plot_hns(rows, summary, models, human_set, out_dir, fmt, written, rule: str = "best_eval"):
    plt = pyplot()
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
    source = "play average of the best checkpoint" if rule == "play" else "best evaluation average"
    ax.set(title=f"Human-normalised score, {human_set} human set (every score: {source})",
           ylabel="human-normalised score (%)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    save_figure(fig, os.path.join(out_dir, f"hns.{fmt}"), written)


def plot_spikes(game, stats: dict[str, dict], out_dir, fmt, written):
    plt = pyplot()
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
    save_figure(fig, os.path.join(out_dir, f"spikes_{game}.{fmt}"), written)


def plot_energy(game, energy: dict[str, dict], out_dir, fmt, written):
    from matplotlib.patches import Patch

    from utils.energy import PJ_PER_AC, PJ_PER_MAC

    plt = pyplot()
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
    save_figure(fig, os.path.join(out_dir, f"energy_{game}.{fmt}"), written)


def plot_profile(profiles: dict[str, dict], human_set: str, reps: int, out_dir, fmt, written,
                 bootstrap: str = "runs"):
    """Performance profiles: per model, the fraction of runs whose human-normalised score exceeds tau, with its
    bootstrap 95% band (none for a model with one run per game under the bootstrap over runs)."""
    if not profiles:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for index, (model, p) in enumerate(profiles.items()):
        style = _style(index, len(profiles), len(p["taus"]))
        ax.step(p["taus"], p["fraction"], where="post", color=COLORS[model], linestyle=style["linestyle"],
                linewidth=1.5 + 0.8 * (len(profiles) - 1 - index),
                label=f"{LABELS[model]} ({_count(p['runs'], 'run')}, {_count(p['games'], 'game')}"
                      + (", no band: one run per game" if p["low"] is None else "") + ")")
        if p["low"] is not None:
            ax.fill_between(p["taus"], p["low"], p["high"], step="post", color=COLORS[model], alpha=0.2, linewidth=0)
    ax.axvline(100, color="0.3", linestyle="--", linewidth=1, label="human level (100%)")
    what = "runs redrawn within games" if bootstrap == "runs" else "games redrawn"
    ax.set(title=f"Performance profile, {human_set} human set (band: bootstrap 95% CI, {what}, {reps} samples)",
           xlabel="human-normalised score τ (%)", ylabel="fraction of runs with score > τ", ylim=(-0.02, 1.02))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    save_figure(fig, os.path.join(out_dir, f"performance_profile.{fmt}"), written)
