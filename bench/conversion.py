"""Part ``conversion``: milliseconds per action of the converted Dqn at T steps, layer by layer against step by
step, and a check that the two simulations give the same spikes.

The network is a random-init Dqn normalised (p = 99.9) on smooth random frames, as in
``conversion_based_snn/snn/bench.py``, so every layer fires. The check has two halves, as in
tests/test_conversion.py:

* the benchmarked network itself (float32, unrounded weights): spike trains compared spike for spike. A conv/linear
  kernel may sum in another order for batch T*B than for batch B, so a spike can flip when a voltage lands within
  float32 rounding of the threshold; the number of differing spikes is reported;
* the same network with weights and biases on a 2^-12 grid: every current fed by spikes is then an exact float32
  sum whatever the summation order, so spike trains and final voltages must be bit-identical.
"""

from __future__ import annotations

import torch

from .timing import interleave, ratio_stat, stat

GRID_BITS = 12


def build_snn(seed: int = 0, node_type: str = "SubtractiveResetIFNodes"):
    from conversion_based_snn.snn import SpikingNetwork, compute_lambdas
    from conversion_based_snn.snn.bench import smooth_frames
    from neural_network import build_network

    torch.manual_seed(seed)
    ann = build_network("Dqn", 4).eval().requires_grad_(False)
    lambdas = compute_lambdas(ann, [s.numpy() for s in smooth_frames(64, seed + 1)], 99.9, batch=64)
    return SpikingNetwork.from_ann(ann, lambdas, node_type), smooth_frames(1, seed + 2)


def on_grid(snn, bits: int = GRID_BITS):
    import copy

    grid = copy.deepcopy(snn)
    with torch.no_grad():
        for layer in grid.weight_layers:
            for p in (layer.weight, layer.bias):
                p.copy_(torch.round(p * 2**bits) / 2**bits)
    return grid


def compare_simulations(snn, x: torch.Tensor, T: int) -> dict:
    """Run both simulations with spike trains recorded; count differing spikes and the largest voltage gap."""
    from conversion_based_snn.snn import LAYER_NAMES

    fast = snn.simulate(x, T, record_trains=True)
    slow = snn.simulate_stepwise(x, T, record_trains=True)
    differing = sum(int((fast.spike_trains[n] != slow.spike_trains[n]).sum()) for n in LAYER_NAMES)
    total = sum(fast.spike_trains[n].numel() for n in LAYER_NAMES)
    spikes = sum(int(fast.spike_trains[n].sum()) for n in LAYER_NAMES)
    voltage_gap = max(float((fast.final_voltages[n] - slow.final_voltages[n]).abs().max()) for n in LAYER_NAMES)
    return {
        "identical_spike_trains": differing == 0,
        "differing_spikes": differing,
        "spike_slots": total,
        "spikes": spikes,
        "firing_rate": spikes / total,
        "identical_final_voltages": voltage_gap == 0.0,
        "max_final_voltage_diff": voltage_gap,
        "same_action": bool(fast.q_mix.argmax(1).equal(slow.q_mix.argmax(1))),
        "layer_firing_rates": {n: float(fast.spike_trains[n].float().mean()) for n in LAYER_NAMES},
    }


def bench_conversion(T: int, repeats: int, device: str = "cpu", seed: int = 0, progress=None) -> dict:
    snn, x = build_snn(seed)
    snn = snn.to(device)
    x = x.to(device)
    samples = interleave({"layer_by_layer": lambda: snn.simulate(x, T),
                          "step_by_step": lambda: snn.simulate_stepwise(x, T)},
                         repeats, warmup=1, device=device)
    if progress is not None:
        progress("conversion: timing done, checking spikes")
    check = compare_simulations(snn, x, T)
    grid_check = compare_simulations(on_grid(snn), x, T)
    return {
        "T": T,
        "node_type": snn.node_type,
        "batch": 1,
        "ms_per_action": {name: stat(values, "ms", 1e3) for name, values in samples.items()},
        "speedup": {"what": "step by step / layer by layer time",
                    "value": ratio_stat(samples["step_by_step"], samples["layer_by_layer"])},
        "check_float32_weights": check,
        "check_grid_weights": {**grid_check, "grid": f"2^-{GRID_BITS}",
                               "bit_identical": grid_check["identical_spike_trains"]
                               and grid_check["identical_final_voltages"]},
    }
