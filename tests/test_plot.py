"""utils/plot.py: figures and tables from hand-made event files with known values and from real short runs of
run.py (learn and play) and convert.py, and its command-line errors."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from conftest import GAME, read_scalars, run_program
from utils import plot
from utils.energy import energy_report

NATURE_BREAKOUT = (1.7, 31.8)  # random, human (Mnih et al. 2015)


# -- hand-made runs -----------------------------------------------------------------------------------------------


def write_learn_run(log_dir, name, model, game, seed, evals, loss=None, n_actions=4):
    """A run.py-like learn run: config JSON + TensorBoard events; ``evals`` = [(step, avg, std, max_q)]."""
    from torch.utils.tensorboard import SummaryWriter

    os.makedirs(log_dir, exist_ok=True)
    writer = SummaryWriter(log_dir=os.path.join(log_dir, name))
    for step, average, std, max_q in evals:
        writer.add_scalar("evaluate/average_score", average, step)
        writer.add_scalar("evaluate/score_std", std, step)
        writer.add_scalar("evaluate/average_max_q", max_q, step)
    for step, value in loss or []:
        writer.add_scalar("learn/loss", value, step)
    writer.close()
    config = {"model": model, "env_id": f"{game}NoFrameskip-v4", "seed": seed, "method": "learn", "run_name": name,
              "n_actions": n_actions}
    with open(os.path.join(log_dir, f"{name}.json"), "w") as f:
        json.dump(config, f)


def write_play_run(log_dir, name, model, game, summary, seed=0):
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, f"{name}.json"), "w") as f:
        json.dump({"model": model, "env_id": f"{game}NoFrameskip-v4", "seed": seed, "method": "play"}, f)
    with open(os.path.join(log_dir, f"{name}_summary.json"), "w") as f:
        json.dump(summary, f)


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    root = tmp_path_factory.mktemp("handmade")
    log = str(root / "log")
    loss = [(s, 1.0 / (1 + s)) for s in range(0, 24, 4)]
    # Dqn on Breakout, two seeds: per-seed bests 5 and 6 -> best eval average 5.5 (the best of the mean curve
    # would be 4.5, so the test tells the two definitions apart).
    write_learn_run(log, "Dqn_Breakout_learn_a", "Dqn", "Breakout", 0,
                    [(0, 1, 0.5, 0.1), (10, 5, 1.0, 0.2), (20, 3, 1.5, 0.3)], loss)
    write_learn_run(log, "Dqn_Breakout_learn_b", "Dqn", "Breakout", 1,
                    [(0, 2, 0.5, 0.3), (10, 4, 1.0, 0.4), (20, 6, 1.5, 0.5)], loss)
    # Dsqn on Breakout, one seed, best 31.8 = the Nature human score -> HNS 100
    write_learn_run(log, "Dsqn_Breakout_learn_a", "Dsqn", "Breakout", 0, [(0, 0, 0, 0.0), (10, 31.8, 2.0, 0.5)], loss)
    # Dsqn on Pong: a play log only, scores -20.7 and 9.3 -> 5.7 +- 15, HNS 50 (Nature set)
    spikes = {
        "scores": [-20.7, 9.3], "average_score": -5.7, "T": 64, "greedy_actions": 100,
        "average_firing_rate": 0.1, "spike_num_per_action": 1500.0,
        "layer_firing_rates": {"conv1": 0.2, "conv2": 0.1, "conv3": 0.05, "fc1": 0.01},
        "layer_spikes_per_action": {"conv1": 1000.0, "conv2": 300.0, "conv3": 150.0, "fc1": 50.0},
        "layer_neurons": {"conv1": 12800, "conv2": 5184, "conv3": 3136, "fc1": 512},
        "energy": energy_report({"conv1": 3276800.0}, {"conv1": 2.0e5, "conv2": 1.0e5}, "dsqn"),
    }
    write_play_run(log, "Dsqn_Pong_play_a", "Dsqn", "Pong", spikes)
    # conversion SNN on Breakout: a result CSV without JSON summary, scores 10 and 20
    result = root / "conv" / "result"
    result.mkdir(parents=True)
    (result / "game_BreakoutNoFrameskip-v4_episode_2_time_500_percentile_99.9.csv").write_text(
        "score,mix,spike\n10.0,0.9,0.8\n20.0,0.95,0.9\n")
    (root / "conv" / "log").mkdir()
    # a second log folder: a Dqn play log on Breakout (used by one test only)
    write_play_run(str(root / "log_dqn_play"), "Dqn_Breakout_play_a", "Dqn", "Breakout", {"scores": [8.0, 12.0]})
    return root


def run_plot(root, out, *extra, log_dirs=None):
    argv = ["--log_dir", *(log_dirs or [str(root / "log")]), "--conversion_log_dir", str(root / "conv" / "log"),
            "--conversion_result_dir", str(root / "conv" / "result"), "--output_dir", str(out), "--no_progress",
            *extra]
    return plot.main(argv)


def read_rows(out) -> dict[tuple[str, str], dict]:
    with open(os.path.join(out, "scores.csv")) as f:
        return {(r["game"], r["model"]): r for r in csv.DictReader(f)}


def num(text: str):
    return None if text == "" else float(text)


def assert_image(path, min_h=200, min_w=300):
    import matplotlib.image

    assert os.path.getsize(path) > 5000, path
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= min_h and image.shape[1] >= min_w, (path, image.shape)
    assert image.std() > 0.01, f"{path} is blank"


def test_handmade_table_groups_seeds_and_normalises(handmade, tmp_path, capsys):
    out = tmp_path / "figs"
    result = run_plot(handmade, out, "--games", "Breakout", "PongNoFrameskip-v4", "Boxing")
    stdout = capsys.readouterr().out
    rows = read_rows(out)
    assert set(rows) == {("Breakout", "Dqn"), ("Breakout", "Dsqn"), ("Breakout", "ConvSNN"), ("Pong", "Dsqn")}

    dqn = rows[("Breakout", "Dqn")]
    assert dqn["seeds"] == "0 1" and dqn["runs"] == "2"
    assert num(dqn["best_eval_average"]) == pytest.approx(5.5)  # mean of the per-seed bests 5 and 6
    assert num(dqn["best_eval_std_over_runs"]) == pytest.approx(0.5)
    assert dqn["play_average"] == "" and dqn["score_source"] == "best eval"
    assert num(dqn["human_normalised_score"]) == pytest.approx(100 * (5.5 - 1.7) / (31.8 - 1.7))
    assert num(dqn["pct_dqn"]) == pytest.approx(100.0)
    assert (num(dqn["random"]), num(dqn["human"]), num(dqn["dqn_nature"])) == (1.7, 31.8, 401.2)

    dsqn = rows[("Breakout", "Dsqn")]
    assert num(dsqn["best_eval_average"]) == pytest.approx(31.8)
    assert num(dsqn["human_normalised_score"]) == pytest.approx(100.0)  # 31.8 is the Nature human score
    assert num(dsqn["pct_dqn"]) == pytest.approx(100 * 31.8 / 5.5)
    assert num(dsqn["dqn_base"]) == pytest.approx(5.5) and dsqn["dqn_base_source"] == "best eval"

    conv = rows[("Breakout", "ConvSNN")]
    assert (num(conv["play_average"]), num(conv["play_std"]), conv["play_episodes"]) == (15.0, 5.0, "2")
    assert conv["best_eval_average"] == "" and conv["score_source"] == "play"
    assert num(conv["human_normalised_score"]) == pytest.approx(100 * 13.3 / 30.1)
    assert num(conv["pct_dqn"]) == pytest.approx(100 * 15 / 5.5)

    pong = rows[("Pong", "Dsqn")]
    assert num(pong["play_average"]) == pytest.approx(-5.7) and num(pong["play_std"]) == pytest.approx(15.0)
    assert num(pong["human_normalised_score"]) == pytest.approx(50.0)  # 100 * 15 / 30
    assert pong["pct_dqn"] == ""  # no Dqn on Pong

    assert result["summary"]["Dsqn"] == pytest.approx({"mean": 75.0, "median": 75.0, "games": 2})
    assert result["skipped"] == ["Boxing"]
    assert "Boxing" in stdout and "no Dqn score" in stdout
    md = (out / "scores.md").read_text()
    assert "Nature 2015 human scores" in md and "no data for 1 game(s), skipped: Boxing" in md
    assert "| Breakout | DQN | 0 1 | 2 / 0 | 5.50 ± 0.50 |" in md
    assert "| DSQN | 75.0 | 75.0 | 2 |" in md
    assert "without a JSON summary" in md  # the CSV-only conversion run is noted

    for name in ("score_Breakout", "max_q_Breakout", "loss_Breakout", "hns", "spikes_Pong", "energy_Pong",
                 "energy_Breakout"):
        assert_image(str(out / f"{name}.png"))
    assert not any("Boxing" in name for name in os.listdir(out))
    with open(out / "energy.csv") as f:
        energy = {(r["game"], r["model"]): r for r in csv.DictReader(f)}
    assert num(energy[("Breakout", "Dqn")]["macs_per_action"]) == 9_342_976 + 512 * 4  # from the architecture
    assert num(energy[("Pong", "Dsqn")]["sops_per_action"]) == 3.0e5
    assert num(energy[("Pong", "Dsqn")]["energy_uj_per_action"]) == pytest.approx((3276800 * 4.6 + 3e5 * 0.9) / 1e6)


def test_curves_mean_over_seeds_or_episode_std_band(handmade):
    runs = {}
    for name in ("Dqn_Breakout_learn_a", "Dqn_Breakout_learn_b", "Dsqn_Breakout_learn_a"):
        runs[name] = plot.LearnRun(name, "", "", 0, "", {}, plot.read_scalars(str(handmade / "log" / name), 100))
    steps, mean, (low, high), n = plot.mean_curve([runs["Dqn_Breakout_learn_a"], runs["Dqn_Breakout_learn_b"]],
                                                  "evaluate/average_score", "evaluate/score_std")
    assert steps.tolist() == [0, 10, 20] and n == 2
    assert mean.tolist() == pytest.approx([1.5, 4.5, 4.5])
    assert (high - mean).tolist() == pytest.approx([0.5, 0.5, 1.5])  # std over the two seeds
    steps, mean, (low, high), n = plot.mean_curve([runs["Dsqn_Breakout_learn_a"]], "evaluate/average_score",
                                                  "evaluate/score_std")
    assert mean.tolist() == pytest.approx([0.0, 31.8]) and (high - mean).tolist() == pytest.approx([0.0, 2.0])


def test_long_loss_is_sampled_and_binned(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "run"))
    for step in range(0, 4000, 4):  # 1000 losses: more than max_points
        writer.add_scalar("learn/loss", float(step), step)
    for step in (0, 2000):
        writer.add_scalar("evaluate/average_score", step / 100, step)
    writer.close()
    scalars = plot.read_scalars(str(tmp_path / "run"), 300)
    steps, values = scalars["learn/loss"]
    assert len(steps) == 300 and steps[-1] == 3996 and (values == steps).all()  # a sample, the last kept
    assert scalars["evaluate/average_score"][1].tolist() == [0.0, 20.0]  # short tags stay whole
    run = plot.LearnRun("r", "Dqn", "Breakout", 0, "", {}, {"learn/loss": (np.arange(0, 40000, 4),
                                                                          np.arange(0, 40000, 4, dtype=float))})
    centres, mean, low, high, n = plot.binned_curve([run], "learn/loss", bins=200)
    assert len(centres) == 200 and n == 1
    # each bin is 200 steps wide and holds 50 losses equal to their steps: their mean is the bin start + 98
    assert mean.tolist() == pytest.approx([200 * i + 98 for i in range(200)])


def test_handmade_atari57_set_pdf_and_dqn_play_base(handmade, tmp_path):
    out = tmp_path / "figs57"
    run_plot(handmade, out, "--human_set", "atari57", "--format", "pdf", "--games", "Breakout", "Pong",
             log_dirs=[str(handmade / "log"), str(handmade / "log_dqn_play")])
    rows = read_rows(out)
    dqn = rows[("Breakout", "Dqn")]
    # with a play log the score (and the % DQN base) is the play average: 10 +- 2
    assert (num(dqn["play_average"]), num(dqn["play_std"]), dqn["score_source"]) == (10.0, 2.0, "play")
    assert num(dqn["best_eval_average"]) == pytest.approx(5.5)
    dsqn = rows[("Breakout", "Dsqn")]
    assert num(dsqn["dqn_base"]) == 10.0 and dsqn["dqn_base_source"] == "play"
    assert num(dsqn["pct_dqn"]) == pytest.approx(318.0)
    assert num(dsqn["human"]) == 30.5 and dsqn["human_set"] == "atari57"
    assert num(dsqn["human_normalised_score"]) == pytest.approx(100 * 30.1 / 28.8)
    assert num(rows[("Pong", "Dsqn")]["human_normalised_score"]) == pytest.approx(100 * 15 / 35.3)
    md = (out / "scores.md").read_text()
    assert "Atari-57 human scores" in md
    for name in ("score_Breakout", "hns", "spikes_Pong"):
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_model_selection_keeps_the_dqn_base(handmade, tmp_path):
    out = tmp_path / "dsqn_only"
    run_plot(handmade, out, "--models", "Dsqn", "--games", "breakout")  # game names are case-insensitive
    rows = read_rows(out)
    assert list(rows) == [("Breakout", "Dsqn")]
    assert num(rows[("Breakout", "Dsqn")]["pct_dqn"]) == pytest.approx(100 * 31.8 / 5.5)
    assert sorted(os.listdir(out)) == ["energy.csv", "hns.png", "loss_Breakout.png", "max_q_Breakout.png",
                                       "score_Breakout.png", "scores.csv", "scores.md"]


def test_atari57_set_has_only_the_given_games():
    refs = plot.load_references()
    given = {g: r["human_atari57"] for g, r in refs.items() if r["human_atari57"] is not None}
    assert given == {"BeamRider": 16926.5, "Boxing": 12.1, "Breakout": 30.5, "Pong": 14.6}
    assert set(refs) == set(plot.PAPER_GAMES)
    assert refs["Breakout"] == {"random": 1.7, "human_nature": 31.8, "human_atari57": 30.5, "dqn_nature": 401.2}
    assert plot.human_normalised(31.8, *NATURE_BREAKOUT) == pytest.approx(100.0)
    assert plot.human_normalised(100.0, 1.0, None) is None


# -- real runs ----------------------------------------------------------------------------------------------------


def test_real_runs_play_convert_and_plot(trained_run, tmp_path):
    dqn, dsqn = trained_run("Dqn"), trained_run("Dsqn")
    play_out = tmp_path / "play"
    summaries = {}
    for run in (dqn, dsqn):
        process = run_program(["run.py", "--model", run.model, "--env_id", GAME, "--method", "play",
                               "--model_path", run.model_path, "--eval_episode_num", "1", "--max_episode_step", "30",
                               "--device", "cpu", "--use_spike_monitor", "--output_dir", str(play_out)])
        assert process.returncode == 0, process.stderr[-3000:]
        assert "operations per greedy action" in process.stdout and "estimate" in process.stdout
        path, = (play_out / "log").glob(f"{run.model}_*_summary.json")
        summaries[run.model] = json.loads(path.read_text())
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

    conv_out = tmp_path / "conv"
    process = run_program(["conversion_based_snn/convert.py", "--game", GAME, "--model", dqn.model_path,
                           "--episode", "1", "--time", "20", "--norm_examples", "50", "--max_episode_step", "100",
                           "--device", "cpu", "--output_dir", str(conv_out)])
    assert process.returncode == 0, process.stderr[-3000:]
    assert "operations per greedy action" in process.stdout
    conv = json.loads((conv_out / "log" / f"{GAME}_20.json").read_text())
    assert conv["energy"]["macs_per_action"] == {"conv1": 3_276_800}
    assert conv["energy"]["sops_per_action"]["fc2"] == 0.0  # output spikes: fan-out 0
    assert conv["sops_per_greedy_action"]["total"] == pytest.approx(conv["energy"]["sops_per_action_total"])

    out = tmp_path / "figs"
    process = run_program(["utils/plot.py", "--log_dir", os.path.join(dqn.output_dir, "log"),
                           os.path.join(dsqn.output_dir, "log"), str(play_out / "log"),
                           "--conversion_log_dir", str(conv_out / "log"), "--conversion_result_dir",
                           str(conv_out / "result"), "--games", "Breakout", "--output_dir", str(out)])
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    rows = read_rows(out)
    assert set(rows) == {("Breakout", "Dqn"), ("Breakout", "Dsqn"), ("Breakout", "ConvSNN")}
    for run in (dqn, dsqn):
        row = rows[("Breakout", run.model)]
        evals = [value for _, value in read_scalars(run.tensorboard_dir)["evaluate/average_score"]]
        assert num(row["best_eval_average"]) == pytest.approx(max(evals))
        assert num(row["play_average"]) == pytest.approx(summaries[run.model]["average_score"])
        assert num(row["human_normalised_score"]) == pytest.approx(
            100 * (summaries[run.model]["average_score"] - 1.7) / 30.1)
    conv_row = rows[("Breakout", "ConvSNN")]
    assert conv_row["play_episodes"] == "1"  # the CSV is the JSON summary's own: not counted twice
    assert num(conv_row["play_average"]) == pytest.approx(conv["score_mean"])
    with open(out / "energy.csv") as f:
        energy_rows = {r["model"]: r for r in csv.DictReader(f)}
    assert num(energy_rows["Dqn"]["macs_per_action"]) == 9_342_976 + 512 * 4
    assert num(energy_rows["Dsqn"]["sops_per_action"]) == pytest.approx(summaries["Dsqn"]["sops_per_action"])
    assert num(energy_rows["ConvSNN"]["sops_per_action"]) == pytest.approx(conv["energy"]["sops_per_action_total"])
    for name in ("score_Breakout", "max_q_Breakout", "loss_Breakout", "hns", "spikes_Breakout", "energy_Breakout"):
        assert_image(str(out / f"{name}.png"))


# -- command line ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--log_dir", "{tmp}/missing"], "missing"),
        (["--format", "svg"], "--format"),
        (["--human_set", "martian"], "--human_set"),
        (["--models", "Foo"], "--models"),
        (["--log_dir", "{tmp}/empty"], "no run data"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path) for a in args]
    empty = str(tmp_path / "empty")  # never the repository's own folders
    process = run_program(["utils/plot.py", "--conversion_log_dir", empty, "--conversion_result_dir", empty, *args,
                           "--output_dir", str(tmp_path / "out"), "--no_progress"])
    assert process.returncode == 2, process.stderr
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("plot.py: error:") and fragment in lines[0], process.stderr
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "out").exists()
