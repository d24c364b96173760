"""Every option of convert.py in one place (its command-line options are these fields, ``utils.cli.option``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from agent.config import Config
from conversion_based_snn.snn.evaluate import FIRING_RATE_SPANS
from conversion_based_snn.snn.normalise import KEEP_RULES, MAX_LIVES
from conversion_based_snn.snn.simulate import NODE_TYPES, SCHEDULES
from utils.cli import non_negative_int, option, positive_float, positive_int, seed_int


def percentile_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 100], got {text}") from None
    if not 0.0 < value <= 100.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must lie in (0, 100], got {text}")
    return value


@dataclass
class ConvertConfig:
    game: str = option("BreakoutNoFrameskip-v4", "ALE env id (default: the game the checkpoint was trained on, from "
                                                 "its metadata or its run's config.json)")
    model: str | None = option(None, "a Dqn checkpoint saved by run.py, or its run folder (its best.pkl); relative "
                                     "to the current directory")
    episode: int = option(30, "full games to play", parse=positive_int)
    time: int = option(500, "simulation steps T per action", parse=positive_int)
    seed: int = option(0, "random seed", parse=seed_int)
    percentile: float = option(99.9, "percentile p in (0, 100] for the normalisation", parse=percentile_type)
    node_type: str = option("SubtractiveResetIFNodes", "IF neurons with reset by subtraction, or LIF with a hard "
                                                       "reset to 0", choices=NODE_TYPES)
    tau: float = option(2.0, "LIF time constant: leak factor exp(-1/tau) per step", parse=positive_float)
    schedule: str = option("delayed", "delayed: a layer's input at step t comes from the spikes of the layer below "
                                      "at step t-1; same_step: at step t", choices=SCHEDULES)
    norm_examples: int = option(15000, "collect the last lives of games until at least this many states",
                                parse=positive_int)
    norm_max_lives: int = option(MAX_LIVES, "stop collecting the normalisation data after this many lives "
                                            "whatever the number of states (the original's cap); 0: no cap",
                                 parse=non_negative_int)
    norm_keep: str = option("no_lives_left", "normalisation data: no_lives_left keeps the last life of a game that "
                                             "ends with no lives left (the original's rule: in games without lives "
                                             "also one cut by the time limit); game_over keeps only games that end "
                                             "by a game over and stops after 10 cut games in a row",
                            choices=KEEP_RULES)
    firing_rate_over: str = option("last_life", "a game's firing rate averages the greedy steps of its last life "
                                                "(the original's) or of the whole game", choices=FIRING_RATE_SPANS)
    batch: int = option(256, "batch size of the normalisation passes", parse=positive_int)
    max_episode_step: int = option(Config.max_episode_step, "agent steps after which a game is truncated",
                                   parse=positive_int)
    device: str = option("auto", "auto: cuda if available, else cpu", choices=("auto", "cuda", "cpu"))
    gpu: str | None = option(None, "set CUDA_VISIBLE_DEVICES to this (default: leave it as the scheduler set it)")
    output_dir: str | None = option(None, "the folder that receives the run folder (default: runs/ in the "
                                          "repository)")
    run_name: str | None = option(None, "the run folder's name (default: ConvSNN_<game>_T<time>_<time stamp>); an "
                                        "existing name is never reused")
