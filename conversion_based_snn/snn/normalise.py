"""Normalisation data and data-based layer-wise weight normalisation (PAPER_NOTES §6).

Data: :func:`collect_normalisation_states` plays the ANN (epsilon 0.05) on the DQN *training* env and keeps the
frame stack of every step it acts on, game by game. A game lasts until the real game over (the training env ends
an episode at each life loss; its next ``reset()`` continues the same game) or a time-limit truncation. Whole
games are added while fewer than ``n_examples`` states have been collected, so the game that crosses
``n_examples`` is kept entirely and the total lies in [n_examples, n_examples + length of the last game - 1].

Scales: :func:`compute_lambdas` runs the ORIGINAL ANN (ReLU network, input /255) on those states in batches and
takes, for each of conv1, conv2, conv3, fc1 and fc2 (the output layer included), lambda_l = the p-th percentile
of all that layer's pre-activation outputs (every unit of every state). The percentile is exact and equals
``numpy.percentile(values.astype(numpy.float64), p)`` (numpy's default 'linear' interpolation) without ever
holding a layer's activations for the whole data set: two streamed passes of a radix selection
(:mod:`.percentile`). The weights are then rescaled by :meth:`SpikingNetwork.from_ann`:
W_l <- W_l * lambda_{l-1} / lambda_l, b_l <- b_l / lambda_l, lambda_0 = 1, so that the normalised ANN's layer l
outputs are the original ones divided by lambda_l (ReLU is positively homogeneous) and their p-th percentile is 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .percentile import StreamingPercentile
from .simulate import LAYER_NAMES


class NormalisationError(ValueError):
    """The data cannot give usable scales (e.g. a layer whose p-th percentile output is not positive)."""


def pre_activations(ann: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The pre-activation outputs of conv1, conv2, conv3, fc1 and fc2 of a Dqn for raw frame stacks ``x``."""
    h = x.to(device=ann.conv1.weight.device, dtype=ann.conv1.weight.dtype) / 255.0
    outputs = []
    for index, name in enumerate(LAYER_NAMES):
        layer = getattr(ann, name)
        if isinstance(layer, torch.nn.Linear) and h.dim() > 2:
            h = h.flatten(1)
        z = layer(h)
        outputs.append(z)
        h = F.relu(z)
    return outputs


def _batches(states: Sequence[np.ndarray], batch: int):
    for start in range(0, len(states), batch):
        yield torch.from_numpy(np.stack(states[start : start + batch]))


@torch.no_grad()
def compute_lambdas(
    ann: torch.nn.Module,
    states: Sequence[np.ndarray],
    percentile: float = 99.9,
    batch: int = 256,
    progress: bool = False,
) -> dict[str, float]:
    """lambda_l for l in conv1..fc2: the exact p-th percentile of layer l's pre-activation outputs on ``states``
    (a sequence of uint8 frame stacks), computed by the original ANN in batches of ``batch`` states."""
    if len(states) == 0:
        raise NormalisationError("no normalisation states")
    device = ann.conv1.weight.device
    accumulators = [StreamingPercentile(percentile, device) for _ in LAYER_NAMES]
    n_batches = math.ceil(len(states) / batch)
    for pass_number in (1, 2):
        iterator = _batches(states, batch)
        if progress:
            iterator = tqdm(iterator, total=n_batches, desc=f"percentiles, pass {pass_number}/2", unit="batch")
        for x in iterator:
            for accumulator, z in zip(accumulators, pre_activations(ann, x)):
                accumulator.add(z)
        if pass_number == 1:
            for accumulator in accumulators:
                accumulator.start_second_pass()
    lambdas = {name: accumulator.result() for name, accumulator in zip(LAYER_NAMES, accumulators)}
    for name, value in lambdas.items():
        if not (math.isfinite(value) and value > 0):
            raise NormalisationError(
                f"the {percentile}th percentile of layer {name}'s outputs on the normalisation data is {value}; "
                "a scale must be positive and finite (try another percentile or check the model)"
            )
    return lambdas


def epsilon_greedy(q_values: torch.Tensor, epsilon: float, rng: np.random.Generator) -> tuple[int, int]:
    """(action, greedy action) for one Q vector: each action has probability epsilon / n, the greedy one
    (``torch.argmax``: the first maximum on ties) gets 1 - epsilon more."""
    n = q_values.numel()
    best = int(torch.argmax(q_values))
    probs = np.full(n, epsilon / n)
    probs[best] += 1.0 - epsilon
    return int(rng.choice(n, p=probs)), best


def game_over(env, terminated: bool, truncated: bool, info: dict) -> bool:
    """True when a step of the training env ended the real game, not just a life (or hit the time limit)."""
    if truncated:
        return True
    if not terminated:
        return False
    try:
        return bool(env.get_wrapper_attr("was_real_done"))
    except AttributeError:
        return int(info.get("lives", 0)) == 0


@torch.no_grad()
def collect_normalisation_states(
    ann: torch.nn.Module,
    env,
    n_examples: int,
    rng: np.random.Generator,
    epsilon: float = 0.05,
    progress: bool = False,
    on_game: Callable[[int, int], None] | None = None,
) -> tuple[list[np.ndarray], list[int]]:
    """Play whole games with the ANN (epsilon-greedy) on the training env ``env`` and return the frame stacks it
    acted on (uint8 arrays) and the length of each game. See the module docstring for the stopping rule."""
    device = ann.conv1.weight.device
    states: list[np.ndarray] = []
    game_lengths: list[int] = []
    bar = tqdm(total=n_examples, desc="normalisation data", unit="state", disable=not progress)
    while len(states) < n_examples:
        game: list[np.ndarray] = []
        obs, info = env.reset()
        while True:
            game.append(np.array(obs, dtype=np.uint8, copy=True))
            bar.update(1)
            q_values = ann(torch.from_numpy(game[-1]).unsqueeze(0).to(device))[0]
            action, _ = epsilon_greedy(q_values, epsilon, rng)
            obs, _, terminated, truncated, info = env.step(action)
            if game_over(env, terminated, truncated, info):
                break
            if terminated:  # a life lost: the training env's reset continues the same game
                obs, info = env.reset()
        states.extend(game)
        game_lengths.append(len(game))
        bar.set_postfix(games=len(game_lengths), states=len(states))
        if on_game is not None:
            on_game(len(game_lengths), len(game))
    bar.close()
    return states, game_lengths
