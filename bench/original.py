"""Prepare the original DSQN code (Liu et al.'s release) in a temporary folder with its own virtualenv, and time
its Dsqn learning steps per second on this machine (bench/original_driver.py runs inside that virtualenv).

    python bench/original.py --checkout ~/Deep-Spiking-Q-Networks --wheels ~/wheels --device cuda
    python bench/original.py --checkout ~/Deep-Spiking-Q-Networks --dry_run

Nothing of the original enters this repository: --checkout is a checkout made elsewhere, --wheels a folder of
wheels made with `pip download` (bench/README.md), for a machine without network access. The virtualenv sees
the packages of the interpreter it is made from (its sys.path, PYTHONPATH included) after its own, through a .pth
file: a GPU image's torch and CuPy are used as they are, also where that interpreter is itself a virtualenv. It
is made without pip (the interpreter's pip installs into it), and gets the original's SpikingJelly release,
0.0.0.0.8 (the original calls MultiStepLIFNode(tau, v_threshold, v_reset, ...) positionally; from 0.0.0.0.10
on a decay_input argument comes second and that call fails), plus what the driver needs. The original hard-codes
the CuPy neuron backend, which needs a CUDA device and CuPy; on the CPU the driver substitutes SpikingJelly's torch
backend (the same arithmetic) and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from utils.cli import ArgumentParser, UserError, positive_int, run_cli

SPIKINGJELLY = "spikingjelly==0.0.0.0.8"
#: what the driver needs besides SpikingJelly (satisfied by the interpreter's own packages where present)
NEEDS = ["numpy", "gymnasium==1.2.2", "ale-py==0.12.1", "opencv-python-headless", "tensorboard", "tqdm"]
ORIGINAL_PACKAGES = ("agent", "neural_network", "replay_memory")
#: PYTHONPATH would come before the virtualenv's own packages (our SpikingJelly before the original's): the .pth
#: file puts its folders after them instead
CLEAN_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="bench/original.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkout", required=True, help="a checkout of the original code (with agent/, neural_network/)")
    p.add_argument("--wheels", help="install only from this folder of wheels (no index; see bench/README.md)")
    p.add_argument("--workdir", help="where to prepare it (default: a new temporary folder, removed afterwards)")
    p.add_argument("--python", default=sys.executable, help="the interpreter of the virtualenv (default: this one)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="default cuda")
    p.add_argument("--torch", default="torch", help="the torch requirement, e.g. torch==2.13.0 (default: torch, "
                                                      "satisfied by the interpreter's own torch where it has one)")
    p.add_argument("--cupy", default="cupy-cuda12x", help="the CuPy package installed on CUDA when the interpreter "
                                                          "has no CuPy (default cupy-cuda12x)")
    p.add_argument("--T", type=positive_int, default=64, help="simulation time steps (default 64)")
    p.add_argument("--steps", type=positive_int, default=402, help="learning steps per run, 2 + a multiple of 4 "
                                                                   "(default 402)")
    p.add_argument("--replay_start", type=positive_int, default=500, help="exploration steps (default 500)")
    p.add_argument("--repeats", type=positive_int, default=3, help="runs, each timed (default 3)")
    p.add_argument("--dry_run", action="store_true", help="print what it would do, do nothing")
    return p


class Original:
    """The original code prepared in ``workdir``: its packages copied, a virtualenv with its needs."""

    def __init__(self, checkout: str, workdir: str, python: str, device: str, wheels: str | None = None,
                 torch_requirement: str = "torch", cupy: str = "cupy-cuda12x"):
        self.checkout, self.workdir, self.python, self.device = os.path.abspath(checkout), workdir, python, device
        self.wheels, self.torch_requirement, self.cupy = wheels, torch_requirement, cupy
        self.venv_python = os.path.join(workdir, "venv", "bin", "python")
        self.code = os.path.join(workdir, "original")
        missing = [p for p in ORIGINAL_PACKAGES if not os.path.isdir(os.path.join(self.checkout, p))]
        if missing:
            raise UserError(f"--checkout {checkout} is not the original DSQN code: it has no {missing[0]}/ folder")
        if wheels and not os.path.isdir(wheels):
            raise UserError(f"--wheels {wheels} is not a folder")

    def pip(self, *requirements: str) -> list[str]:
        """The interpreter's own pip, installing into the virtualenv (made without pip: no ensurepip needed)."""
        index = ["--no-index", "--find-links", os.path.abspath(self.wheels)] if self.wheels else []
        return [self.python, "-m", "pip", "--python", self.venv_python, "install", "-q", "--disable-pip-version-check",
                *index, *requirements]

    def setup_commands(self) -> list[list[str]]:
        """The virtualenv, the .pth file that shows it the interpreter's packages (its sys.path less the standard
        library, PYTHONPATH included), the installs (CuPy apart: :meth:`cupy_command`)."""
        outer = ("import sys, sysconfig; std = {sysconfig.get_paths()[k] for k in ('stdlib', 'platstdlib')}; "
                 "print(*[p for p in sys.path if p and p not in std and 'lib-dynload' not in p and not "
                 "p.endswith('.zip')], sep=chr(10))")
        show_outer = (f"import subprocess, sysconfig; open(sysconfig.get_paths()['purelib'] + '/outer.pth', 'w')"
                      f".write(subprocess.run([{self.python!r}, '-c', {outer!r}], capture_output=True, text=True)"
                      f".stdout)")
        return [[self.python, "-m", "venv", "--without-pip", os.path.join(self.workdir, "venv")],
                [self.venv_python, "-c", show_outer], self.pip("--no-deps", SPIKINGJELLY),
                self.pip(self.torch_requirement, *NEEDS)]

    def cupy_command(self) -> list[str] | None:
        """On CUDA, where the interpreter has no CuPy: its install."""
        if self.device == "cpu" or subprocess.run([self.venv_python, "-c", "import cupy"], capture_output=True,
                                                  env=CLEAN_ENV, check=False).returncode == 0:
            return None
        return self.pip(self.cupy)

    def driver_command(self, T: int, steps: int, replay_start: int, repeats: int, seed: int = 0,
                       threads: int = 0) -> list[str]:
        backend = "cupy" if self.device == "cuda" else "torch"
        return [self.venv_python, os.path.join(BENCH_DIR, "original_driver.py"), "--checkout", self.code,
                "--repo", REPO_ROOT, "--device", self.device, "--backend", backend, "--T", str(T), "--steps",
                str(steps), "--replay_start", str(replay_start), "--repeats", str(repeats), "--seed", str(seed),
                "--threads", str(threads)]

    def prepare(self, log=print) -> None:
        for package in ORIGINAL_PACKAGES:
            shutil.copytree(os.path.join(self.checkout, package), os.path.join(self.code, package), dirs_exist_ok=True)
        for command in self.setup_commands() + [None]:
            command = command or self.cupy_command()
            if command is None:
                continue
            log(" ".join(command))
            done = subprocess.run(command, capture_output=True, text=True, env=CLEAN_ENV, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command[:4])} ... failed: {done.stderr.strip()[-1500:]}")

    def run(self, T: int, steps: int, replay_start: int, repeats: int, seed: int = 0, threads: int = 0) -> dict:
        done = subprocess.run(self.driver_command(T, steps, replay_start, repeats, seed, threads), capture_output=True,
                              text=True, env=CLEAN_ENV, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the original's driver failed: {done.stderr.strip()[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.steps < 6 or (args.steps - 2) % 4:
        raise UserError(f"--steps must be 2 + a positive multiple of 4 (e.g. 402), got {args.steps}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="dsqn_original_")
    try:
        original = Original(args.checkout, workdir, args.python, args.device, args.wheels, args.torch, args.cupy)
        if args.dry_run:
            print(f"copy {', '.join(ORIGINAL_PACKAGES)} of {original.checkout} into {original.code}")
            for command in original.setup_commands():
                print(" ".join(command))
            if args.device == "cuda":
                print(f"(only if the interpreter has no CuPy) {' '.join(original.pip(args.cupy))}")
            print(" ".join(original.driver_command(args.T, args.steps, args.replay_start, args.repeats)))
            return
        original.prepare(log=lambda line: print(line, file=sys.stderr, flush=True))
        result = original.run(args.T, args.steps, args.replay_start, args.repeats)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    rates = sorted(1 / s for s in result["seconds_per_step"])
    print(json.dumps(result))
    print(f"original Dsqn T={args.T} on {args.device} ({result['backend']} neurons): median "
          f"{rates[len(rates) // 2]:.3g} learning steps/s over {len(rates)} run(s)", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main, "bench/original.py")
