"""Run the paper's grid — games x models x seeds, plus a conversion run for each finished Dqn run and a play run
(with the spike monitor) of each finished training run's best checkpoint — on Ray.

    python sweep.py                                    # the paper's grid on this machine (ray.init())
    python sweep.py --grid grids/paper.yaml --dry_run  # the plan and its estimated cost, nothing started
    python sweep.py --games Breakout Pong --models Dqn Dsqn --seeds 0 -- --timestep_num 300 --T 4
    python sweep.py --grid grids/double.yaml --address auto --gpus_per_run 0.25   # on a running Ray cluster

Every run is one Ray task that runs run.py (or convert.py) as a subprocess in its own folder
<sweep_dir>/runs/<Model>_<env id>_seed<N> (conversions: ConvSNN_<env id>_T<time>_seed<N>; plays: the training
run's name + _play; --play_games 0: none). Starting the same
command again skips the finished runs, resumes the unfinished ones (run.py --resume) and reports again, without
retrying, the runs that failed for a reason of their own (exit 2: a bad option; 3: diverged). At the end it runs
plot.py on the sweep's runs/. docs/CLUSTER.md: a Ray cluster, SLURM and pre-emption. The code: sweeping/.
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from utils.cli import UserError, check_output_dir, require_extra, run_cli

PROG = "sweep.py"


def main(argv: list[str] | None = None, out=None) -> int:
    """Run (or continue) a sweep; returns the exit status (0 all finished, 1 some failed, 130/143 stopped)."""
    from sweeping.options import parse_command_line
    from sweeping.plan import build_plan, check_existing
    from sweeping.state import SweepState, classify, lock_sweep_dir

    out = out or sys.stdout
    options, run_words, grid_name = parse_command_line(sys.argv[1:] if argv is None else argv)
    sweep_dir = (check_output_dir(options.sweep_dir, "--sweep_dir") if options.sweep_dir
                 else os.path.join(REPO_ROOT, "sweeps", grid_name or "default"))
    if os.path.exists(sweep_dir) and not os.path.isdir(sweep_dir):
        raise UserError(f"--sweep_dir {sweep_dir} is a file, not a folder")
    specs = build_plan(options, run_words)
    runs_dir = os.path.join(sweep_dir, "runs")
    check_existing(specs, runs_dir)
    if not options.dry_run:  # the plan (--dry_run) needs no Ray; running it does
        require_extra("ray", "Ray", "sweep", "running a sweep")
    if options.address and not options.dry_run:  # a dead address: one line within seconds, before anything is written
        from sweeping.driver import probe

        probe(options.address)
    if options.dry_run:
        print_plan(classify(specs, runs_dir, SweepState(sweep_dir), options.retry_failed), options, sweep_dir,
                   out, detailed=True)
        return 0
    lock = lock_sweep_dir(sweep_dir)  # noqa: F841 - held while this process drives the sweep
    state = SweepState(sweep_dir)
    token = state.token()
    plan = classify(specs, runs_dir, state, options.retry_failed)
    print_plan(plan, options, sweep_dir, out, detailed=False)
    if all(action in ("finished", "failed") for _, action, _ in plan):
        print("nothing to run: every run of the grid is finished"
              + (" or failed for a reason of its own (--retry_failed tries those again)"
                 if any(a == "failed" for _, a, _ in plan) else ""), file=out)
    from sweeping.driver import Driver

    return Driver(options, plan, sweep_dir, state, token, out).run()


def print_plan(plan: list[tuple], options, sweep_dir: str, out, detailed: bool) -> None:
    from collections import Counter

    from sweeping.cost import estimate
    from utils.runs import shown

    counts = Counter(action for _, action, _ in plan)
    labels = (("start", "to start"), ("resume", "to resume"), ("convert", "conversion(s) to run"),
              ("play", "play(s) to run"), ("finished", "finished"), ("failed", "failed before, not retried"))
    print(f"sweep folder: {shown(sweep_dir)}  ({plural(len(plan), 'run')}: " + ", ".join(
        f"{counts[a]} {plural_words(counts[a], label)}" for a, label in labels if counts[a]) + ")", file=out)
    if not detailed:
        return
    shown_models = set()
    for spec, _, _ in plan:
        if (spec.model, spec.kind) not in shown_models:
            shown_models.add((spec.model, spec.kind))
            words = " ".join(spec.words).replace(spec.env_id, "<game>").replace(f"--seed {spec.seed}", "--seed <seed>")
            model = f"{spec.source_option} <its {spec.after.split('_')[0]} run folder> " if spec.after else ""
            print(f"  {spec.model}{' play' if spec.kind == 'play' else ''}: python {spec.program} {model}{words}",
                  file=out)
    for spec, action, done in plan:
        print(f"  {action:<9} {spec.name}" + (f" (from learning step {done})" if done else "")
              + (f" after {spec.after}" if spec.after else ""), file=out)
    for line in estimate(plan, options):
        print(line, file=out)


def plural(n: int, word: str) -> str:
    """1 run, 2 runs."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def plural_words(n: int, text: str) -> str:
    """'conversion(s) to run' -> 'conversion to run' for 1, 'conversions to run' otherwise."""
    return text.replace("(s)", "" if n == 1 else "s")


def cli() -> None:
    # a Ray cluster that cannot be reached or goes away (Ray raises the built-in ConnectionError): one line, exit 2
    run_cli(lambda: sys.exit(main()), PROG, user_errors=(ConnectionError,))


if __name__ == "__main__":
    cli()
