"""The command line of utils/plot.py: options, input and output checks, and the order of the work."""

from __future__ import annotations

import argparse
import os
import tempfile

import plotting
from plotting import aggregation, figures, robustness, statistics, tables
from plotting.common import (
    BASELINES,
    CONVERSION,
    DOUBLE,
    HUMAN_SETS,
    MODEL_ORDER,
    PAPER_GAMES,
    REPO_ROOT,
    Notes,
    family,
    load_references,
    model_order,
    short_game,
)
from plotting.loading import find_runs
from utils.cli import ArgumentParser, UserError, non_negative_int, positive_int

PROG = "plot.py"
DEFAULT_RUNS_DIRS = [os.path.join(REPO_ROOT, "runs")]
DEFAULT_OUTPUT_DIR = os.path.join(REPO_ROOT, "figures")
MAX_BOOTSTRAP_SAMPLES = 200_000


def bootstrap_samples(text: str) -> int:
    value = positive_int(text)
    if value > MAX_BOOTSTRAP_SAMPLES:
        raise argparse.ArgumentTypeError(f"at most {MAX_BOOTSTRAP_SAMPLES}, got {text}")
    return value


#: The options of the layouts that run.py and convert.py wrote before every run had its own folder.
RETIRED = {"--log_dir": "run.py's old log/ layout", "--conversion_log_dir": "convert.py's old log/ layout",
           "--conversion_result_dir": "convert.py's old result/ layout"}


class Retired(argparse.Action):
    """An option of a layout that is no longer read: one line that says what to do instead."""

    def __call__(self, parser, namespace, values, option_string=None):
        option = self.option_strings[0]
        parser.error(f"{option}: {RETIRED[option]} is no longer read; plot the run folders of runs/ with --runs_dir")


def build_parser() -> ArgumentParser:
    summary, _, details = plotting.__doc__.partition("\n\n")
    parser = ArgumentParser(prog=PROG, description=summary, epilog=details,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs_dir", nargs="+", default=None,
                        help="folder(s) of run folders written by run.py and convert.py (default: runs/ of the "
                        "repository, when it exists)")
    for option in RETIRED:
        parser.add_argument(option, nargs="*", action=Retired, help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR, help="where figures and tables go "
                        "(default: figures/ of the repository)")
    parser.add_argument("--games", nargs="+", default=None, help="games to report, e.g. Breakout or "
                        "BreakoutNoFrameskip-v4 (default: the paper's 17 games and any other game with data)")
    parser.add_argument("--models", nargs="+", choices=MODEL_ORDER, default=list(MODEL_ORDER), metavar="MODEL",
                        help=f"models to report: {', '.join(MODEL_ORDER)} (default: all; Double* = run.py runs with "
                        f"double Q-learning; {CONVERSION} = the conversion SNNs of convert.py, one model per T, "
                        "schedule and neuron type)")
    parser.add_argument("--score", choices=("auto", "play", "best_eval"), default="auto",
                        help="the one rule of every score in the tables and statistics: play = the play average of "
                        "a run's best checkpoint, best_eval = its best evaluation during training; auto (default): "
                        "play when every run of every compared model was played, else best_eval")
    parser.add_argument("--format", choices=("png", "pdf"), default="png", help="figure format (default png)")
    parser.add_argument("--human_set", choices=tuple(HUMAN_SETS), default="nature",
                        help="human scores of the HNS: nature (Mnih et al. 2015, default) or atari57 (later set; "
                        "only 4 games available)")
    parser.add_argument("--bootstrap", choices=("runs", "games"), default="runs",
                        help="what the bootstrap of the 95%% intervals redraws: runs (default) = the runs (seeds) "
                        "within each game, so a model with one seed per game gets no interval; games = the games, "
                        "each with all its runs")
    parser.add_argument("--bootstrap_samples", type=bootstrap_samples, default=5000,
                        help="bootstrap samples of the 95%% intervals (default %(default)s)")
    parser.add_argument("--bootstrap_seed", type=non_negative_int, default=0,
                        help="seed of the bootstrap: the same seed gives the same intervals (default %(default)s)")
    parser.add_argument("--max_points", type=positive_int, default=10000,
                        help="advanced: values kept per scalar tag (a longer tag, i.e. learn/loss, keeps a uniform "
                        "sample; default %(default)s)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def _input_dirs(given) -> list[str]:
    """Explicitly given folders must exist; a missing default folder just contributes nothing. A folder is read
    once, however often it is named."""
    if given is None:
        folders = [d for d in DEFAULT_RUNS_DIRS if os.path.isdir(d)]
    else:
        folders = [os.path.abspath(os.path.expanduser(d)) for d in given]
        for folder in folders:
            if not os.path.isdir(folder):
                raise UserError(f"--runs_dir: folder {folder} not found")
    unique = {}
    for folder in folders:
        unique.setdefault(os.path.realpath(folder), folder)
    return list(unique.values())


def _writable(folder: str) -> str | None:
    """None when a file can be created in ``folder``, else why not."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as error:
        return error.strerror or str(error)


def _check_output_dir(out_dir: str) -> None:
    """Fail before any work when the output folder cannot be written (it is only created later)."""
    existing = out_dir
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"--output_dir: {existing} is not a folder")
    reason = _writable(existing)
    if reason is not None:
        raise UserError(f"--output_dir: cannot write to {existing}: {reason}")


def _select_games(args, groups, all_groups, notes: Notes) -> tuple[list[str], list[str]]:
    found_games = {game for _, game in groups}
    if args.games:
        known = {g.lower(): g for g in (*PAPER_GAMES, *sorted({game for _, game in all_groups}))}
        games = list(dict.fromkeys(known.get(short_game(g).lower(), short_game(g)) for g in args.games))
    else:
        games = list(PAPER_GAMES) + sorted(found_games - set(PAPER_GAMES))
    skipped = [g for g in games if g not in found_games]
    if skipped:
        notes.add(f"no data for {len(skipped)} game{'s' if len(skipped) != 1 else ''}, skipped: {', '.join(skipped)}")
    return [g for g in games if g in found_games], skipped


def _game_figures(game, groups, models, refs, args, out_dir, written, notes) -> list[dict]:
    """The figures of one game; returns its energy rows."""
    figures.plot_curves(game, groups, models, refs, args.human_set, out_dir, args.format, written, notes)
    spikes, energy, energy_rows = {}, {}, []
    for model in models:
        group = groups.get((model, game))
        if group is None:
            continue
        stats = aggregation.spike_stats(group, notes) if model not in BASELINES else None
        if stats is not None:
            spikes[model] = stats
        ops = aggregation.energy_stats(group, notes)
        if ops is not None:
            energy[model] = ops
            energy_rows.append({
                "game": game, "model": model, "T": " ".join(str(t) for t in stats["T"]) if stats else None,
                "macs_per_action": ops["macs"], "sops_per_action": ops["sops"],
                "energy_uj_per_action": ops["energy_uj"],
                "average_firing_rate": stats["average_firing_rate"] if stats else None,
                "spikes_per_action": stats["spikes_per_action"] if stats else None,
                "greedy_actions": stats["greedy_actions"] if stats else None, "source": ops["source"],
            })
    if spikes:
        figures.plot_spikes(game, spikes, out_dir, args.format, written)
    if energy:
        figures.plot_energy(game, energy, out_dir, args.format, written)
    return energy_rows


def _write_outputs(args, games, groups, all_groups, models, refs, rows, summary, per_seed, stats, profiles, notes,
                   inputs, out_dir, written, rule: str, horizons: set) -> list[dict]:
    from tqdm import tqdm

    energy_rows = []
    for game in tqdm(games, desc="figures", unit="game", disable=args.no_progress):
        energy_rows += _game_figures(game, groups, models, refs, args, out_dir, written, notes)
    figures.plot_hns(rows, summary, models, args.human_set, out_dir, args.format, written, rule)
    figures.plot_profile(profiles, args.human_set, args.bootstrap_samples, out_dir, args.format, written,
                         args.bootstrap)
    out = {name: os.path.join(out_dir, name) for name in ("scores.md", "scores.csv", "energy.csv",
                                                          "per_seed_scores.csv", "statistics.md", "statistics.csv")}
    tables.write_csv(out["scores.csv"], tables.SCORE_COLUMNS, rows)
    tables.write_csv(out["energy.csv"], tables.ENERGY_COLUMNS, energy_rows)
    tables.write_csv(out["per_seed_scores.csv"], tables.PER_SEED_COLUMNS, per_seed)
    tables.write_statistics(out["statistics.md"], out["statistics.csv"], stats, per_seed, args.human_set,
                            args.bootstrap_samples, args.bootstrap_seed, args.bootstrap, rule, horizons)
    double = any(model.startswith(DOUBLE) for model, _ in all_groups)
    tables.write_markdown(out["scores.md"], rows, summary, energy_rows, args.human_set, notes, inputs, double, rule,
                          horizons)
    written += list(out.values())
    return energy_rows


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    runs_dirs = _input_dirs(args.runs_dir)
    inputs = {"run folders": runs_dirs}
    if not runs_dirs:
        raise UserError(f"no input folder found ({DEFAULT_RUNS_DIRS[0]} does not exist); pass --runs_dir with the "
                        "folder(s) that hold the run folders of run.py and convert.py")
    out_dir = os.path.abspath(os.path.expanduser(args.output_dir))
    _check_output_dir(out_dir)
    refs = load_references()
    notes = Notes()
    models = [m for m in MODEL_ORDER if m in args.models]
    selected = tuple(models)  # the --models choices (ConvSNN: every conversion variant)
    wanted_games = {short_game(g).lower() for g in args.games} if args.games else None

    def keep(model: str, game: str) -> bool:  # Dqn and DoubleDqn are always read: they are the % bases
        return (family(model) in selected or model in BASELINES) and (wanted_games is None
                                                                       or game.lower() in wanted_games)

    learn, play = find_runs(runs_dirs, notes, args.max_points, progress=not args.no_progress, keep=keep)
    robust = robustness.find_runs(runs_dirs, notes, keep)  # run.py --method robustness (plotting/robustness.py)
    all_groups = aggregation.make_groups(learn, play)  # the bases stay even when --models leaves them out
    groups = {k: g for k, g in all_groups.items() if family(k[0]) in selected}
    # every conversion variant (T, schedule, neuron type) found is a model of its own, in the place of ConvSNN
    models = model_order([m for m in models if m != CONVERSION] + [k[0] for k in groups if family(k[0]) == CONVERSION])
    games, skipped = _select_games(args, groups, all_groups, notes)
    if not games and not robust:
        raise UserError("no run data for the selected games and models in " + ", ".join(runs_dirs))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output_dir: cannot create {out_dir}: {error.strerror}") from None
    if not games:  # robustness runs only
        robust_rows, written = _write_robustness(robust, models, args, out_dir, notes)
        return {"rows": [], "written": written, "skipped": skipped, "robustness_rows": robust_rows}

    compared = [g for (m, game), g in all_groups.items() if game in games and (m in models or m in BASELINES)]
    rule = aggregation.choose_rule(args.score, compared, learn, notes)
    horizons = {h for group in compared for h in aggregation.group_horizons(group)}
    rows = aggregation.score_rows(all_groups, games, models, refs, args.human_set, notes, rule)
    summary = aggregation.hns_summary(rows, models)
    per_seed_all = aggregation.per_seed_rows(all_groups, games, list(dict.fromkeys([*models, *BASELINES])), refs,
                                             args.human_set, learn, rule)
    per_seed = [r for r in per_seed_all if r["model"] in models]
    stats, profiles = statistics.compute(per_seed_all, models, args.bootstrap_samples, args.bootstrap_seed,
                                         args.bootstrap)
    robust_rows, written = _write_robustness(robust, models, args, out_dir, notes)
    try:
        energy_rows = _write_outputs(args, games, groups, all_groups, models, refs, rows, summary, per_seed, stats,
                                     profiles, notes, inputs, out_dir, written, rule, horizons)
    except OSError as error:
        target = error.filename2 or error.filename  # os.replace(temporary, target) names the target second
        where = f" {target}" if target else ""
        raise UserError(f"--output_dir: cannot write{where}: {error.strerror or error}") from None
    print(f"{len(rows)} score row{'s' if len(rows) != 1 else ''} for {len(games)} game{'s' if len(games) != 1 else ''}"
          f"; wrote {len(written)} files to {out_dir}")
    return {"rows": rows, "summary": summary, "energy_rows": energy_rows, "written": written, "skipped": skipped,
            "per_seed": per_seed, "statistics": stats, "robustness_rows": robust_rows, "rule": rule,
            "horizons": sorted(horizons)}


def _write_robustness(robust, models, args, out_dir, notes) -> tuple[list[dict], list[str]]:
    """robustness_<study>_<game> figures, robustness.md and robustness.csv (plotting/robustness.py)."""
    try:
        rows, written = robustness.write_outputs(robust, models, args.format, out_dir, notes)
    except OSError as error:
        raise UserError(f"--output_dir: cannot write {error.filename2 or error.filename or ''}: "
                        f"{error.strerror or error}") from None
    if rows:
        print(f"{len(rows)} robustness rows; wrote {len(written)} files to {out_dir}")
    return rows, written
