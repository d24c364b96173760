"""How often the converted network's greedy action is the ANN's, as a function of the simulation length T."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .simulate import SCHEDULES, SpikingNetwork, check_T


@torch.no_grad()
def greedy_agreement(
    snn: SpikingNetwork,
    ann: torch.nn.Module,
    frames: torch.Tensor | np.ndarray,
    T_values: Sequence[int],
    schedules: Sequence[str] = SCHEDULES,
    batch: int = 8,
) -> dict[str, dict[int, float]]:
    """For each schedule and each T of ``T_values``: the fraction of ``frames`` (uint8 frame stacks,
    [N, 4, 84, 84]) on which the SNN's greedy action, argmax of the mix decoder (output spike count over the first
    T steps + output voltage after step T), equals the ANN's greedy action (``torch.argmax``, first maximum on
    ties, for both).

    Per schedule and batch of ``batch`` frames the network is simulated once, layer by layer, for max(T_values)
    steps and read after each T (:meth:`.SimulationResult.q_mix_at`). ``batch`` bounds the memory: a batch holds
    every layer's spike train over the whole window (conv1's alone is batch * (T + 1) * 12,800 floats)."""
    if not T_values:
        raise ValueError("no T to measure the agreement at")
    for T in T_values:
        check_T(T)
    frames = torch.as_tensor(frames)
    if len(frames) == 0:
        raise ValueError("no frames to measure the agreement on")
    device = snn.conv1.weight.device
    longest = max(T_values)
    agree = {schedule: {T: 0 for T in T_values} for schedule in schedules}
    for start in range(0, len(frames), batch):
        x = frames[start : start + batch].to(device)
        ann_greedy = ann(x.to(next(ann.parameters()).device)).argmax(1).to(device)
        for schedule in schedules:
            result = snn.simulate(x, longest, schedule=schedule)
            for T in T_values:
                agree[schedule][T] += int((result.q_mix_at(T).argmax(1) == ann_greedy).sum())
    return {schedule: {T: count / len(frames) for T, count in counts.items()} for schedule, counts in agree.items()}
