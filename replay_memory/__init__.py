"""Experience replay memory for DQN that stores every 84x84 frame once."""

from .replay_memory import Batch, ReplayMemory, ReplayMemoryTooLargeError

__all__ = ["Batch", "ReplayMemory", "ReplayMemoryTooLargeError"]
