"""The traps of a score table, each on runs of known values (hand-written run folders, read by plot.py as it reads
real ones) or on a real tiny run: a negative DQN score, scores from two sources, conversions at two T, games cut
by the step cap, one seed per game; and what a run folder records (evaluations.csv, provenance)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from conftest import GAME, paper_env, paper_network, read_scalars
from test_plot import num, read_csv, read_rows, run_config, write_run_folder

from plotting import cli
from utils.energy import energy_report

PONG = (-20.7, 9.3)  # random, human (Nature set)


def plot(runs, out, *extra) -> dict:
    return cli.main(["--runs_dir", str(runs), "--output_dir", str(out), "--no_progress", "--bootstrap_samples", "200",
                     *extra])


def conversion(T: int, scores: list[float], seed: int = 0, game: str = "Pong") -> tuple[dict, dict]:
    """(config.json, summary.json) of a convert.py run of a Dqn checkpoint, at ``T`` steps."""
    sops = {"conv1": 1.0e5 * T / 50, "conv2": 5.0e4 * T / 50}
    summary = {"game": f"{game}NoFrameskip-v4", "scores": scores, "T": T, "schedule": "delayed",
               "node_type": "SubtractiveResetIFNodes", "greedy_steps_total": 100, "average_firing_rate": 0.01 * T / 50,
               "firing_rate_per_layer": {"conv1": 0.02},
               "spikes_per_greedy_action": {"conv1": 10.0 * T, "total": 10.0 * T},
               "energy": energy_report({"conv1": 3276800.0}, sops, "conversion")}
    config = {"program": "convert.py", "game": f"{game}NoFrameskip-v4", "time": T, "seed": seed,
              "schedule": "delayed", "node_type": "SubtractiveResetIFNodes", "max_episode_step": 18000}
    return config, summary


def test_percent_of_dqn_is_right_for_a_negative_dqn_score(tmp_path):
    runs = tmp_path / "runs"
    # DQN's play on Pong: -2 (above random, -20.7); the conversion SNN: -21 (below random)
    write_run_folder(runs, "Dqn_Pong_play", run_config("Dqn", "Pong", 0, "play", max_episode_step=18000),
                     summary={"scores": [-2.0, -2.0]})
    write_run_folder(runs, "Conv_Pong", *conversion(500, [-21.0])[:1], summary=conversion(500, [-21.0])[1])
    plot(runs, tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    (conv,) = [row for (_, model), row in rows.items() if model.startswith("ConvSNN")]
    # not 100 * -21 / -2 = 1050 %: the SNN is worse than random, so it has less than none of DQN's gain
    assert num(conv["pct_dqn"]) == pytest.approx(100 * (-21 - PONG[0]) / (-2 - PONG[0]))
    assert conv["model"] == "ConvSNN_T500"
    assert num(conv["pct_dqn"]) < 0 and num(conv["dqn_base"]) == -2.0
    md = (tmp_path / "out" / "scores.md").read_text()
    assert "(score − random) / (DQN base − random)" in md

    # a DQN not above random is no base at all: n/a with a note, not a sign-flipped percentage
    write_run_folder(runs, "Dqn_Pong_play", run_config("Dqn", "Pong", 0, "play"), summary={"scores": [-21.0]})
    plot(runs, tmp_path / "out2")
    assert read_rows(tmp_path / "out2")[("Pong", "ConvSNN_T500")]["pct_dqn"] == ""
    assert "not above the random score -20.7, % DQN n/a" in (tmp_path / "out2" / "scores.md").read_text()


def test_one_source_per_table_never_a_play_against_a_best_evaluation(tmp_path):
    from test_plot import write_events

    runs = tmp_path / "runs"
    # DQN: trained, best evaluation 11, never played; DSQN: best evaluation 12, and a 2-game play scoring 0
    write_run_folder(runs, "Dqn_Breakout_s0", run_config("Dqn", "Breakout", 0))
    write_events(runs / "Dqn_Breakout_s0" / "tensorboard", [(0, 3.0, 0, 0), (10, 11.0, 0, 0)])
    write_run_folder(runs, "Dsqn_Breakout_s0", run_config("Dsqn", "Breakout", 0))
    write_events(runs / "Dsqn_Breakout_s0" / "tensorboard", [(0, 2.0, 0, 0), (10, 12.0, 0, 0)])
    write_run_folder(runs, "Dsqn_Breakout_s0_play", run_config("Dsqn", "Breakout", 0, "play",
                                                                 model_path=str(runs / "Dsqn_Breakout_s0")),
                     summary={"scores": [0.0, 0.0], "model_path": str(runs / "Dsqn_Breakout_s0" / "best.pkl")})
    result = plot(runs, tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    dsqn = rows[("Breakout", "Dsqn")]
    assert {r["score_source"] for r in rows.values()} == {"best eval"}  # the DQN run was not played
    assert num(dsqn["score"]) == 12.0 and num(dsqn["play_average"]) == 0.0  # the play keeps its own column
    assert num(dsqn["pct_dqn"]) == pytest.approx(100 * (12 - 1.7) / (11 - 1.7))  # not "0 % DQN"
    assert result["rule"] == "best_eval"
    seeds = read_csv(tmp_path / "out" / "per_seed_scores.csv", ("model", "seed"))
    assert num(seeds[("Dsqn", "0")]["score"]) == 12.0 and seeds[("Dsqn", "0")]["score_source"] == "best eval"
    stats = read_csv(tmp_path / "out" / "statistics.csv", ("statistic", "model", "baseline"))
    assert num(stats[("probability_of_improvement", "Dsqn", "Dqn")]["estimate"]) == 1.0  # 12 > 11, not 0 > 11
    assert "score (best eval)" in (tmp_path / "out" / "scores.md").read_text()

    # asked for explicitly: every score a play; the unplayed DQN has none (and so no base)
    result = plot(runs, tmp_path / "play", "--score", "play")
    rows = read_rows(tmp_path / "play")
    assert result["rule"] == "play" and rows[("Breakout", "Dqn")]["score"] == ""
    assert num(rows[("Breakout", "Dsqn")]["score"]) == 0.0 and rows[("Breakout", "Dsqn")]["pct_dqn"] == ""


def test_conversions_at_two_T_are_two_models(tmp_path):
    runs = tmp_path / "runs"
    write_run_folder(runs, "Dqn_Pong_play", run_config("Dqn", "Pong", 0, "play"), summary={"scores": [-5.0]})
    for T, score in ((50, -19.0), (500, -7.0)):
        config, summary = conversion(T, [score])
        write_run_folder(runs, f"Conv_T{T}", config, summary=summary)
    plot(runs, tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert num(rows[("Pong", "ConvSNN_T50")]["score"]) == -19.0 and num(rows[("Pong", "ConvSNN_T500")]["score"]) == -7.0
    energy = read_csv(tmp_path / "out" / "energy.csv")
    assert (energy[("Pong", "ConvSNN_T50")]["T"], energy[("Pong", "ConvSNN_T500")]["T"]) == ("50", "500")
    assert num(energy[("Pong", "ConvSNN_T500")]["sops_per_action"]) == pytest.approx(
        10 * num(energy[("Pong", "ConvSNN_T50")]["sops_per_action"]))  # not pooled into one row
    md = (tmp_path / "out" / "scores.md").read_text()
    assert "| Pong | conversion SNN (T=50) |" in md and "| Pong | conversion SNN (T=500) |" in md
    stats = read_csv(tmp_path / "out" / "statistics.csv", ("statistic", "model", "baseline"))
    assert ("iqm_hns", "ConvSNN_T50", "") in stats and ("iqm_hns", "ConvSNN_T500", "") in stats


def test_one_seed_per_game_gives_no_interval_unless_games_are_redrawn(tmp_path):
    runs = tmp_path / "runs"
    for game, score in (("Pong", -5.0), ("Breakout", 20.0), ("Boxing", 40.0)):
        write_run_folder(runs, f"Dqn_{game}_play", run_config("Dqn", game, 0, "play"), summary={"scores": [score]})
    plot(runs, tmp_path / "out")
    stats = read_csv(tmp_path / "out" / "statistics.csv", ("statistic", "model", "baseline"))
    iqm = stats[("iqm_hns", "Dqn", "")]
    assert iqm["ci_low"] == "" and iqm["ci_high"] == "" and iqm["bootstrap"] == "runs"
    md = (tmp_path / "out" / "statistics.md").read_text()
    assert "(no interval)" in md and "seed-to-seed variation only" in md and "the games are kept" in md
    assert md.split("| DQN |")[1].split("\n")[0].count("(no interval)") == 3  # IQM, mean, median: no [x, x]

    plot(runs, tmp_path / "games", "--bootstrap", "games")
    stats = read_csv(tmp_path / "games" / "statistics.csv", ("statistic", "model", "baseline"))
    mean = stats[("mean_hns", "Dqn", "")]
    assert num(mean["ci_low"]) < num(mean["estimate"]) < num(mean["ci_high"]) and mean["bootstrap"] == "games"
    assert "bootstrap over games" in (tmp_path / "games" / "statistics.md").read_text()


# -- a real run: the evaluation record and the provenance ---------------------------------------------------------


def test_run_episode_flags_a_game_cut_by_the_step_cap():
    import torch

    from agent import Agent
    from agent.config import Config
    from agent.evaluation import run_episode
    from environment import make_env

    config = Config(model="Dqn", device="cpu")
    env = make_env(GAME, training=False, seed=0, **paper_env(max_episode_step=5))
    agent = Agent(config, paper_network("Dqn", int(env.action_space.n)), torch.device("cpu"))
    cut = run_episode(agent, env, 0.0, np.random.default_rng(0))
    assert cut.steps <= 5 and cut.truncated is True  # (the reset's FIRE steps count towards the cap)
    env = make_env(GAME, training=False, seed=0, **paper_env(max_episode_step=18000))
    finished = run_episode(agent, env, 1.0, np.random.default_rng(0))  # random play ends the game itself
    assert finished.steps < 18000 and finished.truncated is False


def test_a_short_learn_run_records_every_evaluation_and_its_provenance(tmp_path, capsys):
    import run as run_py

    run_py.main(["--model", "Dsqn", "--env_id", "Breakout", "--timestep_num", "20", "--replay_start_size", "16",
                 "--eval_freq", "10", "--eval_episode_num", "2", "--max_episode_step", "20",
                 "--replay_memory_size", "200", "--minibatch_size", "8", "--T", "2", "--device", "cpu",
                 "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    (run_dir,) = [tmp_path / name for name in os.listdir(tmp_path)]
    assert run_dir.name.startswith("Dsqn_BreakoutNoFrameskip-v4_seed0_")  # the short name was taken
    assert "learn: 100%" in err and "20/20" in err and "/36" not in err  # the bar counts learning steps only
    with open(run_dir / "evaluations.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert list(table[0]) == ["step", "games", "mean", "median", "std", "min", "max", "mean_max_q",
                              "truncated_games"]
    events = read_scalars(str(run_dir / "tensorboard"))
    assert [int(r["step"]) for r in table] == [s for s, _ in events["evaluate/average_score"]] == [0, 10, 20]
    for row, (_, mean) in zip(table, events["evaluate/average_score"]):
        assert row["games"] == "2" and float(row["mean"]) == pytest.approx(mean)
        assert float(row["min"]) <= float(row["median"]) <= float(row["max"])
        assert row["truncated_games"] == "2"  # 20 steps never finish a Breakout game
    assert [v for _, v in events["evaluate/truncated_games"]] == [2.0, 2.0, 2.0]
    assert "truncated_games: 2" in (run_dir / "run.log").read_text()

    config = json.loads((run_dir / "config.json").read_text())
    assert set(config["versions"]) == {"python", "torch", "spikingjelly", "gymnasium", "ale_py", "numpy"}
    assert all(config["versions"].values())
    assert config["neuron_kernel"] == "torch" and config["device_name"].startswith("cpu")
    assert isinstance(config["git_dirty"], bool)
    assert (run_dir / "git.diff").is_file() == config["git_dirty"]


def test_a_resumed_run_rewrites_the_evaluations_it_repeats(tmp_path):
    import run as run_py

    tiny = ["--replay_start_size", "16", "--eval_freq", "10", "--eval_episode_num", "1", "--max_episode_step", "20",
            "--replay_memory_size", "200", "--minibatch_size", "8", "--device", "cpu"]
    run_py.main(["--model", "Dqn", "--env_id", "Pong", "--timestep_num", "10", *tiny, "--output_dir", str(tmp_path)])
    (run_dir,) = [tmp_path / name for name in os.listdir(tmp_path)]
    run_py.main(["--resume", str(run_dir), "--timestep_num", "20"])  # a larger budget: it trains on from step 10
    with open(run_dir / "evaluations.csv", newline="") as file:
        steps = [int(row["step"]) for row in csv.DictReader(file)]
    events = read_scalars(str(run_dir / "tensorboard"))
    assert steps == [s for s, _ in events["evaluate/average_score"]] == [0, 10, 20]  # one row per evaluation
