"""utils/plot.py (the plotting package): figures, tables and statistics from hand-made run folders (runs/<name>/)
with known values, damaged inputs, command-line errors (the options of the old log/ and result/ layouts among them),
and one test on real short runs of run.py and convert.py."""

from __future__ import annotations

import csv
import json
import os
from glob import glob

import numpy as np
import pytest
from conftest import read_scalars, run_program

from plotting import cli, statistics
from plotting.aggregation import binned_curve, mean_curve
from plotting.common import PAPER_GAMES, human_normalised, load_references
from plotting.loading import LearnRun
from plotting.loading import read_scalars as plot_scalars
from utils.cli import run_cli
from utils.energy import energy_report

NATURE_BREAKOUT = (1.7, 31.8)  # random, human (Mnih et al. 2015)
LOSS = [(s, 1.0 / (1 + s)) for s in range(0, 24, 4)]
DQN_A = [(0, 1, 0.5, 0.1), (10, 5, 1.0, 0.2), (20, 3, 1.5, 0.3)]  # per-seed best 5
DQN_B = [(0, 2, 0.5, 0.3), (10, 4, 1.0, 0.4), (20, 6, 1.5, 0.5)]  # per-seed best 6: best eval average 5.5
DSQN = [(0, 0, 0, 0.0), (10, 31.8, 2.0, 0.5)]  # best 31.8 = the Nature human score: HNS 100
PONG_SPIKES = {  # a Dsqn play on Pong: scores -20.7 and 9.3 -> -5.7 +- 15, HNS 50 (Nature set)
    "scores": [-20.7, 9.3], "average_score": -5.7, "T": 64, "greedy_actions": 100,
    "average_firing_rate": 0.1, "spike_num_per_action": 1500.0,
    "layer_firing_rates": {"conv1": 0.2, "conv2": 0.1, "conv3": 0.05, "fc1": 0.01},
    "layer_spikes_per_action": {"conv1": 1000.0, "conv2": 300.0, "conv3": 150.0, "fc1": 50.0},
    "layer_neurons": {"conv1": 12800, "conv2": 5184, "conv3": 3136, "fc1": 512},
    "energy": energy_report({"conv1": 3276800.0}, {"conv1": 2.0e5, "conv2": 1.0e5}, "dsqn"),
}
CONV_CSV = "score,mix,spike\n10.0,0.9,0.8\n20.0,0.95,0.9\n"  # the conversion SNN: 15 +- 5


def write_events(folder, evals=(), loss=()):
    """TensorBoard events; ``evals`` = [(step, average, std, max_q)], ``loss`` = [(step, value)]."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for step, average, std, max_q in evals:
        writer.add_scalar("evaluate/average_score", average, step)
        writer.add_scalar("evaluate/score_std", std, step)
        writer.add_scalar("evaluate/average_max_q", max_q, step)
    for step, value in loss:
        writer.add_scalar("learn/loss", value, step)
    writer.close()


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def run_config(model, game, seed=0, method="learn", **extra):
    return {"program": "run.py", "model": model, "env_id": f"{game}NoFrameskip-v4", "seed": seed, "method": method,
            "n_actions": 4, **extra}


def conversion_config(game, time, seed=0, model="/elsewhere/Dqn_run/best.pkl", **extra):
    """config.json of a convert.py run (its options, as convert.py records them)."""
    return {"program": "convert.py", "game": f"{game}NoFrameskip-v4", "time": time, "seed": seed, "model": model,
            "episode": 2, "percentile": 99.9, **extra}


def write_run_folder(runs, name, config, evals=None, summary=None, result_csv=None):
    """A run folder of the runs/ layout; ``config`` as written to config.json (or text written as it is)."""
    folder = os.path.join(str(runs), name)
    os.makedirs(folder, exist_ok=True)
    if isinstance(config, str):
        with open(os.path.join(folder, "config.json"), "w") as f:
            f.write(config)
    elif config is not None:
        write_json(os.path.join(folder, "config.json"), config)
    if evals is not None:
        write_events(os.path.join(folder, "tensorboard"), evals, LOSS)
    if summary is not None:
        write_json(os.path.join(folder, "summary.json"), summary)
    if result_csv is not None:
        with open(os.path.join(folder, "result.csv"), "w") as f:
            f.write(result_csv)
    return folder


def write_learn_run(runs, name, config, evals):
    """A finished learn run folder: config.json, tensorboard/, status.json."""
    folder = write_run_folder(runs, name, config, evals)
    write_json(os.path.join(folder, "status.json"), {"status": "finished", "timestep": evals[-1][0]})
    return folder


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    """runs/ (two Dqn and a Dsqn learn run on Breakout, a Dsqn play on Pong, a conversion whose summary.json is not
    written yet, only its result.csv), dqn_play/ (a Dqn play on Breakout) and empty/."""
    root = tmp_path_factory.mktemp("handmade")
    runs = root / "runs"
    write_learn_run(runs, "Dqn_Breakout_learn_a", run_config("Dqn", "Breakout", 0), DQN_A)
    write_learn_run(runs, "Dqn_Breakout_learn_b", run_config("Dqn", "Breakout", 1), DQN_B)
    write_learn_run(runs, "Dsqn_Breakout_learn_a", run_config("Dsqn", "Breakout", 0), DSQN)
    write_run_folder(runs, "Dsqn_Pong_play_a", run_config("Dsqn", "Pong", 0, "play"), summary=PONG_SPIKES)
    write_run_folder(runs, "ConvSNN_BreakoutNoFrameskip-v4_T500", conversion_config("Breakout", 500),
                     result_csv=CONV_CSV)
    (root / "empty").mkdir()
    write_run_folder(root / "dqn_play", "Dqn_Breakout_play_a", run_config("Dqn", "Breakout", 0, "play"),
                     summary={"scores": [8.0, 12.0]})
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same runs, plus a Double DQN, a checkpoint link and unfinished runs."""
    runs = tmp_path_factory.mktemp("runs")
    write_run_folder(runs, "Dqn_Breakout_s0", run_config("Dqn", "Breakout", 0), DQN_A)
    write_run_folder(runs, "Dqn_Breakout_s1", run_config("Dqn", "Breakout", 1), DQN_B)
    write_run_folder(runs, "Dsqn_Breakout_s0", run_config("Dsqn", "Breakout", 0), DSQN)
    # Double DQN, best 6: its own model; P(DoubleDqn > Dqn) = (1 + 1/2) / 2 against the bests 5 and 6
    write_run_folder(runs, "DoubleDqn_Breakout_s0", run_config("Dqn", "Breakout", 0, double=True),
                     [(0, 2, 0.5, 0.1), (10, 6, 1.0, 0.2)])
    write_run_folder(runs, "Dsqn_Pong_play", run_config("Dsqn", "Pong", 0, "play", model_path="elsewhere/best.pkl"),
                     summary=PONG_SPIKES)
    # the conversion of the seed-1 Dqn (its checkpoint names the run): it counts for seed 1, not its own seed 3
    write_run_folder(runs, "Conv_Breakout", {"program": "convert.py", "game": "BreakoutNoFrameskip-v4", "time": 500,
                                             "model": "/anywhere/runs/Dqn_Breakout_s1/best.pkl", "seed": 3},
                     result_csv=CONV_CSV)
    running = write_run_folder(runs, "Dsqn_Breakout_s1_running", run_config("Dsqn", "Breakout", 1))
    write_json(os.path.join(running, "status.json"), {"status": "running"})
    write_run_folder(runs, "Dqn_Breakout_play_died", run_config("Dqn", "Breakout", 0, "play"))
    write_run_folder(runs, "not_a_run", None)
    return runs


def run_plot(handmade, out, *extra, runs_dirs=None):
    argv = ["--runs_dir", str(handmade / "empty"), *(runs_dirs or [str(handmade / "runs")]), "--output_dir", str(out),
            "--no_progress", "--bootstrap_samples", "200", *extra]
    return cli.main(argv)


def read_csv(path, key=("game", "model")) -> dict:
    with open(path) as f:
        return {tuple(r[k] for k in key): r for r in csv.DictReader(f)}


def read_rows(out) -> dict[tuple[str, str], dict]:
    return read_csv(os.path.join(out, "scores.csv"))


def num(text: str):
    return None if text == "" else float(text)


def assert_image(path, min_h=200, min_w=300):
    import matplotlib.image

    assert os.path.getsize(path) > 5000, path
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= min_h and image.shape[1] >= min_w, (path, image.shape)
    assert image.std() > 0.01, f"{path} is blank"


def check_handmade_rows(rows):
    """The numbers of the hand-made runs, the same in both sets of run folders. The Dqn runs were not played, so
    every score is the best eval: the conversion SNN and the Dsqn on Pong (play only) have none, their play stays in
    its column."""
    dqn = rows[("Breakout", "Dqn")]
    assert dqn["seeds"] == "0 1" and dqn["runs"] == "2"
    assert num(dqn["best_eval_average"]) == pytest.approx(5.5)  # mean of the per-seed bests 5 and 6, not the
    assert num(dqn["best_eval_std_over_runs"]) == pytest.approx(0.5)  # best of the mean curve (4.5)
    assert dqn["play_average"] == "" and dqn["score_source"] == "best eval"
    assert num(dqn["human_normalised_score"]) == pytest.approx(100 * (5.5 - 1.7) / (31.8 - 1.7))
    assert num(dqn["pct_dqn"]) == pytest.approx(100.0)
    assert (num(dqn["random"]), num(dqn["human"]), num(dqn["dqn_nature"])) == (1.7, 31.8, 401.2)
    dsqn = rows[("Breakout", "Dsqn")]
    assert num(dsqn["best_eval_average"]) == pytest.approx(31.8)
    assert num(dsqn["human_normalised_score"]) == pytest.approx(100.0)
    assert num(dsqn["pct_dqn"]) == pytest.approx(100 * (31.8 - 1.7) / (5.5 - 1.7))  # gains over random
    assert num(dsqn["dqn_base"]) == pytest.approx(5.5) and dsqn["dqn_base_source"] == "best eval"
    conv = rows[("Breakout", "ConvSNN_T500")]  # a model per T
    assert (num(conv["play_average"]), num(conv["play_std"]), conv["play_episodes"]) == (15.0, 5.0, "2")
    assert conv["best_eval_average"] == "" and conv["score"] == "" and conv["score_source"] == ""
    assert conv["human_normalised_score"] == "" and conv["pct_dqn"] == ""
    pong = rows[("Pong", "Dsqn")]
    assert num(pong["play_average"]) == pytest.approx(-5.7) and num(pong["play_std"]) == pytest.approx(15.0)
    assert pong["score"] == "" and pong["human_normalised_score"] == ""
    assert pong["pct_dqn"] == ""  # no Dqn on Pong


def test_handmade_table_groups_seeds_and_normalises(handmade, tmp_path, capsys):
    out = tmp_path / "figs"
    result = run_plot(handmade, out, "--games", "Breakout", "PongNoFrameskip-v4", "Boxing")
    stdout = capsys.readouterr().out
    rows = read_rows(out)
    assert set(rows) == {("Breakout", "Dqn"), ("Breakout", "Dsqn"), ("Breakout", "ConvSNN_T500"), ("Pong", "Dsqn")}
    check_handmade_rows(rows)
    assert all(r["pct_double_dqn"] == "" for r in rows.values())  # no Double model was run
    assert result["summary"]["Dsqn"] == pytest.approx({"mean": 100.0, "median": 100.0, "games": 1})
    assert result["skipped"] == ["Boxing"] and result["rule"] == "best_eval"
    assert "Boxing" in stdout and "score rule: best eval" in stdout
    md = (out / "scores.md").read_text()
    assert "Nature 2015 human scores" in md and "no data for 1 game, skipped: Boxing" in md
    assert "| Breakout | DQN | 0 1 | 2 / 0 | 5.50 ± 0.50 |" in md and "| score (best eval) |" in md
    # seed 0: the conversion's own --seed, as the learn run of its checkpoint is not among the inputs
    assert "| Breakout | conversion SNN (T=500) | 0 | 0 / 1 | n/a | 15.00 ± 5.00 (2) | n/a |" in md
    assert "| DSQN | 100.0 | 100.0 | 1 |" in md and "% Double DQN" not in md
    assert "without a JSON summary" in md  # the CSV-only conversion run is noted

    for name in ("score_Breakout", "max_q_Breakout", "loss_Breakout", "hns", "spikes_Pong", "energy_Pong",
                 "energy_Breakout", "performance_profile"):
        assert_image(str(out / f"{name}.png"))
    assert not any("Boxing" in name for name in os.listdir(out))
    energy = read_csv(out / "energy.csv")
    assert num(energy[("Breakout", "Dqn")]["macs_per_action"]) == 9_342_976 + 512 * 4  # from the architecture
    assert num(energy[("Pong", "Dsqn")]["sops_per_action"]) == 3.0e5
    assert num(energy[("Pong", "Dsqn")]["energy_uj_per_action"]) == pytest.approx((3276800 * 4.6 + 3e5 * 0.9) / 1e6)


def test_runs_layout_double_models_seeds_and_statistics(runs, tmp_path):
    out = tmp_path / "figs"
    # a folder named twice, and a run folder named on its own, are read once
    result = cli.main(["--runs_dir", str(runs), str(runs), str(runs / "Dqn_Breakout_s0"), "--output_dir", str(out),
                       "--no_progress", "--games", "Breakout", "Pong", "--bootstrap_samples", "200"])
    rows = read_rows(out)
    check_handmade_rows(rows)
    double = rows[("Breakout", "DoubleDqn")]
    assert num(double["best_eval_average"]) == 6.0
    assert num(double["pct_dqn"]) == pytest.approx(100 * (6 - 1.7) / (5.5 - 1.7))
    assert num(double["pct_double_dqn"]) == pytest.approx(100.0)
    assert num(rows[("Breakout", "Dsqn")]["pct_double_dqn"]) == pytest.approx(100 * 30.1 / 4.3)
    assert num(rows[("Breakout", "Dsqn")]["double_dqn_base"]) == 6.0
    assert rows[("Pong", "Dsqn")]["pct_double_dqn"] == ""
    md = (out / "scores.md").read_text()
    assert "| Breakout | Double DQN | 0 | 1 / 0 | 6.00 |" in md and "% Double DQN" in md
    for fragment in ("Dsqn_Breakout_s1_running: no tensorboard/", "status.json says 'running'",
                     "Dqn_Breakout_play_died: no play summary", "not_a_run: no config.json",
                     "DSQN on Pong: no best eval score"):
        assert fragment in md, fragment

    seeds = read_csv(out / "per_seed_scores.csv", ("game", "model", "seed"))
    assert {k: num(r["score"]) for k, r in seeds.items()} == pytest.approx({  # the best evals only: no mixing
        ("Breakout", "Dqn", "0"): 5.0, ("Breakout", "Dqn", "1"): 6.0, ("Breakout", "Dsqn", "0"): 31.8,
        ("Breakout", "DoubleDqn", "0"): 6.0})
    assert {r["score_source"] for r in seeds.values()} == {"best eval"}

    stats = read_csv(out / "statistics.csv", ("statistic", "model", "baseline"))
    h5, h6 = (human_normalised(s, *NATURE_BREAKOUT) for s in (5, 6))
    iqm = stats[("iqm_hns", "Dqn", "")]  # two runs: the IQM is their mean; the bootstrap spans the two
    assert (num(iqm["estimate"]), num(iqm["ci_low"]), num(iqm["ci_high"])) == pytest.approx(((h5 + h6) / 2, h5, h6))
    assert num(stats[("median_hns", "Dsqn", "")]["estimate"]) == pytest.approx(100.0)  # Breakout only
    assert stats[("median_hns", "Dsqn", "")]["ci_low"] == ""  # one seed per game: no interval, not a zero-width one
    assert num(stats[("probability_of_improvement", "DoubleDqn", "Dqn")]["estimate"]) == pytest.approx(0.75)
    improvement = stats[("probability_of_improvement", "Dsqn", "Dqn")]  # only Breakout has both: 31.8 > 5, 6
    assert (num(improvement["estimate"]), improvement["games"]) == (1.0, "1")
    assert ("probability_of_improvement", "Dsqn", "DoubleDqn") not in stats  # only Double models vs DoubleDqn
    assert "| Double DQN | DQN | 0.750 [" in (out / "statistics.md").read_text()
    assert [r["statistic"] for r in result["statistics"]].count("iqm_hns") == 3  # Dqn, Dsqn, DoubleDqn
    assert_image(str(out / "performance_profile.png"))


def test_curves_mean_over_seeds_or_episode_std_band(handmade):
    runs = {name: LearnRun(name, "", "", 0, "", {}, plot_scalars(str(handmade / "runs" / name / "tensorboard"), 100))
            for name in ("Dqn_Breakout_learn_a", "Dqn_Breakout_learn_b", "Dsqn_Breakout_learn_a")}
    steps, mean, (low, high), n = mean_curve([runs["Dqn_Breakout_learn_a"], runs["Dqn_Breakout_learn_b"]],
                                             "evaluate/average_score", "evaluate/score_std")
    assert steps.tolist() == [0, 10, 20] and n == 2
    assert mean.tolist() == pytest.approx([1.5, 4.5, 4.5])
    assert (high - mean).tolist() == pytest.approx([0.5, 0.5, 1.5])  # std over the two seeds
    assert (mean - low).tolist() == pytest.approx([0.5, 0.5, 1.5])
    _, mean, (_, high), _ = mean_curve([runs["Dsqn_Breakout_learn_a"]], "evaluate/average_score",
                                       "evaluate/score_std")
    assert mean.tolist() == pytest.approx([0.0, 31.8]) and (high - mean).tolist() == pytest.approx([0.0, 2.0])


def test_long_loss_is_sampled_and_binned(tmp_path):
    write_events(tmp_path / "run", loss=[(step, float(step)) for step in range(0, 4000, 4)])  # 1000 > max_points
    write_events(tmp_path / "run", [(0, 0.0, 0, 0), (2000, 20.0, 0, 0)])
    scalars = plot_scalars(str(tmp_path / "run"), 300)
    steps, values = scalars["learn/loss"]
    assert len(steps) == 300 and steps[-1] == 3996 and (values == steps).all()  # a sample, the last kept
    assert scalars["evaluate/average_score"][1].tolist() == [0.0, 20.0]  # short tags stay whole
    run = LearnRun("r", "Dqn", "Breakout", 0, "", {}, {"learn/loss": (np.arange(0, 40000, 4),
                                                                      np.arange(0, 40000, 4, dtype=float))})
    centres, mean, _, _, n = binned_curve([run], "learn/loss", bins=200)
    assert len(centres) == 200 and n == 1
    # each bin is 200 steps wide and holds 50 losses equal to their steps: their mean is the bin start + 98
    assert mean.tolist() == pytest.approx([200 * i + 98 for i in range(200)])


def test_a_single_point_is_drawn_and_identical_curves_stay_apart():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from plotting import figures

    scalars = {"learn/loss": (np.array([0]), np.array([0.5])),
               "evaluate/average_score": (np.array([0, 10]), np.array([1.0, 2.0]))}
    dqn = LearnRun("a", "Dqn", "Breakout", 0, "", {}, scalars)
    dsqn = LearnRun("b", "Dsqn", "Breakout", 0, "", {}, dict(scalars))  # the very same curves
    fig, ax = plt.subplots()
    assert figures._draw_loss(ax, {"Dqn": [dqn]})
    (line,) = ax.lines  # one logged loss: a point, shown by its marker (a line through one point draws nothing)
    assert line.get_xydata().tolist() == [[0.5, 0.5]] and line.get_marker() not in (None, "None", "")
    fig, ax = plt.subplots()
    assert figures._draw_mean_curves(ax, {"Dqn": [dqn], "Dsqn": [dsqn]}, "evaluate/average_score")
    first, second = ax.lines
    assert first.get_xydata().tolist() == second.get_xydata().tolist()
    # the second does not hide the first: other dashes, another marker, the first's markers larger
    assert first.get_linestyle() != second.get_linestyle() and first.get_marker() != second.get_marker()
    assert first.get_markersize() > second.get_markersize()
    plt.close("all")


def test_handmade_atari57_set_pdf_and_the_play_rule(handmade, tmp_path):
    out = tmp_path / "figs57"
    run_plot(handmade, out, "--human_set", "atari57", "--format", "pdf", "--games", "Breakout", "Pong", "--score",
             "play", runs_dirs=[str(handmade / "runs"), str(handmade / "dqn_play")])
    rows = read_rows(out)
    dqn = rows[("Breakout", "Dqn")]
    # --score play: every score (and the % DQN base) is a play average; the Dqn play: 10 +- 2
    assert (num(dqn["play_average"]), num(dqn["play_std"]), dqn["score_source"]) == (10.0, 2.0, "play")
    assert num(dqn["best_eval_average"]) == pytest.approx(5.5) and num(dqn["score"]) == 10.0
    dsqn = rows[("Breakout", "Dsqn")]  # not played: no score under the play rule, its best eval in its column
    assert dsqn["score"] == "" and num(dsqn["best_eval_average"]) == pytest.approx(31.8)
    conv = rows[("Breakout", "ConvSNN_T500")]
    assert num(conv["dqn_base"]) == 10.0 and conv["dqn_base_source"] == "play"
    assert num(conv["pct_dqn"]) == pytest.approx(100 * (15 - 1.7) / (10 - 1.7))
    assert num(conv["human"]) == 30.5 and conv["human_set"] == "atari57"
    assert num(conv["human_normalised_score"]) == pytest.approx(100 * 13.3 / 28.8)
    assert num(rows[("Pong", "Dsqn")]["human_normalised_score"]) == pytest.approx(100 * 15 / 35.3)
    assert "Atari-57 human scores" in (out / "scores.md").read_text()
    for name in ("score_Breakout", "hns", "spikes_Pong", "performance_profile"):
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_model_selection_keeps_the_dqn_base(handmade, tmp_path):
    out = tmp_path / "dsqn_only"
    run_plot(handmade, out, "--models", "Dsqn", "--games", "breakout")  # game names are case-insensitive
    rows = read_rows(out)
    assert list(rows) == [("Breakout", "Dsqn")]
    assert num(rows[("Breakout", "Dsqn")]["pct_dqn"]) == pytest.approx(100 * 30.1 / 3.8)
    assert sorted(os.listdir(out)) == [
        "energy.csv", "hns.png", "loss_Breakout.png", "max_q_Breakout.png", "per_seed_scores.csv",
        "performance_profile.png", "score_Breakout.png", "scores.csv", "scores.md", "statistics.csv",
        "statistics.md"]
    stats = read_csv(out / "statistics.csv", ("statistic", "model", "baseline"))  # Dqn is read as the baseline
    assert num(stats[("probability_of_improvement", "Dsqn", "Dqn")]["estimate"]) == 1.0
    assert {k[1] for k in stats} == {"Dsqn"}


def test_atari57_set_has_only_the_given_games():
    refs = load_references()
    given = {g: r["human_atari57"] for g, r in refs.items() if r["human_atari57"] is not None}
    assert given == {"BeamRider": 16926.5, "Boxing": 12.1, "Breakout": 30.5, "Pong": 14.6}
    assert set(refs) == set(PAPER_GAMES)
    assert refs["Breakout"] == {"random": 1.7, "human_nature": 31.8, "human_atari57": 30.5, "dqn_nature": 401.2}
    assert human_normalised(31.8, *NATURE_BREAKOUT) == pytest.approx(100.0)
    assert human_normalised(100.0, 1.0, None) is None


# -- statistics on hand-computed cases ----------------------------------------------------------------------------


def one(values):
    """A single 'bootstrap sample' of per-game runs, for the statistics' vectorised form."""
    return [np.array(v, dtype=float)[None] for v in values]


def test_aggregates_of_known_sets():
    assert statistics.iqm(one([np.arange(1, 9)]))[0] == 4.5  # the middle half: 3, 4, 5, 6
    assert statistics.iqm(one([[0, 1, 2, 3, 4, 5, 6, 1000]]))[0] == 3.5  # the outlier is cut
    assert statistics.iqm(one([[1, 2], [3, 4, 5, 6, 7, 8]]))[0] == 4.5  # the runs of all games pooled
    assert statistics.mean_of_games(one([[1, 3], [10]]))[0] == 6.0  # (2 + 10) / 2: each game weighs the same
    assert statistics.median_of_games(one([[1], [2, 4], [10]]))[0] == 3.0
    # fraction of runs above tau per game, then the mean over games: ((2/3 + 1) / 2, (1/3 + 1) / 2)
    assert statistics.profile(one([[0, 50, 150], [200]]), np.array([25.0, 100.0]))[0] == pytest.approx([5 / 6, 2 / 3])


def test_probability_of_improvement_is_the_mann_whitney_proportion():
    from scipy.stats import mannwhitneyu

    x, y = [1.0, 2.0, 3.0], [2.0, 2.5]
    # pairs won by x: (3, 2), (3, 2.5); the tie (2, 2) counts one half: 2.5 of 6
    assert statistics.improvement(one([x]), one([y]))[0] == pytest.approx(2.5 / 6)
    assert statistics.improvement(one([x]), one([y]))[0] == pytest.approx(mannwhitneyu(x, y).statistic / 6)
    # a second game won outright: the mean over games
    assert statistics.improvement(one([x, [5.0]]), one([y, [4.0]]))[0] == pytest.approx((2.5 / 6 + 1) / 2)


def test_bootstrap_is_stratified_reproducible_and_contains_the_estimate():
    per_game = [np.array([1.0, 2.0, 9.0]), np.array([100.0, 104.0])]
    samples = statistics.resample(per_game, 50, np.random.default_rng(0))
    assert [s.shape for s in samples] == [(50, 3), (50, 2)]
    assert set(np.unique(samples[0])) <= {1.0, 2.0, 9.0} and set(np.unique(samples[1])) <= {100.0, 104.0}
    first = statistics.interval(statistics.mean_of_games, [per_game], 500, seed=7)
    assert statistics.interval(statistics.mean_of_games, [per_game], 500, seed=7) == first
    assert statistics.interval(statistics.mean_of_games, [per_game], 500, seed=8) != first
    point, low, high = first
    assert point == pytest.approx((4.0 + 102.0) / 2) and low < point < high
    # one run per game: nothing to redraw within a game, so there is no interval (not a zero-width one) ...
    assert statistics.interval(statistics.iqm, [[np.array([1.0]), np.array([50.0])]], 200, 0) == (25.5, None, None)
    # ... unless the games are redrawn: then the interval spans the games
    point, low, high = statistics.interval(statistics.iqm, [[np.array([1.0]), np.array([50.0])]], 200, 0, "games")
    assert (point, low, high) == (25.5, 1.0, 50.0)


# -- damaged inputs: skipped with a note ----------------------------------------------------------------------------


def test_damaged_inputs_are_skipped_with_a_note(tmp_path):
    runs = tmp_path / "runs"
    write_run_folder(runs, "good", run_config("Dqn", "Breakout", 0, n_actions="four"), DQN_A)
    write_run_folder(runs, "no_energy_keys", run_config("Dsqn", "Breakout", 0, "play"),
                     summary={"scores": [1, 2], "greedy_actions": 10, "energy": {"is_estimate": True}})
    write_run_folder(runs, "bad_spikes", run_config("DsqnSpike", "Breakout", 0, "play"),
                     summary={"scores": [4], "layer_firing_rates": [0.1], "greedy_actions": 10})
    write_run_folder(runs, "bad_seed", run_config("DsqnIF", "Breakout", "abc", "play"), summary={"scores": [3]})
    write_run_folder(runs, "truncated_json", '{"program": "run.py", "model": "Dq')
    write_run_folder(runs, "list_config", "[1, 2]")
    write_run_folder(runs, "unknown_model", run_config("Foo", "Breakout"), DQN_A)
    write_run_folder(runs, "double_as_text", run_config("Dqn", "Breakout", double="yes"), DQN_A)
    write_run_folder(runs, "unknown_program", {"program": "train.sh"})
    write_run_folder(runs, "nan_scores", run_config("Dqn", "Breakout", 5, "play"), summary={"scores": [float("nan")]})
    write_run_folder(runs, "text_scores", run_config("Dqn", "Breakout", 6, "play"), summary={"scores": ["None"]})
    write_run_folder(runs, "list_summary", run_config("Dqn", "Breakout", 7, "play"), summary=[1, 2])
    events = write_run_folder(runs, "garbage_events", run_config("Dsqn", "Breakout", 1))
    os.makedirs(os.path.join(events, "tensorboard"))
    with open(os.path.join(events, "tensorboard", "events.out.tfevents.1.host"), "wb") as f:
        f.write(bytes(range(256)) * 2)
    convert = {"program": "convert.py", "game": "BreakoutNoFrameskip-v4", "time": 8, "seed": 0}
    write_run_folder(runs, "none_csv", convert, result_csv="score,mix,spike\nNone,0.9,0.8\n")
    damaged = write_run_folder(runs, "damaged_summary", convert, result_csv="score,mix,spike\n7.0,1,1\n")
    with open(os.path.join(damaged, "summary.json"), "w") as f:
        f.write('{"scores": [7.0')
    write_run_folder(runs, "no_game", {"program": "convert.py", "time": 8})
    write_run_folder(runs, "score_only_csv", conversion_config("Breakout", 9), result_csv="score\nNone\n")
    out = tmp_path / "out"
    cli.main(["--runs_dir", str(runs), "--output_dir", str(out), "--no_progress", "--games", "Breakout",
              "--bootstrap_samples", "10"])
    rows = read_rows(out)
    assert num(rows[("Breakout", "Dqn")]["best_eval_average"]) == 5.0  # the good run, alone
    assert num(rows[("Breakout", "Dsqn")]["play_average"]) == 1.5  # its damaged energy block only is left out
    assert rows[("Breakout", "DsqnIF")]["seeds"] == ""  # the seed "abc" is unknown, the run still counts
    assert num(rows[("Breakout", "ConvSNN_T8")]["play_average"]) == 7.0  # from the CSV next to a damaged summary
    assert set(read_csv(out / "energy.csv")) == set()  # no usable operation counts anywhere
    md = (out / "scores.md").read_text()
    for fragment in ["good: n_actions 'four' is not a positive integer", "no_energy_keys: damaged energy block",
                     "bad_spikes: damaged spike statistics", "bad_seed: seed 'abc' is not an integer",
                     "truncated_json/config.json: not a JSON object", "list_config/config.json: not a JSON object",
                     "unknown_model: not a run.py run configuration", "double_as_text: not a run.py run configuration",
                     "unknown program 'train.sh'", "nan_scores/summary.json: damaged play summary",
                     "text_scores/summary.json: damaged play summary", "list_summary/summary.json: damaged play",
                     "garbage_events: no finite evaluate/average_score",
                     "none_csv/result.csv: not a readable convert.py",
                     "damaged_summary/summary.json: damaged convert.py summary",
                     "no_game: convert.py configuration without a game",
                     "score_only_csv/result.csv: not a readable convert.py result CSV"]:
        assert fragment in md, fragment


# -- command line: one line on stderr, exit status 2, nothing existing lost -----------------------------------------


def call_plot(argv: list[str]) -> int:
    """plot.py in-process, as its entry point runs it: the exit status."""
    try:
        run_cli(lambda: cli.main(argv), cli.PROG)
    except SystemExit as exit_:
        return exit_.code
    return 0


def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--runs_dir", "{tmp}/missing"], "--runs_dir: folder"),
        (["--log_dir", "{tmp}/empty_log"], "--log_dir: run.py's old log/ layout is no longer read; plot the run "
         "folders of runs/ with --runs_dir"),
        (["--conversion_log_dir", "{tmp}/empty_log"], "--conversion_log_dir: convert.py's old log/ layout is no"),
        (["--conversion_result_dir"], "--conversion_result_dir: convert.py's old result/ layout is no longer read"),
        (["--format", "svg"], "--format"),
        (["--human_set", "martian"], "--human_set"),
        (["--models", "Foo"], "--models"),
        (["--bootstrap_samples", "0"], "--bootstrap_samples"),
        (["--bootstrap_samples", "many"], "--bootstrap_samples"),
        (["--bootstrap_samples", "10000000"], "at most 200000"),
        (["--bootstrap_seed", "-1"], "--bootstrap_seed"),
        (["--runs_dir", "{tmp}/empty"], "no run data"),
        (["--runs_dir", "{tmp}/empty", "{tmp}/empty_log"], "no run data"),
        (["--output_dir", "{tmp}/a_file"], "a_file is not a folder"),
        (["--output_dir", "{tmp}/a_file/figures"], "a_file is not a folder"),
        (["--output_dir", "{tmp}/read_only"], "cannot write to"),
        (["--output_dir", "{tmp}/taken"], "taken/scores.csv"),
        ([], "no input folder found"),
    ],
)
def test_bad_options_and_outputs_are_one_line_and_exit_2(runs, tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.setattr(cli, "DEFAULT_RUNS_DIRS", [str(tmp_path / "no_default")])  # never the repository's runs/
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty_log").mkdir()
    (tmp_path / "a_file").write_text("keep me")
    (tmp_path / "read_only").mkdir()
    (tmp_path / "read_only" / "scores.md").write_text("old")
    os.chmod(tmp_path / "read_only", 0o555)
    if os.geteuid() == 0 and "read_only" in " ".join(args):  # root may write there: let the probe fail as for a user
        monkeypatch.setattr(cli.tempfile, "TemporaryFile", refuse)
    (tmp_path / "taken" / "scores.csv").mkdir(parents=True)  # a folder where a table goes
    (tmp_path / "taken" / "scores.md").write_text("old")
    args = [a.format(tmp=tmp_path) for a in args]
    if "--output_dir" not in args:
        args += ["--output_dir", str(tmp_path / "out")]
    if "--runs_dir" not in args and fragment != "no input folder found":
        args += ["--runs_dir", str(runs)]
    status = call_plot(["--no_progress", "--bootstrap_samples", "10", "--games", "Pong", *args])
    os.chmod(tmp_path / "read_only", 0o755)
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("plot.py: error:") and fragment in lines[0], stderr
    assert "Traceback" not in stderr and not (tmp_path / "out").exists()
    assert (tmp_path / "a_file").read_text() == "keep me"
    assert (tmp_path / "read_only" / "scores.md").read_text() == "old"
    assert (tmp_path / "taken" / "scores.md").read_text() == "old" and (tmp_path / "taken" / "scores.csv").is_dir()
    assert not [name for name in os.listdir(tmp_path / "taken") if name.endswith(".tmp")]


def test_help_names_the_run_folders_only(capsys):
    assert call_plot(["--help"]) == 0
    text = capsys.readouterr().out
    for fragment in ("--runs_dir", "config.json", "--bootstrap_samples", "--bootstrap_seed", "rliable",
                     "performance_profile", "DoubleDqn"):
        assert fragment in text, fragment
    for fragment in ("older layout", "--log_dir", "--conversion_log_dir", "--conversion_result_dir"):
        assert fragment not in text, fragment


# -- real runs (the one test that starts programs) --------------------------------------------------------------------


@pytest.mark.slow
def test_real_runs_play_convert_and_plot(trained_run, tmp_path, capsys):
    import run as run_py
    from conversion_based_snn import convert

    dqn, dsqn = trained_run("Dqn"), trained_run("Dsqn")
    play_out, conv_out = tmp_path / "play", tmp_path / "conv"
    summaries = {}
    for run in (dqn, dsqn):
        run_py.cli(["--method", "play", "--model_path", run.run_dir, "--eval_episode_num", "1",
                    "--max_episode_step", "30", "--device", "cpu", "--use_spike_monitor", "--output_dir",
                    str(play_out)])
        out = capsys.readouterr().out
        assert "operations per greedy action" in out and "estimate" in out
        path, = glob(str(play_out / f"{run.model}_*" / "summary.json"))
        with open(path) as f:
            summaries[run.model] = json.load(f)
    energy = summaries["Dqn"]["energy"]
    assert energy["macs_per_action_total"] == 9_342_976 + 512 * 4 and energy["sops_per_action_total"] == 0
    s = summaries["Dsqn"]
    energy = s["energy"]
    assert energy["macs_per_action"] == {"conv1": 3_276_800} and energy["is_estimate"]
    assert energy["sops_per_action"] == pytest.approx(s["layer_sops_per_action"])
    assert list(s["layer_sops_per_action"]) == ["conv1", "conv2", "conv3", "fc1"]
    assert s["layer_sops_per_action"]["fc1"] == pytest.approx(s["layer_spikes_per_action"]["fc1"] * 4)
    assert s["layer_sops_per_action"]["conv3"] == pytest.approx(s["layer_spikes_per_action"]["conv3"] * 512)
    assert energy["energy_pj_per_action"]["total"] == pytest.approx(
        3_276_800 * 4.6 + 0.9 * sum(s["layer_sops_per_action"].values()))

    convert.cli(["--model", dqn.run_dir, "--episode", "1", "--time", "8", "--norm_examples", "20",
                 "--max_episode_step", "300", "--device", "cpu", "--output_dir", str(conv_out)])
    assert "operations per greedy action" in capsys.readouterr().out
    conv_path, = glob(str(conv_out / "*" / "summary.json"))
    with open(conv_path) as f:
        conv = json.load(f)
    convert.cli(["--model", dqn.run_dir, "--episode", "1", "--time", "2", "--norm_examples", "20",  # a second T
                 "--max_episode_step", "300", "--device", "cpu", "--output_dir", str(conv_out)])
    with open(glob(str(conv_out / "*_T2_*" / "summary.json"))[0]) as f:
        conv2 = json.load(f)
    assert conv["energy"]["macs_per_action"] == {"conv1": 3_276_800}
    assert conv["energy"]["sops_per_action"]["fc2"] == 0.0  # output spikes: fan-out 0
    assert conv["sops_per_greedy_action"]["total"] == pytest.approx(conv["energy"]["sops_per_action_total"])

    out = tmp_path / "figs"
    process = run_program(["utils/plot.py", "--runs_dir", dqn.output_dir, dsqn.output_dir, str(play_out),
                           str(conv_out), "--games", "Breakout", "--output_dir", str(out), "--bootstrap_samples",
                           "100"])
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    rows = read_rows(out)
    # the conversions at T = 8 and T = 2 are two models, each with its own score and operation counts
    assert set(rows) == {("Breakout", "Dqn"), ("Breakout", "Dsqn"), ("Breakout", "ConvSNN_T8"),
                         ("Breakout", "ConvSNN_T2")}
    assert num(rows[("Breakout", "ConvSNN_T2")]["play_average"]) == pytest.approx(conv2["score_mean"])
    assert {r["score_source"] for r in rows.values()} == {"play"}  # every run was played: the play rule
    for run in (dqn, dsqn):
        row = rows[("Breakout", run.model)]
        evals = [value for _, value in read_scalars(run.tensorboard_dir)["evaluate/average_score"]]
        assert num(row["best_eval_average"]) == pytest.approx(max(evals))
        assert num(row["play_average"]) == pytest.approx(summaries[run.model]["average_score"])
        assert num(row["human_normalised_score"]) == pytest.approx(
            100 * (summaries[run.model]["average_score"] - 1.7) / 30.1)
    conv_row = rows[("Breakout", "ConvSNN_T8")]
    assert len(conv["truncated"]) == 1 and conv_row["truncated_games"] == str(conv["truncated_games"])
    assert conv_row["play_episodes"] == "1"  # the CSV is the JSON summary's own: not counted twice
    assert num(conv_row["play_average"]) == pytest.approx(conv["score_mean"])
    energy_rows = {r["model"]: r for r in read_csv(out / "energy.csv").values()}
    assert num(energy_rows["Dqn"]["macs_per_action"]) == 9_342_976 + 512 * 4
    assert num(energy_rows["Dsqn"]["sops_per_action"]) == pytest.approx(summaries["Dsqn"]["sops_per_action"])
    assert energy_rows["ConvSNN_T8"]["T"] == "8" and energy_rows["Dsqn"]["T"] == "4"
    assert energy_rows["ConvSNN_T2"]["T"] == "2" and num(energy_rows["ConvSNN_T2"]["sops_per_action"]) == \
        pytest.approx(conv2["energy"]["sops_per_action_total"])
    assert num(energy_rows["ConvSNN_T8"]["sops_per_action"]) == pytest.approx(conv["energy"]["sops_per_action_total"])
    # the plays were cut at 30 steps, the training runs' games at 40: flagged in the rows and the headings
    for run in (dqn, dsqn):
        assert summaries[run.model]["truncated"] == [True] and summaries[run.model]["truncated_games"] == 1
        assert rows[("Breakout", run.model)]["truncated_games"] == "1"
        assert rows[("Breakout", run.model)]["horizon"] == "30 40"
    for name in ("scores.md", "statistics.md"):
        heading = (out / name).read_text().splitlines()[0]
        assert "horizon not 18,000 steps" in heading, heading
    assert "| 30 40 |" in (out / "scores.md").read_text()
    # each play counts for the seed of the run it played, with its play average
    seeds = read_csv(out / "per_seed_scores.csv", ("model", "seed"))
    for run in (dqn, dsqn):
        assert num(seeds[(run.model, "0")]["score"]) == pytest.approx(summaries[run.model]["average_score"])
    for name in ("score_Breakout", "max_q_Breakout", "loss_Breakout", "hns", "spikes_Breakout", "energy_Breakout",
                 "performance_profile"):
        assert_image(str(out / f"{name}.png"))
