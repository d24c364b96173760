"""Interleaved timing with torch.utils.benchmark: every figure is a median over rounds with its min and max, and
every comparison is a ratio of two variants timed in the same rounds (A, B, A, B, ...; the order rotates each
round, so a slow spell of a shared machine hits all variants alike).

A sample is one ``torch.utils.benchmark.Timer.blocked_autorange(min_run_time)`` of a variant: the median time per
call over blocks of back-to-back calls (Timer sizes the blocks, after its own warm-up calls, and synchronises CUDA
around them), at torch's thread count of the moment. Each variant is called once, untimed, before the rounds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch.utils.benchmark import Timer


def stat(values: Sequence[float], unit: str, scale: float = 1.0) -> dict:
    """{median, min, max, n, unit} of ``values`` multiplied by ``scale``."""
    scaled = [float(v) * scale for v in values]
    if not scaled:
        raise ValueError("no values to summarise")
    return {"median": statistics.median(scaled), "min": min(scaled), "max": max(scaled), "n": len(scaled), "unit": unit}


def rate_stat(seconds: Sequence[float], unit: str) -> dict:
    """The statistic of 1 / seconds (e.g. steps per second from seconds per step)."""
    return stat([1.0 / s for s in seconds], unit)


def ratio_stat(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    """Per-round ratios of paired, interleaved samples: median, min, max."""
    if len(numerators) != len(denominators):
        raise ValueError("ratio of unpaired samples")
    return stat([a / b for a, b in zip(numerators, denominators)], "x")


def timer(fn: Callable[[], object]) -> Timer:
    return Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())


def interleave(variants: Mapping[str, Callable[[], object]], repeats: int, min_time: float = 0.05,
               between: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Time every variant ``repeats`` times, round-robin; returns {name: [seconds per call, one per round]}.

    ``between(name)`` runs (untimed) before each call or sample of ``name``, e.g. to select its neuron kernel."""
    names = list(variants)
    for name in names:
        if between is not None:
            between(name)
        variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if between is not None:
                between(name)
            samples[name].append(timer(variants[name]).blocked_autorange(min_run_time=min_time).median)
    return samples


def first_call(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds of one call (e.g. the one that compiles), CUDA synchronised, and what it returned."""
    started = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def walk_stats(obj, path: str = ""):
    """Yield (path, stat) for every statistic nested anywhere in a report."""
    if isinstance(obj, Mapping) and {"median", "min", "max"} <= set(obj):
        yield path, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from walk_stats(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from walk_stats(value, f"{path}[{index}]")


def check_stats(report: dict) -> list[str]:
    """Problems with the statistics of a report (non-finite values, a median outside [min, max])."""
    problems = []
    for path, s in walk_stats(report):
        if not all(math.isfinite(s[k]) for k in ("median", "min", "max")):
            problems.append(f"{path}: non-finite {s}")
        elif not s["min"] <= s["median"] <= s["max"]:
            problems.append(f"{path}: median outside [min, max]: {s}")
    return problems
