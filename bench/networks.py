"""Part ``networks``: act (batch 1) and update (batch 32) through the product's own code paths.

Every variant is an :class:`agent.Agent` built as run.py builds it: ``compiled`` runs neural_network.compile_network
on the online and target networks before the Agent is made (run.py --compile), ``graphs`` is --cuda_graphs and
``bf16`` is --bf16. ``act`` is Agent.act at epsilon 0 from a numpy frame stack (numpy -> tensor, host -> device,
forward, device -> host, argmax); ``update`` is Agent.update on a fixed minibatch of real Breakout transitions
(host -> device copies, target forward, online forward + backward, Adam step; sampling is timed in ``replay``).

All variants run in one process: those on the default kernel are timed interleaved with it selected once; on
CUDA the kernels are compared in a second interleaved group, each selected (neural_network.select_backend)
before each of its samples. A variant's first act and first update are timed apart: for ``compiled`` that is
the compile, for ``graphs`` the warm-up and capture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .parts import N_ACTIONS, breakout_batch
from .timing import first_call, interleave, ratio_stat, stat


@dataclass(frozen=True)
class Variant:
    model: str
    T: int | None
    backend: str = "n/a"
    mode: str = "eager"  # eager, compiled (--compile) or graphs (--cuda_graphs)
    bf16: bool = False
    default_backend: str = "torch"  # the first usable kernel on the device

    @property
    def case(self) -> str:
        return self.model if self.T is None else f"{self.model}_T{self.T}"

    @property
    def key(self) -> str:
        return " ".join([self.case] + ([self.backend] if self.model != "Dqn" else []) + [self.mode]
                        + (["bf16"] if self.bf16 else []))

    @property
    def base(self) -> Variant:
        """The variant this one is compared with: eager float32 on the default kernel (itself for such a one)."""
        backend = self.backend if self.model == "Dqn" else self.default_backend
        return Variant(self.model, self.T, backend, default_backend=self.default_backend)


def usable_backends(device: str) -> tuple[list[str], dict[str, str]]:
    """SpikingJelly's kernels that run on ``device``, fastest first (probed: neural_network.probe_kernels; the first
    is what --backend auto resolves to), and why the others do not."""
    from neural_network import probe_kernels

    probe = probe_kernels(device)
    return [k for k, error in probe.items() if error is None], {k: e for k, e in probe.items() if e is not None}


def plan(device: str, Ts: list[int], modes: list[str], bf16: bool, compile_cases: list[str]) -> list[Variant]:
    """Dqn in each mode; Dsqn at each T on every usable kernel (eager float32), and on the default kernel in the
    other modes and with bf16 (on the CPU only: run.py refuses --bf16 on CUDA, where SpikingJelly has no bf16
    kernel). ``compile_cases``: which cases are compiled (compiling is slow: on 2 CPU cores a cold compile of
    Dsqn_T8 takes minutes)."""
    backends, _ = usable_backends(device)
    bf16 = bf16 and device != "cuda"
    first = backends[0]
    modes = [m for m in modes if m != "graphs" or device == "cuda"]
    out = [Variant("Dqn", None, mode=m, default_backend=first) for m in modes
           if m != "compiled" or "Dqn" in compile_cases]
    for T in Ts:
        out += [Variant("Dsqn", T, b, default_backend=first) for b in backends]
        extra = [(m, False) for m in modes if m != "eager"] + [(m, True) for m in modes if bf16]
        out += [Variant("Dsqn", T, first, m, b16, first) for m, b16 in extra
                if m != "compiled" or (f"Dsqn_T{T}" in compile_cases and not b16)]
    return out


class NetCase:
    """One variant: an Agent with its target network, a fixed minibatch and frame stack."""

    def __init__(self, v: Variant, device: str, seed: int = 0):
        from agent import Agent, Config
        from neural_network import build_network, compile_network, select_backend

        if v.backend != "n/a":
            select_backend(v.backend, device)
        torch.manual_seed(seed)
        dev = torch.device(device)
        config = Config(model=v.model, T=v.T or 64, device=device, seed=seed, compile=v.mode == "compiled",
                        cuda_graphs=v.mode == "graphs", bf16=v.bf16)
        net, target = (build_network(v.model, N_ACTIONS, **config.network_kwargs()) for _ in range(2))
        if config.compile:  # as run.py learn() does
            compile_network(net.to(dev), dev)
            compile_network(target.to(dev), dev)
        self.agent = Agent(config, net, dev, target_net=target)
        self.batch = breakout_batch(config.minibatch_size, seed)
        self.frame = self.batch.states[0].numpy().copy()
        self.rng = np.random.default_rng(seed)

    def act(self):
        return self.agent.act(self.frame, 0.0, self.rng)

    def update(self):
        return self.agent.update(self.batch)


def bench_networks(variants: list[Variant], device: str, repeats: int, min_time: float, seed: int = 0,
                   progress=print, deadline: float | None = None) -> dict:
    """Every variant built, its first act and update timed, then all acts and all updates timed interleaved.
    Variants not built by ``deadline`` (a time.perf_counter() value) are skipped."""
    import time

    from neural_network import select_backend

    backends, skipped = usable_backends(device)
    cases, results, errors = {}, {}, {}
    for v in variants:
        if deadline is not None and time.perf_counter() > deadline:
            errors[v.key] = "skipped: the time budget (--budget_s) was spent"
            continue
        try:
            case = cases[v] = NetCase(v, device, seed)
            act_s, _ = first_call(case.act)
            q0 = case.agent.q_values(case.frame)  # before any update: the variants still hold the same weights
            update_s, loss = first_call(case.update)
            if case.agent.graphs is not None and case.agent.graphs.failed:
                raise RuntimeError(f"CUDA graph capture failed: {case.agent.graphs.failed}")
            results[v] = {"first_act_s": act_s, "first_update_s": update_s, "q": q0, "first_loss": float(loss)}
            progress(f"networks: {v.key} ready (first act {act_s:.2f} s, first update {update_s:.2f} s)")
        except Exception as error:  # noqa: BLE001 - reported; the other variants still run
            errors[v.key] = f"{type(error).__name__}: {error}"
            cases.pop(v, None)
            progress(f"networks: {v.key} FAILED: {errors[v.key]}")

    # Two groups, each timed interleaved: every variant on the default kernel (selected once: a compiled network
    # may guard on SpikingJelly's choice), and on CUDA the kernels against each other (eager float32, each selected
    # before each of its samples).
    default = backends[0]
    groups = {"modes": [v for v in cases if v.backend in ("n/a", default)]}
    if len(backends) > 1:
        groups["kernels"] = [v for v in cases if v.model == "Dsqn" and v.mode == "eager" and not v.bf16]
    samples: dict[str, dict] = {"modes": {}, "kernels": {}}
    backend_of = {v.key: v.backend for v in cases}

    def select(key: str) -> None:
        select_backend(backend_of[key], device)

    for group, members in groups.items():
        select_backend(default, device)
        for what in ("act", "update"):
            timed = interleave({v.key: getattr(cases[v], what) for v in members}, repeats, min_time,
                               select if group == "kernels" else None)
            samples[group].update({(key, what): values for key, values in timed.items()})
            progress(f"networks: {group}: {what} timed")
    rows = []
    for v in cases:
        r, base = results[v], results.get(v.base)
        timed = samples["modes"] if v.backend in ("n/a", default) else samples["kernels"]
        row = {"variant": v.key, "case": v.case, "model": v.model, "T": v.T, "backend": v.backend, "mode": v.mode,
               "bf16": v.bf16, **{k: r[k] for k in ("first_act_s", "first_update_s", "first_loss")}}
        for what in ("act", "update"):
            row[f"{what}_ms"] = stat(timed[(v.key, what)], "ms", 1e3)
            if v.base in cases and v.base != v:
                row[f"{what}_speedup"] = ratio_stat(timed[(v.base.key, what)], timed[(v.key, what)])
        if base is not None and v.base != v:
            row["q_max_abs_diff_vs_base"] = float((r["q"] - base["q"]).abs().max())
            row["first_loss_diff_vs_base"] = abs(r["first_loss"] - base["first_loss"])
            if v.mode != "eager":
                row["break_even_updates"] = break_even(r["first_update_s"], timed[(v.base.key, "update")],
                                                       timed[(v.key, "update")])
        rows.append(row)
    dqn, modes = Variant("Dqn", None, default_backend=default), samples["modes"]
    ratios = [{"what": f"{v.case} / Dqn {what} time (eager float32, {v.backend})",
               "value": ratio_stat(modes[(v.key, what)], modes[(dqn.key, what)])}
              for v in cases if v.model == "Dsqn" and v == v.base and dqn in cases for what in ("act", "update")]
    return {"device": device, "backends": backends, "skipped_backends": skipped, "rows": rows, "ratios": ratios,
            "errors": errors, "base": f"eager float32 on the default kernel ({default})"}


def break_even(first_s: float, base: list[float], faster: list[float]) -> float | None:
    """Updates after which a variant's one-off first call (compile, capture) has paid for itself; None if never."""
    saving = float(np.median(base)) - float(np.median(faster))
    return None if saving <= 0 else max(first_s - float(np.median(faster)), 0.0) / saving
