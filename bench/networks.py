"""Part ``networks``: act latency and update time of Dqn and Dsqn through the agent's own code paths.

For every case (Dqn; Dsqn at each T) and every neuron backend that can run on the device:

* ``forward``: the bare network on one uint8 frame stack already on the device, no grad;
* ``act``: :meth:`agent.Agent.act` at epsilon 0 from a numpy frame stack (what the training loop pays per greedy
  step: numpy -> tensor, host -> device, forward, device -> host, argmax);
* ``update``: :meth:`agent.Agent.update` on a fixed minibatch of 32 real Breakout transitions (host -> device
  copies, the target network's forward, the online forward + backward and the Adam step); sampling is timed in the
  replay part.

Every (network, backend) runs in its own worker process (``multiprocessing`` spawn), as in a training run that
holds one network: SpikingJelly picks its CUDA kernel once per process, and glibc's allocator serves the big
tensors of a Dsqn T=64 update differently when smaller networks share the process. The main process asks the
workers for one sample at a time, so the rounds stay interleaved across networks and backends.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
import traceback

import numpy as np
import torch

from .timing import ratio_stat, stat, time_calls

N_ACTIONS = 4  # Breakout's minimal action set
#: pause before each sample of an isolated worker, so that the worker that ran last has gone idle (its OpenMP
#: threads may wait actively for a moment after their last parallel region)
SETTLE_S = 0.02


def case_key(model: str, T: int | None) -> str:
    return model if model == "Dqn" else f"{model}_T{T}"


class FixedReplay:
    """Stands in for the replay memory in :meth:`Agent.update`: always returns the same CPU minibatch."""

    def __init__(self, batch):
        self.batch = batch

    def sample(self, batch_size: int):
        return self.batch


@functools.lru_cache(maxsize=4)
def real_batch(batch_size: int, seed: int = 0, steps: int = 600):
    """A minibatch sampled from a replay memory filled by ``steps`` random-action steps of Breakout's training env
    (real frames: mostly black, as the network sees them in training)."""
    from environment import make_env
    from replay_memory import ReplayMemory

    env = make_env("BreakoutNoFrameskip-v4", training=True, seed=seed)
    memory = ReplayMemory(steps, seed=seed)
    rng = np.random.default_rng(seed)
    state, _ = env.reset()
    for _ in range(steps):
        action = int(rng.integers(N_ACTIONS))
        next_state, reward, terminated, truncated, _ = env.step(action)
        memory.append(state, action, reward, terminated or truncated, next_state)
        state = env.reset()[0] if terminated or truncated else next_state
    env.close()
    return memory.sample(batch_size)


def random_batch(batch_size: int, seed: int = 0):
    from replay_memory.replay_memory import Batch

    g = torch.Generator().manual_seed(seed)
    return Batch(
        states=torch.randint(0, 256, (batch_size, 4, 84, 84), dtype=torch.uint8, generator=g),
        actions=torch.randint(0, N_ACTIONS, (batch_size,), generator=g),
        rewards=torch.randint(-1, 2, (batch_size,), generator=g).float(),
        next_states=torch.randint(0, 256, (batch_size, 4, 84, 84), dtype=torch.uint8, generator=g),
        dones=(torch.rand(batch_size, generator=g) < 0.05).float(),
    )


def compile_network(net) -> None:
    """torch.compile the body of a QNetwork's forward, in place: ``_forward_ann`` or ``_forward_snn``.

    ``QNetwork.forward`` calls SpikingJelly's ``functional.reset_net`` before the body; inside a compiled region
    it makes Dynamo guard on SpikingJelly's module cache (a WeakKeyDictionary that grows with every network
    reset), which recompiles on almost every call until the recompile limit, then falls back to eager. So the
    reset stays eager and only the body is compiled; ``dynamic=False`` keeps the batch-1 (act) and batch-32
    (update) graphs static instead of one dynamic-shape graph.
    """
    name = "_forward_snn" if net.spiking else "_forward_ann"
    setattr(net, name, torch.compile(getattr(net, name), dynamic=False))


class NetworkCase:
    """One network with its target network, an Adam optimizer and an Agent, ready to act and to update."""

    def __init__(self, model: str, T: int | None, device: str, batch_size: int = 32, seed: int = 0,
                 compile_net: bool = False):
        from agent import Agent, Config
        from neural_network import build_network

        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.config = Config(model=model, T=T or 64, device=device, seed=seed)
        self.net = build_network(model, N_ACTIONS, **self.config.network_kwargs())
        self.target = build_network(model, N_ACTIONS, **self.config.network_kwargs()).to(self.device)
        self.target.load_state_dict(self.net.state_dict())
        self.target.eval()
        self.eager_net = self.net
        if compile_net:
            compile_network(self.net)
            compile_network(self.target)
        self.agent = Agent(self.config, self.net, self.device, writer=None)
        self.optimizer = torch.optim.Adam(self.eager_net.parameters(), lr=self.config.learning_rate)
        self.loss_fn = torch.nn.SmoothL1Loss()
        self.replay = FixedReplay(real_batch(batch_size, seed))
        self.frame_stack = self.replay.batch.states[0].numpy().copy()
        self.state = torch.from_numpy(self.frame_stack).unsqueeze(0).to(self.device)

    def forward(self):
        with torch.no_grad():
            return self.net(self.state)

    def act(self):
        return self.agent.act(self.frame_stack, 0.0)

    def update(self):
        return self.agent.update(self.replay, self.target, self.optimizer, self.loss_fn)


# -- workers: the same interface in this process or in a spawned one -------------------------------------------------


class LocalWorker:
    def __init__(self, backend: str, device: str, threads: int | None = None):
        from neural_network import select_backend

        self.backend, self.device = backend, device
        if backend != "n/a":
            select_backend(backend, device)
        self.cases: dict[str, NetworkCase] = {}

    def setup(self, model: str, T: int | None, batch_size: int, seed: int) -> None:
        self.cases[case_key(model, T)] = NetworkCase(model, T, self.device, batch_size, seed)

    def time(self, key: str, what: str, inner: int) -> float:
        return time_calls(getattr(self.cases[key], what), inner, self.device)

    def learn(self, model: str, T: int | None, steps: int, replay_start_size: int, replay_capacity: int,
              seed: int) -> float:
        """Seconds per learning step of a short real Agent.learn run (see :mod:`bench.end_to_end`)."""
        from .end_to_end import learn_run

        return learn_run(model, T, steps, replay_start_size, replay_capacity, self.device, seed)

    def peak_rss_mb(self) -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes

    def close(self) -> None:
        self.cases.clear()


def tune_malloc() -> bool:
    """The allocator candidate: glibc serves big blocks from the heap instead of fresh mmaps and keeps freed memory.

    By default glibc gives every block above its mmap threshold (at most 32 MB) its own mmap and unmaps it on
    free, so each large tensor of a Dsqn update is page-faulted in (and zeroed by the kernel) again on every
    update. Returns False where there is no glibc ``mallopt``."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def _worker_loop(conn, backend: str, device: str, threads: int | None, sys_path: list[str],
                 malloc_tuned: bool = False) -> None:
    import sys

    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    if threads:
        torch.set_num_threads(threads)
    if malloc_tuned and not tune_malloc():
        conn.send(("error", "glibc mallopt is not available here"))
        return
    try:
        worker = LocalWorker(backend, device)
        conn.send(("ok", None))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(error).__name__}: {error}"))
        return
    while True:
        command, args = conn.recv()
        if command == "close":
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(worker, command)(*args)))
        except Exception:  # noqa: BLE001
            conn.send(("error", traceback.format_exc(limit=3)))


class ProcessWorker:
    """A :class:`LocalWorker` in a spawned process (its own SpikingJelly kernel choice)."""

    def __init__(self, backend: str, device: str, threads: int | None = None, malloc_tuned: bool = False,
                 wait: bool = True):
        import sys

        context = multiprocessing.get_context("spawn")
        self.backend = backend
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_loop, daemon=True,
                                       args=(child, backend, device, threads, list(sys.path), malloc_tuned))
        self.process.start()
        self._ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the worker has started (imports done, backend chosen)."""
        if not self._ready:
            self._receive()
            self._ready = True

    def _receive(self):
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"backend {self.backend} worker died (exit code {self.process.exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"backend {self.backend} worker: {value}")
        return value

    def _call(self, command: str, *args):
        self.conn.send((command, args))
        return self._receive()

    def setup(self, model, T, batch_size, seed):
        return self._call("setup", model, T, batch_size, seed)

    def time(self, key, what, inner):
        return self._call("time", key, what, inner)

    def learn(self, model, T, steps, replay_start_size, replay_capacity, seed):
        return self._call("learn", model, T, steps, replay_start_size, replay_capacity, seed)

    def peak_rss_mb(self):
        return self._call("peak_rss_mb")

    def close(self):
        try:
            self._call("close")
        finally:
            self.process.join(timeout=30)


# -- the part ---------------------------------------------------------------------------------------------------------


def available_backends(device: str) -> tuple[list[str], dict[str, str]]:
    """The neuron backends that can run on ``device`` and, for the others, why not."""
    from neural_network import BackendError, resolve_backend

    candidates = ["cuda", "triton", "torch"] if torch.device(device).type == "cuda" else ["torch"]
    usable, skipped = [], {}
    for backend in candidates:
        try:
            resolve_backend(backend, device)
            usable.append(backend)
        except BackendError as error:
            skipped[backend] = str(error)
    return usable, skipped


def bench_networks(device: str, Ts: list[int], repeats: int, act_inner: dict[str, int], update_inner: int = 1,
                   batch_size: int = 32, seed: int = 0, isolate: bool = True, threads: int | None = None,
                   progress=None) -> dict:
    """Act and update times of Dqn and of Dsqn at each T, for every usable neuron backend, interleaved.

    ``isolate``: every (case, backend) in its own worker process, as in a training run that holds one network:
    SpikingJelly's CUDA kernel choice is made once per process, and on the CPU glibc's allocator behaves
    differently when networks of very different sizes share a process (measured: the Dsqn T=64 update up to ~20 %
    slower next to a Dqn and a Dsqn T=8). Without it (debugging), everything runs in this process.
    """
    backends, skipped = available_backends(device)
    if not isolate and torch.device(device).type == "cuda" and len(backends) > 1:
        raise ValueError("on CUDA every neuron backend needs its own process: use isolate=True")
    plan: list[tuple[str, str, int | None, str]] = [("n/a:Dqn", "Dqn", None, "n/a")]  # (worker, model, T, backend)
    for backend in backends:
        for T in Ts:
            plan.append((f"{backend}:{case_key('Dsqn', T)}", "Dsqn", T, backend))
    workers: dict[str, object] = {}
    try:
        for name, model, T, backend in plan:
            workers[name] = (ProcessWorker(backend, device, threads, wait=False) if isolate
                             else LocalWorker(backend, device))
        for name, model, T, backend in plan:
            if isolate:
                workers[name].wait_ready()
            workers[name].setup(model, T, batch_size, seed)
        if progress is not None:
            progress(f"networks: {len(workers)} {'worker processes' if isolate else 'cases'} ready")
        samples: dict[tuple, list[float]] = {}
        for what in ("forward", "act", "update"):
            entries = [(w, case_key(m, T), b) for w, m, T, b in plan]
            # warm-up round, then interleaved rounds with a rotating order
            for w, key, b in entries:
                workers[w].time(key, what, 1)
            for r in range(repeats):
                shift = r % len(entries)
                for w, key, b in entries[shift:] + entries[:shift]:
                    inner = update_inner if what == "update" else act_inner.get(key, 1)
                    if isolate:
                        time.sleep(SETTLE_S)
                    samples.setdefault((key, b, what), []).append(workers[w].time(key, what, inner))
                if progress is not None:
                    progress(f"networks {what} round {r + 1}/{repeats}")
    finally:
        for worker in workers.values():
            try:
                worker.close()
            except Exception:  # noqa: BLE001 - a worker that failed to start
                pass

    results = []
    for _, model, T, backend in plan:
        key = case_key(model, T)
        results.append({
            "case": key, "model": model, "T": T, "backend": backend,
            "forward_ms": stat(samples[(key, backend, "forward")], "ms", 1e3),
            "act_ms": stat(samples[(key, backend, "act")], "ms", 1e3),
            "update_ms": stat(samples[(key, backend, "update")], "ms", 1e3),
            "act_overhead": {"what": "Agent.act / bare forward",
                             "value": ratio_stat(samples[(key, backend, "act")], samples[(key, backend, "forward")])},
        })
    ratios = []
    for _, model, T, backend in plan:
        if model == "Dqn":
            continue
        key = case_key(model, T)
        for what in ("act", "update"):
            ratios.append({"what": f"{key} ({backend}) / Dqn {what}",
                           "value": ratio_stat(samples[(key, backend, what)], samples[("Dqn", "n/a", what)])})
    if torch.device(device).type == "cuda":
        for T in Ts:
            key = case_key("Dsqn", T)
            for other in backends:
                if other == backends[0]:
                    continue
                for what in ("act", "update"):
                    ratios.append({"what": f"{key} {what}: {other} / {backends[0]}",
                                   "value": ratio_stat(samples[(key, other, what)], samples[(key, backends[0], what)])})
    return {"device": device, "backends": backends, "skipped_backends": skipped, "isolated_workers": isolate,
            "batch_size": batch_size, "results": results, "ratios": ratios}


def lookup(networks: dict, case: str) -> dict:
    for entry in networks["results"]:
        if entry["case"] == case:
            return entry
    raise KeyError(case)


def numpy_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (4, 84, 84), dtype=np.uint8)
