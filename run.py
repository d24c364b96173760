"""Train (``--method learn``) or evaluate (``--method play``) a Dqn, Dsqn, DsqnSpike or DsqnIF on an Atari game.

    python run.py --model=Dsqn --env_id=BreakoutNoFrameskip-v4
    python run.py --resume runs/Dsqn_BreakoutNoFrameskip-v4_seed0_2026-11-29_10-00-00
    python run.py --method=play --model_path=runs/Dsqn_BreakoutNoFrameskip-v4_seed0_2026-11-29_10-00-00 \\
        --use_spike_monitor --use_video_recorder
    python run.py --method=robustness --model_path=runs/<run> --robustness=sticky_actions --levels 0 0.25 0.5

Every run writes into its own folder under runs/ (docs/RELIABILITY.md): config.json (every option and the git
commit), run.log, tensorboard/, status.json; learn: best.pkl (the best network: a checkpoint of format 1 with its
model, game, T and weights, neural_network/checkpoint.py) and state/ (the full training state for --resume); play:
summary.json and, with --use_video_recorder, videos/; robustness: robustness.csv and levels/ (one play summary per
level; docs/ROBUSTNESS.md). Play and robustness take the model, the game and T from the checkpoint (an older bare
state dict: its game from the config.json beside it); a --model that contradicts it is refused, a given
--env_id other than the trained game is played as asked (with a note).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import random
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, REPO_ROOT)

from utils.cli import (
    UserError,
    apply_gpu_option,
    check_output_dir,
    check_path,
    check_run_name,
    given_options,
    options_parser,
    run_cli,
)


def build_parser():
    from agent.config import Config

    return options_parser("run.py", __doc__, Config)


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
    apply_gpu_option(argv)
    given = given_options(build_parser().parse_args(argv))
    if "env_id" in given:  # a short name such as Breakout, as sweep.py takes it
        from environment import full_env_id

        given["env_id"] = full_env_id(given["env_id"])
    if "resume" in given:
        config, run_dir = resumed_config(given)
    else:
        from agent.config import Config

        config, run_dir = Config(**given), None
        config.output_dir = check_output_dir(given.get("output_dir", os.path.join(REPO_ROOT, "runs")))
    check_config(config, given)
    try:
        run_method(config, run_dir, given)
    finally:
        from utils.logging_setup import close_file_logger

        close_file_logger()


def run_method(config, run_dir: str | None, given: dict) -> None:
    if config.method == "learn":
        learn(config, run_dir)
    elif config.method == "robustness":
        robustness(config, given)
    else:
        play(config, given)


# -- options ----------------------------------------------------------------------------------------------------------


def resumed_config(given: dict):
    """The saved configuration of the run folder ``--resume`` names, with the overrides a resume allows."""
    from agent.config import RESUMABLE_OVERRIDES, Config
    from agent.persistence import check_run_folder
    from utils.cli import check_saved_options
    from utils.runlock import lock_run_dir
    from utils.runs import CONFIG_JSON, RunFolder

    run_dir = check_path(given["resume"], "--resume")
    folder = RunFolder(run_dir)
    config_path = folder.file(CONFIG_JSON)
    if not os.path.isdir(run_dir) or not folder.exists(CONFIG_JSON):
        raise UserError(f"--resume {given['resume']}: no run folder there (it has no config.json); give a folder "
                        "that run.py created under runs/")
    check_run_folder(run_dir)  # files where files belong, nothing pointing outside the folder
    lock_run_dir(run_dir)  # before anything is read: a live run's folder is refused
    try:
        saved = folder.load(CONFIG_JSON)
    except (OSError, ValueError):
        raise UserError(f"{config_path} is damaged (not JSON); the run cannot be resumed") from None
    check_saved_options(Config, saved, config_path)
    config = Config.from_dict(saved)
    if config.method != "learn":
        raise UserError(f"--resume {given['resume']} is a play run; only learning runs can be resumed")
    refused = sorted(name for name, value in given.items()
                     if name not in RESUMABLE_OVERRIDES | {"resume"} and value != saved.get(name))
    if refused:
        raise UserError(f"--{refused[0]} cannot change when a run is resumed (it was "
                        f"{saved.get(refused[0])!r}); start a new run instead. Options a resume may change: "
                        + ", ".join(f"--{name}" for name in sorted(RESUMABLE_OVERRIDES - {"output_dir"})))
    for name, value in given.items():
        if name in RESUMABLE_OVERRIDES - {"output_dir"}:
            setattr(config, name, value)
    config.resume = run_dir
    return config, run_dir


def check_config(config, given: dict) -> None:
    """Refuse option combinations that cannot work, before any file is written."""
    from agent.config import check_methods
    from agent.robustness import check_options
    from environment import check_env_id

    check_methods(config.method, given)  # an option of a group that does not apply to this method
    check_options(config, given)  # --method robustness: the perturbation and its levels (agent/robustness.py)
    if config.method in ("play", "robustness"):
        if not config.model_path:
            raise UserError(f"--method {config.method} needs --model_path: a checkpoint (.pkl) or a run folder "
                            "saved by run.py")
    else:
        check_env_id(config.env_id)
        if config.resume and "run_name" in given:
            raise UserError("--run_name names a new run; --resume continues the run folder it is given")
        minimum = (config.history_len + 1) * config.minibatch_size
        if config.replay_memory_size < minimum:
            raise UserError(f"--replay_memory_size {config.replay_memory_size} is too small: it must be at least "
                            f"(history_len + 1) x minibatch_size = {minimum} so that a minibatch can always be "
                            "sampled")
        if config.timestep_num > 0 and config.replay_start_size < config.minibatch_size:
            raise UserError(f"--replay_start_size ({config.replay_start_size}) must be at least --minibatch_size "
                            f"({config.minibatch_size}) so that the first update has a minibatch")
    if config.compile and given.get("cuda_graphs"):
        raise UserError("--cuda_graphs captures the eager networks; it cannot be combined with --compile (whose CUDA "
                        "mode captures graphs of its own): choose one")
    if config.use_video_recorder and importlib.util.find_spec("moviepy") is None:
        raise UserError("--use_video_recorder needs moviepy: pip install -e \".[video]\"")
    if config.action_repeat != 4:
        raise UserError("--action_repeat other than 4 is not supported by the ALE pipeline of this repo")
    if config.start_over and not config.resume:
        raise UserError("--start_over is for --resume: it starts a run folder's training again from step 0")
    check_run_name(config.run_name, config.output_dir)


def run_name(config, time_str: str) -> str:
    model = ("Double" if config.double else "") + config.model
    kind = {"learn": f"seed{config.seed}", "robustness": f"robustness-{config.robustness}"}.get(config.method, "play")
    return config.run_name or f"{model}_{config.env_id}_{kind}_{time_str}"


def start_run(config, run_dir: str | None, n_actions: int, device=None):
    """Create the run folder (exclusively) unless one is given (resumed, or made earlier); write its config.json
    (the options, the command, and the provenance: library versions, device, neuron kernel, git state) and status;
    return the folder and the run's logger."""
    from neural_network.backend import CHOSEN, describe_choice
    from utils.logging_setup import setup_file_logger, write_run_config
    from utils.runlock import lock_run_dir
    from utils.runs import RunFolder, create_run_dir, provenance, timestamp

    if run_dir is None:
        run_dir = create_run_dir(config.output_dir, run_name(config, timestamp()))
    lock_run_dir(run_dir)  # this process's folder (a resume took it before reading it)
    logger = setup_file_logger(os.path.join(run_dir, "run.log"))
    kernel = dict(CHOSEN) or None  # the neuron kernel prepare_device chose (spiking networks)
    write_run_config(os.path.join(run_dir, "config.json"), {
        **config.to_dict(), "program": "run.py", "run_name": os.path.basename(run_dir), "n_actions": n_actions,
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        **provenance(REPO_ROOT, run_dir, device, kernel["kernel"] if kernel else None),
        **({"neuron_kernel_probe": kernel["probe"]} if kernel else {}),
    })
    if kernel:
        logger.info("%s", describe_choice(kernel))
    RunFolder(run_dir).write_status("running")
    return run_dir, logger


# -- learn ------------------------------------------------------------------------------------------------------------


def learn(config, run_dir: str | None) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from agent import Agent, StopRequest, Trainer, random_streams
    from agent.evaluation import evaluation_envs
    from agent.persistence import REPLAY_FRAMES, check_resume, replay_file_allocated, start_over
    from environment import make_env
    from environment.vector import evaluation_env
    from neural_network import build_network, compile_network
    from replay_memory import ReplayMemory
    from utils.cli import Diverged, Stopped, set_recovery
    from utils.runs import RunFolder, remove_stale_temporaries, shown
    from utils.tracking import Tracking, check

    check(config)  # --track, --capture_video: their packages
    device = prepare_device(config)
    seed_everything(config.seed)
    env_args = dict(**config.env_kwargs(), seed=config.seed)
    train_env = make_env(config.env_id, training=True, **env_args)
    eval_env = evaluation_envs(functools.partial(evaluation_env, env_id=config.env_id, **env_args), config, device)
    n_actions = int(eval_env.action_space.n)
    net = build_network(config.model, n_actions, **config.network_kwargs())
    target_net = build_network(config.model, n_actions, **config.network_kwargs())
    # A resume checks the whole folder and its saved state before it writes anything (agent/persistence.py).
    loaded = check_resume(run_dir, config) if config.resume else None
    allocated = run_dir is not None and replay_file_allocated(os.path.join(run_dir, "state", REPLAY_FRAMES), config)
    ReplayMemory.check_fits(config.replay_memory_size, config.history_len,
                            folder=config.output_dir if config.save_replay and not allocated else None)
    run_dir, logger = start_run(config, run_dir, n_actions, device)
    set_recovery(f"continue with  python run.py --resume {shown(run_dir)}")
    rngs = random_streams(config.seed)
    if config.resume:
        if config.start_over:
            start_over(os.path.join(run_dir, "state"))  # asked for in so many words: the old state goes
        remove_stale_temporaries(os.path.join(run_dir, "state"))  # of a save that was cut off
    frames_file = os.path.join(run_dir, "state", REPLAY_FRAMES) if config.save_replay else None
    if frames_file:
        os.makedirs(os.path.dirname(frames_file), exist_ok=True)
    replay = ReplayMemory(config.replay_memory_size, history_len=config.history_len, seed=rngs["replay"],
                          check_memory=False, frames_file=frames_file)
    if config.compile:
        compile_network(net.to(device), device)
        compile_network(target_net.to(device), device)
    agent = Agent(config, net, device, target_net=target_net, rngs=rngs)
    with StopRequest() as stop:
        trainer = Trainer(config, agent, train_env, eval_env, replay, run_dir, writer=None, stop=stop)
        manifest = trainer.run.resume(loaded) if config.resume else None
        if config.resume:
            agent.set_learning_rate(config.learning_rate)  # an override takes effect on the restored optimizer
            where = (f"resumed at learning step {manifest['timestep']} (exploration step {manifest['explored']})"
                     if manifest else "no training state was saved before it stopped: starting from the beginning")
            logger.info("Run %s %s; options: %s", run_dir, where, json.dumps(config.to_dict(), sort_keys=True))
            print(f"{shown(run_dir)}: {where}"
                  + ("" if not manifest or manifest["replay"] else "; the replay memory was not saved "
                     "(--save_replay), so it is refilled with a new exploration phase first"), flush=True)
        else:
            logger.info("Run %s: %s", run_dir, json.dumps(config.to_dict(), sort_keys=True))
        tracking = Tracking(config, run_dir, fresh=not manifest)  # before the writer: W&B mirrors its scalars
        trainer.writer = SummaryWriter(log_dir=os.path.join(run_dir, "tensorboard"),
                                       purge_step=trainer.run.purge_step())
        tracking.attach(trainer)
        try:
            best = trainer.learn()
        except (Stopped, Diverged):
            raise  # they wrote their own status
        except BaseException as error:
            with contextlib.suppress(OSError):  # a full disk must not hide the error that stopped the run
                RunFolder(run_dir).write_status("failed", timestep=trainer.p.timestep,
                                                error=f"{type(error).__name__}: {error}")
            raise
        finally:
            trainer.writer.close()
            tracking.close()
            replay.close_journal()
            train_env.close()
            eval_env.close()
    print(f"best average evaluation score {best:g}; best network: {shown(os.path.join(run_dir, 'best.pkl'))}")
    print(f"run folder: {shown(run_dir)}  (tensorboard --logdir {shown(run_dir)})")


def prepare_device(config):
    """Resolve --device, tune the CPU allocator, and select the neuron kernel of a spiking network."""
    from neural_network import choose_backend, is_spiking, resolve_device
    from neural_network.backend import apply_numeric_regime, forget_choice

    device = resolve_device(config.device)
    if device.type == "cpu":
        from utils.malloc import tune_glibc_malloc

        tune_glibc_malloc()  # large CPU tensors without a page fault storm: see utils/malloc.py
    if config.bf16 and device.type == "cuda" and is_spiking(config.model):
        raise UserError("--bf16 is refused on CUDA: SpikingJelly has no bf16 neuron kernel there and falls back to its "
                        "PyTorch reference, 16x slower than float32 on an H200; leave --bf16 out (float32 with CUDA "
                        "graphs is the fast path)")
    apply_numeric_regime(config.deterministic, device)
    forget_choice()
    if is_spiking(config.model):  # the neuron kernel, probed on the device (neural_network/backend.py)
        choose_backend(config.backend, device)
    return device


# -- play -------------------------------------------------------------------------------------------------------------


def load_played_network(config, given: dict):
    """The network --model_path names, built and loaded; its model, game and T taken from the checkpoint unless
    given (a file written before format 1: its game from its run's config.json), a --model that contradicts it
    refused, and the game's mode and difficulty checked. Returns (checkpoint path, network, device,
    spiking)."""
    from agent.robustness import check_game_settings
    from environment import action_count, check_env_id
    from neural_network import build_network, is_spiking, load_checkpoint, read_checkpoint, trained_game
    from utils.runs import trained_checkpoint

    model_path, trained = trained_checkpoint(config.model_path)
    checkpoint = read_checkpoint(model_path)
    info = checkpoint[1]
    if "model" in given and info.model != config.model:
        raise UserError(f"{config.model_path} holds a {info.model} network, not {config.model}; "
                        f"pass --model={info.model} or leave --model out")
    config.model = info.model
    game = trained_game(config.model_path, info, trained, given.get("env_id"), "--env_id")
    if game is not None:
        config.env_id = game
    if "double" not in given and "double" in trained:  # only the run folder's name shows it
        config.double = trained["double"]
    check_env_id(config.env_id)
    check_game_settings(config.env_id, config.game_mode, config.game_difficulty)
    if "T" not in given and info.T:  # a spiking network's T; a given T is a run-time choice
        config.T = info.T
    spiking = is_spiking(config.model)
    device = prepare_device(config)
    seed_everything(config.seed)
    net = build_network(config.model, action_count(config.env_id), **config.network_kwargs())
    load_checkpoint(net, model_path, checkpoint)  # refuses another game's (its action count) before any write
    return model_path, net, device, spiking


def play(config, given: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from agent import Agent, random_streams, summarize_play
    from agent.evaluation import play_games
    from agent.robustness import observation_attack, perturbation_settings, play_envs
    from neural_network import SpikeMonitor
    from utils.energy import format_energy
    from utils.runs import ProgressFile, RunFolder, create_run_dir, shown, timestamp

    model_path, net, device, spiking = load_played_network(config, given)
    run_dir = create_run_dir(config.output_dir, run_name(config, timestamp()))
    eval_env = play_envs(config, device, os.path.join(run_dir, "videos") if config.use_video_recorder else None)
    _, logger = start_run(config, run_dir, net.n_actions, device)
    agent = Agent(config, net, device, rngs=random_streams(config.seed))
    attack = observation_attack(config, agent)  # --fgsm_epsilon (agent/robustness.py)
    monitor = SpikeMonitor(net) if config.use_spike_monitor and spiking else None
    if config.use_spike_monitor and not spiking:
        logger.info("--use_spike_monitor has no effect on %s: it has no spiking neurons", config.model)
    logger.info("Start playing %s", model_path)
    writer = SummaryWriter(log_dir=os.path.join(run_dir, "tensorboard"))
    progress = ProgressFile(run_dir, unit="game")  # progress.json, for a watcher such as the sweep
    progress.update("play", 0, config.eval_episode_num)

    def write_scalars(episode, result) -> None:
        progress.last_eval = (None, float(result.score))
        progress.update("play", episode + 1, config.eval_episode_num)
        for tag, value in (("score", result.score), ("max_q", result.max_q), ("max_q_std", result.max_q_std)):
            writer.add_scalar(f"play/{tag}", value, episode)
        if result.spike_stats is not None:
            writer.add_scalar("play/episode_avg_firing_rate", result.spike_stats.average_firing_rate, episode)

    try:
        results = play_games(agent, eval_env, config, monitor, attack, on_episode=write_scalars)
    finally:
        writer.close()
        eval_env.close()
    summary = summarize_play(results)
    summary.update(model=config.model, env_id=config.env_id, model_path=model_path, T=config.T,
                   perturbation=perturbation_settings(config), max_episode_step=config.max_episode_step,
                   truncated=[bool(r.truncated) for r in results],
                   truncated_games=sum(bool(r.truncated) for r in results))
    energy = play_energy(agent.net, summary, spiking)
    if energy is not None:
        summary["energy"] = energy
    RunFolder(run_dir).write_summary(summary)
    RunFolder(run_dir).write_status("finished")
    progress.update("finished", config.eval_episode_num, config.eval_episode_num, counts="play")
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
    print(f"run folder: {shown(run_dir)}")


def robustness(config, given: dict) -> None:
    """--method robustness: the checkpoint played at every level of one perturbation (agent/robustness.py)."""
    from agent.robustness import ROBUSTNESS_CSV, run_sweep, sweep_levels
    from utils.runs import RunFolder, create_run_dir, shown, timestamp

    model_path, net, device, _ = load_played_network(config, given)
    levels = sweep_levels(config)
    config.levels = levels
    run_dir = create_run_dir(config.output_dir, run_name(config, timestamp()))
    _, logger = start_run(config, run_dir, net.n_actions, device)
    logger.info("Robustness of %s to %s at levels %s", model_path, config.robustness, levels)
    try:
        run_sweep(config, net, device, run_dir, logger, levels, model_path)
    except BaseException as error:
        RunFolder(run_dir).write_status("failed", error=f"{type(error).__name__}: {error}")
        raise
    RunFolder(run_dir).write_status("finished")
    print(f"{ROBUSTNESS_CSV}: {shown(os.path.join(run_dir, ROBUSTNESS_CSV))}\nrun folder: {shown(run_dir)}")


def play_energy(net, summary: dict, spiking: bool) -> dict | None:
    """Operation counts and energy estimate per greedy action (utils/energy.py); None for a spiking network
    played without the spike monitor (its SOPs are unknown)."""
    from utils.energy import ann_energy, snn_energy

    if not spiking:
        return ann_energy(net)
    if "layer_sops_per_action" not in summary:
        return None
    return snn_energy(net, summary["layer_sops_per_action"], "dsqn")


#: The errors of the project's modules that are the user's to fix (named: no import before run_cli runs main).
USER_ERRORS = ("environment.UnknownEnvError", "neural_network.CheckpointError", "neural_network.BackendError",
               "replay_memory.ReplayMemoryTooLargeError", "agent.persistence.StateError")


def cli(argv: list[str] | None = None) -> None:
    """run.py as a program: one line and an exit status for what is not a bug (see utils.cli.run_cli)."""
    run_cli(lambda: main(argv), "run.py", user_errors=USER_ERRORS)


if __name__ == "__main__":
    cli()
