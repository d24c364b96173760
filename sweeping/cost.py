"""The estimated cost of a plan, from the rates of a benchmark report (bench/run.py's JSON in docs/benchmarks/).

The report is read tolerantly (its layout may change): a training rate is any object with a "case" such as Dqn,
Dsqn_T64 or Dqn@1t and a "steps_per_s" (a number or a {"median": ...}); the act time is an "act_ms" found under
a case's name; the env step an "env_us"; the conversion time a "ms_per_action" with a layer_by_layer median next to
a "T". What is not found is taken from :data:`FALLBACK` (the committed 2-core CPU report's figures), and the
estimate says which numbers came from where.
"""

from __future__ import annotations

import glob
import json
import os
import re

from sweeping.options import REPO_ROOT

BENCH_DIR = os.path.join(REPO_ROOT, "docs", "benchmarks")
FALLBACK_SOURCE = "built-in defaults copied from docs/benchmarks/amd-epyc_2t_cpu_torch2.13.0_sj2.0.0.json (2 CPU threads)"
FALLBACK = {
    "train": {("Dqn", None, 2): 135.10, ("Dqn", None, 1): 85.00, ("Dsqn", 64, 2): 2.710, ("Dsqn", 64, 1): 1.641},
    "act_ms": {("Dqn", None): 0.584, ("Dsqn", 64): 21.49},
    "env_ms": 0.555,
    "conversion": (85.69, 500),  # ms per action layer by layer, at this T
}
EVAL_GAME_STEPS = 1000  # agent steps per evaluation game, the report's own assumption
_CASE = re.compile(r"^(Dqn|Dsqn|DsqnSpike|DsqnIF)(?:_T(\d+))?(?:@(\d+)t)?$")


def _number(value):
    if isinstance(value, dict):
        value = value.get("median")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _walk(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, str(index)))


def read_rates(report: dict) -> dict:
    """The rates found in a report (missing keys simply absent)."""
    found: dict = {"train": {}, "act_ms": {}}
    for path, node in _walk(report):
        case = _CASE.match(str(node.get("case", "")))
        rate = _number(node.get("steps_per_s"))
        if case and rate:
            threads = int(case.group(3) or node.get("threads") or 2)
            found["train"].setdefault((case.group(1), int(case.group(2)) if case.group(2) else None, threads), rate)
        named = next((_CASE.match(p) for p in reversed(path) if _CASE.match(p)), None)
        act = _number(node.get("act_ms"))
        if named and act and not named.group(3):
            found["act_ms"].setdefault((named.group(1), int(named.group(2)) if named.group(2) else None), act)
        if _number(node.get("env_us")) and "env_ms" not in found:
            found["env_ms"] = _number(node["env_us"]) / 1000.0
        per_action = node.get("ms_per_action")
        if isinstance(per_action, dict) and _number(per_action.get("layer_by_layer")) and _number(node.get("T")):
            found.setdefault("conversion", (_number(per_action["layer_by_layer"]), _number(node["T"])))
    return found


def choose_report(path: str | None, gpu: bool) -> tuple[dict, str, list[str]]:
    """(report, its name, notes): ``path``, or the newest report in docs/benchmarks/ for the device kind."""
    notes = []
    candidates = [path] if path else sorted(glob.glob(os.path.join(BENCH_DIR, "*.json")))
    reports = []
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8") as file:
                report = json.load(file)
            if isinstance(report, dict):
                reports.append((candidate, report))
        except (OSError, ValueError):
            notes.append(f"{candidate}: not a readable benchmark report, ignored")
    if not reports:
        return {}, "none", notes

    def device(report) -> str:
        machine = report.get("machine") if isinstance(report.get("machine"), dict) else {}
        return str(machine.get("device") or report.get("settings", {}).get("device") or "cpu")

    fitting = [r for r in reports if (device(r[1]) != "cpu") == gpu] or reports
    if gpu and all(device(r) == "cpu" for _, r in fitting):
        notes.append("no GPU benchmark report: CPU rates are used for runs that hold a GPU, so the estimate is far "
                     "too high (run python bench/run.py --device cuda on a GPU machine and commit its report)")
    chosen, report = max(fitting, key=lambda r: str(r[1].get("started", "")))
    return report, os.path.relpath(chosen, REPO_ROOT), notes


class Rates:
    def __init__(self, report: dict, source: str, notes: list[str]):
        self.found, self.source, self.notes, self.used = read_rates(report), source, list(notes), set()

    def _pick(self, kind: str, model: str, T: int, threads: int | None = None):
        """The closest measured case: the same model before Dsqn's, the same threads, then the nearest T."""
        import math

        base = "Dqn" if model == "Dqn" else "Dsqn"
        found, fallback = self.found.get(kind, {}), FALLBACK[kind]
        table = {**{k: (v, FALLBACK_SOURCE) for k, v in fallback.items()},
                 **{k: (v, self.source) for k, v in found.items()}}
        keys = [k for k in table if k[0] in (model, base)]

        def distance(key):
            return (key[0] != model, threads is not None and key[2] != threads,
                    abs(math.log(key[1] / T)) if key[1] and T else 0.0, table[key][1] == FALLBACK_SOURCE)

        key = min(keys, key=distance)
        return key, *table[key]

    def train_seconds_per_step(self, model: str, T: int, threads: int) -> float:
        key, rate, source = self._pick("train", model, T, 1 if threads < 2 else 2)
        scale = T / key[1] if key[1] and model != "Dqn" else 1.0
        self.used.add(f"learning {key[0]}{f' T={key[1]}' if key[1] else ''} {key[2]} thread(s): {rate:.4g} steps/s"
                      + (f", scaled linearly in T to T={T}" if scale != 1 else "")
                      + (f" (used for {model})" if key[0] != model else "") + f" [{source}]")
        return scale / rate

    def act_ms(self, model: str, T: int) -> float:
        key, value, source = self._pick("act_ms", model, T)
        scale = T / key[1] if key[1] and model != "Dqn" else 1.0
        self.used.add(f"act {key[0]}{f' T={key[1]}' if key[1] else ''}: {value:.4g} ms"
                      + (" (scaled linearly in T)" if scale != 1 else "") + f" [{source}]")
        return value * scale

    def env_ms(self) -> float:
        value, source = (self.found["env_ms"], self.source) if "env_ms" in self.found else (FALLBACK["env_ms"],
                                                                                           FALLBACK_SOURCE)
        self.used.add(f"env step: {value:.4g} ms [{source}]")
        return value

    def conversion_ms(self, T: int) -> float:
        ms, ref_T = self.found.get("conversion") or FALLBACK["conversion"]
        source = self.source if "conversion" in self.found else FALLBACK_SOURCE
        self.used.add(f"conversion SNN: {ms:.4g} ms per action at T={ref_T:g}, scaled linearly in T [{source}]")
        return ms * T / ref_T


def run_seconds(spec, rates: Rates, threads: int, done_steps: int = 0) -> float:
    """The estimated seconds of one run (a resumed one: of the learning steps it has left)."""
    c = spec.config
    env = rates.env_ms()
    if spec.kind == "convert":
        norm = c["norm_examples"] * 4 * (env + rates.act_ms("Dqn", 0)) / 1000  # the last life: ~1/4 of a game
        return norm + c["episode"] * EVAL_GAME_STEPS * (env + rates.conversion_ms(c["time"])) / 1000
    model, T = c["model"], c["T"]
    learn = max(0, c["timestep_num"] - done_steps) * rates.train_seconds_per_step(model, T, threads)
    evaluations = (c["timestep_num"] - done_steps) // c["eval_freq"] + 1
    act = (1 - c["eval_epsilon"]) * rates.act_ms(model, T)
    evaluate = evaluations * c["eval_episode_num"] * EVAL_GAME_STEPS * (env + act) / 1000
    explore = (c["replay_start_size"] if not done_steps else 0) * env / 1000
    return learn + evaluate + explore


def estimate(plan: list[tuple], options) -> list[str]:
    """Lines of the cost of ``plan`` [(spec, action, steps done)] for the runs still to do."""
    gpu = options.gpus_per_run > 0
    report, source, notes = choose_report(options.benchmark, gpu)
    rates = Rates(report, source, notes)
    threads = max(1, int(options.cpus_per_run))
    by_model: dict[str, list[float]] = {}
    for spec, action, done_steps in plan:
        if action in ("start", "resume", "convert"):
            by_model.setdefault(spec.model, []).append(run_seconds(spec, rates, threads, done_steps))
    hours = {m: sum(v) / 3600 for m, v in by_model.items()}
    total = sum(hours.values())
    share, unit = (options.gpus_per_run, "GPU-hours") if gpu else (options.cpus_per_run, "CPU-core-hours")
    lines = [("estimated cost of the runs still to do (one run at the benchmark's rate; evaluations at "
              f"{EVAL_GAME_STEPS} agent steps per game):")]
    lines += [f"  {m:<16} {len(by_model[m]):>4} runs  {hours[m] / len(by_model[m]):>11.1f} h each  {hours[m]:>12.1f} h"
              for m in by_model]
    lines.append(f"  total {total:,.1f} run-hours = {total * share:,.1f} {unit} ({share:g} per run)")
    lines.append(f"rates from {source}:" if source != "none" else "rates: no benchmark report found")
    lines += [f"  {line}" for line in sorted(rates.used)]
    lines += [f"  note: {note}" for note in rates.notes]
    return lines
