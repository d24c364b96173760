"""The driver: one Ray task per run (run.py or convert.py in a subprocess, sweeping/worker.py), conversions started
when their Dqn run finishes, bounded retries of interrupted runs, the progress table, the summary and plot.py.

Outcome of a task -> what the driver does:
    exit 0 and the run folder finished           done (its conversion, if any, is started)
    exit 2 (bad option or input), 3 (diverged)   failed for a reason of its own: reported, not retried
    anything else: another exit status (killed, crashed, 130/143 stopped by a signal), the worker or its node
    lost                                         interrupted: retried with run.py --resume, at most --max_retries
                                                 times per invocation, then reported
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import defaultdict

from sweeping import cost, progress
from sweeping.options import REPO_ROOT
from sweeping.state import OWN_FAILURE, SweepState
from sweeping.worker import execute

EXIT_FAILED, EXIT_STOPPED = 1, 130
PROBE_TIMEOUT_S = 10  # a TCP connection to --address host:port must open within this
CONNECT_TIMEOUT_S = 60  # joining the cluster must succeed within this (environment: SWEEP_CONNECT_TIMEOUT)
AUTH_HELP = ("set RAY_AUTH_MODE=token and make the cluster's token visible (~/.ray/auth_token, RAY_AUTH_TOKEN or "
             "RAY_AUTH_TOKEN_PATH) in this shell as on every node, or start every node and this driver with "
             "RAY_AUTH_MODE=disabled on a trusted network (docs/CLUSTER.md)")


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a --address, None for auto; a UserError for anything else."""
    from utils.cli import UserError

    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address}: give the head node's host:port (e.g. 10.0.0.1:6379) or auto")
    return host.strip("[]"), int(port)


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A UserError, within ``timeout`` seconds, when nothing accepts a TCP connection at ``address``."""
    import socket

    from utils.cli import UserError

    where = split_address(address)
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or ("no answer" if isinstance(error, TimeoutError) else str(error) or "refused")
        raise UserError(f"--address {address}: no Ray head node answers there ({reason}, {timeout:g} s limit); "
                        f"start one with `ray start --head --port={where[1]}` or give its address") from None


def connect(ray, address: str, job) -> None:
    """ray.init(address=...) that ends, whatever happens, in one line: a UserError for an error Ray raises, and
    after SWEEP_CONNECT_TIMEOUT seconds (default CONNECT_TIMEOUT_S) without an answer, one line on stderr and exit
    status 2 (Ray keeps retrying an address where something listens that is not a Ray head node). Ray's own log
    lines during the attempt are held back."""
    import tempfile
    import threading

    from utils.cli import UserError

    probe(address)
    timeout = float(os.environ.get("SWEEP_CONNECT_TIMEOUT") or CONNECT_TIMEOUT_S)
    sys.stderr.flush()
    saved = os.dup(2)

    def give_up() -> None:
        os.dup2(saved, 2)
        os.write(2, f"sweep.py: error: --address {address}: no Ray cluster answered within {timeout:g} s (is "
                    "it the head node's GCS port, 6379 by default, and the same Ray version?)\n".encode())
        os._exit(2)

    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        timer = threading.Timer(timeout, give_up)
        timer.daemon = True
        timer.start()
        try:
            ray.init(address=address, log_to_driver=False, job_config=job)
        except Exception as error:  # noqa: BLE001 - every way of not joining is the same one line
            text = " ".join(str(error).split()) or type(error).__name__
            held.seek(0)
            said = held.read().decode(errors="replace")  # Ray names a refused token only in its log
            if any("auth" in words.lower() for words in (text, type(error).__name__)) or "InvalidAuthToken" in said:
                raise UserError(f"--address {address}: the cluster refused this driver's authentication: "
                                f"{AUTH_HELP}") from None
            raise UserError(f"--address {address}: could not join the Ray cluster: {text[:300]}") from None
        finally:
            timer.cancel()
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class Stop(Exception):
    """SIGTERM to the driver: stop like Ctrl-C (the runs save their state)."""


class Driver:
    def __init__(self, options, plan: list[tuple], sweep_dir: str, state: SweepState, token: str, out=sys.stdout):
        self.options, self.sweep_dir, self.state, self.token, self.out = options, sweep_dir, state, token, out
        self.runs_dir = os.path.join(sweep_dir, "runs")
        self.specs = {spec.name: spec for spec, _, _ in plan}
        self.view = {spec.name: {"state": {"finished": "done", "failed": "failed"}.get(action, "waiting")}
                     for spec, action, _ in plan}
        self.refs: dict = {}
        self.retries: dict[str, int] = defaultdict(int)
        self.messages: list[str] = []
        self.durations: dict[tuple[str, str], list[float]] = defaultdict(list)  # (model, kind) -> seconds
        self.screen = progress.Screen(out)
        rates = cost.Rates(*cost.choose_report(options.benchmark, options.gpus_per_run > 0))
        self.estimate = {spec.name: cost.run_seconds(spec, rates, done) for spec, _, done in plan}

    # -- Ray --------------------------------------------------------------------------------------------------------

    def start_ray(self) -> None:
        import ray

        self.ray, self.owns_ray = ray, not ray.is_initialized()
        if self.owns_ray:  # the workers import sweeping/ from this repository (the same path on every node)
            job = ray.job_config.JobConfig(code_search_path=[REPO_ROOT])
            if self.options.address:
                connect(ray, self.options.address, job)
            else:
                ray.init(num_cpus=self.options.num_cpus, include_dashboard=False, log_to_driver=False, job_config=job,
                         object_store_memory=self.options.object_store_mb and self.options.object_store_mb << 20)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.board = progress.make_board()
        memory = {"memory": int(self.options.memory_per_run * 2**30)} if self.options.memory_per_run else {}
        self.task = ray.remote(execute).options(num_cpus=self.options.cpus_per_run,
                                                num_gpus=self.options.gpus_per_run, max_retries=0, **memory)
        self.say(f"Ray: {len(nodes)} node(s), {ray.cluster_resources().get('CPU', 0):g} CPUs, "
                 f"{ray.cluster_resources().get('GPU', 0):g} GPUs; each run holds {self.options.cpus_per_run:g} "
                 f"CPU(s) and {self.options.gpus_per_run:g} GPU(s)")

    def submit(self, name: str) -> None:
        spec, attempt = self.specs[name], self.state.run(name).get("attempts", 0) + 1
        job = {"name": name, "kind": spec.kind, "words": spec.words, "after": spec.after,
               "timestep_num": spec.config.get("timestep_num") if spec.kind == "train" else None,
               "sweep_dir": self.sweep_dir, "token": self.token, "repo_root": REPO_ROOT, "attempt": attempt,
               "cpus": self.options.cpus_per_run, "gpus": self.options.gpus_per_run}
        self.refs[self.task.remote(job, self.board)] = name
        self.view[name] = {"state": "queued", "attempt": attempt, "since": time.time()}
        self.state.record(name, state="running", attempts=attempt, words=spec.words)

    # -- outcomes ---------------------------------------------------------------------------------------------------

    def handle(self, name: str, result: dict) -> None:
        if "lost" in result:
            return self.interrupted(name, result["lost"])
        where = {"node": result.get("node"), "host": result.get("host"), "exit": result["rc"],
                 "seconds": round(result["seconds"], 1)}
        if result.get("finished"):
            self.view[name]["state"] = "done"
            self.state.record(name, state="done", error=None, **where)
            self.durations[(self.specs[name].model, self.specs[name].kind)].append(result["seconds"])
            self.start_ready()
        elif result["rc"] in OWN_FAILURE:
            self.fail(name, f"{OWN_FAILURE[result['rc']]}: {result.get('error') or 'no error line'}", **where)
        else:
            self.interrupted(name, f"exit status {result['rc']}" + (f" ({result['error']})" if result.get("error")
                                                                     else ""))

    def fail(self, name: str, why: str, **where) -> None:
        self.view[name].update(state="failed", why=why)
        self.state.record(name, state="failed", error=why, **where)
        self.say(f"FAILED {name}: {why}")
        self.start_ready()

    def interrupted(self, name: str, why: str) -> None:
        self.retries[name] += 1
        if self.retries[name] > self.options.max_retries:
            self.view[name].update(state="failed", why=f"interrupted {self.retries[name]} times, last: {why}")
            self.state.record(name, state="interrupted", error=why)
            self.say(f"GAVE UP {name} after {self.options.max_retries} retries: {why}")
            return self.start_ready()
        self.state.record(name, state="interrupted", error=why)
        self.say(f"interrupted {name}: {why}; retry {self.retries[name]}/{self.options.max_retries} "
                 "(--resume from its last saved state)")
        self.submit(name)

    def start_ready(self) -> None:
        """Submit the runs that wait: every training run, and each conversion whose Dqn run is done."""
        for name, view in self.view.items():
            if view["state"] != "waiting":
                continue
            spec = self.specs[name]
            after = self.view.get(spec.after, {}).get("state") if spec.after else "done"
            if after == "done":
                self.submit(name)
            elif after == "failed":
                what = "played" if spec.kind == "play" else "converted"
                view.update(state="failed", why=f"not {what}: its training run {spec.after} failed")

    # -- the loop ---------------------------------------------------------------------------------------------------

    def run(self) -> int:
        def on_sigterm(signum, frame):
            raise Stop()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        self.ray, self.owns_ray = None, False
        try:
            if any(view["state"] == "waiting" for view in self.view.values()):
                self.start_ray()
                self.start_ready()
            while self.refs:
                ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=self.options.refresh)
                if ready:
                    ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
                for ref in ready:
                    name = self.refs.pop(ref)
                    try:
                        result = self.ray.get(ref)
                    except self.ray.exceptions.RayError as error:
                        result = {"lost": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"}
                    self.handle(name, result)
                self.draw()
        except (KeyboardInterrupt, Stop) as stop:
            return self.stop(143 if isinstance(stop, Stop) else EXIT_STOPPED)
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.draw(final=True)
        failed = sorted(n for n, v in self.view.items() if v["state"] == "failed")
        self.summary(failed)
        if self.owns_ray:
            self.ray.shutdown()
        self.plot()
        return EXIT_FAILED if failed else 0

    def stop(self, status: int) -> int:
        if self.ray is None:
            return status
        self.say("stopping: every running run saves its state (the same command continues the sweep)")
        for ref in self.refs:
            self.ray.cancel(ref)
        with contextlib.suppress(KeyboardInterrupt, Stop):  # the runs save their state in the sweep folder
            self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=120)
        for name in self.refs.values():
            self.state.record(name, state="stopped")
        print(f"stopped: {len(self.refs)} run(s) were running or queued; the same command continues the sweep",
              file=self.out)
        if self.owns_ray:
            self.ray.shutdown()
        return status

    # -- output -----------------------------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        self.messages.append(message)
        self.draw()

    def draw(self, final: bool = False) -> None:
        reports = {}
        board = getattr(self, "board", None)
        if board is not None and self.ray is not None:
            try:
                reports = self.ray.get(board.snapshot.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - the table is only a view
                reports = {}
        rows, running, queued_left = [], [], []
        for name, view in self.view.items():
            report = reports.get(name, {})
            if view["state"] in ("queued", "running"):
                view["state"] = "running" if report.get("attempt") == view.get("attempt") else "queued"
            if view["state"] == "running":
                running.append(report)
                rows.append({"name": name, "state": "running", "attempt": view["attempt"], "report": report})
            elif view["state"] in ("queued", "waiting"):
                measured = self.durations.get((self.specs[name].model, self.specs[name].kind))  # a play is short
                queued_left.append(sum(measured) / len(measured) if measured else self.estimate.get(name))
            elif view["state"] == "failed":
                rows.append({"name": name, "state": "failed", "attempt": view.get("attempt", ""), "report": {}})
        counts = defaultdict(int)
        for view in self.view.values():
            counts[{"waiting": "queued"}.get(view["state"], view["state"])] += 1
        ordered = {k: counts.get(k, 0) for k in ("queued", "running", "done", "failed")}
        lines = progress.table(rows, ordered, progress.grid_eta(running, queued_left))
        self.screen.show(lines, self.messages, final)
        self.messages = []

    def summary(self, failed: list[str]) -> None:
        done = sum(v["state"] == "done" for v in self.view.values())
        print(f"\nsweep {self.sweep_dir}: {done} of {len(self.view)} runs finished, {len(failed)} failed",
              file=self.out)
        for name in failed:
            print(f"  {name}: {self.view[name].get('why') or self.state.run(name).get('error')}", file=self.out)
        if failed:
            print("  (runs that failed for a reason of their own are not retried when the sweep is started "
                  "again; --retry_failed does, and changed options always do)", file=self.out)

    def plot(self) -> None:
        import shlex

        from utils.runs import shown

        done = sorted(n for n, v in self.view.items() if v["state"] == "done")
        figures = os.path.join(self.sweep_dir, "figures")
        scores = os.path.join(figures, "scores.md")
        if not self.options.plot or not done:
            return
        if self.state.data.get("plotted") == done and os.path.exists(scores):
            print(f"figures are up to date: {shown(figures)}/ (scores: {shown(scores)})", file=self.out)
            return
        from plotting.cli import main as plot_main
        from plotting.common import short_game
        from utils.cli import UserError

        try:
            games = sorted({short_game(spec.env_id) for spec in self.specs.values()})
            plot_main(["--runs_dir", self.runs_dir, "--output_dir", figures, "--no_progress", "--games", *games,
                       *shlex.split(self.options.plot_options or "")])
        except (UserError, SystemExit) as error:
            print(f"plot.py did not run: {error}", file=self.out)
            return
        self.state.data["plotted"] = done
        self.state.save()
        print(f"figures: {shown(figures)}/  scores: {shown(scores)}  statistics: "
              f"{shown(os.path.join(figures, 'statistics.md'))}", file=self.out)
