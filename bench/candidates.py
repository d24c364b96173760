"""Part ``candidates``: speed-ups the lead may apply, each measured against the current code, interleaved.

* torch.compile of the act and update paths (in a spawned process with a fresh, empty Inductor cache, so the
  compile time is the cold, first-run cost): compile time, steady-state times, break-even number of calls and
  a check that the compiled network gives the eager network's outputs;
* 1 torch thread against the default number for acting and updating;
* the small costs in the hot loop of :meth:`agent.Agent.learn` (tqdm, TensorBoard, ``.item()``, epsilon,
  SpikingJelly's ``reset_net``, the target-network copy, host -> device copies of a minibatch).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
import traceback

import numpy as np
import torch

from .networks import NetworkCase, case_key
from .timing import break_even_calls, interleave, inverse_stat, ratio_stat, stat, synchronize

# -- torch.compile ----------------------------------------------------------------------------------------------------

#: tolerances of the compiled-equals-eager check (float32; Inductor may fuse and reorder float sums)
COMPILE_ATOL = {"Dqn": 1e-4, "Dsqn": 1e-4}
COMPILE_RTOL = 1e-4


def compare_outputs(a: torch.Tensor, b: torch.Tensor, model: str) -> dict:
    diff = float((a.detach().float() - b.detach().float()).abs().max())
    ok = bool(torch.allclose(a.detach().float(), b.detach().float(), rtol=COMPILE_RTOL, atol=COMPILE_ATOL[model]))
    return {"max_abs_diff": diff, "atol": COMPILE_ATOL[model], "rtol": COMPILE_RTOL, "equal_within_tolerance": ok}


def compile_case(model: str, T: int | None, device: str, repeats: int, act_inner: int, seed: int = 0,
                 update_repeats: int | None = None, note=None) -> dict:
    """Compile one case's act and update; measure compile (first call) and steady-state times against eager.
    ``note(message)`` is told when each compile is done."""
    eager = NetworkCase(model, T, device, seed=seed)
    compiled = NetworkCase(model, T, device, seed=seed, compile_net=True)  # same seed: same weights, same batch
    out = {"case": case_key(model, T), "model": model, "T": T}

    # act: the first call of the compiled network compiles the batch-1, no-grad graph
    started = time.perf_counter()
    q_compiled = compiled.forward()
    synchronize(device)
    first_act = time.perf_counter() - started
    q_eager = eager.forward()
    out["act_check"] = compare_outputs(q_compiled, q_eager, model)
    if note is not None:
        note(f"{out['case']} act compiled in {first_act:.0f} s")
    started = time.perf_counter()
    compiled.act()
    second_act = time.perf_counter() - started

    # update: the first call compiles the batch-32 graphs (target no-grad forward; online forward + backward)
    synchronize(device)
    started = time.perf_counter()
    loss_compiled = compiled.update()
    synchronize(device)
    first_update = time.perf_counter() - started
    loss_eager = eager.update()
    out["update_check"] = compare_outputs(loss_compiled, loss_eager, model)
    if note is not None:
        note(f"{out['case']} update compiled in {first_update:.0f} s")
    with torch.no_grad():
        param_diff = max(float((p - q).abs().max()) for p, q in zip(compiled.net.parameters(),
                                                                     eager.net.parameters()))
    out["update_check"]["max_param_diff_after_one_update"] = param_diff
    started = time.perf_counter()
    compiled.update()
    synchronize(device)
    second_update = time.perf_counter() - started
    eager.update()

    act = interleave({"eager": eager.act, "compiled": compiled.act}, repeats, inner=act_inner, warmup=1, device=device)
    update = interleave({"eager": eager.update, "compiled": compiled.update}, update_repeats or repeats, warmup=0,
                        device=device)
    for what, samples, first, second in (("act", act, first_act, second_act),
                                         ("update", update, first_update, second_update)):
        eager_ms = stat(samples["eager"], "ms", 1e3)
        compiled_ms = stat(samples["compiled"], "ms", 1e3)
        calls = break_even_calls(first, eager_ms["median"] / 1e3, compiled_ms["median"] / 1e3)
        out[what] = {
            "compile_s": first,
            "second_call_ms": second * 1e3,
            "eager_ms": eager_ms,
            "compiled_ms": compiled_ms,
            "speedup": {"what": f"eager / compiled {what} time", "value": ratio_stat(samples["eager"],
                                                                                    samples["compiled"])},
            "break_even_calls": calls,
        }
    return out


def _compile_worker(conn, cases, device, repeats, act_inner, seed, threads, update_repeats, sys_path) -> None:
    import sys

    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    if threads:
        torch.set_num_threads(threads)
    results = []
    for model, T in cases:
        try:
            results.append(compile_case(model, T, device, repeats, act_inner.get(case_key(model, T), 1), seed,
                                        update_repeats, note=lambda message: conn.send(("note", message))))
        except Exception:  # noqa: BLE001 - reported, the other cases still run
            results.append({"case": case_key(model, T), "model": model, "T": T,
                            "error": traceback.format_exc(limit=4)})
        conn.send(("progress", results[-1]["case"]))
    conn.send(("done", results))


def bench_compile(cases: list[tuple[str, int | None]], device: str, repeats: int, act_inner: dict[str, int],
                  seed: int = 0, threads: int | None = None, update_repeats: int | None = None,
                  progress=None) -> dict:
    """Run :func:`compile_case` for every case in one spawned process with a fresh Inductor cache."""
    import sys

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench_inductor_") as cache_dir:
        saved = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
        try:
            parent, child = context.Pipe()
            process = context.Process(target=_compile_worker, daemon=True, args=(
                child, cases, device, repeats, act_inner, seed, threads, update_repeats, list(sys.path)))
            process.start()
        finally:
            if saved is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR")
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = saved
        started = time.perf_counter()
        while True:
            if not parent.poll(1.0):
                if not process.is_alive():
                    raise RuntimeError(f"the torch.compile worker died (exit code {process.exitcode})")
                continue
            kind, value = parent.recv()
            if kind == "note":
                if progress is not None:
                    progress(f"compile: {value}")
                continue
            if kind == "progress":
                if progress is not None:
                    progress(f"compile: {value} done after {time.perf_counter() - started:.0f} s")
                continue
            results = value
            break
        process.join(timeout=60)
    return {"cache": "fresh empty Inductor cache (cold compile)", "cases": results}


# -- threads ----------------------------------------------------------------------------------------------------------


def bench_threads(cases: list[tuple[str, int | None]], device: str, repeats: int, act_inner: dict[str, int],
                  update_cases: list[tuple[str, int | None]], seed: int = 0, progress=None) -> dict:
    """Agent.act (and Agent.update) with 1 torch thread against the default number, interleaved per sample."""
    default = torch.get_num_threads()
    if default < 2:
        return {"skipped": f"torch uses {default} thread here; nothing to compare"}
    built = {case_key(m, T): NetworkCase(m, T, device, seed=seed) for m, T in cases}

    def set_threads(name: str) -> None:
        torch.set_num_threads(1 if name.endswith("@1") else default)

    out = {"default_threads": default, "act": [], "update": []}
    try:
        for what, chosen in (("act", cases), ("update", update_cases)):
            for model, T in chosen:
                key = case_key(model, T)
                fn = getattr(built[key], what)
                samples = interleave({f"{key}@1": fn, f"{key}@{default}": fn}, repeats,
                                     inner=act_inner.get(key, 1) if what == "act" else 1, warmup=1,
                                     between=set_threads)
                out[what].append({
                    "case": key,
                    "threads_1_ms": stat(samples[f"{key}@1"], "ms", 1e3),
                    f"threads_{default}_ms": stat(samples[f"{key}@{default}"], "ms", 1e3),
                    "ratio": {"what": f"1 thread / {default} threads {what} time",
                              "value": ratio_stat(samples[f"{key}@1"], samples[f"{key}@{default}"])},
                })
                if progress is not None:
                    progress(f"threads: {what} {key}")
    finally:
        torch.set_num_threads(default)
    return out


# -- the allocator ----------------------------------------------------------------------------------------------------


def bench_malloc(cases: list[tuple[str, int | None]], device: str, repeats: int, seed: int = 0,
                 threads: int | None = None, progress=None, learn: dict | None = None) -> dict:
    """Agent.update in two worker processes, glibc malloc as is against :func:`bench.networks.tune_malloc`: one
    update sample from each in turn (interleaved, timed inside the workers), then each worker's peak memory.

    ``learn`` (model, T, steps, replay_start_size, replay_capacity): also short Agent.learn runs in both workers,
    interleaved, as in the end-to-end part."""
    from .networks import ProcessWorker

    workers = {}
    out = {"how": "at the start of the process: ctypes.CDLL('libc.so.6').mallopt(-4, 0) (M_MMAP_MAX: no mmap "
                  "per big block) and mallopt(-1, 2**31 - 1) (M_TRIM_THRESHOLD: keep freed memory)", "update": []}
    try:
        workers["default"] = ProcessWorker("torch", device, threads)
        workers["tuned"] = ProcessWorker("torch", device, threads, malloc_tuned=True)
        for worker in workers.values():
            for model, T in cases:
                worker.setup(model, T, 32, seed)
        names = list(workers)
        for model, T in cases:
            key = case_key(model, T)
            for name in names:  # warm-up
                workers[name].time(key, "update", 1)
            samples = {name: [] for name in names}
            for r in range(repeats):
                for name in names[r % 2:] + names[: r % 2]:
                    samples[name].append(workers[name].time(key, "update", 1))
            out["update"].append({
                "case": key,
                "default_ms": stat(samples["default"], "ms", 1e3),
                "tuned_ms": stat(samples["tuned"], "ms", 1e3),
                "speedup": {"what": "default / tuned update time",
                            "value": ratio_stat(samples["default"], samples["tuned"])},
            })
            if progress is not None:
                progress(f"malloc: update {key}")
        if learn is not None:
            key = case_key(learn["model"], learn["T"])
            samples = {name: [] for name in names}
            for r in range(repeats):
                for name in names[r % 2:] + names[: r % 2]:
                    samples[name].append(workers[name].learn(learn["model"], learn["T"], learn["steps"],
                                                             learn["replay_start_size"], learn["replay_capacity"],
                                                             seed))
                if progress is not None:
                    progress(f"malloc: learn {key} round {r + 1}/{repeats}")
            out["learn"] = {
                "case": key, "learning_steps_per_run": learn["steps"],
                "default_steps_per_s": inverse_stat(samples["default"], "steps/s"),
                "tuned_steps_per_s": inverse_stat(samples["tuned"], "steps/s"),
                "speedup": {"what": "default / tuned seconds per learning step",
                            "value": ratio_stat(samples["default"], samples["tuned"])},
            }
        out["peak_rss_mb"] = {name: w.peak_rss_mb() for name, w in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    return out


# -- the hot loop of Agent.learn ---------------------------------------------------------------------------------------


def bench_hot_loop(device: str, repeats: int, inner: int, spiking_T: int, seed: int = 0) -> dict:
    """Microseconds per call of the small things Agent.learn does on every step or every update."""
    from spikingjelly.activation_based import functional
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from agent.config import epsilon_at
    from neural_network import build_network

    from .networks import random_batch

    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    loss = torch.tensor(0.5, device=dev)
    batch = random_batch(32, seed)
    dqn = build_network("Dqn", 4).to(dev)
    dqn_target = build_network("Dqn", 4).to(dev)
    dsqn = build_network("Dsqn", 4, T=spiking_T).to(dev)
    step = [0]

    with tempfile.TemporaryDirectory(prefix="bench_tb_") as log_dir, open(os.devnull, "w") as devnull:
        writer = SummaryWriter(log_dir=log_dir)
        bar = tqdm(total=10**9, unit="step", mininterval=1.0, file=devnull, dynamic_ncols=False)

        def add_scalar():
            step[0] += 1
            writer.add_scalar("learn/loss", loss.item(), step[0])

        def to_device():
            return [t.to(dev, non_blocking=True) for t in batch]

        variants = {
            "tqdm_update": bar.update,
            "add_scalar_with_item": add_scalar,
            "loss_item": loss.item,
            "epsilon_and_rng": lambda: rng.random() < epsilon_at(step[0], 1.0, 0.1, 1_000_000),
            f"reset_net_Dsqn_T{spiking_T}": lambda: functional.reset_net(dsqn),
            "batch_to_device": to_device,
            "target_copy_Dqn": lambda: dqn_target.load_state_dict(dqn.state_dict()),
        }
        inners = {name: inner for name in variants}
        inners["target_copy_Dqn"] = max(1, inner // 100)
        samples = interleave(variants, repeats, inner=inners, warmup=1, device=dev)
        bar.close()
        writer.close()
    per_call = {name: stat(values, "us", 1e6) for name, values in samples.items()}
    return {
        "per_call_us": per_call,
        "how_often": {
            "tqdm_update": "every step",
            "add_scalar_with_item": "every update (every 4 steps)",
            "loss_item": "every update (inside add_scalar_with_item)",
            "epsilon_and_rng": "every step",
            f"reset_net_Dsqn_T{spiking_T}": "every Dsqn forward (acting: every greedy step; update: twice)",
            "batch_to_device": "every update (a no-op copy on the CPU)",
            "target_copy_Dqn": "every 10,000 steps",
        },
    }
