"""The optional dependency groups (pyproject.toml): the core install trains, converts and plots without the sweep's
and the NIR export's packages; a program whose group is missing ends with one line naming the group to install.

A missing package is made by an import hook in a fresh interpreter (the packages stay installed for the other
tests): every import of a blocked top-level package fails as it does when the package is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
from conftest import GAME, REPO_ROOT, TINY_LEARN

#: Runs ``sys.argv[2:]`` as ``python <program> <args>``, with the top-level packages in ``sys.argv[1]``
#: (comma-separated) not importable.
WITHOUT = """
import runpy, sys
blocked = set(sys.argv[1].split(","))
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_without(packages: str, program: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DSQN_TRACEBACK", None)
    return subprocess.run([sys.executable, "-c", WITHOUT, packages, program, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, env=env)


def names(requirements: list[str]) -> set[str]:
    """The distribution names of requirement strings (``"ray==2.60.0"`` -> ``"ray"``)."""
    out = set()
    for requirement in requirements:
        name = requirement
        for separator in "=<>!~[; ":
            name = name.split(separator)[0]
        out.add(name.lower())
    return out


def test_core_install_leaves_the_extensions_to_their_groups():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    core, extras = names(project["dependencies"]), project["optional-dependencies"]
    assert not core & {"ray", "nir", "nirtorch"}, core
    assert {"torch", "spikingjelly", "gymnasium", "ale-py", "matplotlib", "scipy"} <= core  # train, convert, plot
    assert names(extras["sweep"]) == {"ray"} and names(extras["nir"]) == {"nir", "nirtorch"}
    # dev (what .ci/run installs) has every other group, so the whole suite runs there
    own, = (r for r in extras["dev"] if r.startswith(project["name"] + "["))
    assert set(own.split("[", 1)[1].rstrip("]").split(",")) == set(extras) - {"dev"}


@pytest.mark.parametrize("packages, program, args, line", [
    ("ray", "sweep.py", ["--games", "Breakout", "--models", "Dqn", "--seeds", "0", "--", "--timestep_num", "300"],
     'sweep.py: error: running a sweep needs Ray: pip install -e ".[sweep]"'),
    ("nir,nirtorch", "utils/export_nir.py", ["--model", "no_such_run", "--out", "agent.nir"],
     'export_nir.py: error: exporting to NIR needs the nir package: pip install -e ".[nir]"'),
])
def test_a_program_without_its_group_says_which_to_install(tmp_path, packages, program, args, line):
    if program == "sweep.py":
        args = ["--sweep_dir", str(tmp_path / "sweep"), *args]
    process = run_without(packages, program, *args)
    assert process.returncode == 2, process.stderr[-2000:]
    assert process.stderr.strip().splitlines() == [line]
    assert not os.listdir(tmp_path)  # nothing written


def test_sweep_plan_needs_no_ray(tmp_path):
    process = run_without("ray", "sweep.py", "--sweep_dir", str(tmp_path / "sweep"), "--games", "Breakout",
                          "--models", "Dqn", "--seeds", "0", "--dry_run", "--", "--timestep_num", "300")
    assert process.returncode == 0, process.stderr[-2000:]
    assert "Breakout" in process.stdout


@pytest.mark.slow
def test_training_conversion_and_plots_run_without_the_extensions(tmp_path):
    """run.py learn and play, convert.py and plot.py, each as a program, with ray, nir and nirtorch missing."""
    blocked = "ray,nir,nirtorch"
    runs = tmp_path / "runs"
    learn = run_without(blocked, "run.py", "--model", "Dqn", "--env_id", GAME, *TINY_LEARN, "--output_dir", str(runs))
    assert learn.returncode == 0, learn.stderr[-3000:]
    run_dir, = (runs / name for name in os.listdir(runs))
    play = run_without(blocked, "run.py", "--method", "play", "--model_path", str(run_dir / "best.pkl"),
                       "--env_id", GAME, "--eval_episode_num", "1", "--max_episode_step", "40", "--device", "cpu",
                       "--output_dir", str(tmp_path / "play"))
    assert play.returncode == 0, play.stderr[-3000:]
    convert = run_without(blocked, "conversion_based_snn/convert.py", "--model", str(run_dir), "--episode", "1",
                          "--time", "2", "--norm_examples", "20", "--max_episode_step", "300", "--device", "cpu",
                          "--output_dir", str(tmp_path / "conv"))
    assert convert.returncode == 0, convert.stderr[-3000:]
    plot = run_without(blocked, "utils/plot.py", "--runs_dir", str(runs), str(tmp_path / "play"),
                       str(tmp_path / "conv"), "--games", "Breakout", "--output_dir", str(tmp_path / "figs"),
                       "--bootstrap_samples", "100")
    assert plot.returncode == 0, plot.stderr[-3000:]
    assert os.listdir(tmp_path / "figs")


def test_lock_file_agrees_with_the_pins():
    """requirements-lock.txt (a tested environment) has every package of every group, at the version that
    pyproject.toml pins where it pins one."""
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    with open(os.path.join(REPO_ROOT, "requirements-lock.txt")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith(("#", "-"))]
    locked = {name.lower().replace("_", "-"): version.split("+")[0]
              for name, version in (line.split("==") for line in lines)}
    requirements = [*project["dependencies"], *(r for group in project["optional-dependencies"].values()
                                               for r in group if not r.startswith(project["name"]))]
    for requirement in requirements:
        name, = names([requirement])
        assert name in locked, requirement
        if "==" in requirement:
            assert locked[name] == requirement.split("==")[1].split()[0], (requirement, locked[name])


def test_each_extension_has_a_registered_marker_on_its_test_files():
    """pytest -m sweep (nir, robustness, tracking, harness) selects an extension's tests: every file conftest marks
    exists, and every marker is registered in pyproject.toml (pytest runs with --strict-markers)."""
    from conftest import EXTENSION_TESTS

    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        pytest_options = tomllib.load(f)["tool"]["pytest"]["ini_options"]
    registered = {line.split(":")[0] for line in pytest_options["markers"]}
    assert "--strict-markers" in pytest_options["addopts"]
    assert set(EXTENSION_TESTS) <= registered, set(EXTENSION_TESTS) - registered
    for names in EXTENSION_TESTS.values():
        for name in names:
            assert os.path.isfile(os.path.join(REPO_ROOT, "tests", name)), name
