"""Exact percentiles of data too large to hold in memory: a two-pass radix selection.

The normalisation of the converted network needs the p-th percentile of every layer's pre-activation outputs
over ~15,000 frame stacks: conv1 alone gives 15,000 * 12,800 = 192 million values (768 MB in float32), so
the values are never stored. Instead the data are streamed through the network twice:

* pass 1 counts, for every value, the upper 16 bits of an order-preserving 32-bit integer key of the float32
  value (a 65,536-bin histogram): this finds the bucket that holds the order statistic of a given rank;
* pass 2 counts the lower 16 bits of the keys that fall into the (at most two) buckets found, which pins the
  32-bit key, i.e. the float32 value itself, of each rank exactly.

The result equals ``numpy.percentile(values.astype(numpy.float64), p)`` (numpy's default ``method='linear'``)
bit for bit: rank position ``h = (n - 1) * (p / 100)``, neighbours ``floor(h)`` and ``floor(h) + 1`` (both the
maximum when ``h >= n - 1``), and numpy's ``_lerp`` in float64. Memory is two histograms per accumulator,
whatever the amount of data. NaN values are refused.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_BITS = 16
_BINS = 1 << _BITS
_LOW_MASK = _BINS - 1
_SIGN_OFFSET = 1 << 31


def float_to_key(values: torch.Tensor) -> torch.Tensor:
    """Map float32 values to int64 keys in [0, 2**32) whose order is the order of the values.

    Non-negative floats keep their bit pattern (plus 2**31); a negative float with magnitude bits m gets
    2**31 - 1 - m, so larger magnitudes sort lower. -0.0 and +0.0 get adjacent keys (equal values).
    """
    bits = values.detach().to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    magnitude = bits & 0x7FFFFFFF
    return torch.where(bits >= 0, bits + _SIGN_OFFSET, _SIGN_OFFSET - 1 - magnitude)


def key_to_float(key: int) -> float:
    """Inverse of :func:`float_to_key` for one key: the float32 value, as a Python float."""
    if key >= _SIGN_OFFSET:
        bits = key - _SIGN_OFFSET
    else:
        bits = (_SIGN_OFFSET - 1 - key) | 0x80000000
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def percentile_ranks(n: int, percentile: float) -> tuple[int, int, float]:
    """numpy's 'linear' method: the 0-based ranks of the two neighbours and the interpolation weight."""
    if n < 1:
        raise ValueError("cannot take a percentile of no values")
    q = percentile / 100.0
    h = (n - 1) * q
    if h >= n - 1:
        return n - 1, n - 1, 0.0
    lower = math.floor(h)
    return lower, lower + 1, h - lower


def numpy_lerp(a: float, b: float, t: float) -> float:
    """numpy's ``_lerp`` (numpy/lib/_function_base_impl.py) in float64."""
    diff = b - a
    if t >= 0.5:
        return b - diff * (1 - t)
    return a + diff * t


class StreamingPercentile:
    """Exact p-th percentile of a stream of float32 tensors that is shown twice, in the same order or not.

    Usage::

        acc = StreamingPercentile(99.9, device)
        for batch in data: acc.add(values(batch))          # pass 1
        acc.start_second_pass()
        for batch in data: acc.add(values(batch))          # pass 2 (the same multiset of values)
        value = acc.result()
    """

    def __init__(self, percentile: float, device: torch.device | str = "cpu"):
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
        self.percentile = float(percentile)
        self.device = torch.device(device)
        self.count = 0
        self._high = torch.zeros(_BINS, dtype=torch.int64, device=self.device)
        self._pass = 1
        self._targets: list[tuple[int, int]] = []  # per wanted rank: (high bucket, rank inside that bucket)
        self._low: dict[int, torch.Tensor] = {}
        self._weight = 0.0
        self._second_count = 0

    def add(self, values: torch.Tensor) -> None:
        if values.numel() == 0:
            return
        if torch.isnan(values).any():
            raise ValueError("the values contain NaN; cannot take a percentile")
        keys = float_to_key(values.reshape(-1)).to(self.device)
        high = keys >> _BITS
        if self._pass == 1:
            self.count += keys.numel()
            self._high += torch.bincount(high, minlength=_BINS)
            return
        self._second_count += keys.numel()
        for bucket, histogram in self._low.items():
            selected = keys[high == bucket] & _LOW_MASK
            if selected.numel():
                histogram += torch.bincount(selected, minlength=_BINS)

    def start_second_pass(self) -> None:
        if self._pass != 1:
            raise RuntimeError("the second pass has already started")
        lower, upper, self._weight = percentile_ranks(self.count, self.percentile)
        cumulative = torch.cumsum(self._high, 0).cpu()
        for rank in (lower, upper):
            bucket = int(torch.searchsorted(cumulative, torch.tensor(rank), right=True))
            before = int(cumulative[bucket - 1]) if bucket > 0 else 0
            self._targets.append((bucket, rank - before))
            self._low.setdefault(bucket, torch.zeros(_BINS, dtype=torch.int64, device=self.device))
        self._pass = 2

    def result(self) -> float:
        if self._pass != 2:
            raise RuntimeError("call start_second_pass() and show the data again first")
        if self._second_count != self.count:
            raise RuntimeError(f"the second pass saw {self._second_count} values, the first {self.count}")
        values = []
        for bucket, rank_in_bucket in self._targets:
            cumulative = torch.cumsum(self._low[bucket], 0).cpu()
            low = int(torch.searchsorted(cumulative, torch.tensor(rank_in_bucket), right=True))
            values.append(key_to_float((bucket << _BITS) | low))
        return numpy_lerp(values[0], values[1], self._weight)


def exact_percentile(values: torch.Tensor, percentile: float) -> float:
    """Convenience for one in-memory tensor (both passes over the same values)."""
    acc = StreamingPercentile(percentile, values.device)
    acc.add(values)
    acc.start_second_pass()
    acc.add(values)
    return acc.result()
