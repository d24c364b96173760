"""Figures, score tables, statistics over seeds and energy estimates from the runs of run.py and convert.py.

    python utils/plot.py                      # reads runs/
    python utils/plot.py --runs_dir runs --games Breakout Pong --models Dqn Dsqn --format pdf --human_set atari57

The input is --runs_dir (default runs/ of the repository): one folder per run with its config.json, tensorboard/,
summary.json and result.csv. The statistics over games and seeds (IQM, mean, median of human-normalised scores,
performance profiles, probability of improvement over DQN, stratified bootstrap 95% intervals) are computed with
numpy and scipy in plotting/statistics.py, not with the rliable library (its dependency arch does not import next to
pandas 3). Inputs, outputs and definitions: plotting/__init__.py and `python utils/plot.py --help`.
This file is only the entry point: the code is the package plotting/.
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from utils.cli import run_cli

PROG = "plot.py"


def main(argv: list[str] | None = None) -> dict:
    from plotting.cli import main as plot_main

    return plot_main(argv)


if __name__ == "__main__":
    run_cli(main, PROG)  # plotting's imports run inside: Ctrl-C there is one line too
