"""One DQN agent for all four networks: acting epsilon-greedily and the learning rule.

The learning rule (docs/METHOD.md) on a minibatch of transitions (s, a, r, done, s')::

    y      = r + gamma * (1 - done) * max_a' Q_target(s', a')                 (vanilla DQN, the paper's)
    y      = r + gamma * (1 - done) * Q_target(s', argmax_a' Q_online(s', a'))   (--double: Double DQN)
    loss   = SmoothL1(Q_online(s, a), y),   one Adam step

The training loop that calls it is in :mod:`agent.training`, evaluation and play in :mod:`agent.evaluation`.
"""

from __future__ import annotations

import contextlib

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
        self.bf16 = config.bf16 and net.spiking  # --bf16: spiking networks only
        # CUDA graphs: by default on CUDA (not with --compile, whose CUDA mode captures graphs of its own)
        graphs = config.cuda_graphs and not config.compile and self.device.type == "cuda"
        # --deterministic: the same Adam arithmetic (capturable) with and without graphs, so both give the same bits
        capturable = graphs or (config.deterministic and self.device.type == "cuda")
        self.target_net = None
        if target_net is not None:
            self.target_net = target_net.to(device)
            self.target_net.load_state_dict(self.net.state_dict())
            self.target_net.eval()
            self.target_net.requires_grad_(False)
            # capturable: Adam's step count lives on the device, so that its step can be replayed in a CUDA graph
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate, capturable=capturable)
            self.loss_fn = nn.SmoothL1Loss()
        self.graphs = None
        if graphs:  # act and update replayed as CUDA graphs (agent/cuda_graphs.py)
            from .cuda_graphs import CudaGraphs

            self.graphs = CudaGraphs(self)

    # -- acting -----------------------------------------------------------------------------------------------------

    def autocast(self):
        """--bf16: the spiking networks' forward passes in bfloat16 (torch.autocast on this device); else nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    @torch.no_grad()
    def q_values(self, frame_stack: np.ndarray) -> torch.Tensor:
        """Q-values of one frame stack (uint8 [history_len, 84, 84]) as a 1-D float32 tensor on the CPU."""
        return self.q_values_batch(np.asarray(frame_stack)[None])[0]

    @torch.no_grad()
    def q_values_batch(self, frame_stacks: np.ndarray) -> torch.Tensor:
        """Q-values of a batch of frame stacks (uint8 [B, history_len, 84, 84]) as a [B, n_actions] float32 tensor
        on the CPU: one forward pass (the samples of a batch do not interact: no normalisation across it)."""
        q = self.graphs.q_values(frame_stacks) if self.graphs is not None else None
        if q is not None:
            return q
        state = torch.from_numpy(np.ascontiguousarray(frame_stacks)).to(self.device)
        with self.autocast():
            q = self.net(state)
        return q.float().cpu()

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
        with self.autocast():
            next_q = self.target_net(next_states).float()
            if self.config.double:
                best = self.net(next_states).argmax(dim=1, keepdim=True)
        if self.config.double:
            next_value = next_q.gather(1, best).squeeze(1)
        else:
            next_value = next_q.max(dim=1).values
        return rewards + self.config.discount_factor * (1.0 - dones) * next_value

    def loss(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_states: torch.Tensor,
             dones: torch.Tensor) -> torch.Tensor:
        """SmoothL1(Q_online(s, a), y) on device tensors (the fields of a replay_memory.Batch, in its order)."""
        y = self.td_target(rewards, dones, next_states)
        with self.autocast():
            q = self.net(states).float().gather(1, actions.unsqueeze(1)).squeeze(1)
        return self.loss_fn(q, y)

    def update(self, batch) -> torch.Tensor:
        """One Adam step on a minibatch (replay_memory.Batch); returns the loss as a tensor (no device sync)."""
        loss = self.graphs.update(batch) if self.graphs is not None else None
        if loss is not None:
            return loss
        loss = self.loss(*(tensor.to(self.device, non_blocking=True) for tensor in batch))
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
