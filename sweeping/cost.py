"""The estimated cost of a plan, from the rates of a benchmark report (bench/run.py's JSON in docs/benchmarks/).

The rates are read from the report by :func:`report_rates`: the learning loop's steps/s per case (Dqn,
Dsqn_T64, ...), the eager act time, a training-env step and the converted network's time per action. A model or T
the report did not measure takes the nearest measured case, scaled linearly in T, and the estimate says so; what no
report gives is reported as unknown, never guessed.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re

from sweeping.options import REPO_ROOT

BENCH_DIR = os.path.join(REPO_ROOT, "docs", "benchmarks")
EVAL_GAME_STEPS = 1000  # agent steps per evaluation game, an assumption the estimate states
_CASE = re.compile(r"^(Dqn|Dsqn|DsqnSpike|DsqnIF)(?:_T(\d+))?$")


def report_rates(report: dict) -> dict:
    """The rates a cost estimate needs, from a report of bench/run.py (absent where the report lacks them):
    ``learning`` {case: steps/s} (cases as "Dqn", "Dsqn_T64", "Dsqn_T64 bf16"), ``act_ms`` {case: eager float32 act
    time on the default kernel}, ``env_ms`` (a Breakout training-env step), ``conversion`` (ms per action, its T),
    ``device`` and ``threads``."""
    parts, machine = report.get("parts", {}), report.get("machine", {})
    out: dict = {"device": machine.get("device", "cpu"), "threads": machine.get("torch_threads"),
                 "learning": {case: run["steps_per_s"]["median"]
                              for case, run in parts.get("end_to_end", {}).get("runs", {}).items()
                              if isinstance(run, dict) and "steps_per_s" in run},
                 "act_ms": {row["case"]: row["act_ms"]["median"] for row in parts.get("networks", {}).get("rows", [])
                            if row.get("mode") == "eager" and not row.get("bf16") and "act_ms" in row}}
    breakout = parts.get("env", {}).get("games", {}).get("Breakout")
    if breakout:
        out["env_ms"] = breakout["us_per_step"]["median"] / 1000.0
    conversion = parts.get("conversion", {})
    if "ms_per_action" in conversion:
        out["conversion"] = (conversion["ms_per_action"]["layer_by_layer"]["median"], conversion["T"])
    return out


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
        self.found, self.source, self.notes, self.used = report_rates(report) if report else {}, source, notes, set()

    def _pick(self, kind: str, model: str, T: int) -> tuple[str, int | None, float] | None:
        """The closest measured case of ``kind``: the same model before Dsqn's, then the nearest T."""
        base = "Dqn" if model == "Dqn" else "Dsqn"
        cases = [(m.group(1), int(m.group(2)) if m.group(2) else None, value)
                 for case, value in self.found.get(kind, {}).items() if (m := _CASE.match(case))]
        cases = [c for c in cases if c[0] in (model, base)]
        if not cases:
            return None
        return min(cases, key=lambda c: (c[0] != model, abs(math.log(c[1] / T)) if c[1] and T else 0.0))

    def _scaled(self, kind: str, model: str, T: int, what: str, unit: str) -> float | None:
        picked = self._pick(kind, model, T)
        if picked is None:
            self.notes.append(f"no {what} for {model} in the report: its cost is unknown")
            return None
        case_model, case_T, value = picked
        scale = T / case_T if case_T and model != "Dqn" else 1.0
        self.used.add(f"{what} {case_model}{f' T={case_T}' if case_T else ''}: {value:.4g} {unit}"
                      + (f", scaled linearly in T to T={T}" if scale != 1 else "")
                      + (f" (used for {model})" if case_model != model else ""))
        return scale / value if kind == "learning" else value * scale

    def train_seconds_per_step(self, model: str, T: int) -> float | None:
        return self._scaled("learning", model, T, "learning", "steps/s")

    def act_ms(self, model: str, T: int) -> float | None:
        return self._scaled("act_ms", model, T, "act", "ms")

    def env_ms(self) -> float | None:
        if "env_ms" not in self.found:
            return None
        self.used.add(f"env step: {self.found['env_ms']:.4g} ms")
        return self.found["env_ms"]

    def conversion_ms(self, T: int) -> float | None:
        if "conversion" not in self.found:
            return None
        ms, ref_T = self.found["conversion"]
        self.used.add(f"conversion SNN: {ms:.4g} ms per action at T={ref_T:g}, scaled linearly in T")
        return ms * T / ref_T


def game_steps(config: dict) -> int:
    """Agent steps assumed per evaluation game: EVAL_GAME_STEPS, or the run's horizon (max_episode_step) if less."""
    horizon = config.get("max_episode_step")
    return min(EVAL_GAME_STEPS, horizon) if isinstance(horizon, int) and horizon > 0 else EVAL_GAME_STEPS


def run_seconds(spec, rates: Rates, done_steps: int = 0) -> float | None:
    """The estimated seconds of one run (a resumed one: of the learning steps it has left); None if unknown."""
    c = spec.config
    env = rates.env_ms()
    steps = game_steps(c)
    if spec.kind == "convert":
        act, per_action = rates.act_ms("Dqn", 0), rates.conversion_ms(c["time"])
        if None in (env, act, per_action):
            return None
        norm = c["norm_examples"] * 4 * (env + act) / 1000  # the last life: ~1/4 of a game
        return norm + c["episode"] * steps * (env + per_action) / 1000
    model, T = c["model"], c["T"]
    act = rates.act_ms(model, T)
    if spec.kind == "play":
        return None if None in (env, act) else c["eval_episode_num"] * steps * (env + act) / 1000
    per_step = rates.train_seconds_per_step(model, T)
    if None in (env, per_step, act):
        return None
    learn = max(0, c["timestep_num"] - done_steps) * per_step
    evaluations = (c["timestep_num"] - done_steps) // c["eval_freq"] + 1
    evaluate = evaluations * c["eval_episode_num"] * steps * (env + (1 - c["eval_epsilon"]) * act) / 1000
    explore = (c["replay_start_size"] if not done_steps else 0) * env / 1000
    return learn + evaluate + explore


def duration(seconds: float) -> str:
    """Seconds in the unit that reads best: 42 s, 3.5 min, 2.0 h, 1,234 h."""
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


def estimate(plan: list[tuple], options) -> list[str]:
    """Lines of the cost of ``plan`` [(spec, action, steps done)] for the runs still to do."""
    gpu = options.gpus_per_run > 0
    rates = Rates(*choose_report(options.benchmark, gpu))
    by_model: dict[str, list[float | None]] = {}
    horizons = set()
    for spec, action, done_steps in plan:
        if action in ("start", "resume", "convert", "play"):
            key = f"{spec.model} play" if spec.kind == "play" else spec.model
            by_model.setdefault(key, []).append(run_seconds(spec, rates, done_steps))
            horizons.add(game_steps(spec.config))
    share, unit = (options.gpus_per_run, "GPU-hours") if gpu else (options.cpus_per_run, "CPU-core-hours")
    per_game = " / ".join(str(h) for h in sorted(horizons)) or str(EVAL_GAME_STEPS)
    lines = [("estimated cost of the runs still to do (one run at the benchmark's rate; evaluation and play games at "
              f"{per_game} agent steps each: an assumed {EVAL_GAME_STEPS}, or the horizon --max_episode_step when it "
              "is shorter):")]
    total = 0.0
    for model, seconds in by_model.items():
        if None in seconds:
            lines.append(f"  {model:<16} {len(seconds):>4} run{'s' if len(seconds) != 1 else ' '}  unknown (the "
                         "report does not measure it)")
            continue
        total += sum(seconds)
        runs = f"{len(seconds):>4} run{'s' if len(seconds) != 1 else ' '}"
        lines.append(f"  {model:<16} {runs}  {duration(sum(seconds) / len(seconds)):>11} each  "
                     f"{duration(sum(seconds)):>12}")
    hours = total * share / 3600
    lines.append(f"  total {duration(total)} of runs = {hours:,.1f}" if hours >= 1 else f"  total {duration(total)} "
                 f"of runs = {hours:.2g}")
    lines[-1] += f" {unit} ({share:g} per run) for the runs whose cost is known"
    threads = rates.found.get("threads")
    lines.append(f"rates from {rates.source}" + (f" ({threads} torch thread(s) per run):" if threads else ":")
                 if rates.source != "none" else "rates: no benchmark report found (python bench/run.py makes one)")
    lines += [f"  {line}" for line in sorted(rates.used)]
    lines += [f"  note: {note}" for note in dict.fromkeys(rates.notes)]
    return lines
