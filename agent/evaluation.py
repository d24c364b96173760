"""Evaluation and play: full games on the evaluation env, and the play report (docs/METHOD.md, Play).

An evaluation plays whole games (all lives, raw score, cut at ``max_episode_step``) epsilon-greedily at
``eval_epsilon``. It records, per game, the score, the largest Q of a greedy action and the std over actions of
the Q vector at that state, and, when a :class:`~neural_network.SpikeMonitor` watches a spiking network, the spikes
and synaptic operations of every greedy action (the paper counts greedy actions only).

Every game has its own random numbers: one evaluation seed is drawn from the evaluation stream, and game k of the
evaluation gets, from (that seed, k) alone (:func:`game_streams`), the seed its env is reset with (the ALE and the
no-op start) and its own generator of epsilon-greedy draws. So a game's course does not depend on the other games,
nor on the order or company in which they are played: on an :class:`environment.vector.EvaluationEnvs` all the
games are played at once, one batched forward pass of the greedy games per step (:func:`play_batched`), and each
game gives exactly what :func:`run_episode` gives when it plays that game alone with its seed and generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from environment.vector import EvaluationEnvs
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
    truncated: bool = False  # the game was cut by the step limit (max_episode_step), not ended by the game


class NonFiniteQ(Exception):
    """The network returned a NaN or infinite Q-value."""


def draw_evaluation_seed(rng: np.random.Generator) -> int:
    """One evaluation's seed, drawn from the evaluation stream (one draw per evaluation)."""
    return int(rng.integers(2**63))


def game_streams(evaluation_seed: int, episode_num: int) -> list[tuple[int, np.random.Generator]]:
    """Per game k of an evaluation: (the seed its env is reset with, the generator of its epsilon-greedy draws),
    both from (``evaluation_seed``, k) alone: game k's are the same whatever the number of games."""
    games = []
    for child in np.random.SeedSequence(evaluation_seed).spawn(episode_num):
        env_seed, draws = child.spawn(2)
        games.append((int(env_seed.generate_state(1)[0]), np.random.default_rng(draws)))
    return games


def evaluation_envs(make: Callable[[int], object], config, device) -> EvaluationEnvs:
    """The envs of an evaluation or play run: ``--eval_envs`` slots (default: one per game) stepped by
    ``--eval_workers`` processes (default: on CUDA, where the network is fast and the emulators set the pace, one
    per slot up to the run's CPUs less one, the run's CPUs being OMP_NUM_THREADS where it is set (a sweep sets it to
    --cpus_per_run), else the CPUs this process may use; on the CPU, which runs the network too, none)."""
    width = min(config.eval_envs or config.eval_episode_num, config.eval_episode_num)
    workers = config.eval_workers
    if workers is None:
        workers = min(width, max(run_cpus() - 1, 0)) if torch.device(device).type == "cuda" else 0
    return EvaluationEnvs(make, width, workers=workers)


def run_cpus() -> int:
    """The CPUs a run may use: OMP_NUM_THREADS where set to a positive number, else this process's CPU affinity."""
    import os

    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        return int(threads)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_finite(q: torch.Tensor) -> None:
    if not bool(torch.isfinite(q).all()):
        raise NonFiniteQ(f"non-finite Q-values {q.tolist()}")


def run_episode(agent, env, epsilon: float, rng: np.random.Generator, monitor=None,
                check: Callable[[], None] | None = None,
                perturb: Callable[[np.ndarray], np.ndarray] | None = None, seed: int | None = None) -> EpisodeResult:
    """One full game on an evaluation env, reset with ``seed`` (None: continue the env's own stream) and played
    with the epsilon-greedy draws of ``rng``. ``monitor``: a SpikeMonitor on ``agent.net`` (spiking networks);
    ``check``: called before every step (the training loop stops an evaluation there when asked to); ``perturb``:
    what the agent is given instead of each frame stack (agent/robustness.py: FGSM)."""
    stats = SpikeStats(T=agent.net.T) if monitor is not None else None
    frame_stack, _ = env.reset(seed=seed)
    score, max_q, max_q_std, steps, done, truncated = 0.0, -math.inf, math.nan, 0, False, False
    while not done:
        if check is not None:
            check()
        action, q = agent.act(frame_stack if perturb is None else perturb(frame_stack), epsilon, rng)
        if q is not None:
            _check_finite(q)
            if q[action].item() > max_q:
                max_q, max_q_std = q[action].item(), q.std().item()
            if stats is not None:
                stats.add(monitor.spike_counts(), monitor.neurons, layer_sops(monitor.maps, agent.net))
        frame_stack, reward, terminated, truncated, _ = env.step(action)
        score += float(reward)
        steps += 1
        done = terminated or truncated
    truncated = bool(truncated and not terminated)
    return EpisodeResult(score, max_q if max_q > -math.inf else math.nan, max_q_std, steps, stats, truncated)


@dataclass
class _Game:
    """A game in progress in one slot of an EvaluationEnvs."""

    index: int
    rng: np.random.Generator
    frame_stack: np.ndarray
    stats: SpikeStats | None
    score: float = 0.0
    max_q: float = -math.inf
    max_q_std: float = math.nan
    steps: int = 0

    def result(self, truncated: bool) -> EpisodeResult:
        return EpisodeResult(self.score, self.max_q if self.max_q > -math.inf else math.nan, self.max_q_std,
                             self.steps, self.stats, truncated)


def play_batched(agent, envs: EvaluationEnvs, games: list[tuple[int, np.random.Generator]], epsilon: float,
                 monitor=None, check: Callable[[], None] | None = None,
                 on_episode: Callable[[int, EpisodeResult], None] | None = None,
                 perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> list[EpisodeResult]:
    """Play ``games`` ((env seed, generator) each, :func:`game_streams`) on the slots of ``envs``, as many at once
    as there are slots (a slot whose game ended takes the next one). Each step: every game draws from its own
    generator, exactly as :meth:`Agent.act` would (explore with probability epsilon: a uniform action; else
    greedy), the greedy games' frame stacks go through the network in one batch, and each slot takes one step.
    Returns the results in the games' order; ``on_episode(index, result)`` as each game ends."""
    results: list[EpisodeResult | None] = [None] * len(games)
    queue = iter(range(len(games)))
    active: dict[int, _Game] = {}

    def start(slots: list[int]) -> None:
        indices = [index for _, index in zip(slots, queue)]
        slots = slots[: len(indices)]
        frames = envs.reset(slots, [games[index][0] for index in indices]) if slots else []
        for slot, index, frame_stack in zip(slots, indices, frames):
            stats = SpikeStats(T=agent.net.T) if monitor is not None else None
            active[slot] = _Game(index, games[index][1], frame_stack, stats)

    start(list(range(envs.num_envs)))
    while active:
        if check is not None:
            check()
        slots = sorted(active)
        actions, greedy = {}, []
        for slot in slots:
            game = active[slot]
            if game.rng.random() < epsilon:
                actions[slot] = int(game.rng.integers(agent.n_actions))
            else:
                greedy.append(slot)
        if greedy:
            stacks = [active[slot].frame_stack for slot in greedy]
            q = agent.q_values_batch(np.stack(stacks if perturb is None else [perturb(s) for s in stacks]))
            counts = monitor.spike_counts() if monitor is not None else None
            sops = layer_sops(monitor.maps, agent.net) if monitor is not None else None
            for row, slot in enumerate(greedy):
                game, q_row = active[slot], q[row]
                _check_finite(q_row)
                action = int(q_row.argmax())
                actions[slot] = action
                if q_row[action].item() > game.max_q:
                    game.max_q, game.max_q_std = q_row[action].item(), q_row.std().item()
                if game.stats is not None:
                    game.stats.add({name: c[row:row + 1] for name, c in counts.items()}, monitor.neurons,
                                   {name: s[row:row + 1] for name, s in sops.items()})
        ended = []
        for slot, (frame_stack, reward, terminated, truncated) in zip(slots, envs.step(slots, [actions[s] for s in
                                                                                               slots])):
            game = active[slot]
            game.frame_stack, game.score, game.steps = frame_stack, game.score + reward, game.steps + 1
            if terminated or truncated:
                results[game.index] = game.result(bool(truncated and not terminated))
                del active[slot]
                ended.append(slot)
                if on_episode is not None:
                    on_episode(game.index, results[game.index])
        if ended:
            start(ended)
    return results


def evaluate(agent, env, episode_num: int, epsilon: float, rng: np.random.Generator, monitor=None,
             check: Callable[[], None] | None = None,
             on_episode: Callable[[int, EpisodeResult], None] | None = None,
             perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> list[EpisodeResult]:
    """``episode_num`` full games at ``epsilon`` with the network in eval mode, each from its own seed and
    generator (:func:`game_streams` of one seed drawn from ``rng``): all at once on an :class:`EvaluationEnvs`
    (:func:`play_batched`), one after the other on a single env (:func:`run_episode`), with the same results.
    ``on_episode(index, result)`` as each game ends; the results are returned in the games' order."""
    games = game_streams(draw_evaluation_seed(rng), episode_num)
    agent.net.eval()
    try:
        if isinstance(env, EvaluationEnvs):
            return play_batched(agent, env, games, epsilon, monitor, check, on_episode, perturb)
        results = []
        for index, (seed, game_rng) in enumerate(games):
            results.append(run_episode(agent, env, epsilon, game_rng, monitor, check, perturb, seed=seed))
            if on_episode is not None:
                on_episode(index, results[-1])
        return results
    finally:
        agent.net.train()


def play_games(agent, env, config, monitor=None, perturb=None, desc: str = "play", progress: bool = True,
               on_episode: Callable[[int, EpisodeResult], None] | None = None) -> list[EpisodeResult]:
    """A play run's games: ``config.eval_episode_num`` of them at ``config.eval_epsilon`` with the agent's evaluation
    stream, under a progress bar; ``on_episode(index, result)`` after each."""
    from tqdm import tqdm

    bar = tqdm(total=config.eval_episode_num, desc=desc, unit="game", dynamic_ncols=True, disable=not progress)

    def done(index: int, result: EpisodeResult) -> None:
        if on_episode is not None:
            on_episode(index, result)
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
