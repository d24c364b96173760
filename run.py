"""Train (``--method learn``) or evaluate (``--method play``) a Dqn, Dsqn, DsqnSpike or DsqnIF on an Atari game.

    python run.py --model=Dsqn --env_id=BreakoutNoFrameskip-v4
    python run.py --model=Dsqn --env_id=BreakoutNoFrameskip-v4 --method=play --model_path=model/Dsqn_...pkl \\
        --use_spike_monitor --use_video_recorder

Outputs (named {Model}_{env_id}_{method}_{time}):
    log/<name>.log          the text log (log_config.yaml)
    log/<name>/             TensorBoard event files
    log/<name>.json         the full run configuration and the git commit
    log/<name>_summary.json play only: the play report, spike statistics included
    model/{Model}_{env_id}_{time}.pkl   learn only: the best checkpoint (a plain state dict)
    monitor/<name>/         play with --use_video_recorder: one mp4 per episode
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from datetime import datetime

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, REPO_ROOT)

from utils.cli import ArgumentParser, UserError, non_negative_int, positive_float, positive_int, probability, run_cli  # noqa: E402


ARG_TYPES = {
    "timestep_num": non_negative_int,
    "eval_freq": positive_int,
    "eval_episode_num": positive_int,
    "eval_epsilon": probability,
    "max_episode_step": positive_int,
    "minibatch_size": positive_int,
    "replay_memory_size": positive_int,
    "history_len": positive_int,
    "target_net_update_freq": positive_int,
    "discount_factor": probability,
    "action_repeat": positive_int,
    "update_freq": positive_int,
    "learning_rate": positive_float,
    "init_epsilon": probability,
    "final_epsilon": probability,
    "final_epsilon_frame": non_negative_int,
    "replay_start_size": non_negative_int,
    "T": positive_int,
    "tau": float,
    "v_threshold": positive_float,
    "v_reset": float,
    "alpha": positive_float,
}


def build_parser() -> argparse.ArgumentParser:
    from agent.config import HYPERPARAMETERS, Config
    from neural_network.backend import BACKENDS
    from neural_network.networks import MODELS, SURROGATES

    defaults = Config()
    parser = ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=defaults.model, choices=MODELS)
    parser.add_argument("--env_id", default=defaults.env_id, help="an Atari <Game>NoFrameskip-v4 id (default %(default)s)")
    parser.add_argument("--method", default=defaults.method, choices=["learn", "play"])
    parser.add_argument("--device", default=defaults.device, choices=["auto", "cuda", "cpu"],
                        help="auto: cuda if available, else cpu")
    parser.add_argument("--gpu", default=defaults.gpu, help="CUDA_VISIBLE_DEVICES for this run (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--model_path", default=None, help="play: the checkpoint (.pkl) to evaluate")
    parser.add_argument("--use_video_recorder", action=argparse.BooleanOptionalAction, default=False,
                        help="play: write an mp4 of every episode under monitor/")
    parser.add_argument("--use_spike_monitor", action=argparse.BooleanOptionalAction, default=False,
                        help="play: record firing rates and spikes per greedy action of a spiking network")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="torch.compile the networks (CUDA: with CUDA graphs); pays off on long runs, "
                             "see README Performance")
    parser.add_argument("--output_dir", default=REPO_ROOT,
                        help="where log/, model/ and monitor/ are written (default: the repository root)")
    parser.add_argument("--backend", default=defaults.backend, choices=BACKENDS,
                        help="neuron kernel: auto (SpikingJelly's choice), torch, cuda (alias cupy) or triton")
    for name, _, default, help_text in HYPERPARAMETERS:
        kwargs = dict(type=ARG_TYPES[name], default=default, help=f"{help_text} (default {default})")
        if name == "T":
            kwargs.update(default=None, help=f"{help_text} (default {default}; play: the checkpoint's T)")
        parser.add_argument(f"--{name}", **kwargs)
    parser.add_argument("--surrogate_func", default=defaults.surrogate_func, choices=SURROGATES)
    return parser


def run_name_and_paths(config, time_str: str, output_dir: str) -> dict:
    """File names of this run; a numbered suffix keeps them from clashing with an earlier run's files."""
    log_dir, model_dir = os.path.join(output_dir, "log"), os.path.join(output_dir, "model")
    base = f"{config.model}_{config.env_id}_{config.method}_{time_str}"
    model_base = f"{config.model}_{config.env_id}_{time_str}"
    suffix, n = "", 0
    while True:
        name = base + suffix
        paths = {
            "name": name,
            "log": os.path.join(log_dir, f"{name}.log"),
            "tensorboard": os.path.join(log_dir, name),
            "config": os.path.join(log_dir, f"{name}.json"),
            "summary": os.path.join(log_dir, f"{name}_summary.json"),
            "model": os.path.join(model_dir, f"{model_base}{suffix}.pkl"),
            "video": os.path.join(output_dir, "monitor", name),
        }
        taken = [p for key, p in paths.items() if key != "name" and os.path.exists(p)]
        if not taken:
            return paths
        n += 1
        suffix = f"_{n}"


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu

    import torch

    from agent import Agent, Config
    from environment import check_env_id, make_env
    from neural_network import (
        build_network,
        compile_network,
        is_spiking,
        load_checkpoint,
        read_checkpoint,
        select_backend,
    )
    from replay_memory import ReplayMemory
    from utils.logging_setup import setup_file_logger, write_run_config

    config = Config(**{k: v for k, v in vars(args).items() if k in Config.__dataclass_fields__})
    check_env_id(config.env_id)
    if config.device == "auto":
        config.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    if config.action_repeat != 4:
        raise UserError("--action_repeat other than 4 is not supported by the ALE pipeline of this repo")
    if config.method == "learn" and config.timestep_num > 0 and config.replay_start_size < config.minibatch_size:
        raise UserError(
            f"--replay_start_size ({config.replay_start_size}) must be at least --minibatch_size "
            f"({config.minibatch_size}) so that the first update has a minibatch"
        )

    checkpoint_info = None
    if config.method == "play":
        if not config.model_path:
            raise UserError("--method play needs --model_path PATH to a checkpoint saved by run.py")
        _, checkpoint_info = read_checkpoint(config.model_path)
        if checkpoint_info.model != config.model:
            raise UserError(
                f"{config.model_path} holds a {checkpoint_info.model} network, not {config.model}; "
                f"pass --model={checkpoint_info.model}"
            )
    if config.T is None:
        config.T = checkpoint_info.T if checkpoint_info is not None and checkpoint_info.T else 64

    device = torch.device(config.device)
    if device.type == "cpu":
        from utils.malloc import tune_glibc_malloc

        tune_glibc_malloc()  # large CPU tensors without a page fault storm: see utils/malloc.py
    spiking = is_spiking(config.model)
    if spiking:
        select_backend(config.backend, device)

    time_str = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    paths = run_name_and_paths(config, time_str, os.path.abspath(args.output_dir))
    seed_everything(config.seed)
    eval_env = make_env(
        config.env_id, training=False, max_episode_step=config.max_episode_step, history_len=config.history_len,
        seed=config.seed,
        video_dir=paths["video"] if config.method == "play" and config.use_video_recorder else None,
    )
    n_actions = int(eval_env.action_space.n)
    net = build_network(config.model, n_actions, **config.network_kwargs())

    replay = train_env = None
    if config.method == "learn":
        # Allocate (and check) the replay memory before any file of this run is written.
        replay = ReplayMemory(config.replay_memory_size, history_len=config.history_len, seed=config.seed)
        train_env = make_env(
            config.env_id, training=True, max_episode_step=config.max_episode_step,
            history_len=config.history_len, seed=config.seed,
        )
    else:
        load_checkpoint(net, config.model_path)

    from torch.utils.tensorboard import SummaryWriter

    logger = setup_file_logger(paths["log"])
    write_run_config(paths["config"], {**config.to_dict(), "run_name": paths["name"], "n_actions": n_actions,
                                       "command": " ".join(sys.argv)})
    logger.info("Run %s: %s", paths["name"], json.dumps(config.to_dict(), sort_keys=True))
    writer = SummaryWriter(log_dir=paths["tensorboard"])
    if config.compile:
        compile_network(net.to(device), device)
    agent = Agent(config, net, device, writer=writer)

    try:
        if config.method == "learn":
            target_net = build_network(config.model, n_actions, **config.network_kwargs())
            if config.compile:
                compile_network(target_net.to(device), device)
            best = agent.learn(train_env, eval_env, replay, target_net, paths["model"])
            print(f"best average evaluation score {best:g}; model saved to {os.path.relpath(paths['model'])}")
            print(f"log: {os.path.relpath(paths['log'])}  tensorboard: {os.path.relpath(paths['tensorboard'])}")
        else:
            play(agent, config, eval_env, writer, logger, paths, spiking)
    finally:
        writer.close()
        eval_env.close()
        if train_env is not None:
            train_env.close()


def play(agent, config, eval_env, writer, logger, paths, spiking: bool) -> None:
    """Evaluate a saved network for eval_episode_num episodes and report PAPER_NOTES §5's numbers."""
    from tqdm import tqdm

    from agent import summarize_play
    from utils.energy import format_energy
    from utils.logging_setup import write_json

    if config.use_spike_monitor and not spiking:
        logger.info("--use_spike_monitor has no effect on %s: it has no spiking neurons", config.model)
    agent.spike_monitor = config.use_spike_monitor and spiking
    logger.info("Start playing %s", config.model_path)
    results = []
    bar = tqdm(range(config.eval_episode_num), desc="play", unit="episode", dynamic_ncols=True)
    for episode in bar:
        result = agent.evaluate(eval_env, 1, config.eval_epsilon)[0]
        results.append(result)
        writer.add_scalar("play/score", result.score, episode)
        writer.add_scalar("play/max_q", result.max_q, episode)
        writer.add_scalar("play/max_q_std", result.max_q_std, episode)
        if result.spike_stats is not None:
            writer.add_scalar("play/episode_avg_firing_rate", result.spike_stats.average_firing_rate, episode)
        bar.set_postfix_str(f"score {result.score:g}")
    summary = summarize_play(results)
    summary.update(model=config.model, env_id=config.env_id, model_path=config.model_path, T=config.T)
    energy = play_energy(agent.net, summary, spiking)
    if energy is not None:
        summary["energy"] = energy
    write_json(paths["summary"], summary)
    keys = ["average_score", "max_score", "score_std", "average_max_q", "average_max_q_std"]
    if "average_firing_rate" in summary:
        keys += ["average_firing_rate", "spike_num_per_action"]
    line = "\t".join(f"{k}: {summary[k]:.6g}" for k in keys)
    logger.info("Playing is done.\n%s", line)
    if "layer_firing_rates" in summary:
        logger.info("layer_firing_rates: %s", json.dumps(summary["layer_firing_rates"]))
    print(line.replace("\t", "  "))
    if energy is not None:
        logger.info("operations %s; per layer: MACs %s, SOPs %s", format_energy(energy),
                    json.dumps(energy["macs_per_action"]), json.dumps(energy["sops_per_action"]))
        print(f"operations {format_energy(energy)}")
    elif spiking:
        logger.info("no operation counts or energy estimate: they need the spike counts of --use_spike_monitor")
    print(f"log: {os.path.relpath(paths['log'])}  summary: {os.path.relpath(paths['summary'])}")


def play_energy(net, summary: dict, spiking: bool) -> dict | None:
    """Operation counts and energy estimate per greedy action (utils/energy.py); None for a spiking network
    played without the spike monitor (its SOPs are unknown)."""
    from utils.energy import ann_energy, snn_energy

    if not spiking:
        return ann_energy(net)
    if "layer_sops_per_action" not in summary or not summary.get("greedy_actions"):
        return None
    return snn_energy(net, summary["layer_sops_per_action"], "dsqn")


if __name__ == "__main__":
    from environment import UnknownEnvError
    from neural_network import BackendError, CheckpointError
    from replay_memory import ReplayMemoryTooLargeError

    run_cli(main, "run.py", user_errors=(UnknownEnvError, CheckpointError, BackendError, ReplayMemoryTooLargeError))
