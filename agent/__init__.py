"""The DQN agent shared by all four networks, and the run configuration with the paper's defaults."""

from .agent import Agent, EpisodeResult, SpikeStats, summarize_play
from .config import HYPERPARAMETERS, Config, epsilon_at

__all__ = ["Agent", "Config", "EpisodeResult", "HYPERPARAMETERS", "SpikeStats", "epsilon_at", "summarize_play"]
