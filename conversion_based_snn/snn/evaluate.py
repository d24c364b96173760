"""Playing the converted network and summarising the run.

An episode is one full game on the episodic-life env with raw rewards (:mod:`.games`): after every lost life the
env is reset, which presses FIRE for the network and starts the frame stack again, and the game goes on until
the real game over or the time limit. At every step of an episode the SNN is simulated for T steps on the
current frame stack; Q_hat = output spike count + final output voltage, and the action is epsilon-greedy on
Q_hat (:func:`.normalise.epsilon_greedy`: each action epsilon / n, the argmax 1 - epsilon more; ``torch.argmax``
takes the first maximum on ties). The ANN is run on the same frame stack to get its greedy action. Per episode:

* score: the env's whole raw return of the game (:func:`.games.game_score`: the unclipped rewards of all its lives,
  those of the env's own reset steps included: FIRE and the step after it, the no-op after a lost life);
* mix: the fraction of the episode's steps where argmax(spike count + final voltage) == the ANN's greedy action;
* spike: the same with argmax(spike count) alone.

Spike statistics are taken on the *greedy* steps only, i.e. the steps where the sampled action is the argmax of
Q_hat (as the original did): per such step the firing rate = spikes of all five neuron layers / (their neurons *
T); an episode's firing rate is the mean over the greedy steps of the game's LAST life (``firing_rate_over=
"last_life"``, the original's: its list of rates was started again at every env reset, i.e. at every life), or
over all the game's greedy steps (``"game"``); the run's average firing rate is the mean over episodes (those
with no greedy step in that span are left out); spikes per greedy action = all spikes of all layers on greedy
steps / the number of greedy steps (over the whole run, all lives, and per layer). Synaptic operations are
counted on the same greedy steps: per layer, its spikes x their fan-out into the next weight layer (conv1 ->
conv2, ..., fc1 -> fc2; the output fc2 spikes have fan-out 0), summed over T with the exact border-aware fan-out
of utils/energy.py; reported per greedy action.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from utils.energy import layer_sops

from .games import GameStep, game_score, step_game
from .normalise import epsilon_greedy
from .simulate import LAYER_NAMES, SpikingNetwork

FIRING_RATE_SPANS = ("last_life", "game")  # what an episode's firing rate averages (see the module docstring)


@dataclass
class EpisodeStats:
    score: float = 0.0
    steps: int = 0
    mix_agree: int = 0
    spike_agree: int = 0
    greedy_steps: int = 0
    layer_spikes: dict[str, float] = field(default_factory=lambda: {name: 0.0 for name in LAYER_NAMES})
    firing_rate_sum: float = 0.0  # sum over greedy steps of that step's firing rate
    life_greedy_steps: int = 0  # greedy steps of the life being played (at the end: of the last life)
    life_firing_rate_sum: float = 0.0  # their sum of firing rates
    firing_rate_over: str = "last_life"  # the span of the episode's firing rate: "last_life" or "game"
    layer_sops: dict[str, float] = field(default_factory=lambda: {name: 0.0 for name in LAYER_NAMES})
    simulation_seconds: float = 0.0
    truncated: bool = False  # the game was cut by the time limit (max_episode_step), not finished

    @property
    def mix(self) -> float:
        return self.mix_agree / self.steps if self.steps else float("nan")

    @property
    def spike(self) -> float:
        return self.spike_agree / self.steps if self.steps else float("nan")

    @property
    def firing_rate(self) -> float | None:
        """The mean firing rate over the greedy steps of the last life (or of the whole game); None without any."""
        if self.firing_rate_over == "last_life":
            total, count = self.life_firing_rate_sum, self.life_greedy_steps
        else:
            total, count = self.firing_rate_sum, self.greedy_steps
        return total / count if count else None


@torch.no_grad()
def play_episode(
    snn: SpikingNetwork,
    ann: torch.nn.Module,
    env,
    T: int,
    rng: np.random.Generator,
    epsilon: float,
    bar: tqdm | None = None,
    firing_rate_over: str = "last_life",
) -> EpisodeStats:
    """One full game on the episodic-life env ``env`` (see :mod:`.games`), all its lives."""
    if firing_rate_over not in FIRING_RATE_SPANS:
        raise ValueError(f"firing_rate_over must be one of {FIRING_RATE_SPANS}, got {firing_rate_over!r}")
    device = snn.conv1.weight.device
    neuron_total = sum(snn.neuron_counts().values())
    stats = EpisodeStats(firing_rate_over=firing_rate_over)
    obs, _ = env.reset()
    while True:
        x = torch.from_numpy(np.asarray(obs, dtype=np.uint8)).unsqueeze(0).to(device)
        started = time.perf_counter()
        result = snn.simulate(x, T)
        q_mix = result.q_mix[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stats.simulation_seconds += time.perf_counter() - started
        ann_greedy = int(torch.argmax(ann(x)[0]))
        action, best = epsilon_greedy(q_mix, epsilon, rng)
        stats.steps += 1
        stats.mix_agree += int(best == ann_greedy)
        stats.spike_agree += int(int(torch.argmax(result.output_counts[0])) == ann_greedy)
        if action == best:
            stats.greedy_steps += 1
            totals = {name: float(value[0]) for name, value in result.layer_spike_totals().items()}
            for name, value in totals.items():
                stats.layer_spikes[name] += value
            rate = sum(totals.values()) / (neuron_total * T)
            stats.firing_rate_sum += rate
            stats.life_greedy_steps += 1
            stats.life_firing_rate_sum += rate
            for name, value in layer_sops(result.spike_counts, snn).items():
                stats.layer_sops[name] += float(value[0])
        obs, reward, end, _ = step_game(env, action)
        stats.score += reward  # the agent steps' rewards so far (for the progress bar)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(score=stats.score, refresh=False)
        if end is GameStep.LIFE_LOST:
            stats.life_greedy_steps, stats.life_firing_rate_sum = 0, 0.0
        elif end is not GameStep.PLAYING:
            stats.score = game_score(env)  # the whole game's raw return, the env's reset steps included
            stats.truncated = end is GameStep.TIME_LIMIT
            return stats


def evaluate(snn: SpikingNetwork, ann: torch.nn.Module, env, episodes: int, T: int, rng: np.random.Generator,
             epsilon: float, progress: bool = True, on_episode: Callable[[int, EpisodeStats], None] | None = None,
             firing_rate_over: str = "last_life") -> list[EpisodeStats]:
    results = []
    episode_bar = tqdm(range(episodes), desc="episodes", unit="game", disable=not progress)
    for episode in episode_bar:
        step_bar = tqdm(desc=f"episode {episode + 1}/{episodes}", unit="step", leave=False, disable=not progress)
        stats = play_episode(snn, ann, env, T, rng, epsilon, step_bar, firing_rate_over)
        step_bar.close()
        results.append(stats)
        episode_bar.set_postfix(last_score=stats.score, steps=stats.steps)
        if on_episode is not None:
            on_episode(episode, stats)
    return results


def summarise(episodes: list[EpisodeStats], neuron_counts: dict[str, int], T: int) -> dict:
    """The run's numbers: scores, agreements, firing rates and spike counts (see the module docstring)."""
    scores = np.array([e.score for e in episodes], dtype=np.float64)
    greedy = sum(e.greedy_steps for e in episodes)
    steps = sum(e.steps for e in episodes)
    layer_spikes = {name: sum(e.layer_spikes[name] for e in episodes) for name in LAYER_NAMES}
    total_spikes = sum(layer_spikes.values())
    episode_rates = [e.firing_rate for e in episodes]
    valid_rates = [r for r in episode_rates if r is not None]
    per_greedy = {name: (value / greedy if greedy else None) for name, value in layer_spikes.items()}
    per_layer_rate = {
        name: (layer_spikes[name] / (neuron_counts[name] * T * greedy) if greedy else None) for name in LAYER_NAMES
    }
    simulation_seconds = sum(e.simulation_seconds for e in episodes)
    sops_total = {name: sum(e.layer_sops.get(name, 0.0) for e in episodes) for name in LAYER_NAMES}
    sops_per_greedy = {name: (value / greedy if greedy else None) for name, value in sops_total.items()}
    sops_per_greedy["total"] = sum(sops_total.values()) / greedy if greedy else None
    return {
        "scores": scores.tolist(),
        "score_mean": float(scores.mean()),
        "score_std": float(scores.std()),  # population std (ddof=0), as numpy's default
        "score_max": float(scores.max()),
        "score_min": float(scores.min()),
        "mix": [e.mix for e in episodes],
        "spike": [e.spike for e in episodes],
        "mix_mean": float(np.mean([e.mix for e in episodes])),
        "spike_mean": float(np.mean([e.spike for e in episodes])),
        "steps": [e.steps for e in episodes],
        "steps_total": steps,
        "truncated": [e.truncated for e in episodes],
        "truncated_games": sum(e.truncated for e in episodes),
        "greedy_steps": [e.greedy_steps for e in episodes],
        "greedy_steps_total": greedy,
        "neuron_counts": dict(neuron_counts),
        "neuron_total": int(sum(neuron_counts.values())),
        "spikes_total_on_greedy_steps": {**layer_spikes, "total": total_spikes},
        "spikes_per_greedy_action": {**per_greedy, "total": (total_spikes / greedy if greedy else None)},
        "firing_rate_per_episode": episode_rates,
        "average_firing_rate": float(np.mean(valid_rates)) if valid_rates else None,
        "firing_rate_per_layer": per_layer_rate,
        "sops_per_greedy_action": sops_per_greedy,  # by source layer; fc2 (output) spikes have fan-out 0
        "ms_per_action": 1000.0 * simulation_seconds / steps if steps else None,
    }
