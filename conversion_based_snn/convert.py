"""Convert a trained Dqn into a spiking network and play it (the conversion-based SNN baseline, PAPER_NOTES §6).

    python conversion_based_snn/convert.py --game BreakoutNoFrameskip-v4 --model model/Dqn_....pkl
    cd conversion_based_snn && python convert.py --model=../model/Dqn_....pkl --time 500

Steps: (1) play the ANN (epsilon 0.05) on the episodic-life env and keep the frame stacks of the last life of every
game that ends (games cut by the time limit are dropped) until at least --norm_examples states; (2) lambda_l = the
exact --percentile-th percentile of each layer's pre-activation outputs (conv1 ... fc2) of the original ANN on
them, W_l <- W_l * lambda_{l-1} / lambda_l, b_l <- b_l / lambda_l; (3) play --episode full games on the
episodic-life env with raw rewards (FIRE pressed by the env after each lost life) with the spiking network
simulated for --time steps per action (IF neurons with reset by subtraction, or LIF with a hard reset; one step
of delay per connection, or --schedule same_step), Q_hat = output spike count + final output voltage,
epsilon 0.05.

Writes conversion_based_snn/result/game_{game}_episode_{n}_time_{T}_percentile_{p}.csv (score,mix,spike per
episode; never overwritten: an existing name gets a suffix _1, _2, ...), appends to
conversion_based_snn/log/{game}_{T}.log and writes a JSON summary next to it ({game}_{T}.json, same suffix rule),
spike statistics and the operation counts / energy estimate per greedy action (utils/energy.py) included.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from conversion_based_snn.snn import (  # noqa: E402
    LAYER_NAMES,
    NODE_TYPES,
    SCHEDULES,
    NormalisationError,
    SpikingNetwork,
    collect_normalisation_states,
    compute_lambdas,
    evaluate,
    make_game_env,
    summarise,
)
from environment import UnknownEnvError, check_env_id  # noqa: E402
from neural_network import CheckpointError, build_network, load_checkpoint, read_checkpoint  # noqa: E402
from utils.cli import ArgumentParser, UserError, positive_float, positive_int, run_cli  # noqa: E402
from utils.energy import format_energy, snn_energy  # noqa: E402
from utils.logging_setup import setup_file_logger, write_run_config  # noqa: E402

PROG = "convert.py"
EPSILON = 0.05


def percentile_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 100], got {text}") from None
    if not 0.0 < value <= 100.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must lie in (0, 100], got {text}")
    return value


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="BreakoutNoFrameskip-v4", help="ALE env id (default %(default)s)")
    parser.add_argument("--model", default=None, help="path of a Dqn checkpoint saved by run.py (relative to the "
                        "current directory)")
    parser.add_argument("--episode", type=positive_int, default=30, help="full games to play (default %(default)s)")
    parser.add_argument("--time", type=positive_int, default=500, help="simulation steps T per action "
                        "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--percentile", type=percentile_type, default=99.9,
                        help="percentile p in (0, 100] for the normalisation (default %(default)s)")
    parser.add_argument("--device", choices=("cuda", "cpu", "auto"), default="auto",
                        help="auto: cuda if available (default %(default)s)")
    parser.add_argument("--gpu", default="0", help="sets CUDA_VISIBLE_DEVICES (default %(default)s)")
    parser.add_argument("--node_type", choices=NODE_TYPES, default="SubtractiveResetIFNodes",
                        help="IF neurons with reset by subtraction, or LIF with a hard reset to 0 "
                        "(default %(default)s)")
    parser.add_argument("--tau", type=positive_float, default=2.0,
                        help="LIF time constant: leak factor exp(-1/tau) per step (default %(default)s)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="delayed",
                        help="delayed: a layer's input at step t comes from the spikes of the layer below at step "
                        "t-1; same_step: at step t (default %(default)s)")
    parser.add_argument("--norm_examples", type=positive_int, default=15000,
                        help="collect the last lives of games until at least this many states "
                        "(default %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=256,
                        help="batch size of the normalisation passes (default %(default)s)")
    parser.add_argument("--max_episode_step", type=positive_int, default=18000,
                        help="advanced: agent steps after which a game is truncated (default %(default)s)")
    parser.add_argument("--output_dir", default=HERE,
                        help="advanced: the folder that receives result/ and log/ (default: the folder of convert.py)")
    return parser


def create_new_file(path: str) -> str:
    """Create ``path``, or ``stem_1.ext``, ``stem_2.ext``, ... if it exists; never touches an existing file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    stem, ext = os.path.splitext(path)
    candidate, number = path, 0
    while True:
        try:
            with open(candidate, "x", encoding="utf-8"):
                return candidate
        except FileExistsError:
            number += 1
            candidate = f"{stem}_{number}{ext}"


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(choice)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu  # before anything initialises CUDA
    check_env_id(args.game)
    if not args.model:
        raise UserError("no model given; pass --model PATH to a Dqn checkpoint saved by run.py")
    model_path = os.path.abspath(os.path.expanduser(args.model))
    _, info = read_checkpoint(model_path)
    if info.model != "Dqn":
        raise UserError(f"{args.model} holds a {info.model} network; convert.py converts Dqn (ReLU) checkpoints only")
    device = resolve_device(args.device)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    eval_env = make_game_env(args.game, seed=args.seed, max_episode_step=args.max_episode_step)
    n_actions = int(eval_env.action_space.n)
    if info.n_actions != n_actions:
        raise UserError(
            f"{args.model} has {info.n_actions} actions but {args.game} has {n_actions}; "
            "was it trained on another game?"
        )
    ann = build_network("Dqn", n_actions)
    load_checkpoint(ann, model_path)
    ann.to(device).eval().requires_grad_(False)

    game = args.game
    output_dir = os.path.abspath(os.path.expanduser(args.output_dir))
    log_path = os.path.join(output_dir, "log", f"{game}_{args.time}.log")
    logger = setup_file_logger(log_path)
    config = {**vars(args), "model": model_path, "output_dir": output_dir, "device": str(device), "epsilon": EPSILON}
    logger.info("convert.py started: %s", config)

    # 1. normalisation data
    started = time.perf_counter()
    norm_env = make_game_env(game, seed=args.seed, max_episode_step=args.max_episode_step)
    states, norm_games = collect_normalisation_states(
        ann, norm_env, args.norm_examples, rng, EPSILON, progress=True,
        on_game=lambda number, g: logger.info("normalisation game %d: %d steps, %s", number, g.steps,
                                              "cut by the time limit: dropped" if g.cut
                                              else f"kept the {g.kept} states of its last life"),
    )
    norm_env.close()
    logger.info("normalisation data: %d states from %d games, %d games dropped (asked for %d)", len(states),
                len(norm_games), sum(g.cut for g in norm_games), args.norm_examples)

    # 2. layer-wise normalisation
    lambdas = compute_lambdas(ann, states, args.percentile, args.batch, progress=True)
    del states
    normalisation_seconds = time.perf_counter() - started
    logger.info("lambdas (%sth percentile): %s", args.percentile, lambdas)
    snn = SpikingNetwork.from_ann(ann, lambdas, args.node_type, args.tau, args.schedule).to(device)

    # 3-4. play the spiking network; the CSV gets one row per finished episode
    csv_name = f"game_{game}_episode_{args.episode}_time_{args.time}_percentile_{args.percentile}.csv"
    csv_path = create_new_file(os.path.join(output_dir, "result", csv_name))
    with open(csv_path, "w", encoding="utf-8") as csv_file:
        csv_file.write("score,mix,spike\n")
        csv_file.flush()

        def on_episode(index: int, stats) -> None:
            csv_file.write(f"{stats.score!r},{stats.mix!r},{stats.spike!r}\n")
            csv_file.flush()
            logger.info("episode %d: score %s, steps %d, mix %.4f, spike %.4f, greedy steps %d, firing rate %s",
                        index + 1, stats.score, stats.steps, stats.mix, stats.spike, stats.greedy_steps,
                        stats.firing_rate)

        episodes = evaluate(snn, ann, eval_env, args.episode, args.time, rng, EPSILON, progress=True,
                            on_episode=on_episode)
    eval_env.close()

    summary = summarise(episodes, snn.neuron_counts(), args.time)
    summary.update(
        game=game, model=model_path, episodes=args.episode, T=args.time, percentile=args.percentile,
        node_type=args.node_type, tau=args.tau if args.node_type == "LIFNodes" else None, schedule=args.schedule,
        seed=args.seed,
        epsilon=EPSILON, device=str(device), lambdas=lambdas, layers=list(LAYER_NAMES),
        neuron_shapes={name: list(shape) for name, shape in snn.neuron_shapes().items()},
        norm_examples=args.norm_examples, norm_states=int(sum(g.kept for g in norm_games)),
        norm_games=len(norm_games), norm_games_dropped=int(sum(g.cut for g in norm_games)),
        normalisation_seconds=normalisation_seconds, csv=csv_path, log=log_path, config=config,
    )
    summary["energy"] = conversion_energy(snn, summary)
    json_path = create_new_file(os.path.join(output_dir, "log", f"{game}_{args.time}.json"))
    write_run_config(json_path, summary)
    logger.info("summary: %s", {k: summary[k] for k in ("score_mean", "score_std", "mix_mean", "spike_mean",
                                                           "average_firing_rate", "spikes_per_greedy_action")})
    if summary["energy"] is not None:
        logger.info("operations %s; per layer: MACs %s, SOPs %s", format_energy(summary["energy"]),
                    summary["energy"]["macs_per_action"], summary["energy"]["sops_per_action"])
    logger.info("wrote %s and %s", csv_path, json_path)
    print_summary(summary, csv_path, log_path, json_path)


def conversion_energy(snn: SpikingNetwork, summary: dict) -> dict | None:
    """MACs of conv1 once (its input is constant over T and its current is computed once) + the measured SOPs per
    greedy action, and the energy estimate (utils/energy.py); None when no greedy step was taken."""
    per_layer = {name: summary["sops_per_greedy_action"][name] for name in LAYER_NAMES}
    if any(value is None for value in per_layer.values()):
        return None
    return snn_energy(snn, per_layer, "conversion")


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_summary(summary: dict, csv_path: str, log_path: str, json_path: str) -> None:
    per_greedy = summary["spikes_per_greedy_action"]
    lines = [
        f"{summary['game']}: {summary['episodes']} episodes, T={summary['T']}, percentile {summary['percentile']}, "
        f"{summary['node_type']}" + (f" (tau {summary['tau']})" if summary["tau"] is not None else "")
        + f", {summary['schedule']} schedule",
        f"  score: mean {summary['score_mean']:.2f}, std {summary['score_std']:.2f}, max {summary['score_max']:.2f}",
        f"  agreement with the ANN's greedy action: mix {summary['mix_mean']:.4f}, spike {summary['spike_mean']:.4f}",
        f"  average firing rate {_fmt(summary['average_firing_rate'], '.5f')}, "
        f"spikes per greedy action {_fmt(per_greedy['total'], '.1f')}",
        f"  {_fmt(summary['ms_per_action'], '.1f')} ms of SNN simulation per action",
        "  operations " + (format_energy(summary["energy"]) if summary.get("energy") else "n/a (no greedy step)"),
        f"  results: {csv_path}",
        f"  summary: {json_path}",
        f"  log:     {log_path}",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    run_cli(main, PROG, user_errors=(CheckpointError, UnknownEnvError, NormalisationError))
