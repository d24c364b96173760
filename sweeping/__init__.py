"""sweep.py's package: the paper's grid (games x models x seeds, plus conversion runs) as one command on Ray.

    options.py   the options (defined once) and the grid file (YAML)
    plan.py      the runs of a grid: folder names and exact run.py / convert.py options, checked before anything starts
    state.py     the sweep folder's own state: what is finished, failed or to be resumed
    driver.py    Ray tasks, retries, conversions after their Dqn run, the summary and plot.py
    worker.py    what a task does on its node (a subprocess in the sweep folder, a lock)
    progress.py  the progress board and table
    cost.py      the cost estimate of --dry_run from the benchmark report
"""
