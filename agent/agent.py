"""One DQN agent for all four networks (PAPER_NOTES §3 and §5).

The training loop reads top to bottom in :meth:`Agent.learn`: a random exploration phase fills the replay
memory, then each agent step acts epsilon-greedily, stores the transition, updates the online network every
``update_freq`` steps, copies it to the target network every ``target_net_update_freq`` steps and evaluates
it every ``eval_freq`` steps (step 0 included), saving the best checkpoint. :meth:`Agent.play` evaluates a
saved network and reports scores, max-Q and, for spiking networks, firing rates and spikes per action.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from neural_network import QNetwork, save_checkpoint

from .config import Config, epsilon_at

logger = logging.getLogger("file_logger")


@dataclass
class SpikeStats:
    """Spike counts of the greedy actions of one or more episodes (the paper counts greedy actions only)."""

    T: int
    neurons: dict[str, int] = field(default_factory=dict)
    spikes: dict[str, float] = field(default_factory=dict)  # per layer, summed over the greedy actions
    actions: int = 0
    rates: list[float] = field(default_factory=list)  # overall firing rate of each greedy action
    sops: dict[str, float] = field(default_factory=dict)  # per layer: its spikes x fan-out, summed likewise

    def add(self, counts: dict[str, torch.Tensor], neurons: dict[str, int],
            sops: dict[str, torch.Tensor] | None = None) -> None:
        values = {name: float(count.sum()) for name, count in counts.items()}
        for name, value in values.items():
            self.spikes[name] = self.spikes.get(name, 0.0) + value
        for name, value in (sops or {}).items():
            self.sops[name] = self.sops.get(name, 0.0) + float(value.sum())
        self.neurons = dict(neurons)
        self.actions += 1
        self.rates.append(sum(values.values()) / (sum(neurons.values()) * self.T))

    def merge(self, other: "SpikeStats") -> None:
        for name, value in other.spikes.items():
            self.spikes[name] = self.spikes.get(name, 0.0) + value
        for name, value in other.sops.items():
            self.sops[name] = self.sops.get(name, 0.0) + value
        self.neurons = other.neurons or self.neurons
        self.actions += other.actions
        self.rates.extend(other.rates)

    @property
    def average_firing_rate(self) -> float:
        return float(np.mean(self.rates)) if self.rates else math.nan

    @property
    def spikes_per_action(self) -> float:
        return sum(self.spikes.values()) / self.actions if self.actions else math.nan

    def layer_rates(self) -> dict[str, float]:
        """Per layer: spikes / (neurons x T), averaged over the greedy actions."""
        if not self.actions:
            return {}
        return {name: self.spikes[name] / (self.neurons[name] * self.T * self.actions) for name in self.spikes}

    def layer_spikes_per_action(self) -> dict[str, float]:
        return {name: value / self.actions for name, value in self.spikes.items()} if self.actions else {}

    def layer_sops_per_action(self) -> dict[str, float]:
        """Per (source) layer: synaptic operations of its spikes per greedy action (see utils/energy.py)."""
        return {name: value / self.actions for name, value in self.sops.items()} if self.actions else {}


@dataclass
class EpisodeResult:
    score: float
    max_q: float  # the largest Q of a greedy action in the episode (nan if no greedy step)
    max_q_std: float  # std over actions of the Q vector at that state
    steps: int
    spike_stats: SpikeStats | None = None


class Agent:
    """Acts, learns and evaluates with one online network (and, for learning, a target network and replay)."""

    def __init__(
        self,
        config: Config,
        net: QNetwork,
        device: torch.device,
        writer=None,
        rng: np.random.Generator | None = None,
    ):
        self.config = config
        self.net = net.to(device)
        self.device = device
        self.writer = writer
        self.rng = rng if rng is not None else np.random.default_rng(config.seed)
        self.n_actions = net.n_actions
        self.spike_monitor = False

    # -- acting ---------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def q_values(self, frame_stack: np.ndarray) -> torch.Tensor:
        """Q-values of one frame stack (uint8 [history_len, 84, 84]) as a 1-D tensor on the CPU."""
        state = torch.from_numpy(np.asarray(frame_stack)).unsqueeze(0).to(self.device)
        return self.net(state)[0].cpu()

    def act(self, frame_stack: np.ndarray, epsilon: float) -> tuple[int, torch.Tensor | None]:
        """Epsilon-greedy action; also returns the Q-values when the action was the greedy one."""
        if self.rng.random() < epsilon:
            return int(self.rng.integers(self.n_actions)), None
        q = self.q_values(frame_stack)
        return int(q.argmax()), q

    # -- evaluation and play --------------------------------------------------------------------------------------

    def run_episode(self, env, epsilon: float) -> EpisodeResult:
        """Play one full game on an evaluation env; record max-Q and, with the spike monitor, spike counts."""
        record = self.spike_monitor and self.net.spiking
        stats = SpikeStats(T=self.net.T) if record else None
        if self.net.spiking:
            self.net.record_spikes(record)
        frame_stack, _ = env.reset()
        score, max_q, max_q_std, steps, done = 0.0, -math.inf, math.nan, 0, False
        while not done:
            action, q = self.act(frame_stack, epsilon)
            if q is not None:
                if q[action].item() > max_q:
                    max_q, max_q_std = q[action].item(), q.std().item()
                if stats is not None:
                    stats.add(self.net.last_spike_counts(), self.net.neuron_counts(), self.net.last_sop_counts())
            frame_stack, reward, terminated, truncated, _ = env.step(action)
            score += float(reward)
            steps += 1
            done = terminated or truncated
        if self.net.spiking:
            self.net.record_spikes(False)
        return EpisodeResult(score, max_q if max_q > -math.inf else math.nan, max_q_std, steps, stats)

    def evaluate(self, env, episode_num: int, epsilon: float, progress=None) -> list[EpisodeResult]:
        """``episode_num`` full games at ``epsilon``; ``progress`` (a tqdm bar) is told after each game."""
        self.net.eval()
        results = []
        for _ in range(episode_num):
            results.append(self.run_episode(env, epsilon))
            if progress is not None:
                progress.set_postfix_str(f"eval episode {len(results)}/{episode_num} score {results[-1].score:g}")
        self.net.train()
        return results

    # -- learning -------------------------------------------------------------------------------------------------

    def learn(self, train_env, eval_env, replay, target_net: QNetwork, model_path: str) -> float:
        """Train for ``timestep_num`` steps after a ``replay_start_size``-step random exploration phase.

        Returns the best evaluation average score; the network that reached it is saved at ``model_path``.
        """
        cfg = self.config
        target_net = target_net.to(self.device)
        target_net.load_state_dict(self.net.state_dict())
        target_net.eval()
        optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate)
        loss_fn = nn.SmoothL1Loss()
        best_score = -math.inf
        last_eval = "none yet"

        bar = tqdm(total=cfg.replay_start_size + cfg.timestep_num, unit="step", dynamic_ncols=True, mininterval=1.0)

        # Exploration: random actions fill the replay memory; no learning, not counted as timesteps.
        logger.info("Start exploring for %d steps", cfg.replay_start_size)
        bar.set_description("explore")
        frame_stack, _ = train_env.reset()
        for _ in range(cfg.replay_start_size):
            action = int(self.rng.integers(self.n_actions))
            next_stack, reward, terminated, truncated, _ = train_env.step(action)
            done = terminated or truncated
            replay.append(frame_stack, action, reward, done, next_stack)
            frame_stack = train_env.reset()[0] if done else next_stack
            bar.update()

        logger.info("Start learning for %d steps", cfg.timestep_num)
        bar.set_description("learn")
        frame_stack, _ = train_env.reset()
        self.net.train()
        for timestep in range(cfg.timestep_num):
            epsilon = epsilon_at(timestep, cfg.init_epsilon, cfg.final_epsilon, cfg.final_epsilon_frame)
            action, _ = self.act(frame_stack, epsilon)
            next_stack, reward, terminated, truncated, _ = train_env.step(action)
            done = terminated or truncated
            replay.append(frame_stack, action, reward, done, next_stack)
            frame_stack = train_env.reset()[0] if done else next_stack

            if timestep % cfg.update_freq == 0:
                loss = self.update(replay, target_net, optimizer, loss_fn)
                self.writer.add_scalar("learn/loss", loss.item(), timestep)

            if timestep % cfg.target_net_update_freq == 0:
                target_net.load_state_dict(self.net.state_dict())

            if timestep % cfg.eval_freq == 0:
                bar.set_description("eval")
                results = self.evaluate(eval_env, cfg.eval_episode_num, cfg.eval_epsilon, progress=bar)
                best_score = self._record_evaluation(results, timestep, best_score, model_path)
                last_eval = f"{np.mean([r.score for r in results]):g}"
                bar.set_description("learn")
                bar.set_postfix_str(f"last eval {last_eval}")
            bar.update()
        bar.close()
        logger.info("Learning is done; best average evaluation score %s", best_score)
        return best_score

    def update(self, replay, target_net: QNetwork, optimizer, loss_fn) -> torch.Tensor:
        """One minibatch step on the vanilla DQN target y = r + gamma * (1 - done) * max_a' Q_target(s', a')."""
        cfg = self.config
        batch = replay.sample(cfg.minibatch_size)
        states = batch.states.to(self.device, non_blocking=True)
        next_states = batch.next_states.to(self.device, non_blocking=True)
        actions = batch.actions.to(self.device, non_blocking=True)
        rewards = batch.rewards.to(self.device, non_blocking=True)
        masks = cfg.discount_factor * (1.0 - batch.dones.to(self.device, non_blocking=True))
        with torch.no_grad():
            y = rewards + masks * target_net(next_states).max(dim=1).values
        q = self.net(states).gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = loss_fn(q, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def _record_evaluation(self, results: list[EpisodeResult], timestep: int, best: float, model_path: str) -> float:
        scores = [r.score for r in results]
        average, std = float(np.mean(scores)), float(np.std(scores))
        average_max_q = float(np.nanmean([r.max_q for r in results])) if any(
            not math.isnan(r.max_q) for r in results
        ) else math.nan
        self.writer.add_scalar("evaluate/average_score", average, timestep)
        self.writer.add_scalar("evaluate/score_std", std, timestep)
        self.writer.add_scalar("evaluate/average_max_q", average_max_q, timestep)
        logger.info(
            "timestep: %d\taverage_score: %s\tscore_std: %s\taverage_max_q: %s", timestep, average, std, average_max_q
        )
        if average >= best:
            best = average
            self.writer.add_scalar("evaluate/max_average_score", best, timestep)
            save_checkpoint(self.net, model_path)
            logger.info("timestep: %d\tmax_average_score: %s\tsaved %s", timestep, best, model_path)
        self.writer.flush()
        return best


def summarize_play(results: list[EpisodeResult]) -> dict:
    """The play report of PAPER_NOTES §5 as a dict (spiking fields only when spikes were recorded)."""
    scores = np.array([r.score for r in results], dtype=np.float64)
    max_qs = np.array([r.max_q for r in results], dtype=np.float64)
    max_q_stds = np.array([r.max_q_std for r in results], dtype=np.float64)
    summary = {
        "episodes": len(results),
        "scores": scores.tolist(),
        "average_score": float(scores.mean()),
        "max_score": float(scores.max()),
        "score_std": float(scores.std()),
        "average_max_q": float(np.nanmean(max_qs)) if not np.isnan(max_qs).all() else math.nan,
        "average_max_q_std": float(np.nanmean(max_q_stds)) if not np.isnan(max_q_stds).all() else math.nan,
    }
    episode_stats = [r.spike_stats for r in results if r.spike_stats is not None]
    if episode_stats:
        total = SpikeStats(T=episode_stats[0].T)
        for stats in episode_stats:
            total.merge(stats)
        episode_rates = [s.average_firing_rate for s in episode_stats if s.actions]
        summary.update(
            T=total.T,
            episode_avg_firing_rates=[s.average_firing_rate for s in episode_stats],
            average_firing_rate=float(np.mean(episode_rates)) if episode_rates else math.nan,
            spike_num_per_action=total.spikes_per_action,
            greedy_actions=total.actions,
            layer_firing_rates=total.layer_rates(),
            layer_spikes_per_action=total.layer_spikes_per_action(),
            layer_neurons=dict(total.neurons),
        )
        if total.sops:  # synaptic operations per greedy action, by source layer (utils/energy.py)
            summary.update(
                layer_sops_per_action=total.layer_sops_per_action(),
                sops_per_action=sum(total.sops.values()) / total.actions if total.actions else math.nan,
            )
    return summary
