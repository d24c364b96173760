"""Evaluation and play: full games on the evaluation env, and the play report (docs/METHOD.md, Play).

An evaluation plays whole games (all lives, raw score) epsilon-greedily at ``eval_epsilon`` with its own random
stream. It records, per game, the score, the largest Q of a greedy action and the std over actions of the Q
vector at that state, and, when a :class:`~neural_network.SpikeMonitor` watches a spiking network, the spikes and
synaptic operations of every greedy action (the paper counts greedy actions only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from utils.energy import layer_sops


@dataclass
class SpikeStats:
    """Spike counts of the greedy actions of one or more games."""

    T: int
    neurons: dict[str, int] = field(default_factory=dict)
    spikes: dict[str, float] = field(default_factory=dict)  # per layer, summed over the greedy actions
    sops: dict[str, float] = field(default_factory=dict)  # per (source) layer: spikes x fan-out, summed likewise
    actions: int = 0
    rates: list[float] = field(default_factory=list)  # overall firing rate of each greedy action

    def add(self, counts: dict[str, torch.Tensor], neurons: dict[str, int],
            sops: dict[str, torch.Tensor] | None = None) -> None:
        """Add one greedy action: per layer its spike count (and synaptic operations), summed over T."""
        values = {name: float(count.sum()) for name, count in counts.items()}
        self._accumulate(self.spikes, values)
        self._accumulate(self.sops, {name: float(value.sum()) for name, value in (sops or {}).items()})
        self.neurons = dict(neurons)
        self.actions += 1
        self.rates.append(sum(values.values()) / (sum(neurons.values()) * self.T))

    def merge(self, other: SpikeStats) -> None:
        self._accumulate(self.spikes, other.spikes)
        self._accumulate(self.sops, other.sops)
        self.neurons = other.neurons or self.neurons
        self.actions += other.actions
        self.rates.extend(other.rates)

    @staticmethod
    def _accumulate(total: dict[str, float], values: dict[str, float]) -> None:
        for name, value in values.items():
            total[name] = total.get(name, 0.0) + value

    @property
    def average_firing_rate(self) -> float:
        return float(np.mean(self.rates)) if self.rates else math.nan

    def _per_action(self, values: dict[str, float]) -> dict[str, float]:
        return {name: value / self.actions for name, value in values.items()} if self.actions else {}

    def layer_spikes_per_action(self) -> dict[str, float]:
        return self._per_action(self.spikes)

    def layer_sops_per_action(self) -> dict[str, float]:
        """Per (source) layer: synaptic operations of its spikes per greedy action (see utils/energy.py)."""
        return self._per_action(self.sops)

    def layer_rates(self) -> dict[str, float]:
        """Per layer: spikes / (neurons x T), averaged over the greedy actions."""
        return {name: value / (self.neurons[name] * self.T) for name, value in self.layer_spikes_per_action().items()}


@dataclass
class EpisodeResult:
    score: float
    max_q: float  # the largest Q of a greedy action in the game (nan if no greedy step)
    max_q_std: float  # std over actions of the Q vector at that state
    steps: int
    spike_stats: SpikeStats | None = None
    truncated: bool = False  # the game was cut by the step cap (max_episode_step), not finished


class NonFiniteQ(Exception):
    """The network returned a NaN or infinite Q-value."""


def run_episode(agent, env, epsilon: float, rng: np.random.Generator, monitor=None,
                check: Callable[[], None] | None = None,
                perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> EpisodeResult:
    """One full game on an evaluation env. ``monitor``: a SpikeMonitor on ``agent.net`` (spiking networks);
    ``check``: called before every step (the training loop stops an evaluation there when asked to); ``perturb``:
    what the agent is given instead of each frame stack (agent/robustness.py: FGSM)."""
    stats = SpikeStats(T=agent.net.T) if monitor is not None else None
    frame_stack, _ = env.reset()
    score, max_q, max_q_std, steps, done, cut = 0.0, -math.inf, math.nan, 0, False, False
    while not done:
        if check is not None:
            check()
        action, q = agent.act(frame_stack if perturb is None else perturb(frame_stack), epsilon, rng)
        if q is not None:
            if not bool(torch.isfinite(q).all()):
                raise NonFiniteQ(f"non-finite Q-values {q.tolist()}")
            if q[action].item() > max_q:
                max_q, max_q_std = q[action].item(), q.std().item()
            if stats is not None:
                stats.add(monitor.spike_counts(), monitor.neurons, layer_sops(monitor.maps, agent.net))
        frame_stack, reward, terminated, truncated, _ = env.step(action)
        score += float(reward)
        steps += 1
        done = terminated or truncated
        cut = bool(truncated) and not terminated
    return EpisodeResult(score, max_q if max_q > -math.inf else math.nan, max_q_std, steps, stats, cut)


def evaluate(agent, env, episode_num: int, epsilon: float, rng: np.random.Generator, monitor=None,
             check: Callable[[], None] | None = None, on_episode: Callable[[EpisodeResult], None] | None = None,
             perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> list[EpisodeResult]:
    """``episode_num`` full games at ``epsilon`` with the network in eval mode (see run_episode)."""
    agent.net.eval()
    results = []
    try:
        for _ in range(episode_num):
            results.append(run_episode(agent, env, epsilon, rng, monitor, check, perturb))
            if on_episode is not None:
                on_episode(results[-1])
    finally:
        agent.net.train()
    return results


def play_games(agent, env, config, monitor=None, perturb=None, desc: str = "play", progress: bool = True,
               on_episode: Callable[[int, EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """A play run's games: ``config.eval_episode_num`` of them at ``config.eval_epsilon`` with the agent's evaluation
    stream, under a progress bar; ``on_episode(index, result)`` after each."""
    from tqdm import tqdm

    bar = tqdm(total=config.eval_episode_num, desc=desc, unit="game", dynamic_ncols=True, disable=not progress)

    def done(result: EpisodeResult) -> None:
        if on_episode is not None:
            on_episode(bar.n, result)
        bar.update()
        bar.set_postfix_str(f"score {result.score:g}")

    try:
        return evaluate(agent, env, config.eval_episode_num, config.eval_epsilon, agent.rngs["evaluate"], monitor,
                        on_episode=done, perturb=perturb)
    finally:
        bar.close()


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if not np.isnan(values).all() else math.nan


def summarize_play(results: list[EpisodeResult]) -> dict:
    """The play report as a dict (spiking fields only when spikes were recorded)."""
    scores = np.array([r.score for r in results], dtype=np.float64)
    summary = {
        "episodes": len(results),
        "scores": scores.tolist(),
        "average_score": float(scores.mean()),
        "max_score": float(scores.max()),
        "score_std": float(scores.std()),
        "average_max_q": _nanmean(np.array([r.max_q for r in results], dtype=np.float64)),
        "average_max_q_std": _nanmean(np.array([r.max_q_std for r in results], dtype=np.float64)),
    }
    episode_stats = [r.spike_stats for r in results if r.spike_stats is not None]
    if episode_stats:
        total = SpikeStats(T=episode_stats[0].T)
        for stats in episode_stats:
            total.merge(stats)
        episode_rates = [s.average_firing_rate for s in episode_stats if s.actions]
        spikes = total.layer_spikes_per_action()
        summary.update(
            T=total.T,
            episode_avg_firing_rates=[s.average_firing_rate for s in episode_stats],
            average_firing_rate=float(np.mean(episode_rates)) if episode_rates else math.nan,
            spike_num_per_action=sum(spikes.values()) if total.actions else math.nan,
            greedy_actions=total.actions,
            layer_firing_rates=total.layer_rates(),
            layer_spikes_per_action=spikes,
            layer_neurons=dict(total.neurons),
        )
        if total.sops and total.actions:  # synaptic operations per greedy action, by source layer (utils/energy.py)
            sops = total.layer_sops_per_action()
            summary.update(layer_sops_per_action=sops, sops_per_action=sum(sops.values()))
    return summary
