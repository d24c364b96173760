"""sweep.py's options, defined once (a dataclass of :func:`utils.cli.option` fields), and the grid file.

The command-line options and the keys of a grid file (``--grid FILE.yaml``) are the same fields of
:class:`SweepOptions`; a grid file may also hold ``name``, ``run_options`` and ``model_options`` (see
:data:`GRID_ONLY_KEYS`). Precedence: an option typed on the command line, then the grid file, then the default.
run.py options after ``--`` come after the grid's ``run_options`` (so they win where both set one).
"""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import MISSING, dataclass, fields

from plotting.common import DOUBLE, PAPER_GAMES, RUN_MODELS
from utils.cli import (
    ArgumentParser,
    UserError,
    add_options,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
    seed_int,
    shell_words,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = (*RUN_MODELS, *(DOUBLE + model for model in RUN_MODELS))
GRID_ONLY_KEYS = {
    "name": "the sweep's name: its folder is sweeps/<name> unless --sweep_dir is given (default: the file's name)",
    "run_options": "run.py options for every run: a mapping {option: value} or a list of command-line words",
    "model_options": "extra run.py options for one model: {Dsqn: {T: 64}, ...}",
}


@dataclass
class SweepOptions:
    # -- the grid ---------------------------------------------------------------------------------------------------
    games: tuple = option(("all",), "games: env ids or short names (Breakout), or all for the paper's 17",
                          metavar="GAME")
    models: tuple = option(("Dqn", "Dsqn"), "models: " + " ".join(MODELS) + " (Double...: that model with --double)",
                           choices=MODELS, metavar="MODEL")
    seeds: tuple = option((0, 1, 2), "seeds", parse=seed_int, metavar="SEED")
    convert: tuple = option(("all",), "convert.py run for each finished Dqn run: all games, or only these games; "
                                      "--no-convert: none", metavar="GAME")
    convert_options: str | None = option(None, "convert.py options for every conversion run, e.g. \"--time 500\"",
                                         parse=shell_words)
    play_games: int = option(30, "games of the play run (run.py --method play --use_spike_monitor) of each finished "
                                 "training run's best checkpoint: its score and, for a spiking network, its spikes "
                                 "and operations; 0: no play runs", parse=non_negative_int)
    play_options: str | None = option(None, "extra run.py options of every play run, e.g. \"--eval_epsilon 0.01\"",
                                      parse=shell_words)
    grid: str | None = option(None, "read the grid (any of these option names) from a YAML file, e.g. "
                                    "grids/paper.yaml")
    sweep_dir: str | None = option(None, "the sweep's folder: runs/ (one folder per run), its state and figures/ "
                                         "(default: sweeps/<grid name>, or sweeps/default)")
    # -- where it runs ----------------------------------------------------------------------------------------------
    address: str | None = option(None, "join this Ray cluster (host:port, or auto) instead of starting Ray on this "
                                       "machine")
    num_cpus: int | None = option(None, "CPUs of the local Ray instance (default: all); not with --address",
                                  parse=positive_int)
    cpus_per_run: float = option(1.0, "CPUs each run holds (also its OMP_NUM_THREADS)", parse=positive_float)
    gpus_per_run: float = option(0.0, "GPUs each run holds; a fraction such as 0.25 lets runs share one GPU",
                                 parse=non_negative_float)
    memory_per_run: float | None = option(None, "GB of memory each run reserves in Ray's scheduling, e.g. 9 for the "
                                                "7.2 GB replay memory of 1M transitions (default: none declared)",
                                          parse=positive_float)
    results: str = option("shared", "where the runs write: shared, the sweep folder, which every node must see "
                                    "(auto means the same; return, node-local folders sent back through Ray, is "
                                    "no longer offered)", choices=("shared", "auto", "return"))
    max_retries: int = option(3, "retries (with run.py --resume) of a run whose worker was lost, killed or "
                                 "pre-empted, per invocation", parse=non_negative_int)
    retry_failed: bool = option(False, "also retry the runs that failed for a reason of their own before "
                                       "(exit 2 or 3) with unchanged options")
    object_store_mb: int | None = option(None, "object store of the local Ray instance in MB (default: Ray's)",
                                         parse=positive_int)
    # -- output -----------------------------------------------------------------------------------------------------
    dry_run: bool = option(False, "print the plan and its estimated cost, start nothing")
    benchmark: str | None = option(None, "the benchmark report (JSON) whose rates the cost estimate uses (default: "
                                         "the newest fitting one in docs/benchmarks/)")
    refresh: float = option(5.0, "seconds between refreshes of the progress table", parse=positive_float)
    plot: bool = option(True, "run plot.py on the sweep's runs/ at the end")
    plot_options: str | None = option(None, "extra plot.py options, e.g. \"--format pdf\"", parse=shell_words)


LIST_FIELDS = {f.name for f in fields(SweepOptions) if isinstance(f.default, tuple)}
DEFAULTS = {f.name: f.default for f in fields(SweepOptions) if f.default is not MISSING}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="sweep.py", argument_default=argparse.SUPPRESS,
        description="Train the paper's grid (games x models x seeds, plus conversion runs) on Ray; run.py options "
                    "after --, e.g.  python sweep.py --games Breakout --seeds 0 -- --timestep_num 300 --T 4",
        epilog="Exit status: 0 every run finished, 1 some runs failed or are unfinished (listed), 2 a mistake in "
               "the options, 130 stopped by Ctrl-C (the runs saved their state; the same command continues).")
    for f in fields(SweepOptions):
        if f.name not in LIST_FIELDS:
            continue
        meta = f.metadata
        parser.add_argument(f"--{f.name}", nargs="*" if f.name == "convert" else "+", type=meta["parse"] or str,
                            choices=meta["choices"], metavar=meta["metavar"],
                            help=f"{meta['help']} (default {' '.join(map(str, f.default))})")
    parser.add_argument("--no-convert", dest="convert", action="store_const", const=(),
                        help="no conversion runs")
    add_options(parser, SweepOptions, only=lambda name: name not in LIST_FIELDS)
    return parser


def parse_command_line(argv: list[str]) -> tuple[SweepOptions, list[str], str | None]:
    """The options (command line over grid file over defaults), the run.py words after ``--`` and the grid's
    name."""
    if "--" in argv:
        cut = argv.index("--")
        argv, run_words = argv[:cut], argv[cut + 1:]
    else:
        run_words = []
    given = vars(build_parser().parse_args(argv))
    if given.get("convert") == []:  # --convert with no game: every game
        given["convert"] = ("all",)
    grid, name = {}, None
    if given.get("grid"):
        grid, name = read_grid(given["grid"])
    values = {**DEFAULTS, **{k: v for k, v in grid.items() if k in DEFAULTS}, **given}
    values = {k: tuple(v) if k in LIST_FIELDS else v for k, v in values.items()}
    for local in ("num_cpus", "object_store_mb"):
        if values["address"] and values[local]:
            raise UserError(f"--{local} sizes the local Ray instance; with --address the cluster's nodes declare "
                            "their own (ray start --num-cpus, --object-store-memory)")
    if values["results"] == "return":
        raise UserError("--results return: run folders are no longer sent back through Ray; give --sweep_dir a "
                        "folder that every node sees (a shared file system such as NFS; docs/CLUSTER.md)")
    options = SweepOptions(**values)
    options.grid_run_words = grid.get("run_options", [])  # type: ignore[attr-defined]
    options.model_words = grid.get("model_options", {})  # type: ignore[attr-defined]
    return options, run_words, name


# -- the grid file ----------------------------------------------------------------------------------------------------


def option_words(value, where: str) -> list[str]:
    """run.py / convert.py options from a grid file: a mapping {name: value} (true -> --name, false -> --no-name),
    a list of command-line words, or one string of them."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as error:
            raise UserError(f"{where}: cannot be split into words as a shell would ({error})") from None
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    if isinstance(value, dict):
        words = []
        for key, item in value.items():
            name = str(key).lstrip("-")
            if isinstance(item, bool):
                words.append(f"--{name}" if item else f"--no-{name}")
            elif isinstance(item, (str, int, float)):
                words += [f"--{name}", str(item)]
            else:
                raise UserError(f"{where}: the value of {name} must be a number, a word or true/false")
        return words
    raise UserError(f"{where} must be a mapping of options to values or a list of command-line words")


def _grid_list(value, key: str, path: str, parse) -> list:
    items = value if isinstance(value, list) else [value]
    if isinstance(value, bool) and key == "convert":
        return ["all"] if value else []
    try:
        return [parse(str(item)) for item in items]
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise UserError(f"{path}: {key}: {error}") from None


def read_grid(path: str) -> tuple[dict, str]:
    """The options of a grid file, checked with the same parsers as the command line, and the grid's name."""
    import yaml

    try:
        with open(os.path.expanduser(path), encoding="utf-8") as file:
            data = yaml.safe_load(file)
    except OSError as error:
        raise UserError(f"--grid {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UserError(f"--grid {path}: not valid YAML ({' '.join(str(error).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"--grid {path}: must be a mapping of option names to values")
    known = {f.name: f for f in fields(SweepOptions) if f.name not in ("grid", "dry_run")}
    unknown = sorted(set(data) - set(known) - set(GRID_ONLY_KEYS))
    if unknown:
        raise UserError(f"--grid {path}: unknown key {unknown[0]!r}; known keys: "
                        + ", ".join(sorted([*known, *GRID_ONLY_KEYS])))
    out: dict = {}
    for key, value in data.items():
        if key in GRID_ONLY_KEYS:
            continue
        meta = known[key].metadata
        parse = meta["parse"] or (str if key in LIST_FIELDS or DEFAULTS[key] is None else type(DEFAULTS[key]))
        if key in LIST_FIELDS:
            out[key] = _grid_list(value, key, path, parse)
            bad = [v for v in out[key] if meta["choices"] and v not in meta["choices"]]
            if bad:
                raise UserError(f"{path}: {key}: unknown {bad[0]!r}; choose from {', '.join(meta['choices'])}")
        elif key in ("convert_options", "plot_options", "play_options"):
            out[key] = shlex.join(option_words(value, f"{path}: {key}"))
        elif isinstance(DEFAULTS[key], bool):
            if not isinstance(value, bool):
                raise UserError(f"{path}: {key} must be true or false")
            out[key] = value
        else:
            try:
                out[key] = None if value is None else parse(str(value))
            except (argparse.ArgumentTypeError, ValueError) as error:
                raise UserError(f"{path}: {key}: {error}") from None
            if meta["choices"] and out[key] not in meta["choices"]:
                raise UserError(f"{path}: {key}: {out[key]!r} is not one of {', '.join(meta['choices'])}")
    out["run_options"] = option_words(data.get("run_options"), f"{path}: run_options")
    model_options = data.get("model_options") or {}
    if not isinstance(model_options, dict) or any(m not in MODELS for m in model_options):
        raise UserError(f"{path}: model_options must map model names ({', '.join(MODELS)}) to run.py options")
    out["model_options"] = {m: option_words(v, f"{path}: model_options: {m}") for m, v in model_options.items()}
    name = data.get("name") or os.path.splitext(os.path.basename(path))[0]
    if not isinstance(name, str) or os.sep in name or name.startswith("."):
        raise UserError(f"{path}: name must be a plain folder name")
    return out, name


def expand_games(games) -> list[str]:
    """Short names and ``all`` -> env ids, in the given order, without repeats; unknown games are refused."""
    from environment import UnknownEnvError, check_env_id, full_env_id

    out = []
    for game in games:
        names = PAPER_GAMES if game.lower() == "all" else [game]
        for name in names:
            env_id = full_env_id(name)
            try:
                check_env_id(env_id)
            except UnknownEnvError:
                raise UserError(f"unknown game {game!r}: give an ALE <Game>NoFrameskip-v4 id, a short name such as "
                                "Breakout, or all for the paper's 17 games") from None
            if env_id not in out:
                out.append(env_id)
    return out
