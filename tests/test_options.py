"""run.py's options: each in one group (what it is for), shown in that group's section of --help, and the options a
method refuses derived from the groups."""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import fields

import pytest
from test_agent import one_line_error

import run as run_py
from agent.config import METHODS, PLAY, RESUMABLE_OVERRIDES, ROBUSTNESS, Config, check_methods
from neural_network import build_network, save_checkpoint
from utils.cli import OptionGroup, UserError, option_groups

GROUPS = option_groups(Config)  # each group of options and the names of its options, in --help's order

#: What each method refuses (what run.py refused before the groups existed, and the play options --method learn
#: accepted without using them: --use_video_recorder, --use_spike_monitor).
REFUSED = {
    "learn": {"model_path", "use_video_recorder", "use_spike_monitor", "sticky_actions", "game_mode",
              "game_difficulty", "obs_noise", "fgsm_epsilon", "robustness", "levels"},
    "play": {"robustness", "levels"},
    "robustness": set(),
}


def test_every_option_is_in_exactly_one_group_and_in_its_section_of_help():
    names = [f.name for f in fields(Config)]
    assert all(isinstance(f.metadata["group"], OptionGroup) for f in fields(Config))
    grouped = [name for members in GROUPS.values() for name in members]
    assert sorted(grouped) == sorted(names) and len(set(grouped)) == len(grouped)
    assert [group.title for group in GROUPS] == ["run", "network", "games", "learn", "play", "robustness", "runtime"]

    sections, title = {}, None
    for line in run_py.build_parser().format_help().splitlines():
        if re.match(r"^\S.*:$", line):
            title = line[:-1]
        option = re.match(r"^  --(\w+)", line)
        if option and option.group(1) != "help":
            sections.setdefault(title, []).append(option.group(1))
    assert sections == {group.title: members for group, members in GROUPS.items()}


@pytest.mark.parametrize("method", METHODS)
def test_the_options_a_method_refuses_come_from_the_groups(method):
    refused = set()
    for name in (f.name for f in fields(Config)):
        try:
            check_methods(method, {name: None})
        except UserError as error:
            refused.add(name)
            group = next(g for g, members in GROUPS.items() if name in members)
            assert str(error).startswith(f"--{name} is for --method {group.methods[0]}"), error
    assert refused == REFUSED[method]
    assert refused == {name for group, members in GROUPS.items() if group in (PLAY, ROBUSTNESS)
                       and method not in group.methods for name in members}


def test_the_options_a_resume_may_change_are_those_declared_resumable():
    assert RESUMABLE_OVERRIDES == {
        "timestep_num", "learning_rate", "eval_episode_num", "checkpoint_freq", "log_freq", "device", "gpu",
        "backend", "compile", "output_dir", "track", "wandb_project", "wandb_entity", "capture_video", "video_freq",
        "eval_envs", "eval_workers", "cuda_graphs", "deterministic", "start_over"}


def test_a_config_json_of_an_older_run_still_loads():
    # config.json as runs wrote it before the groups (another order of keys, and keys that are not options)
    saved = {"model": "Dqn", "env_id": "PongNoFrameskip-v4", "method": "learn", "seed": 3, "double": True,
             "model_path": None, "use_video_recorder": False, "track": False, "T": 8, "tau": 1.5,
             "replay_memory_size": 5000, "levels": None, "git": "abc", "program": "run.py", "n_actions": 6}
    config = Config.from_dict(saved)
    assert (config.model, config.env_id, config.seed, config.double, config.T, config.tau,
            config.replay_memory_size, config.timestep_num) == ("Dqn", "PongNoFrameskip-v4", 3, True, 8, 1.5, 5000,
                                                                Config().timestep_num)


def test_run_py_refuses_a_play_option_with_learn_and_plays_with_a_learn_option(tmp_path, capsys):
    out = str(tmp_path / "out")
    one_line_error(capsys, ["--use_spike_monitor", "--device", "cpu", "--output_dir", out],
                   "--use_spike_monitor is for --method play or --method robustness")
    assert not os.path.exists(out)  # refused before anything is written

    checkpoint = str(tmp_path / "dqn.pkl")
    save_checkpoint(build_network("Dqn", 4, **Config().network_kwargs()), checkpoint)
    run_py.cli(["--method", "play", "--model_path", checkpoint, "--eval_episode_num", "1", "--max_episode_step",
                "10", "--device", "cpu", "--output_dir", out, "--learning_rate", "0.5", "--timestep_num", "7"])
    assert "average_score" in capsys.readouterr().out  # the learn options are accepted, and unused


def test_the_library_takes_the_paper_values_from_the_options_only():
    """QNetwork, make_env and ReplayMemory have no defaults of their own for what an option sets: a value left out
    is an error, not a second copy of the paper's number."""
    from environment import make_env
    from neural_network import QNetwork
    from replay_memory import ReplayMemory

    required = {QNetwork.__init__: ("history_len", "T", "tau", "v_threshold", "v_reset", "surrogate_func", "alpha"),
                make_env: ("max_episode_step", "history_len", "action_repeat"),
                ReplayMemory.__init__: ("capacity", "history_len"),
                ReplayMemory.check_fits: ("capacity", "history_len"),
                ReplayMemory.estimate_bytes: ("capacity", "history_len")}
    for function, names in required.items():
        parameters = inspect.signature(function).parameters
        assert all(parameters[name].default is inspect.Parameter.empty for name in names), function
    with pytest.raises(TypeError, match="history_len"):
        build_network("Dqn", 4, T=8, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate_func="ATan", alpha=2.0)
    with pytest.raises(TypeError, match="action_repeat"):
        make_env("BreakoutNoFrameskip-v4", training=False, max_episode_step=10, history_len=4)
    # run.py's options carry the paper's values
    config = Config()
    assert (config.history_len, config.T, config.tau, config.max_episode_step, config.action_repeat,
            config.replay_memory_size) == (4, 64, 2.0, 18_000, 4, 1_000_000)
