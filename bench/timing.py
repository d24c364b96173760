"""Interleaved timing: every figure is a median over repeats with its min and max, and every comparison is a
ratio of two variants measured in the same rounds (A, B, A, B, ... never all A then all B).

A *sample* is the mean wall time of ``inner`` back-to-back calls of one variant (``inner`` > 1 for calls of a
few microseconds or milliseconds, so that the timer's resolution and one-off hiccups matter less). One *round*
takes one sample of every variant, in an order that rotates from round to round, so a slow spell of the shared
machine hits all variants alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch


def stat(values: Sequence[float], unit: str, scale: float = 1.0) -> dict:
    """{median, min, max, n, unit} of ``values`` multiplied by ``scale``."""
    scaled = [float(v) * scale for v in values]
    if not scaled:
        raise ValueError("no values to summarise")
    return {"median": statistics.median(scaled), "min": min(scaled), "max": max(scaled), "n": len(scaled),
            "unit": unit}


def inverse_stat(values: Sequence[float], unit: str, scale: float = 1.0) -> dict:
    """The statistic of ``scale / v`` (e.g. steps per second from seconds per step)."""
    return stat([scale / v for v in values], unit)


def ratio_stat(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    """Per-round ratios numerator / denominator of paired, interleaved samples: median, min, max."""
    if len(numerators) != len(denominators):
        raise ValueError("ratio of unpaired samples")
    return stat([a / b for a, b in zip(numerators, denominators)], "x")


def synchronize(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], inner: int = 1, device=None) -> float:
    """Seconds per call: the mean over ``inner`` back-to-back calls (the device synchronised around them)."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(inner):
        fn()
    synchronize(device)
    return (time.perf_counter() - started) / inner


def interleave(
    variants: Mapping[str, Callable[[], object]],
    repeats: int,
    inner: int | Mapping[str, int] = 1,
    warmup: int = 1,
    device=None,
    between: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Time every variant ``repeats`` times, round-robin; returns {name: [seconds per call, one per round]}.

    ``warmup`` untimed calls of each variant come first (also round-robin). ``between(name)`` is called before
    each sample of ``name`` (untimed), e.g. to switch the number of threads.
    """
    names = list(variants)
    inners = {n: (inner[n] if isinstance(inner, Mapping) else inner) for n in names}
    for _ in range(warmup):
        for name in names:
            if between is not None:
                between(name)
            variants[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if between is not None:
                between(name)
            samples[name].append(time_calls(variants[name], inners[name], device))
    return samples


def break_even_calls(first_call_s: float, eager_s: float, compiled_s: float) -> float | None:
    """Calls after which a variant with a one-off cost (its first call) has paid for itself; None if never."""
    saving = eager_s - compiled_s
    if saving <= 0:
        return None
    extra = max(first_call_s - eager_s, 0.0)
    return extra / saving


def is_stat(value) -> bool:
    return isinstance(value, Mapping) and {"median", "min", "max"} <= set(value)


def walk_stats(obj, path: str = ""):
    """Yield (path, stat) for every statistic nested anywhere in a report."""
    if is_stat(obj):
        yield path, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from walk_stats(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from walk_stats(value, f"{path}[{index}]")
