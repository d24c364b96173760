"""Parts ``env``, ``replay``, ``conversion`` and ``bf16``, and the real Breakout frames the benchmark runs on."""

from __future__ import annotations

import functools

import numpy as np
import torch

from .timing import interleave, rate_stat, ratio_stat, stat

GAMES = {"Breakout": "BreakoutNoFrameskip-v4", "Pong": "PongNoFrameskip-v4"}
N_ACTIONS = 4  # Breakout's minimal action set


@functools.lru_cache(maxsize=2)
def breakout_batch(size: int, seed: int = 0, steps: int = 600):
    """A replay_memory.Batch of ``size`` transitions sampled from ``steps`` random-action steps of Breakout's
    training env: real frames, mostly black, as the networks see them in training."""
    from agent import Config
    from environment import make_env
    from replay_memory import ReplayMemory

    paper = Config()
    env = make_env(GAMES["Breakout"], training=True, **paper.env_kwargs(), seed=seed)
    memory, rng = ReplayMemory(steps, paper.history_len, seed=seed, check_memory=False), np.random.default_rng(seed)
    state, _ = env.reset()
    for _ in range(steps):
        action = int(rng.integers(N_ACTIONS))
        next_state, reward, terminated, truncated, _ = env.step(action)
        memory.append(state, action, reward, terminated or truncated, next_state)
        state = env.reset()[0] if terminated or truncated else next_state
    env.close()
    return memory.sample(size)


# -- env ----------------------------------------------------------------------------------------------------------


def bench_env(games: list[str], repeats: int, min_time: float, seed: int = 0) -> dict:
    """Agent steps per second of each game's training env (the full DeepMind pipeline), random actions, resets."""
    from agent import Config
    from environment import make_env

    envs = {game: make_env(GAMES[game], training=True, **Config().env_kwargs(), seed=seed) for game in games}
    rng = np.random.default_rng(seed)

    def stepper(env):
        env.reset()

        def step():
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                env.reset()

        return step

    try:
        samples = interleave({game: stepper(env) for game, env in envs.items()}, repeats, min_time)
    finally:
        for env in envs.values():
            env.close()
    out = {"games": {game: {"steps_per_s": rate_stat(v, "steps/s"), "us_per_step": stat(v, "us", 1e6)}
                     for game, v in samples.items()}}
    if len(games) >= 2:
        out["ratio"] = {"what": f"{games[0]} / {games[1]} time per step",
                        "value": ratio_stat(samples[games[0]], samples[games[1]])}
    return out


# -- replay -------------------------------------------------------------------------------------------------------


def episodes(count: int, length: int = 200, seed: int = 0) -> list[tuple]:
    """Transitions of ``count`` episodes of ``length`` steps over random frames (each starting with a repeated frame,
    as FrameStack after a reset; stacks are views), as the replay memory receives them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        frames = rng.integers(0, 256, size=(length + 4, 84, 84), dtype=np.uint8)
        frames[:3] = frames[3]
        out += [(frames[k:k + 4], int(rng.integers(4)), float(k % 7 == 0), k == length - 1, frames[k + 1:k + 5])
                for k in range(length)]
    return out


def bench_replay(capacity: int, repeats: int, min_time: float, batch_size: int = 32, seed: int = 0) -> dict:
    """Bytes per transition, append (continuity check on, the default) and sample(batch_size) to tensors, on a
    memory that is full and has wrapped (the steady state of 49 of the 50 million steps of a paper run)."""
    import itertools

    from agent import Config
    from replay_memory import ReplayMemory

    paper_config = Config()
    memory = ReplayMemory(capacity, paper_config.history_len, seed=seed)
    stream = itertools.cycle(episodes(8, seed=seed))
    for _ in range(capacity + 10):
        memory.append(*next(stream))
    samples = interleave({"append": lambda: memory.append(*next(stream)),
                          "sample": lambda: memory.sample(batch_size)}, repeats, min_time)
    paper = ReplayMemory.estimate_bytes(paper_config.replay_memory_size, paper_config.history_len)
    return {
        "paper_capacity_bytes_per_transition": paper / paper_config.replay_memory_size,
        "paper_capacity_gb": paper / 1e9,
        "whole_stack_bytes_per_transition": 2 * 4 * 84 * 84, "measured_capacity": capacity,
        "measured_bytes_per_transition": memory.bytes_per_transition, "append_us": stat(samples["append"], "us", 1e6),
        "sample_batch_size": batch_size, "sample_us": stat(samples["sample"], "us", 1e6),
    }


# -- conversion ---------------------------------------------------------------------------------------------------


def bench_conversion(T: int, repeats: int, agreement_T: list[int], frames: int, device: str, seed: int = 0,
                     checkpoint: str | None = None) -> dict:
    """The converted Dqn: ms per action of the layer-by-layer and the step-by-step simulation at T steps, and
    conversion_based_snn.snn.greedy_agreement against T for both schedules on real Breakout frames (other frames
    than the 64 that normalise it)."""
    from agent import Config
    from conversion_based_snn.snn import SpikingNetwork, compute_lambdas, greedy_agreement
    from neural_network import build_network, load_checkpoint

    torch.manual_seed(seed)
    ann = build_network("Dqn", N_ACTIONS, **Config(model="Dqn").network_kwargs()).eval().requires_grad_(False)
    states = breakout_batch(64 + frames, seed).states
    network = checkpoint
    if checkpoint:
        load_checkpoint(ann, checkpoint)
    else:  # untrained, its greedy action is the same on every frame: center each action's Q over the frames
        ann.fc2.bias.sub_(ann(states[:64]).mean(0))
        network = f"Dqn initialised with seed {seed} (untrained; fc2's bias centers each action's Q on the frames)"
    ann = ann.to(device)
    lambdas = compute_lambdas(ann, list(states[:64].numpy()), 99.9, batch=64)
    snn = SpikingNetwork.from_ann(ann, lambdas).to(device)
    x, test = states[:1].to(device), states[64:].to(device)
    samples = interleave({"layer_by_layer": lambda: snn.simulate(x, T),
                          "step_by_step": lambda: snn.simulate_stepwise(x, T)}, repeats, min_time=0.0)
    return {
        "network": network, "node_type": snn.node_type, "T": T,
        "ms_per_action": {name: stat(values, "ms", 1e3) for name, values in samples.items()},
        "speedup": {"what": "step-by-step / layer-by-layer time",
                    "value": ratio_stat(samples["step_by_step"], samples["layer_by_layer"])},
        "agreement_frames": frames,
        "ann_greedy_actions": torch.bincount(ann(test).argmax(1), minlength=N_ACTIONS).tolist(),
        "agreement": greedy_agreement(snn, ann, test, agreement_T),
    }


# -- bf16 ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def firing_dsqn(states: torch.Tensor, seed: int = 0, rate: float = 0.05, T: int = 8) -> dict:
    """The weights of an untrained Dsqn scaled, layer after layer, by powers of 2 until at least ``rate`` of the
    layer's neurons fire per step on ``states`` (untrained, its neurons stay silent on Breakout frames)."""
    from agent import Config
    from neural_network import SpikeMonitor, build_network

    torch.manual_seed(seed)
    net = build_network("Dsqn", N_ACTIONS, **Config(model="Dsqn", T=T).network_kwargs())
    with SpikeMonitor(net) as monitor:
        for name, layer in zip(net.spiking_layer_names, net.weight_layers):
            for _ in range(16):
                net(states)
                if float(monitor.maps[name].mean()) / T >= rate:
                    break
                layer.weight.mul_(2.0)
                layer.bias.mul_(2.0)
    return net.state_dict()


@torch.no_grad()
def bf16_agreement(T_values: list[int], frames: int, device: str, seed: int = 0, checkpoint: str | None = None,
                   chunk: int = 16) -> dict:
    """--bf16 against float32 for Dsqn at each T, on real Breakout frames: the greedy action, the Q-values and the
    spike counts of every neuron layer (SpikeMonitor), through the Agent's own autocast."""
    from agent import Agent, Config
    from neural_network import SpikeMonitor, build_network, load_checkpoint

    states = breakout_batch(max(frames, 32), seed).states[:frames]
    weights = None if checkpoint else firing_dsqn(states[:8], seed)
    states = states.to(device)
    out = {"frames": frames, "T": {}, "network": checkpoint or f"Dsqn initialised with seed {seed}, weights scaled "
                                                               "by powers of 2 until each layer fires (untrained)"}
    for T in T_values:
        runs = {}
        for bf16 in (False, True):
            config = Config(model="Dsqn", T=T, bf16=bf16, device=device)
            net = build_network("Dsqn", N_ACTIONS, **config.network_kwargs())
            if checkpoint:
                load_checkpoint(net, checkpoint)
            else:
                net.load_state_dict({**weights, "time_steps": net.time_steps})
            agent = Agent(config, net, torch.device(device))
            qs, spikes = [], []
            with SpikeMonitor(agent.net) as monitor:
                for part in states.split(chunk):
                    with agent.autocast():
                        qs.append(agent.net(part).float())
                    spikes.append({name: m.float() for name, m in monitor.maps.items()})
            runs[bf16] = torch.cat(qs), {name: torch.cat([s[name] for s in spikes]) for name in spikes[0]}
        (q32, s32), (q16, s16) = runs[False], runs[True]
        out["T"][str(T)] = {
            "greedy_agreement": float((q32.argmax(1) == q16.argmax(1)).float().mean()),
            "q_max_abs_diff": float((q32 - q16).abs().max()), "q_max_abs": float(q32.abs().max()),
            "layers": {name: {"spikes_fp32": float(s32[name].sum()), "spikes_bf16": float(s16[name].sum()),
                              "same_count_fraction": float((s32[name] == s16[name]).float().mean())}
                       for name in s32},
        }
    return out
