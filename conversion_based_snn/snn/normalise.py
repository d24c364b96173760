"""Normalisation data and data-based layer-wise weight normalisation.

Data: :func:`collect_normalisation_states` plays the ANN epsilon-greedy (the caller's epsilon) on the episodic-life
env, game by game (a game lasts across its lives until the real game over or the time limit, see :mod:`.games`),
as the original did. Of a game only the frame stacks of its LAST life can be kept (the stacks it acted on from the
reset after its last lost life, or from the start in a game without lives). Which games are kept (``keep``):

* ``"no_lives_left"`` (the default, the original's rule): the last life is kept when the game reports no lives
  left (``ale.lives() == 0``) at its end: the last life of a game over, and, in games without lives (Pong, Boxing,
  Tennis: ``lives() == 0`` throughout), also a game cut by the time limit. A game with lives cut by the time
  limit is dropped.
* ``"game_over"``: only games that end by a game over are kept; every game cut by the time limit is dropped, and
  if ``max_cut_in_a_row`` games in a row (default 10) are cut, the collection stops with a
  :class:`NormalisationError`.

Kept lives are added while fewer than ``n_examples`` states have been collected, so the last one is kept whole and
the total lies in [n_examples, n_examples + length of the last kept life - 1]. The collection also stops after
``max_lives`` lives (default 1,000, the original's cap; every life counts, kept or not, a life cut by the time
limit too; 0: no cap), whatever the number of states then; with no state at all it raises
:class:`NormalisationError`.

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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .games import GameStep, step_game
from .percentile import StreamingPercentile
from .simulate import LAYER_NAMES

MAX_CUT_IN_A_ROW = 10  # keep="game_over": games in a row cut by the time limit before the collection gives up
MAX_LIVES = 1000  # the original's cap on the lives played for the normalisation data
KEEP_RULES = ("no_lives_left", "game_over")  # which games give their last life (see the module docstring)


class NormalisationError(ValueError):
    """The data cannot give usable scales (e.g. a layer whose p-th percentile output is not positive)."""


def pre_activations(ann: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The pre-activation outputs of conv1, conv2, conv3, fc1 and fc2 of a Dqn for raw frame stacks ``x``."""
    h = x.to(device=ann.conv1.weight.device, dtype=ann.conv1.weight.dtype) / 255.0
    outputs = []
    for name in LAYER_NAMES:
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


@dataclass
class NormalisationGame:
    """One game played for the normalisation data."""

    steps: int  # frame stacks the ANN acted on, all lives together
    kept: int  # frame stacks kept: those of the game's last life, 0 when the game was dropped
    cut: bool  # the time limit cut the game
    lives: int = 1  # lives played (the last one counts also when cut by the time limit or by the life cap)
    stopped: bool = False  # the life cap stopped the collection during this game, after a lost life


@torch.no_grad()
def collect_normalisation_states(
    ann: torch.nn.Module,
    env,
    n_examples: int,
    rng: np.random.Generator,
    epsilon: float,
    progress: bool = False,
    on_game: Callable[[int, NormalisationGame], None] | None = None,
    keep: str = "no_lives_left",
    max_lives: int = MAX_LIVES,
    max_cut_in_a_row: int = MAX_CUT_IN_A_ROW,
) -> tuple[list[np.ndarray], list[NormalisationGame]]:
    """Play whole games with the ANN (epsilon-greedy) on the episodic-life env ``env`` and return the kept frame
    stacks (uint8 arrays) and a record of every game. See the module docstring for what is kept and when it stops;
    raises :class:`NormalisationError` when no state was kept, or (``keep="game_over"``) when ``max_cut_in_a_row``
    games in a row were cut by the time limit."""
    if keep not in KEEP_RULES:
        raise ValueError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    device = ann.conv1.weight.device
    states: list[np.ndarray] = []
    games: list[NormalisationGame] = []
    lives_played = 0
    cut_in_a_row = 0

    def capped() -> bool:
        return max_lives > 0 and lives_played >= max_lives

    bar = tqdm(total=n_examples, desc="normalisation data", unit="state", disable=not progress)
    while len(states) < n_examples and not capped():
        obs, _ = env.reset()
        life: list[np.ndarray] = []  # the frame stacks of the life being played
        steps = game_lives = 0
        while True:
            life.append(np.array(obs, dtype=np.uint8, copy=True))
            steps += 1
            q_values = ann(torch.from_numpy(life[-1]).unsqueeze(0).to(device))[0]
            action, _ = epsilon_greedy(q_values, epsilon, rng)
            step = step_game(env, action)
            obs = step.obs
            game_lives += 1 if step.end is not GameStep.PLAYING else 0
            if step.end is GameStep.LIFE_LOST:
                life = []
                if max_lives > 0 and lives_played + game_lives >= max_lives:
                    break
            elif step.end is not GameStep.PLAYING:
                break
        lives_played += game_lives
        stopped = step.end is GameStep.LIFE_LOST
        cut = step.end is GameStep.TIME_LIMIT
        if stopped:
            kept = False
        elif keep == "no_lives_left":
            kept = step.lives == 0
        else:
            kept = not cut
        games.append(NormalisationGame(steps, len(life) if kept else 0, cut, game_lives, stopped))
        if kept:
            states.extend(life)
            bar.update(len(life))
        cut_in_a_row = cut_in_a_row + 1 if cut else 0
        bar.set_postfix(games=len(games), lives=lives_played, states=len(states))
        if on_game is not None:
            on_game(len(games), games[-1])
        if keep == "game_over" and cut_in_a_row >= max_cut_in_a_row:
            bar.close()
            raise NormalisationError(
                f"{cut_in_a_row} games in a row were cut by the time limit before they ended (the last after "
                f"{steps} agent steps); --norm_keep game_over keeps only games that end, so allow longer games "
                "(--max_episode_step) or keep the default --norm_keep no_lives_left"
            )
    bar.close()
    if not states:
        raise NormalisationError(
            f"no normalisation data after {lives_played} lives (--norm_max_lives {max_lives}): no game ended "
            + ("with no lives left" if keep == "no_lives_left" else "by a game over")
            + "; allow more lives (--norm_max_lives, 0: no cap) or longer games (--max_episode_step)"
        )
    return states, games
