"""Progress: what a running run is doing (read on its node from the run folder's progress.json and status.json,
which run.py and convert.py write), the board that carries it to the driver, and the table the driver shows."""

from __future__ import annotations

import math
import os
import time

from utils.files import read_json


def read_progress(folder: str) -> dict:
    """Progress of a run folder as the table shows it: phase, n, total, rate (per second) and the last evaluation
    from its progress.json; status, learning step and best score from its status.json."""
    info = {}
    progress = read_json(os.path.join(folder, "progress.json"))
    if isinstance(progress, dict):
        for key, name in (("phase", "phase"), ("step", "n"), ("total", "total"), ("steps_per_s", "rate"),
                          ("last_eval_step", "eval_step"), ("last_eval", "last_eval")):
            if progress.get(key) is not None:
                info[name] = progress[key]
    status = read_json(os.path.join(folder, "status.json"))
    for key in ("status", "timestep", "best_score"):
        if isinstance(status, dict) and status.get(key) is not None:
            info[key] = status[key]
    return info


def make_board():
    """A Ray actor (no CPU) that holds the last report of every run."""
    import ray

    @ray.remote(num_cpus=0, max_restarts=-1)
    class Board:
        def __init__(self):
            self.reports: dict[str, dict] = {}

        def update(self, name: str, info: dict) -> None:
            self.reports[name] = {**self.reports.get(name, {}), **info, "seen": time.time()}

        def snapshot(self) -> dict:
            return self.reports

    return Board.remote()


# -- the table --------------------------------------------------------------------------------------------------------


def hms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def remaining_seconds(report: dict) -> float | None:
    if report.get("rate") and report.get("total") is not None and report.get("n") is not None:
        return max(0, report["total"] - report["n"]) / report["rate"]
    return None


def grid_eta(running: list[dict], queued_seconds: list[float]) -> float | None:
    """Seconds until the grid is done: the work left (running runs' remaining time at their current rate, queued
    runs' expected time) spread over as many slots as run now, but never less than the longest running run."""
    left = [remaining_seconds(r) for r in running]
    if any(x is None for x in left) or any(x is None for x in queued_seconds):
        return None
    slots = max(1, len(running))
    return max([*left, (sum(left) + sum(queued_seconds)) / slots]) if left or queued_seconds else 0.0


def table(rows: list[dict], counts: dict, eta: float | None, limit: int = 40) -> list[str]:
    """The lines of the progress table: a header with the counts and the ETA, then one line per running or failed
    run (up to ``limit`` lines)."""
    head = "  ".join(f"{k} {v}" for k, v in counts.items()) + f"  | grid ETA ~{hms(eta)}"
    if not rows:
        return [head]
    lines = [head, (f"{'run':<44} {'state':<8} {'try':>3} {'node':<10} {'phase':<10} {'step':>17} {'steps/s':>8} "
                    f"{'last eval':>10} {'best':>8} {'left':>9}")]
    for row in rows[:limit]:
        report = row.get("report") or {}
        step = f"{report['n']}/{report['total']}" if report.get("n") is not None else ""
        rate = f"{report['rate']:.2f}" if report.get("rate") else ""
        best = report.get("best_score")
        last = report.get("last_eval")
        lines.append(f"{row['name'][:44]:<44} {row['state']:<8} {row.get('attempt', ''):>3} "
                     f"{str(report.get('host') or '')[:10]:<10} {str(report.get('phase') or '')[:10]:<10} "
                     f"{step:>17} {rate:>8} {'' if last is None else format(last, '.6g'):>10} "
                     f"{'' if best is None else format(best, '.6g'):>8} "
                     f"{hms(remaining_seconds(report)) if row['state'] == 'running' else '':>9}")
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return lines


class Screen:
    """On a terminal: the table redrawn in place, with messages (retries, failures) printed above it. Elsewhere (a
    log file): the messages, and the header line when the counts change or every ``quiet_s`` seconds."""

    def __init__(self, stream, quiet_s: float = 60.0):
        self.stream, self.quiet_s = stream, quiet_s
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.drawn, self.last_head, self.last_time = 0, None, 0.0

    def show(self, lines: list[str], messages: list[str] = (), final: bool = False) -> None:
        stamp = time.strftime("%H:%M:%S ")
        if self.tty:
            import shutil

            width = shutil.get_terminal_size().columns - 1  # a wrapped line would spoil the redraw
            lines = [line[:width] for line in lines]
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.write("".join(stamp + m + "\n" for m in messages) + "\n".join(lines) + "\n")
            self.drawn = len(lines)
        else:
            self.stream.write("".join(stamp + m + "\n" for m in messages))
            counts = lines[0].split("|")[0]
            if final:
                self.stream.write("\n".join(lines) + "\n")
            elif counts != self.last_head or time.time() - self.last_time >= self.quiet_s:
                self.stream.write(stamp + lines[0] + "\n")
                self.last_head, self.last_time = counts, time.time()
        self.stream.flush()
