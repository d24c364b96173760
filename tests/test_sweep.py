"""sweep.py on real Ray with real tiny runs of run.py and convert.py.

* a local Ray (2 CPUs): 2 games x {Dqn, Dsqn} x seed 0, the conversion of one Dqn run and a play of every trained
  run end with every run folder and plot.py's tables, whose energy table has the DQN, DSQN and conversion rows;
  the same run launched by hand gives the same network and evaluations;
* a two-node cluster on this machine (ray.cluster_utils.Cluster): a worker killed mid-run: its run is resumed
  (run.py --resume) and finishes, while a run with a bad option fails once and is reported; starting the finished
  sweep again runs nothing;
* a task on a node that does not see the sweep folder ends at once with one line saying so;
* mistakes in the options: one line on stderr, exit status 2, before Ray starts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO_ROOT, TINY_LEARN, run_program

import sweep

GAME = "BreakoutNoFrameskip-v4"
# TINY_LEARN cut further (4 learning steps, minibatches of 8, T = 2); the sweep sets --seed itself.
_PAIRS = {**dict(zip(TINY_LEARN[::2], TINY_LEARN[1::2])), "--timestep_num": "4", "--replay_start_size": "8",
          "--eval_freq": "4", "--max_episode_step": "10", "--replay_memory_size": "100", "--T": "2",
          "--minibatch_size": "8"}
TINY = [word for key, value in _PAIRS.items() if key != "--seed" for word in (key, value)]
CONVERT = "--episode 1 --time 4 --norm_examples 10 --max_episode_step 300 --device cpu"
PLOT = "--bootstrap_samples 50"


def run_sweep(sweep_dir, *options: str, run_words=TINY, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_program(["sweep.py", *options, "--sweep_dir", str(sweep_dir), "--plot_options", PLOT, "--",
                        *run_words], timeout=timeout)


def status(run_dir) -> dict:
    with open(os.path.join(run_dir, "status.json"), encoding="utf-8") as file:
        return json.load(file)


def sweep_state(sweep_dir) -> dict:
    with open(os.path.join(sweep_dir, "sweep.json"), encoding="utf-8") as file:
        return json.load(file)["runs"]


def evaluation_lines(run_dir) -> list[str]:
    with open(os.path.join(run_dir, "run.log"), encoding="utf-8") as file:
        return [line.split("| INFO | ")[1] for line in file if "\taverage_score: " in line]


# -- a local Ray on 2 CPUs --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("local") / "sweep"
    process = run_sweep(sweep_dir, "--games", "Breakout", "Pong", "--models", "Dqn", "Dsqn", "--seeds", "0",
                    "--convert", "Breakout", "--convert_options", CONVERT, "--num_cpus", "2",
                    "--object_store_mb", "100", "--play_games", "1")
    return sweep_dir, process


@pytest.mark.slow
def test_local_grid_ends_with_every_run_and_the_scores_table(local_grid):
    sweep_dir, process = local_grid
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    runs = sorted(os.listdir(sweep_dir / "runs"))
    trained = ["Dqn_BreakoutNoFrameskip-v4_seed0", "Dqn_PongNoFrameskip-v4_seed0", "Dsqn_BreakoutNoFrameskip-v4_seed0",
               "Dsqn_PongNoFrameskip-v4_seed0"]
    assert runs == sorted(["ConvSNN_BreakoutNoFrameskip-v4_T4_seed0", *trained, *(f"{n}_play" for n in trained)])
    assert all(status(sweep_dir / "runs" / name)["status"] == "finished" for name in runs)
    scores = (sweep_dir / "figures" / "scores.md").read_text()
    assert "Breakout" in scores and "Pong" in scores and "DSQN" in scores
    assert "scores.md" in process.stdout and "9 of 9 runs finished" in process.stdout
    play = json.loads((sweep_dir / "runs" / f"{trained[2]}_play" / "summary.json").read_text())
    assert play["episodes"] == 1 and play["max_episode_step"] == 10 and play["greedy_actions"] > 0
    # one sweep, the paper's energy comparison: DQN, DSQN (its play with the spike monitor) and the conversion
    with open(sweep_dir / "figures" / "energy.csv", newline="") as file:
        energy = {(r["game"], r["model"]): r for r in csv.DictReader(file)}
    assert {("Breakout", "Dqn"), ("Breakout", "Dsqn"), ("Breakout", "ConvSNN_T4"), ("Pong", "Dsqn")} <= set(energy)
    assert float(energy[("Breakout", "Dsqn")]["sops_per_action"]) == pytest.approx(play["sops_per_action"])
    assert energy[("Breakout", "Dsqn")]["source"] == "play summary" and energy[("Breakout", "Dsqn")]["T"] == "2"
    with open(sweep_dir / "figures" / "scores.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {r["score_source"] for r in rows} == {"play"}  # every trained run was played: one rule, the play
    assert "horizon not 18,000 steps" in scores.splitlines()[0]
    conversion = json.loads((sweep_dir / "runs" / runs[0] / "config.json").read_text())
    assert conversion["seed"] == 0 and conversion["model"].endswith("Dqn_BreakoutNoFrameskip-v4_seed0/best.pkl")


@pytest.mark.slow
def test_a_run_by_hand_gives_the_same_result_as_in_the_sweep(local_grid, tmp_path):
    import torch

    sweep_dir, _ = local_grid
    name = "Dsqn_BreakoutNoFrameskip-v4_seed0"
    words = sweep_state(sweep_dir)[name]["words"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    by_hand = subprocess.run([sys.executable, "run.py", *words, "--output_dir", str(tmp_path), "--run_name", name],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert by_hand.returncode == 0, by_hand.stderr[-2000:]
    mine, theirs = tmp_path / name, sweep_dir / "runs" / name
    assert evaluation_lines(mine) == evaluation_lines(theirs) and evaluation_lines(mine)
    a, b = (torch.load(d / "best.pkl", weights_only=True)["state_dict"] for d in (mine, theirs))
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


# -- a two-node cluster on this machine -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 80 << 20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_a_node_that_does_not_see_the_sweep_folder_says_so(tmp_path):
    """The task checks the sweep folder's token before anything else: where the folder is missing, or is another
    folder at the same path, it ends at once with one line (the driver retries it elsewhere, then reports it)."""
    from sweeping.state import SweepState
    from sweeping.worker import execute

    sweep_dir = tmp_path / "sweep"
    job = {"name": "Dqn_BreakoutNoFrameskip-v4_seed0", "sweep_dir": str(sweep_dir), "token": "0123456789abcdef"}
    for folder_exists in (False, True):
        if folder_exists:  # this path holds another sweep's folder, with a token of its own
            sweep_dir.mkdir()
            assert SweepState(str(sweep_dir)).token() != job["token"]
        outcome = execute(job)
        assert set(outcome) == {"lost"} and f"does not see the sweep folder {sweep_dir}" in outcome["lost"]
        assert "\n" not in outcome["lost"] and not (sweep_dir / "runs").exists()


@pytest.mark.slow
def test_killed_worker_is_resumed_and_a_bad_option_is_reported_once(cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    longer = {**dict(zip(TINY[::2], TINY[1::2])), "--timestep_num": "150", "--eval_freq": "75"}
    grid = {"games": ["Breakout"], "models": ["Dqn", "Dsqn"], "seeds": [0], "convert": False, "plot": False,
            "play_games": 0,
            "run_options": [w for pair in longer.items() for w in pair],
            "model_options": {"Dsqn": {"replay_start_size": 4}}}  # below --minibatch_size 8: run.py refuses it
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    command = [sys.executable, "sweep.py", "--grid", str(tmp_path / "grid.yaml"), "--address", cluster.address,
               "--sweep_dir", str(sweep_dir), "--refresh", "1"]
    driver = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = sweep_dir / "runs" / "Dqn_BreakoutNoFrameskip-v4_seed0"
    deadline = time.time() + 120
    while time.time() < deadline:  # once the first state is saved, kill the Ray worker that runs it
        try:
            saved = status(run_dir)
        except (OSError, ValueError):
            saved = {}
        assert saved.get("status") != "finished", "the run finished before it could be killed"
        if saved.get("status") == "running" and saved.get("timestep", 0) >= 1:
            import psutil

            worker = psutil.Process(saved["pid"]).parent()
            assert "python" in " ".join(worker.cmdline()) or worker.name().startswith("ray::")
            os.kill(worker.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    else:
        driver.kill()
        pytest.fail("the run never saved a state: " + driver.communicate()[0][-3000:])
    output, _ = driver.communicate(timeout=240)
    assert driver.returncode == 1, output[-3000:]
    state = sweep_state(sweep_dir)
    assert status(run_dir)["status"] == "finished" and status(run_dir)["timestep"] == 150, output[-3000:]
    assert state["Dqn_BreakoutNoFrameskip-v4_seed0"]["attempts"] == 2, output[-3000:]
    assert "resumed at learning step" in (run_dir / "run.log").read_text()
    bad = state["Dsqn_BreakoutNoFrameskip-v4_seed0"]
    assert bad["state"] == "failed" and bad["exit"] == 2 and bad["attempts"] == 1
    assert "--replay_start_size" in bad["error"] and "FAILED Dsqn_BreakoutNoFrameskip-v4_seed0" in output
    assert "interrupted Dqn_BreakoutNoFrameskip-v4_seed0" in output

    before = status(run_dir)
    again = io.StringIO()
    assert sweep.main(command[2:], out=again) == 1  # the same command again (in this process: it starts no Ray)
    assert "nothing to run" in again.getvalue(), again.getvalue()
    assert status(run_dir) == before and sweep_state(sweep_dir) == state


# -- the progress table --------------------------------------------------------------------------------------------


def test_progress_table_row_from_a_run_folders_progress_file(tmp_path):
    from sweeping.progress import read_progress, table

    (tmp_path / "progress.json").write_text(json.dumps({
        "phase": "learn", "step": 120, "total": 400, "unit": "step", "steps_per_s": 25.5, "eta_s": 10.98,
        "last_eval_step": 100, "last_eval": 12.5, "updated": "2026-01-01T00:00:00"}))
    (tmp_path / "status.json").write_text(json.dumps({"status": "running", "timestep": 100, "best_score": 12.5}))
    report = read_progress(str(tmp_path))
    assert report == {"phase": "learn", "n": 120, "total": 400, "rate": 25.5, "eval_step": 100, "last_eval": 12.5,
                      "status": "running", "timestep": 100, "best_score": 12.5}
    lines = table([{"name": "Dqn_Breakout_s0", "state": "running", "attempt": 1, "report": {**report,
                                                                                          "host": "node1"}}],
                  {"running": 1}, None)
    # the row the table showed when it read the same state from the progress bar and run.log
    assert lines[2] == ("Dqn_Breakout_s0                              running    1 node1      learn      "
                        "          120/400    25.50       12.5     12.5   0:00:10")
    assert read_progress(str(tmp_path / "missing")) == {}


def test_progress_of_a_finished_run(trained_run):
    from sweeping.progress import read_progress

    report = read_progress(trained_run("Dqn").run_dir)
    assert report["phase"] == "finished" and report["n"] == report["total"] == report["timestep"] == 40
    assert report["status"] == "finished" and report["eval_step"] == 40 and report["rate"] > 0


# -- mistakes ---------------------------------------------------------------------------------------------------------


def test_a_mistake_is_one_line_on_stderr_and_exit_2(tmp_path):
    process = run_program(["sweep.py", "--games", "Breakot", "--sweep_dir", str(tmp_path / "s")])
    assert process.returncode == 2 and process.stderr == "sweep.py: error: unknown game 'Breakot': give an ALE " \
        "<Game>NoFrameskip-v4 id, a short name such as Breakout, or all for the paper's 17 games\n", process.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("options, words, expected", [
    (["--models", "Dqnn"], [], "argument --models: invalid choice"),
    (["--seeds", "-1"], [], "argument --seeds"),
    (["--cpus_per_run", "0"], [], "argument --cpus_per_run"),
    ([], ["--seed", "3"], "--seed is set by the sweep"),
    ([], ["--output_dir", "x"], "--output_dir is set by the sweep"),
    ([], ["--T", "0"], "run.py options: argument --T"),
    ([], ["--no_such_option"], "unrecognized arguments"),
    (["--convert_options", "--time 0"], [], "--convert_options: argument --time"),
    (["--convert_options", "--model x"], [], "--convert_options: --model is set by the sweep"),
    (["--play_options", "--eval_episode_num 3"], [], "--play_options: --eval_episode_num is set by the sweep"),
    (["--play_options", "--T 0"], [], "--play_options: argument --T"),
    (["--play_options", "--levels 1"], [], "--play_options: --levels is for --method robustness"),
    ([], ["--sticky_actions", "0.25"], "run.py options of Dqn: --sticky_actions is for --method play"),
    (["--play_games", "-1"], [], "argument --play_games"),
    (["--convert", "Pong", "--games", "Breakout"], [], "not in the grid"),
    (["--grid", "/nonexistent.yaml"], [], "--grid /nonexistent.yaml: No such file"),
    (["--address", "auto", "--num_cpus", "2"], [], "--num_cpus"),
    (["--results", "return"], [], "--results return: run folders are no longer sent back through Ray"),
])
def test_mistakes_are_refused_before_anything_starts(tmp_path, capsys, options, words, expected):
    from utils.cli import run_cli

    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda: sweep.main([*options, "--sweep_dir", str(tmp_path / "s"), "--", *words]), "sweep.py")
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(lines) == 1 and lines[0].startswith("sweep.py: error:"), lines
    assert expected in lines[0]
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("text, expected", [
    ("games: [Breakout]\nbogus: 1\n", "unknown key 'bogus'"),
    ("models: [Dqn, Foo]\n", "models: unknown 'Foo'"),
    ("seeds: [zero]\n", "seeds: must be an integer"),
    ("model_options: {Foo: {T: 2}}\n", "model_options must map model names"),
    ("run_options: {T: [1, 2]}\n", "the value of T must be"),
    ("games: [\n", "not valid YAML"),
])
def test_grid_file_mistakes(tmp_path, capsys, text, expected):
    from utils.cli import run_cli

    (tmp_path / "grid.yaml").write_text(text)
    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda: sweep.main(["--grid", str(tmp_path / "grid.yaml"), "--dry_run"]), "sweep.py")
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_dry_run_prints_the_plan_and_its_cost(tmp_path):
    out = io.StringIO()
    assert sweep.main(["--grid", os.path.join(REPO_ROOT, "grids", "paper.yaml"), "--sweep_dir", str(tmp_path / "s"),
                       "--dry_run"], out=out) == 0
    text = out.getvalue()
    assert "255 runs: 102 to start, 51 conversions to run, 102 plays to run" in text
    assert "start     Dsqn_VideoPinballNoFrameskip-v4_seed2" in text
    assert "convert   ConvSNN_PongNoFrameskip-v4_T500_seed0 after Dqn_PongNoFrameskip-v4_seed0" in text
    assert "play      Dsqn_PongNoFrameskip-v4_seed0_play after Dsqn_PongNoFrameskip-v4_seed0" in text
    assert "--use_spike_monitor --eval_episode_num 30" in text
    assert "CPU-core-hours" in text and "learning Dsqn T=64" in text and "docs/benchmarks/" in text
    assert not (tmp_path / "s").exists()


def test_dry_run_of_a_short_grid_uses_its_horizon_and_readable_units(tmp_path):
    out = io.StringIO()
    assert sweep.main(["--games", "Breakout", "--models", "Dqn", "--seeds", "0", "--no-convert", "--play_games",
                       "1", "--sweep_dir", str(tmp_path / "s"), "--dry_run", "--", "--timestep_num", "300",
                       "--max_episode_step", "100", "--eval_episode_num", "1"], out=out) == 0
    text = out.getvalue()
    assert "(2 runs: 1 to start, 1 play to run)" in text, text
    assert "games at 100 agent steps each" in text, text  # the horizon, not the assumed 1000 steps
    costs = [line for line in text.splitlines() if line.strip().startswith("Dqn") and " each " in line]
    assert len(costs) == 2 and not any(" 0.0 h" in line for line in costs), costs
    assert all(line.split("each")[0].rstrip().endswith((" s", " min")) for line in costs), costs


def test_run_folders_made_with_other_options_are_refused(tmp_path, capsys):
    from sweeping.options import parse_command_line
    from sweeping.plan import build_plan
    from utils.cli import run_cli
    from utils.runs import RunFolder, write_json

    def grid(episodes: str, T: str, steps: str) -> list[str]:
        return ["--games", "Pong", "--models", "Dqn", "--seeds", "0", "--sweep_dir", str(tmp_path), "--dry_run",
                "--play_games", "0",
                "--convert_options", f"--time 4 --episode {episodes}", "--", "--T", T, "--timestep_num", steps]

    for spec in build_plan(*parse_command_line(grid("1", "4", "100"))[:2]):  # folders as if that grid made them
        os.makedirs(tmp_path / "runs" / spec.name)
        write_json(str(tmp_path / "runs" / spec.name / "config.json"), {**spec.config, "program": spec.program})
        RunFolder(str(tmp_path / "runs" / spec.name)).write_status("finished", timestep=spec.config.get("timestep_num"))
    out = io.StringIO()
    assert sweep.main(grid("1", "4", "100"), out=out) == 0 and "2 finished" in out.getvalue(), out.getvalue()
    out = io.StringIO()  # a larger budget continues the finished run (run.py --resume --timestep_num 200)
    assert sweep.main(grid("1", "4", "200"), out=out) == 0 and "1 to resume, 1 finished" in out.getvalue()
    for argv, expected in ((grid("1", "8", "100"), "was made with --T 4, the grid asks for --T 8"),
                           (grid("2", "4", "100"), "was made with --episode 1, the grid asks for --episode 2")):
        with pytest.raises(SystemExit) as stopped:
            run_cli(lambda argv=argv: sweep.main(argv), "sweep.py")
        assert stopped.value.code == 2 and expected in capsys.readouterr().err


def test_cost_estimate_reads_the_benchmark_report(tmp_path):
    from types import SimpleNamespace

    from sweeping import cost

    def figure(value):
        return {"median": value}

    report = {"machine": {"device": "cuda", "torch_threads": 2}, "parts": {
        "end_to_end": {"runs": {"Dqn": {"steps_per_s": figure(500.0)}, "Dsqn_T8": {"steps_per_s": figure(40.0)}}},
        "networks": {"rows": [{"case": "Dqn", "mode": "eager", "bf16": False, "act_ms": figure(1.0)},
                              {"case": "Dsqn_T8", "mode": "eager", "bf16": False, "act_ms": figure(4.0)}]},
        "env": {"games": {"Breakout": {"us_per_step": figure(500.0)}}}}}
    (tmp_path / "gpu.json").write_text(json.dumps(report))
    rates = cost.Rates(*cost.choose_report(str(tmp_path / "gpu.json"), gpu=True))
    assert rates.train_seconds_per_step("Dqn", 64) == pytest.approx(1 / 500)
    assert rates.train_seconds_per_step("Dsqn", 16) == pytest.approx(2 / 40)  # T=8's rate, linear in T
    assert rates.act_ms("DsqnIF", 8) == 4.0 and rates.env_ms() == 0.5
    assert any("(used for DsqnIF)" in line for line in rates.used)
    assert rates.conversion_ms(500) is None  # not in that report: unknown, never guessed
    spec = SimpleNamespace(kind="train", model="Dqn", config={"timestep_num": 1000, "eval_freq": 500,
                                                              "eval_episode_num": 1, "eval_epsilon": 0.0,
                                                              "replay_start_size": 0, "model": "Dqn", "T": 0})
    # 1000 steps at 500 steps/s, 3 evaluations of 1000 steps of (0.5 ms env + 1 ms act)
    assert cost.run_seconds(spec, rates) == pytest.approx(2.0 + 3 * 1000 * 1.5 / 1000)
    lines = cost.estimate([(spec, "start", 0)], SimpleNamespace(gpus_per_run=0.5, cpus_per_run=1,
                                                                benchmark=str(tmp_path / "gpu.json")))
    assert any("gpu.json" in line for line in lines) and any("GPU-hours" in line for line in lines)
