"""One DQN agent for all four networks: acting epsilon-greedily and the learning rule.

The learning rule (docs/METHOD.md) on a minibatch of transitions (s, a, r, done, s')::

    y      = r + gamma * (1 - done) * max_a' Q_target(s', a')                 (vanilla DQN, the paper's)
    y      = r + gamma * (1 - done) * Q_target(s', argmax_a' Q_online(s', a'))   (--double: Double DQN)
    loss   = SmoothL1(Q_online(s, a), y),   one Adam step

The training loop that calls it is in :mod:`agent.training`, evaluation and play in :mod:`agent.evaluation`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from neural_network import QNetwork

from .config import Config


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for exploration (epsilon-greedy during training), replay sampling and
    evaluation, spawned from one seed: changing how much one of them draws never changes the others."""
    names = ("explore", "replay", "evaluate")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


class Agent:
    """Acts with the online network and, given a target network, learns (the ``update`` rule above)."""

    def __init__(self, config: Config, net: QNetwork, device: torch.device, target_net: QNetwork | None = None,
                 rngs: dict[str, np.random.Generator] | None = None):
        self.config = config
        self.device = device
        self.net = net.to(device)
        self.n_actions = net.n_actions
        self.rngs = rngs if rngs is not None else random_streams(config.seed)
        self.target_net = None
        if target_net is not None:
            self.target_net = target_net.to(device)
            self.target_net.load_state_dict(self.net.state_dict())
            self.target_net.eval()
            self.target_net.requires_grad_(False)
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate)
            self.loss_fn = nn.SmoothL1Loss()

    # -- acting -----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def q_values(self, frame_stack: np.ndarray) -> torch.Tensor:
        """Q-values of one frame stack (uint8 [history_len, 84, 84]) as a 1-D tensor on the CPU."""
        state = torch.from_numpy(np.asarray(frame_stack)).unsqueeze(0).to(self.device)
        return self.net(state)[0].cpu()

    def act(self, frame_stack: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[int, torch.Tensor | None]:
        """Epsilon-greedy action drawn with ``rng``; also returns the Q-values when the action was the greedy one."""
        if rng.random() < epsilon:
            return int(rng.integers(self.n_actions)), None
        q = self.q_values(frame_stack)
        return int(q.argmax()), q

    # -- learning ---------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def td_target(self, rewards: torch.Tensor, dones: torch.Tensor, next_states: torch.Tensor) -> torch.Tensor:
        """y = r + gamma * (1 - done) * (the target network's value of the next state), see the module docstring."""
        next_q = self.target_net(next_states)
        if self.config.double:
            best = self.net(next_states).argmax(dim=1, keepdim=True)
            next_value = next_q.gather(1, best).squeeze(1)
        else:
            next_value = next_q.max(dim=1).values
        return rewards + self.config.discount_factor * (1.0 - dones) * next_value

    def update(self, batch) -> torch.Tensor:
        """One Adam step on a minibatch (replay_memory.Batch); returns the loss as a tensor (no device sync)."""
        device = self.device
        states = batch.states.to(device, non_blocking=True)
        actions = batch.actions.to(device, non_blocking=True)
        y = self.td_target(batch.rewards.to(device, non_blocking=True), batch.dones.to(device, non_blocking=True),
                           batch.next_states.to(device, non_blocking=True))
        q = self.net(states).gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = self.loss_fn(q, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def sync_target(self) -> None:
        """Hard copy of the online network into the target network."""
        self.target_net.load_state_dict(self.net.state_dict())

    def set_learning_rate(self, learning_rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    def weights_are_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.net.parameters())
