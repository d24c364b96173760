"""Convert a trained Dqn into a spiking network and play it (the conversion-based SNN baseline, docs/METHOD.md).

    python conversion_based_snn/convert.py --game BreakoutNoFrameskip-v4 --model runs/Dqn_BreakoutNoFrameskip-v4_...
    cd conversion_based_snn && python convert.py --model=../runs/Dqn_.../best.pkl --time 500

The game is the checkpoint's (an older bare state dict: the game in the config.json beside it), else --game;
a --game that contradicts the checkpoint is refused.

Steps: (1) play the ANN (epsilon: run.py's evaluation epsilon, 0.05) on the episodic-life env and keep the frame
stacks of the last life of every game that ends with no lives left (a game over; in games without lives also a game
cut by the time limit) until at least --norm_examples states, or until --norm_max_lives lives were played (1,000);
(2) lambda_l = the exact --percentile-th percentile of each layer's pre-activation outputs (conv1 ... fc2) of the
original ANN on them, W_l <- W_l * lambda_{l-1} / lambda_l, b_l <- b_l / lambda_l; (3) play --episode full games on
the episodic-life env with raw rewards (FIRE pressed by the env after each lost life) with the spiking network
simulated for --time steps per action (IF neurons with reset by subtraction, or LIF with a hard reset; one step of
delay per connection, or --schedule same_step), Q_hat = output spike count + final output voltage, the same epsilon;
a game's score is the env's whole raw return (the env's reset steps included), its firing rate the mean over the
greedy steps of its last life (--firing_rate_over).

Writes one run folder, <output_dir>/ConvSNN_<game>_T<time>_<time stamp>/ (never an existing one): config.json,
run.log, result.csv (score,mix,spike per episode, written as each ends), summary.json (scores, agreement, spike
statistics, operation counts and the energy estimate per greedy action), snn.pt (the converted network) and
status.json.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

if __name__ == "__main__":
    from utils.cli import quiet_interrupt

    quiet_interrupt("convert.py")  # Ctrl-C during the imports below: one line

import contextlib
import math
import time
from dataclasses import asdict

from conversion_based_snn.config import ConvertConfig, percentile_type  # noqa: F401 - percentile_type: re-exported
from utils.cli import UserError, apply_gpu_option, check_output_dir, check_run_name, options_parser, run_cli
from utils.runs import trained_checkpoint

PROG = "convert.py"


def build_parser():
    return options_parser(PROG, __doc__, ConvertConfig)


def main(argv: list[str] | None = None) -> None:
    apply_gpu_option(argv)  # before torch is imported
    from environment import check_env_id
    from neural_network import read_checkpoint, trained_game

    given = vars(build_parser().parse_args(argv))
    config = ConvertConfig(**given)
    if not config.model:
        raise UserError("no model given; pass --model PATH to a Dqn checkpoint or run folder saved by run.py")
    model_path, trained = trained_checkpoint(config.model)
    config.output_dir = check_output_dir(config.output_dir or os.path.join(REPO_ROOT, "runs"))
    check_run_name(config.run_name, config.output_dir)
    if "game" in given:
        check_env_id(config.game)  # a mistyped --game is told first
    checkpoint = read_checkpoint(model_path)
    # the game: --game when given (a game other than the trained one gets a note), else the checkpoint's (its
    # metadata, else its run's config.json), else --game's default
    config.game = trained_game(config.model, checkpoint[1], trained, given.get("game"), "--game") or config.game
    convert(config, model_path, checkpoint)


def convert(config: ConvertConfig, model_path: str, checkpoint: tuple) -> None:
    """Convert the Dqn checkpoint at ``model_path`` (``checkpoint``: its :func:`read_checkpoint`) and play it."""
    import numpy as np
    import torch

    from agent.config import Config
    from environment import action_count, check_env_id
    from neural_network import build_network, load_checkpoint, resolve_device
    from utils.logging_setup import close_file_logger, setup_file_logger, write_run_config
    from utils.runlock import lock_run_dir
    from utils.runs import RunFolder, create_run_dir, provenance, timestamp

    epsilon = evaluation_epsilon()
    check_env_id(config.game)
    info = checkpoint[1]
    if info.model != "Dqn":
        raise UserError(f"{config.model} holds a {info.model} network; convert.py converts Dqn (ReLU) checkpoints only")
    device = resolve_device(config.device)
    ann = build_network("Dqn", action_count(config.game), **Config(model="Dqn").network_kwargs())
    load_checkpoint(ann, model_path, checkpoint)  # refuses a checkpoint of another game (its action count)
    ann.to(device).eval().requires_grad_(False)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    run_dir = create_run_dir(config.output_dir, config.run_name or f"ConvSNN_{config.game}_T{config.time}_"
                                                                   f"{timestamp()}")
    lock_run_dir(run_dir)
    logger = setup_file_logger(os.path.join(run_dir, "run.log"))
    record = {**asdict(config), "model": model_path, "program": PROG, "run_name": os.path.basename(run_dir),
              "epsilon": epsilon, "command": " ".join([PROG, *sys.argv[1:]]),
              **provenance(REPO_ROOT, run_dir, device, f"{config.node_type} in plain torch (snn/simulate.py)")}
    write_run_config(os.path.join(run_dir, "config.json"), record)
    RunFolder(run_dir).write_status("running")
    logger.info("convert.py started: %s", record)
    try:
        summary = normalise_and_play(config, ann, model_path, device, rng, run_dir, record, logger, epsilon)
    except BaseException as error:
        with contextlib.suppress(OSError):  # a full disk must not hide the error that stopped the run
            RunFolder(run_dir).write_status("stopped" if isinstance(error, KeyboardInterrupt) else "failed",
                         error=f"{type(error).__name__}: {error}")
        raise
    finally:
        close_file_logger()
    RunFolder(run_dir).write_status("finished")
    print_summary(summary, run_dir)


def evaluation_epsilon() -> float:
    """The epsilon of the epsilon-greedy play, run.py's evaluation epsilon (agent/config.py's default)."""
    from agent.config import Config

    return Config().eval_epsilon


def game_settings(config) -> dict:
    """make_env's game settings of a conversion: its --max_episode_step, and run.py's frame stack and action repeat
    (those the Dqn was trained with)."""
    from agent.config import Config

    trained = Config()
    return dict(max_episode_step=config.max_episode_step, history_len=trained.history_len,
                action_repeat=trained.action_repeat)


def normalise_and_play(config, ann, model_path: str, device, rng, run_dir: str, record: dict, logger,
                       epsilon: float) -> dict:
    """Steps 1-4 of the module docstring; writes snn.pt, result.csv and summary.json into ``run_dir``."""
    from conversion_based_snn.snn import (
        SpikingNetwork,
        collect_normalisation_states,
        compute_lambdas,
        evaluate,
        make_game_env,
        summarise,
    )
    from utils.runs import ProgressFile, RunFolder

    progress = ProgressFile(run_dir, unit="game")  # progress.json, for a watcher such as the sweep
    progress.update("normalise")

    # 1. normalisation data
    started = time.perf_counter()
    norm_env = make_game_env(config.game, seed=config.seed, **game_settings(config))
    states, norm_games = collect_normalisation_states(
        ann, norm_env, config.norm_examples, rng, epsilon, progress=True, keep=config.norm_keep,
        max_lives=config.norm_max_lives,
        on_game=lambda number, g: logger.info(
            "normalisation game %d: %d steps, %d lives, %s, %s", number, g.steps, g.lives,
            "stopped by the life cap" if g.stopped else "cut by the time limit" if g.cut else "ended",
            f"kept the {g.kept} states of its last life" if g.kept else "dropped"),
    )
    norm_env.close()
    norm_lives = int(sum(g.lives for g in norm_games))
    logger.info("normalisation data: %d states from %d games (%d lives), %d games dropped (asked for %d states, "
                "at most %s lives)", len(states), len(norm_games), norm_lives, sum(not g.kept for g in norm_games),
                config.norm_examples, config.norm_max_lives or "any number of")

    # 2. layer-wise normalisation
    lambdas = compute_lambdas(ann, states, config.percentile, config.batch, progress=True)
    del states
    normalisation_seconds = time.perf_counter() - started
    logger.info("lambdas (%sth percentile): %s", config.percentile, lambdas)
    snn = SpikingNetwork.from_ann(ann, lambdas, config.node_type, config.tau, config.schedule).to(device)
    snn.save(os.path.join(run_dir, "snn.pt"))

    # 3-4. play the spiking network; the CSV gets one row per finished episode
    csv_path = os.path.join(run_dir, "result.csv")
    eval_env = make_game_env(config.game, seed=config.seed, **game_settings(config))
    with open(csv_path, "w", encoding="utf-8") as csv_file:
        csv_file.write("score,mix,spike\n")
        csv_file.flush()

        def on_episode(index: int, stats) -> None:
            csv_file.write(f"{stats.score!r},{stats.mix!r},{stats.spike!r}\n")
            csv_file.flush()
            progress.last_eval = (None, float(stats.score))
            progress.update("play", index + 1, config.episode, force=index + 1 == config.episode)
            logger.info("episode %d: score %s, steps %d, mix %.4f, spike %.4f, greedy steps %d, firing rate %s",
                        index + 1, stats.score, stats.steps, stats.mix, stats.spike, stats.greedy_steps,
                        stats.firing_rate)

        progress.update("play", 0, config.episode)
        episodes = evaluate(snn, ann, eval_env, config.episode, config.time, rng, epsilon, progress=True,
                            on_episode=on_episode, firing_rate_over=config.firing_rate_over)
    eval_env.close()

    summary = summarise(episodes, snn.neuron_counts(), config.time)
    summary.update(
        game=config.game, model=model_path, episodes=config.episode, T=config.time, percentile=config.percentile,
        node_type=config.node_type, tau=config.tau if config.node_type == "LIFNodes" else None,
        schedule=config.schedule, seed=config.seed, epsilon=epsilon, device=str(device), lambdas=lambdas,
        layers=list(snn.neuron_shapes()), neuron_shapes={k: list(v) for k, v in snn.neuron_shapes().items()},
        norm_examples=config.norm_examples, norm_states=int(sum(g.kept for g in norm_games)),
        norm_games=len(norm_games), norm_games_dropped=int(sum(not g.kept for g in norm_games)),
        norm_games_cut=int(sum(g.cut for g in norm_games)), norm_lives=norm_lives, norm_keep=config.norm_keep,
        norm_max_lives=config.norm_max_lives, firing_rate_over=config.firing_rate_over,
        normalisation_seconds=normalisation_seconds, csv=csv_path, log=os.path.join(run_dir, "run.log"),
        config=record,
    )
    summary["energy"] = conversion_energy(snn, summary)
    RunFolder(run_dir).write_summary(summary)
    progress.update("finished", config.episode, config.episode, counts="play")
    logger.info("summary: %s", {k: summary[k] for k in ("score_mean", "score_std", "mix_mean", "spike_mean",
                                                           "average_firing_rate", "spikes_per_greedy_action")})
    return summary


def conversion_energy(snn, summary: dict) -> dict | None:
    """MACs of conv1 once (its input is constant over T and its current is computed once) + the measured SOPs per
    greedy action, and the energy estimate (utils/energy.py); None when no greedy step was taken."""
    from utils.energy import snn_energy

    per_layer = {name: summary["sops_per_greedy_action"][name] for name in summary["layers"]}
    if any(value is None for value in per_layer.values()):
        return None
    return snn_energy(snn, per_layer, "conversion")


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_summary(summary: dict, run_dir: str) -> None:
    from utils.energy import format_energy
    from utils.runs import shown

    per_greedy = summary["spikes_per_greedy_action"]
    lines = [
        f"{summary['game']}: {summary['episodes']} episode{'s' if summary['episodes'] != 1 else ''}, "
        f"T={summary['T']}, percentile {summary['percentile']}, "
        f"{summary['node_type']}" + (f" (tau {summary['tau']})" if summary["tau"] is not None else "")
        + f", {summary['schedule']} schedule",
        f"  score: mean {summary['score_mean']:.2f}, std {summary['score_std']:.2f}, max {summary['score_max']:.2f}",
        f"  agreement with the ANN's greedy action: mix {summary['mix_mean']:.4f}, spike {summary['spike_mean']:.4f}",
        f"  average firing rate {_fmt(summary['average_firing_rate'], '.5f')}, "
        f"spikes per greedy action {_fmt(per_greedy['total'], '.1f')}",
        f"  {_fmt(summary['ms_per_action'], '.1f')} ms of SNN simulation per action",
        "  operations " + (format_energy(summary["energy"]) if summary.get("energy") else "n/a (no greedy step)"),
        f"  run folder: {shown(run_dir)} (result.csv, summary.json, run.log, snn.pt)",
    ]
    print("\n".join(lines), flush=True)


#: The errors of the project's modules that are the user's to fix (named: no import before run_cli runs main).
USER_ERRORS = ("neural_network.CheckpointError", "environment.UnknownEnvError",
               "conversion_based_snn.snn.NormalisationError", "neural_network.BackendError")


def cli(argv: list[str] | None = None) -> None:
    run_cli(lambda: main(argv), PROG, user_errors=USER_ERRORS)


if __name__ == "__main__":
    cli()
