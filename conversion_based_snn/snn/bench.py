"""Milliseconds per action of the two simulations of the converted Dqn (one frame stack, T steps).

    python -m conversion_based_snn.snn.bench --time 500 --repeat 5 [--threads 1] [--device cpu]

Uses a random-init Dqn normalised on random smooth frames (so every layer fires, ~10 % of neurons per step);
the cost of the layer-by-layer simulation barely depends on the spikes, the step-by-step one not at all.
"""

from __future__ import annotations

import argparse
import time

import torch

from neural_network import build_network

from .normalise import compute_lambdas
from .simulate import NODE_TYPES, SpikingNetwork


def smooth_frames(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 4, 12, 12), generator=g).float()
    up = torch.nn.functional.interpolate(low, size=(84, 84), mode="bilinear", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8)


def timed(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append(time.perf_counter() - started)
    return 1000.0 * min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--node_type", choices=NODE_TYPES, default="SubtractiveResetIFNodes")
    parser.add_argument("--skip_stepwise", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    ann = build_network("Dqn", 4).eval().requires_grad_(False)
    lambdas = compute_lambdas(ann, [s.numpy() for s in smooth_frames(64, 1)], 99.9, batch=64)
    snn = SpikingNetwork.from_ann(ann, lambdas, args.node_type).to(device)
    x = smooth_frames(1, 2).to(device)
    rate = snn.simulate(x, args.time).layer_spike_totals()
    total = sum(float(v[0]) for v in rate.values()) / (sum(snn.neuron_counts().values()) * args.time)
    print(f"device {device}, torch threads {torch.get_num_threads()}, T={args.time}, {args.node_type}, "
          f"firing rate {total:.3f}")
    print(f"layer by layer: {timed(lambda: snn.simulate(x, args.time), args.repeat, device):.1f} ms per action")
    if not args.skip_stepwise:
        ms = timed(lambda: snn.simulate_stepwise(x, args.time), max(1, args.repeat // 2), device)
        print(f"step by step:   {ms:.1f} ms per action")


if __name__ == "__main__":
    main()
