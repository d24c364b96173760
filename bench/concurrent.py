"""Part ``concurrent``: k training runs at once on one device (k processes, each the real loop of part end_to_end
with run.py's default options), and their aggregate learning steps per second: how many runs one GPU holds before
they slow each other down (docs/CLUSTER.md's --gpus_per_run)."""

from __future__ import annotations

import multiprocessing as mp

from .timing import stat


def _one(queue, barrier, run, steps, replay_start, capacity, device, seed, threads):
    import torch

    torch.set_num_threads(threads)
    from bench.end_to_end import learn_window

    try:
        queue.put(("ok", learn_window(run, steps, replay_start, capacity, device, seed,
                                      before_learning=lambda: barrier.wait(timeout=600))))
    except Exception as error:  # noqa: BLE001 - reported by the parent
        queue.put(("error", f"{type(error).__name__}: {error}"))


def bench_concurrent(run, ks: list[int], steps: int, replay_start: int, capacity: int, device: str, seed: int = 0,
                     threads: int = 1, progress=print) -> dict:
    """For each k: k processes (spawned) each run ``run`` for ``steps`` learning steps, all starting to learn at
    once (a barrier after their set-up and exploration); per process its rate over
    its learning steps 1 .. steps-1, and in all the learning steps of all k over the span from the first one's
    start to the last one's end (the clock is the system's monotonic one, the same in every process)."""
    context = mp.get_context("spawn")
    out = {"run": run.key, "learning_steps": steps, "threads_per_run": threads, "k": {}}
    for k in ks:
        queue, barrier = context.Queue(), context.Barrier(k)
        processes = [context.Process(target=_one, args=(queue, barrier, run, steps, replay_start, capacity, device,
                                                        seed + i, threads)) for i in range(k)]
        for process in processes:
            process.start()
        answers = [queue.get() for _ in processes]
        for process in processes:
            process.join()
        errors = [value for status, value in answers if status != "ok"]
        if errors:
            out["k"][str(k)] = {"error": errors[0]}
            progress(f"concurrent k={k} FAILED: {errors[0]}")
            continue
        windows = [value for _, value in answers]
        rates = [(steps - 2) / (last - first) for first, last in windows]
        span = max(last for _, last in windows) - min(first for first, _ in windows)
        overlap = min(last for _, last in windows) - max(first for first, _ in windows)
        out["k"][str(k)] = {"per_run_steps_per_s": stat(rates, "steps/s"), "sum_of_rates": sum(rates),
                            "aggregate_steps_per_s": k * (steps - 2) / span,
                            "overlap_fraction": max(overlap, 0.0) / span}
        progress(f"concurrent k={k}: {sum(rates):.3g} learning steps/s in all (sum of rates)")
    one = out["k"].get(str(ks[0]), {}).get("sum_of_rates")
    if one:
        for r in out["k"].values():
            if "sum_of_rates" in r:
                r["scaling"] = r["sum_of_rates"] / one
    return out
