"""Benchmark the training loop's stages, the CUDA and bf16 paths and the conversion baseline on this machine.

    python bench/run.py                          # everything: 21.5 min on 2 shared CPU cores (docs/benchmarks/)
    python bench/run.py --device cuda --budget_s 330 --original ORIGINAL --original_wheels WHEELS_ORIGINAL
    python bench/run.py --tiny --output /tmp/bench   # seconds; what the test suite runs

Writes <output>/<machine>.md and <machine>.json, <machine> naming the CPU, the torch threads, the GPU (or "cpu")
and the torch and SpikingJelly versions. Figures are medians over repeats with min and max; comparisons are ratios
of variants timed interleaved in the same run (bench/timing.py). Parts: env (steps/s of the training env), replay
(bytes, append, sample), networks (act and update of Dqn and Dsqn at each T: every neuron kernel, eager, compiled
(--compile), graphs (--cuda_graphs, CUDA only), bf16 (--bf16, CPU only)), end_to_end (learning steps/s of the real
training loop, a 50M-step run's duration, with --original the original code's rate beside ours, and a learning step
taken apart into env, act, replay sample and update), evaluation (one evaluation's games one after the other
against all at once, and a paper run's duration with its evaluations), concurrent (k training runs at once on one
device, their aggregate rate), conversion (the converted Dqn: layer-by-layer against step-by-step simulation,
agreement with the ANN against T for both schedules) and bf16 (spike counts and greedy actions of --bf16 against
float32; CPU only).
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

from utils.cli import (
    ArgumentParser,
    UserError,
    check_output_dir,
    non_negative_int,
    positive_float,
    positive_int,
    run_cli,
)

PARTS = ("env", "replay", "networks", "end_to_end", "evaluation", "concurrent", "conversion", "bf16")
#: option -> (default, help); "cpu|cuda" defaults differ by device
OPTIONS = {
    "parts": ({"cpu": ",".join(PARTS), "cuda": "env,replay,end_to_end,evaluation,networks,concurrent,conversion"},
              "comma-separated parts, run in this order"),
    "repeats": (5, "rounds of the quick measurements"),
    "long_repeats": (3, "rounds of the slow ones (end-to-end runs, conversion)"),
    "min_time": (0.05, "seconds of calls per sample of a quick measurement (torch.utils.benchmark)"),
    "T": ("8,64", "Dsqn time steps of the networks part"),
    "modes": ("eager,compiled,graphs", "network modes: eager, compiled (--compile), graphs (--cuda_graphs, CUDA)"),
    "compile_cases": ({"cpu": "Dqn,Dsqn_T8", "cuda": "Dqn,Dsqn_T64"},
                      "cases compiled, or none (a cold compile of Dsqn_T8 takes minutes on 2 CPU cores)"),
    "bf16": (True, "also time the networks with --bf16"),
    "games": ("Breakout,Pong", "games of the env part"),
    "replay_capacity": (50_000, "capacity of the measured replay memory"),
    "e2e_T": (64, "T of the end-to-end Dsqn runs"),
    "e2e_dqn_steps": (402, "learning steps of an end-to-end Dqn run (2 + a multiple of 4)"),
    "e2e_dsqn_steps": ({"cpu": 42, "cuda": 202}, "learning steps of an end-to-end Dsqn run (2 + a multiple of 4)"),
    "e2e_replay_start": (500, "exploration steps before learning"),
    "e2e_replay_capacity": (5000, "replay capacity of the end-to-end runs"),
    "eval_games": ({"cpu": 4, "cuda": 30}, "games of the timed evaluation (the paper: 30)"),
    "eval_max_steps": ({"cpu": 60, "cuda": 200}, "step limit of its games (the paper: 18,000)"),
    "eval_repeats": (2, "rounds of the timed evaluation (each plays it both ways)"),
    "eval_workers": (-1, "its env worker processes (-1: run.py's default for the device)"),
    "concurrent_k": ({"cpu": "1,2", "cuda": "1,2,4,8,12"}, "numbers of training runs at once of part concurrent"),
    "concurrent_steps": ({"cpu": 42, "cuda": 602}, "learning steps of each of them (2 + a multiple of 4)"),
    "conversion_T": (500, "simulation steps of the timed conversion"),
    "agreement_T": ("8,16,32,64,128,256,500", "T values of the conversion agreement curve"),
    "agreement_frames": (32, "Breakout frames of the conversion agreement"),
    "bf16_T": ("8,64", "Dsqn T values of the bf16 agreement"),
    "bf16_frames": (64, "Breakout frames of the bf16 agreement"),
}
TINY = {"repeats": 2, "long_repeats": 1, "min_time": 0.002, "T": "2", "modes": "eager", "compile_cases": "none",
        "replay_capacity": 600, "e2e_T": 2, "e2e_dqn_steps": 10, "e2e_dsqn_steps": 10, "e2e_replay_start": 40,
        "e2e_replay_capacity": 200, "eval_games": 2, "eval_max_steps": 10, "eval_repeats": 1, "concurrent_k": "1",
        "concurrent_steps": 10, "conversion_T": 20, "agreement_T": "2,10", "agreement_frames": 4, "bf16_T": "2",
        "bf16_frames": 4}
PARSERS = {int: positive_int, float: positive_float}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    for name, (default, text) in OPTIONS.items():
        shown = "; ".join(f"{k} {v}" for k, v in default.items()) if isinstance(default, dict) else default
        kind = type(default if not isinstance(default, dict) else default["cpu"])
        if kind is bool:
            p.add_argument(f"--{name}", action="store_true", default=None, help=f"{text} (default on)")
            p.add_argument(f"--no-{name}", dest=name, action="store_false", help="the opposite")
        else:
            parse = int if name == "eval_workers" else PARSERS.get(kind, str)
            p.add_argument(f"--{name}", type=parse, help=f"{text} (default {shown})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if available")
    p.add_argument("--original", metavar="CHECKOUT", help="also time the original DSQN code of this checkout in the "
                                                         "end-to-end part (bench/original.py)")
    p.add_argument("--original_wheels", help="its folder of wheels (bench/README.md); default: the package index")
    p.add_argument("--original_torch", default="torch", help="its torch requirement (default torch: the "
                                                             "interpreter's own)")
    p.add_argument("--dqn_checkpoint", help="a trained Dqn (.pkl) for the conversion part (default: untrained)")
    p.add_argument("--dsqn_checkpoint", help="a trained Dsqn (.pkl) for the bf16 part (default: untrained)")
    p.add_argument("--budget_s", type=non_negative_int, default=0, help="skip the parts not started after this many "
                                                                      "seconds (default 0: no limit)")
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (default 0: torch's default)")
    p.add_argument("--output", default=os.path.join(REPO_ROOT, "docs", "benchmarks"),
                   help="folder of the report (default docs/benchmarks/)")
    p.add_argument("--tag", default="", help="appended to the report's name (letters, digits, - and _)")
    p.add_argument("--tiny", action="store_true", help="minimal sizes, for the test suite (seconds)")
    p.add_argument("--seed", type=int, default=0, help="seed of networks, envs and data (default 0)")
    p.add_argument("--readme_table", metavar="JSON", help="print the README's performance table of a report, exit")
    return p


def int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{option} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"--{option} takes comma-separated positive integers, got {text!r}")
    return values


def names(text: str, option: str, allowed) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in chosen if v not in allowed] or ([] if chosen else ["(none)"])
    if bad:
        raise UserError(f"--{option}: unknown {bad[0]!r}; choose among {', '.join(allowed)}")
    return chosen


def resolve_settings(args, device: str) -> dict:
    """Defaults (for the device, or --tiny's), overridden by the options given; checked."""
    s = {name: (default[device] if isinstance(default, dict) else default) for name, (default, _) in OPTIONS.items()}
    if args.tiny:
        s.update(TINY)
    s.update({name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None})
    from bench.parts import GAMES

    s["parts"] = names(s["parts"], "parts", PARTS)
    s["modes"] = names(s["modes"], "modes", ("eager", "compiled", "graphs"))
    s["games"] = names(s["games"], "games", GAMES)
    for key in ("T", "agreement_T", "bf16_T", "concurrent_k"):
        s[key] = sorted(set(int_list(s[key], key)))
    cases = ["Dqn"] + [f"Dsqn_T{T}" for T in s["T"]]
    s["compile_cases"] = [] if s["compile_cases"] == "none" else names(s["compile_cases"], "compile_cases", cases)
    for key in ("e2e_dqn_steps", "e2e_dsqn_steps", "concurrent_steps"):
        if s[key] < 6 or (s[key] - 2) % 4:
            raise UserError(f"--{key} must be 2 + a positive multiple of 4 (e.g. 42), got {s[key]}")
    if s["eval_workers"] < -1:
        raise UserError(f"--eval_workers takes -1 (the device's default), 0 or more, got {s['eval_workers']}")
    if s["e2e_replay_start"] < 32 or s["replay_capacity"] < 64:
        raise UserError("--e2e_replay_start must be at least 32 and --replay_capacity at least 64")
    if args.tag and not all(c.isalnum() or c in "-_" for c in args.tag):
        raise UserError(f"--tag may only hold letters, digits, - and _, got {args.tag!r}")
    if args.original is not None and not os.path.isdir(args.original):
        raise UserError(f"--original {args.original} is not a folder (give a checkout of the original code)")
    return s


def report_table(path: str) -> str:
    """--readme_table: the README's table of a report, or one line saying why the file is not a report."""
    from bench.report import readme_table

    if not os.path.isfile(path):
        raise UserError(f"--readme_table {path}: no such file; give a <machine>.json written by bench/run.py")
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        return readme_table(report, os.path.relpath(path, REPO_ROOT))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        what = f"it has no {error}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
        raise UserError(f"--readme_table {path} is not a report written by bench/run.py ({what}); give its "
                        "<machine>.json") from None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.readme_table:
        print(report_table(args.readme_table))
        return
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    s = resolve_settings(args, device)
    output = check_output_dir(args.output, "--output")
    if args.threads:
        torch.set_num_threads(args.threads)
    import shutil
    import tempfile

    cold_cache = None
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # compiles are timed cold, as on a new machine
        cold_cache = os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_inductor_")
    try:
        measure(args, s, device, output, sys.argv[1:] if argv is None else argv)
    finally:
        if cold_cache:
            shutil.rmtree(cold_cache, ignore_errors=True)


def measure(args, s: dict, device: str, output: str, argv: list[str]) -> None:
    """Run the parts and write the report (exit 1 if a part failed)."""
    if device == "cpu":
        from utils.malloc import tune_glibc_malloc

        tune_glibc_malloc()  # as run.py does on the CPU
    import neural_network  # noqa: F401 - quiets torch's Triton notice before anything imports SpikingJelly
    from bench.machine import machine_info, report_stem
    from bench.report import render
    from bench.timing import check_stats

    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    info = machine_info(device)
    from neural_network import choose_backend

    kernel, probe = choose_backend("auto", device)  # the base kernel of every part: what run.py's auto resolves to
    info.update(neuron_kernel=kernel, neuron_kernel_probe=probe)
    stem = report_stem(info) + (f"_{args.tag}" if args.tag else "")
    report = {"command": "python bench/run.py " + " ".join(argv),
              "started": datetime.now().isoformat(timespec="seconds"), "machine": info,
              "settings": {**s, "device": device, "seed": args.seed, "tiny": args.tiny}, "parts": {}}
    progress(f"machine {stem}; parts {', '.join(s['parts'])}")
    for name in s["parts"]:
        if args.budget_s and time.perf_counter() - started > args.budget_s:
            report["parts"][name] = {"skipped": f"--budget_s {args.budget_s} was spent before it started"}
            continue
        progress(f"part {name} ...")
        part_started = time.perf_counter()
        try:
            deadline = started + args.budget_s if args.budget_s else None
            report["parts"][name] = run_part(name, s, args, device, progress, deadline, report["parts"])
        except Exception:  # noqa: BLE001 - recorded; the run goes on and exits non-zero at the end
            report["parts"][name] = {"error": traceback.format_exc()}
            progress(f"part {name} FAILED:\n{report['parts'][name]['error']}")
        report["parts"][name]["seconds"] = time.perf_counter() - part_started
        progress(f"part {name} done in {report['parts'][name]['seconds']:.0f} s")
    report["total_s"] = time.perf_counter() - started
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["stat_problems"] = check_stats(report)
    os.makedirs(output, exist_ok=True)
    json_path, md_path = os.path.join(output, stem + ".json"), os.path.join(output, stem + ".md")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)
        f.write("\n")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(render(report))
    progress(f"wrote {md_path} and {json_path}")
    failed = [name for name, part in report["parts"].items() if "error" in part or part.get("errors")]
    if failed or report["stat_problems"]:
        print(f"bench/run.py: error: failures in {', '.join(failed) or 'no part'}; statistics problems: "
              f"{'; '.join(report['stat_problems']) or 'none'} (see {md_path})", file=sys.stderr)
        sys.exit(1)


def run_part(name: str, s: dict, args, device: str, progress, deadline: float | None, previous: dict) -> dict:
    from bench import concurrent, end_to_end, evaluation, networks, parts

    seed = args.seed
    if name == "env":
        return parts.bench_env(s["games"], s["repeats"], s["min_time"], seed)
    if name == "replay":
        return parts.bench_replay(s["replay_capacity"], s["repeats"], s["min_time"], seed=seed)
    if name == "networks":
        variants = networks.plan(device, s["T"], s["modes"], s["bf16"], s["compile_cases"])
        return networks.bench_networks(variants, device, s["repeats"], s["min_time"], seed, progress, deadline)
    if name == "conversion":
        return parts.bench_conversion(s["conversion_T"], s["long_repeats"], s["agreement_T"], s["agreement_frames"],
                                      device, seed, args.dqn_checkpoint)
    if name == "bf16":
        return parts.bf16_agreement(s["bf16_T"], s["bf16_frames"], device, seed, args.dsqn_checkpoint)
    if name == "evaluation":
        learning = previous.get("end_to_end", {}).get("runs", {})
        default = f"Dsqn_T{s['e2e_T']}" + (" graphs" if device == "cuda" else "")
        rate = learning.get(default, {}).get("steps_per_s", {}).get("median")
        return evaluation.bench_evaluation("Dsqn", s["e2e_T"], s["eval_games"], s["eval_max_steps"],
                                           None if s["eval_workers"] < 0 else s["eval_workers"], s["eval_repeats"],
                                           device, seed, rate, progress)
    if name == "concurrent":
        run = end_to_end.Run("Dsqn", s["e2e_T"], "graphs" if device == "cuda" else "eager")
        return concurrent.bench_concurrent(run, s["concurrent_k"], s["concurrent_steps"], s["e2e_replay_start"],
                                           s["e2e_replay_capacity"], device, seed, progress=progress)
    T = s["e2e_T"]
    runs = [end_to_end.Run("Dqn", None), end_to_end.Run("Dsqn", T)]
    if device == "cuda":  # graphs: run.py's default on CUDA; --bf16 is refused there
        runs += [end_to_end.Run("Dqn", None, "graphs"), end_to_end.Run("Dsqn", T, "graphs")]
    else:
        runs += [end_to_end.Run("Dsqn", T, bf16=True)]
    steps = {"Dqn": s["e2e_dqn_steps"], "Dsqn": s["e2e_dsqn_steps"]}
    import shutil
    import tempfile

    workdir = tempfile.mkdtemp(prefix="dsqn_original_")
    try:
        original, prepared = prepare_original(args, s, device, workdir, progress) if args.original else (None, {})
        out = end_to_end.bench_end_to_end(runs, steps, s["long_repeats"], s["e2e_replay_start"],
                                          s["e2e_replay_capacity"], device, seed, original, progress)
        mode = "graphs" if device == "cuda" else "eager"  # run.py's defaults, taken apart
        out["breakdown"] = [end_to_end.breakdown(run, steps[run.model], s["e2e_replay_start"],
                                                 s["e2e_replay_capacity"], device, seed)
                            for run in runs if run.mode == mode and not run.bf16]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {**out, **prepared}


def prepare_original(args, s: dict, device: str, workdir: str, progress):
    """The original code prepared once (bench/original.py) in ``workdir`` and a callable timing one run of it."""
    from bench.original import Original

    try:
        original = Original(args.original, workdir, sys.executable, device, args.original_wheels,
                            args.original_torch)
        original.prepare(log=lambda line: progress(f"original: {line}"))
    except Exception as error:  # noqa: BLE001 - reported beside our figures
        return None, {"original_error": f"{type(error).__name__}: {error}"}
    info = {}

    def one_run() -> float:
        import torch

        result = original.run(s["e2e_T"], s["e2e_dsqn_steps"], s["e2e_replay_start"], 1, args.seed,
                              torch.get_num_threads())
        info.update({k: v for k, v in result.items() if k != "seconds_per_step"})
        return result["seconds_per_step"][0]

    return (f"original Dsqn_T{s['e2e_T']}", one_run), {"original": info,
                                                         "original_checkout": os.path.abspath(args.original)}


if __name__ == "__main__":
    run_cli(main, "bench/run.py")
