"""Benchmark every stage of the training loop and of the conversion baseline on this machine (issue #5).

    python bench/run.py                       # everything, about 10 minutes on a 2-core CPU
    python bench/run.py --parts networks,end_to_end --device cuda
    python bench/run.py --tiny --output /tmp/bench   # seconds; what the test suite runs

Writes <output>/<machine>.md and <machine>.json, <machine> naming the CPU model, the torch threads, the GPU (or
"cpu") and the torch and SpikingJelly versions. Every figure is a median over repeats with min and max; every
comparison is a ratio of two variants timed in the same run, interleaved (A, B, A, B, ...).

Parts: env (training-env steps/s), replay (bytes, append, sample), networks (act and update of Dqn and Dsqn at
each T for every usable neuron backend), end_to_end (Agent.learn steps/s against limits computed from the parts;
it needs env, replay and networks, which are added when it is asked for), conversion (layer-by-layer against
step-by-step simulation at T=500, and an identical-spikes check), candidates (torch.compile, threads, small
costs in the hot loop).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from datetime import datetime

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if sys.path and os.path.abspath(sys.path[0] or ".") == BENCH_DIR:
    sys.path.pop(0)  # bench/ itself must not shadow top-level modules
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from utils.cli import ArgumentParser, UserError, non_negative_int, positive_int, run_cli  # noqa: E402

PARTS = ("env", "replay", "networks", "end_to_end", "conversion", "candidates")
GAMES = {"Breakout": "BreakoutNoFrameskip-v4", "Pong": "PongNoFrameskip-v4"}
PAPER_STEPS = 50_000_000

DEFAULTS = dict(
    parts=",".join(PARTS), repeats=5, long_repeats=3, T="8,64", env_steps=300, games="Breakout,Pong",
    replay_capacity=50_000, replay_appends=1000, e2e_T=64, e2e_dqn_steps=402, e2e_dsqn_steps=42,
    e2e_replay_start=500, e2e_replay_capacity=5000, e2e_threads="auto", conversion_T=500, compile="Dqn,Dsqn8",
)
TINY = dict(
    repeats=3, long_repeats=2, T="2", env_steps=20, games="Breakout,Pong", replay_capacity=600,
    replay_appends=50, e2e_T=2, e2e_dqn_steps=10, e2e_dsqn_steps=10, e2e_replay_start=40, e2e_replay_capacity=200,
    e2e_threads="default", conversion_T=20, compile="none",
)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", help=f"comma-separated parts among {','.join(PARTS)} (default: all)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if available")
    p.add_argument("--repeats", type=positive_int, help=f"rounds of the quick measurements (default {DEFAULTS['repeats']})")
    p.add_argument("--long_repeats", type=positive_int,
                   help=f"rounds of the slow ones: end-to-end runs, conversion, compiled updates, the "
                        f"allocator comparison (default {DEFAULTS['long_repeats']})")
    p.add_argument("--T", help=f"comma-separated Dsqn time steps for the networks part (default {DEFAULTS['T']})")
    p.add_argument("--games", help=f"comma-separated games for the env part among {','.join(GAMES)} "
                                   f"(default {DEFAULTS['games']})")
    p.add_argument("--env_steps", type=positive_int, help=f"env steps per sample (default {DEFAULTS['env_steps']})")
    p.add_argument("--replay_capacity", type=positive_int,
                   help=f"capacity of the measured replay memory (default {DEFAULTS['replay_capacity']})")
    p.add_argument("--replay_appends", type=positive_int,
                   help=f"appends per sample (default {DEFAULTS['replay_appends']})")
    p.add_argument("--e2e_T", type=positive_int, help=f"T of the end-to-end Dsqn (default {DEFAULTS['e2e_T']})")
    p.add_argument("--e2e_dqn_steps", type=positive_int,
                   help=f"learning steps of an end-to-end Dqn run, 2 + a multiple of 4 (default "
                        f"{DEFAULTS['e2e_dqn_steps']})")
    p.add_argument("--e2e_dsqn_steps", type=positive_int,
                   help=f"learning steps of an end-to-end Dsqn run, 2 + a multiple of 4 (default "
                        f"{DEFAULTS['e2e_dsqn_steps']})")
    p.add_argument("--e2e_replay_start", type=positive_int,
                   help=f"exploration steps before learning (default {DEFAULTS['e2e_replay_start']})")
    p.add_argument("--e2e_replay_capacity", type=positive_int,
                   help=f"replay capacity of the end-to-end runs (default {DEFAULTS['e2e_replay_capacity']})")
    p.add_argument("--e2e_threads",
                   help="torch thread counts of the end-to-end runs, interleaved: comma-separated numbers or "
                        "'default'; auto = default,1 when torch uses more than one thread (default auto)")
    p.add_argument("--conversion_T", type=positive_int,
                   help=f"simulation steps of the conversion part (default {DEFAULTS['conversion_T']})")
    p.add_argument("--compile", help="cases for the torch.compile candidate, e.g. Dqn,Dsqn8,Dsqn64, or none "
                                     f"(default {DEFAULTS['compile']}; a cold compile of Dsqn8 takes about 4 min on 2 cores, "
                                     "larger T much longer)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="torch threads for the whole run (default 0: torch's default)")
    p.add_argument("--output", default=os.path.join(REPO_ROOT, "docs", "benchmarks"),
                   help="directory of the report (default: docs/benchmarks/ of the repository)")
    p.add_argument("--tag", default="", help="appended to the report's file name (letters, digits, - and _), e.g. "
                                             "to keep a --parts run next to the full report")
    p.add_argument("--tiny", action="store_true", help="minimal sizes for the test suite (seconds)")
    p.add_argument("--seed", type=int, default=0, help="seed of networks, envs and data (default 0)")
    return p


def int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UserError(f"{option} takes comma-separated positive integers, got {text!r}")
    return values


def resolve_settings(args) -> dict:
    """The settings of this run: defaults (or --tiny's), overridden by the options given; validated."""
    base = dict(DEFAULTS)
    if args.tiny:
        base.update(TINY)
    s = {k: (getattr(args, k) if getattr(args, k, None) is not None else v) for k, v in base.items()}
    parts = [p.strip() for p in s["parts"].split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise UserError(f"--parts: unknown part(s) {', '.join(unknown) or '(none given)'}; choose among "
                        f"{', '.join(PARTS)}")
    if "end_to_end" in parts:
        parts += [p for p in ("env", "replay", "networks") if p not in parts]
    s["parts"] = [p for p in PARTS if p in parts]
    s["T"] = sorted(set(int_list(s["T"], "--T")))
    if "end_to_end" in s["parts"] and s["e2e_T"] not in s["T"]:
        s["T"] = sorted(set(s["T"]) | {s["e2e_T"]})
    games = [g.strip() for g in s["games"].split(",") if g.strip()]
    if not games or any(g not in GAMES for g in games):
        raise UserError(f"--games: choose among {', '.join(GAMES)}, got {s['games']!r}")
    if "end_to_end" in s["parts"] and "Breakout" not in games:
        games.insert(0, "Breakout")
    s["games"] = games
    for key in ("e2e_dqn_steps", "e2e_dsqn_steps"):
        if s[key] < 6 or (s[key] - 2) % 4:
            raise UserError(f"--{key} must be 2 + a positive multiple of 4 (e.g. 42), got {s[key]}")
    if s["e2e_replay_start"] < 32:
        raise UserError(f"--e2e_replay_start must be at least 32 (one minibatch), got {s['e2e_replay_start']}")
    if s["replay_capacity"] < 64:
        raise UserError(f"--replay_capacity must be at least 64, got {s['replay_capacity']}")
    threads = []
    for item in (t.strip() for t in s["e2e_threads"].split(",") if t.strip()):
        if item in ("auto", "default"):
            threads.append(item)
        elif item.isdigit() and int(item) > 0:
            threads.append(int(item))
        else:
            raise UserError(f"--e2e_threads takes 'auto', 'default' or positive integers, got {item!r}")
    if not threads:
        raise UserError("--e2e_threads: give at least one thread count")
    s["e2e_threads"] = threads
    compile_cases = []
    if s["compile"].strip().lower() != "none":
        for name in (c.strip() for c in s["compile"].split(",") if c.strip()):
            if name == "Dqn":
                compile_cases.append(("Dqn", None))
            elif name.startswith("Dsqn") and name[4:].isdigit() and int(name[4:]) > 0:
                compile_cases.append(("Dsqn", int(name[4:])))
            else:
                raise UserError(f"--compile: cases are Dqn or Dsqn<T> (e.g. Dsqn8), or none; got {name!r}")
    s["compile"] = compile_cases
    if args.tag and not all(c.isalnum() or c in "-_" for c in args.tag):
        raise UserError(f"--tag may only hold letters, digits, - and _, got {args.tag!r}")
    s["tag"] = args.tag
    s["device"] = args.device
    s["threads"] = args.threads
    s["seed"] = args.seed
    s["tiny"] = args.tiny
    return s


class Progress:
    def __init__(self):
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[bench {time.perf_counter() - self.started:6.1f} s] {message}", file=sys.stderr, flush=True)


def act_inner(model: str, T: int | None, tiny: bool) -> int:
    """Calls per act sample: enough that one sample lasts a few milliseconds."""
    if model == "Dqn":
        return 5 if tiny else 20
    return max(1, (8 if tiny else 32) // T)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    s = resolve_settings(args)

    import torch

    if s["threads"]:
        torch.set_num_threads(s["threads"])
    if s["device"] == "auto":
        s["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    elif s["device"] == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    output = os.path.abspath(args.output)
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"--output {args.output} is a file; give a directory")

    import neural_network  # noqa: F401 - quiets torch's Triton notice before anything else imports SpikingJelly

    from bench.machine import machine_info, report_stem
    from bench.report import check_stats, render

    progress = Progress()
    info = machine_info(s["device"])
    stem = report_stem(info) + (f"_{s['tag']}" if s["tag"] else "")
    device = s["device"]
    report = {
        "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": datetime.now().isoformat(timespec="seconds"),
        "machine": info,
        "settings": {k: v for k, v in s.items()},
        "parts": {},
    }
    progress(f"machine {stem}; parts {', '.join(s['parts'])}")
    inner_by_case = {("Dqn" if T is None else f"Dsqn_T{T}"): act_inner("Dqn" if T is None else "Dsqn", T, s["tiny"])
                     for T in [None, *s["T"], *(T for _, T in s["compile"] if T)]}
    failed = []

    def run_part(name, fn):
        progress(f"part {name} ...")
        started = time.perf_counter()
        try:
            report["parts"][name] = fn()
        except Exception:  # noqa: BLE001 - the report records it; the run goes on and exits non-zero at the end
            report["parts"][name] = {"error": traceback.format_exc()}
            failed.append(name)
            progress(f"part {name} FAILED:\n{report['parts'][name]['error']}")
        report["parts"][name]["seconds"] = time.perf_counter() - started
        progress(f"part {name} done in {report['parts'][name]['seconds']:.1f} s")

    if "env" in s["parts"]:
        from bench.parts_env_replay import bench_env

        run_part("env", lambda: bench_env([GAMES[g] for g in s["games"]], s["env_steps"], s["repeats"], s["seed"]))
    if "replay" in s["parts"]:
        from bench.parts_env_replay import bench_replay

        run_part("replay", lambda: bench_replay(s["replay_capacity"], s["replay_appends"], s["repeats"],
                                                seed=s["seed"]))
    if "networks" in s["parts"]:
        from bench.networks import bench_networks

        run_part("networks", lambda: bench_networks(device, s["T"], s["repeats"], inner_by_case, seed=s["seed"],
                                                    threads=s["threads"] or None, progress=progress))
    if "end_to_end" in s["parts"]:
        run_part("end_to_end", lambda: end_to_end_part(s, report, progress))
    if "conversion" in s["parts"]:
        from bench.conversion import bench_conversion

        run_part("conversion", lambda: bench_conversion(s["conversion_T"], s["long_repeats"], device, s["seed"],
                                                        progress))
    if "candidates" in s["parts"]:
        run_part("candidates", lambda: candidates_part(s, report, inner_by_case, progress))

    paper = paper_run_estimate(report)
    if paper is not None:
        report["paper_run"] = paper
    report["total_s"] = time.perf_counter() - progress.started
    problems = check_stats(report)
    report["stat_problems"] = problems
    os.makedirs(output, exist_ok=True)
    json_path, md_path = os.path.join(output, stem + ".json"), os.path.join(output, stem + ".md")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1, default=str)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(render(report))
    progress(f"wrote {os.path.relpath(md_path)} and {os.path.relpath(json_path)} (total {report['total_s']:.0f} s)")
    if failed or problems:
        print(f"bench/run.py: error: part(s) failed: {', '.join(failed) or 'none'}; statistics problems: "
              f"{'; '.join(problems) or 'none'} (see {os.path.relpath(md_path)})", file=sys.stderr)
        sys.exit(1)


def end_to_end_part(s: dict, report: dict, progress) -> dict:
    from bench.end_to_end import GAME, bench_end_to_end, limits
    from bench.networks import lookup

    import torch

    cases = [("Dqn", None, s["e2e_dqn_steps"]), ("Dsqn", s["e2e_T"], s["e2e_dsqn_steps"])]
    default = torch.get_num_threads()
    threads: list[int] = []
    for item in s["e2e_threads"]:
        values = [default] if item == "default" else [default, 1] if item == "auto" else [item]
        threads += [v for v in values if v not in threads]
    if s["device"] != "cpu":
        threads = [default]
    out = bench_end_to_end(cases, s["long_repeats"], s["e2e_replay_start"], s["e2e_replay_capacity"], s["device"],
                           s["seed"], threads, progress)
    parts = report["parts"]
    try:
        env_us = parts["env"]["games"][GAME]["us_per_step"]["median"]
        append_us = parts["replay"]["append_us"]["check_continuity"]["median"]
        sample_us = parts["replay"]["sample_us"]["median"]
        out["limits"] = {}
        for model, T, _ in cases:
            key = "Dqn" if model == "Dqn" else f"Dsqn_T{T}"
            out["limits"][key] = limits(key, lookup(parts["networks"], key), env_us, append_us, sample_us)
    except KeyError as error:  # a part it needs failed
        out["limits_missing"] = f"a part the limits need is missing or failed: {error}"
    return out


def candidates_part(s: dict, report: dict, inner_by_case: dict, progress) -> dict:
    from bench.candidates import bench_compile, bench_hot_loop, bench_malloc, bench_threads

    out = {}
    device = s["device"]
    cases = [("Dqn", None)] + [("Dsqn", T) for T in s["T"]]
    if s["compile"]:
        try:
            out["compile"] = bench_compile(s["compile"], device, s["repeats"], inner_by_case, s["seed"],
                                           s["threads"] or None, s["long_repeats"], progress)
        except Exception:  # noqa: BLE001
            out["compile"] = {"error": traceback.format_exc()}
    if device == "cpu" and sys.platform.startswith("linux"):
        try:
            learn = dict(model="Dsqn", T=s["e2e_T"], steps=s["e2e_dsqn_steps"], replay_start_size=s["e2e_replay_start"],
                         replay_capacity=s["e2e_replay_capacity"])
            out["malloc"] = bench_malloc(cases, device, s["long_repeats"], s["seed"], s["threads"] or None, progress,
                                         learn)
        except Exception:  # noqa: BLE001
            out["malloc"] = {"error": traceback.format_exc()}
    if device == "cpu":
        update_cases = [c for c in cases if c[1] is None or (c[1] <= 8 and not s["tiny"])]
        out["threads"] = bench_threads(cases, device, s["repeats"], inner_by_case, update_cases, s["seed"], progress)
    out["hot_loop"] = bench_hot_loop(device, s["repeats"], 20 if s["tiny"] else 500, s["T"][0], s["seed"])
    e2e = report["parts"].get("end_to_end", {}).get("runs")
    if e2e:
        us = out["hot_loop"]["per_call_us"]
        per_step = us["tqdm_update"]["median"] + us["epsilon_and_rng"]["median"] + \
            (us["add_scalar_with_item"]["median"] + us["batch_to_device"]["median"]) / 4
        shares = {case: 100 * per_step / (run["ms_per_step"]["median"] * 1e3) for case, run in e2e.items()}
        out["hot_loop"]["per_step_overhead"] = {
            "us": per_step, "percent_of_step": shares,
            "text": f"Together tqdm + epsilon every step and add_scalar(loss.item()) + batch copies every 4th step "
                    f"cost {per_step:.1f} µs per learning step: "
                    + ", ".join(f"{v:.2f} % of a {k} step" for k, v in shares.items()) + ".",
        }
    out["summary"] = verdicts(out, report)
    return out


def verdicts(cand: dict, report: dict) -> list[str]:
    """One line per candidate: what it buys on this machine."""
    from bench.report import duration, fmt
    lines = []
    e2e = report["parts"].get("end_to_end", {}).get("runs", {})
    for c in cand.get("compile", {}).get("cases", []):
        if "error" in c:
            lines.append(f"torch.compile {c['case']}: failed ({c['error'].strip().splitlines()[-1]})")
            continue
        for what in ("act", "update"):
            w = c[what]
            speed = w["speedup"]["value"]["median"]
            be = w["break_even_calls"]
            if be is None:
                lines.append(f"torch.compile {c['case']} {what}: no gain ({speed:.2f}× eager), compile "
                             f"{w['compile_s']:.0f} s: not worth it")
            else:
                steps = be * (4 if what == "update" else 1 / 0.9)
                lines.append(f"torch.compile {c['case']} {what}: {speed:.2f}× faster after a {w['compile_s']:.0f} s "
                             f"cold compile; pays off after {be:,.0f} calls (≈ {steps:,.0f} learning steps at ε 0.1)")
    malloc = cand.get("malloc", {})
    for e in malloc.get("update", []):
        lines.append(f"glibc malloc tuned ({e['case']} update): {e['speedup']['value']['median']:.2f}× faster "
                     f"({fmt_ms(e['default_ms'])} -> {fmt_ms(e['tuned_ms'])} ms)")
    if "learn" in malloc:
        e = malloc["learn"]
        rate = e["tuned_steps_per_s"]["median"]
        lines.append(f"glibc malloc tuned ({e['case']} Agent.learn, separate processes): "
                     f"{e['speedup']['value']['median']:.2f}× faster ({fmt(e['default_steps_per_s']['median'])} -> "
                     f"{fmt(rate)} learning steps/s; 50M steps: {duration(PAPER_STEPS / rate)})")
    if "peak_rss_mb" in malloc:
        rss = malloc["peak_rss_mb"]
        lines.append(f"glibc malloc tuned: peak resident memory {rss['default']:,.0f} MB -> {rss['tuned']:,.0f} MB")
    threads = cand.get("threads", {})
    for what in ("act", "update"):
        for e in threads.get(what, []):
            r = e["ratio"]["value"]["median"]
            verdict = "1 thread is faster" if r < 0.95 else ("no clear difference" if r <= 1.05 else
                                                             "the default thread count is faster")
            lines.append(f"threads {e['case']} {what}: 1 thread takes {r:.2f}× the time of "
                         f"{threads['default_threads']} threads: {verdict}")
    overhead = cand.get("hot_loop", {}).get("per_step_overhead")
    if overhead:
        lines.append(overhead["text"])
    replay = report["parts"].get("replay", {})
    if "append_ratio" in replay:
        diff = replay["append_us"]["check_continuity"]["median"] - replay["append_us"]["no_check"]["median"]
        text = f"replay continuity check: append {replay['append_ratio']['value']['median']:.2f}× slower with it " \
               f"(+{diff:.1f} µs per step)"
        if e2e:
            text += "; " + ", ".join(f"{100 * diff / (run['ms_per_step']['median'] * 1e3):.2f} % of a {k} step"
                                     for k, run in e2e.items())
        lines.append(text)
    networks = report["parts"].get("networks", {})
    for e in networks.get("results", []):
        r = e["act_overhead"]["value"]
        extra = e["act_ms"]["median"] - e["forward_ms"]["median"]
        text = (f"{r['median']:.2f}× (+{extra * 1e3:.0f} µs per greedy step)" if r["min"] > 1 and extra > 0
                else f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f}): within the noise")
        lines.append(f"Agent.act around the bare forward ({e['case']}: numpy -> tensor, host <-> device, argmax): "
                     + text)
    return lines


def fmt_ms(s: dict) -> str:
    from bench.report import fmt

    return fmt(s["median"])


def paper_run_estimate(report: dict) -> dict | None:
    """Days for 50M learning steps at the measured end-to-end rates (and what evaluation adds)."""
    e2e = report["parts"].get("end_to_end", {}).get("runs")
    networks = report["parts"].get("networks")
    env = report["parts"].get("env", {}).get("games", {}).get("BreakoutNoFrameskip-v4")
    if not e2e or not networks or "results" not in networks or env is None:
        return None
    from bench.networks import lookup
    from bench.report import duration

    rows = []
    eval_lines = []
    env_s = env["us_per_step"]["median"] / 1e6
    eval_steps = 201 * 30 * 1000
    for case, run in e2e.items():
        rate = run["steps_per_s"]["median"]
        seconds = PAPER_STEPS / rate
        rows.append({"case": case, "steps": PAPER_STEPS, "steps_per_s": rate, "seconds": seconds})
        if case != run["case"]:
            continue  # evaluation figures for the default thread count only
        act_s = lookup(networks, case)["act_ms"]["median"] / 1e3
        per_eval_step = env_s + 0.95 * act_s
        eval_lines.append(f"{case}: {eval_steps:,} × ({env_s * 1e3:.2f} ms env + 0.95 × {act_s * 1e3:.2f} ms act) "
                          f"= {duration(eval_steps * per_eval_step)}")
    return {
        "rows": rows,
        "assumptions": "Training loop only: 50,000,000 learning steps (one game) at the median end-to-end rate "
                       "measured above (ε = 0.1, the value for 98 % of the run; the first 1M steps act randomly "
                       "more often and run faster); the 50,000-step exploration phase (env + append, seconds to "
                       "minutes) and the target copies every 10,000 steps are negligible.",
        "evaluation": "Evaluation comes on top: 201 evaluations (every 250,000 steps, step 0 included) × 30 games. "
                      "For every 1,000 agent steps per evaluation game on average (a game is capped at 18,000) it "
                      "adds 201 × 30 × 1,000 = 6,030,000 steps at ε = 0.05: " + "; ".join(eval_lines) + ".",
    }


if __name__ == "__main__":
    run_cli(main, "bench/run.py")
