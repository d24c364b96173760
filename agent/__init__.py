"""The DQN agent shared by all four networks, its training loop, evaluation, and the run configuration."""

from .agent import Agent, random_streams
from .config import Config, epsilon_at
from .evaluation import EpisodeResult, SpikeStats, evaluate, run_episode, summarize_play
from .lifecycle import StopRequest
from .training import Trainer

__all__ = [
    "Agent",
    "Config",
    "EpisodeResult",
    "SpikeStats",
    "StopRequest",
    "Trainer",
    "epsilon_at",
    "evaluate",
    "random_streams",
    "run_episode",
    "summarize_play",
]
