"""The games of an evaluation played at once (environment/vector.py, agent.evaluation.play_batched) give each game
exactly what playing it alone gives: the same actions, score, length, truncation, max-Q and spikes, on the real
ALE game, for any number of games at once, in this process or in worker processes."""

from __future__ import annotations

import functools
import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import paper_env

from agent import Agent, Config
from agent.evaluation import draw_evaluation_seed, evaluate, game_streams, run_episode
from environment import make_env
from environment.vector import EvaluationEnvs, evaluation_env
from neural_network import SpikeMonitor, build_network

GAME = "BreakoutNoFrameskip-v4"
EPISODES = 4
EPSILON = 0.2  # high enough that every game takes random and greedy steps within a short game
MAX_STEPS = 200  # short games: some end (all lives lost), the rest are cut by the limit


class ActionLog(gym.Wrapper):
    """Records the actions an env is given, per game (a reset with a seed starts a new game)."""

    games: dict[int, list[int]] = {}

    def reset(self, *, seed=None, options=None):
        self.current = ActionLog.games.setdefault(seed, [])
        self.current.clear()
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.current.append(int(action))
        return self.env.step(action)


def logged_env(slot: int = 0) -> gym.Env:
    return ActionLog(make_env(GAME, training=False, seed=100 + slot, **paper_env(max_episode_step=MAX_STEPS)))


def varied_agent(model: str) -> Agent:
    """An untrained network whose greedy action changes with the frame: weights scaled until every layer of Dsqn
    fires, fc2's bias centering each action's Q on frames of a random Breakout game."""
    config = Config(model=model, T=4, seed=0)
    torch.manual_seed(0)
    net = build_network(model, 4, **config.network_kwargs())
    env = make_env(GAME, training=False, seed=1, **paper_env())
    frames, rng = [env.reset()[0]], np.random.default_rng(0)
    for _ in range(60):
        frames.append(env.step(int(rng.integers(4)))[0])
    env.close()
    with torch.no_grad():
        for layer in net.weight_layers:
            layer.weight.mul_(8.0 if model == "Dsqn" else 4.0)
        q = net(torch.from_numpy(np.stack(frames)))
        net.fc2.bias.sub_(q.mean(0))
        assert len(set(net(torch.from_numpy(np.stack(frames))).argmax(1).tolist())) >= 3
    return Agent(config, net, torch.device("cpu"))


def alone(agent, seed: int, game_rng, monitor=None):
    """One game played by itself on a fresh env (made with another seed: the game's own seed is what counts)."""
    env = logged_env(7)
    try:
        result = run_episode(agent, env, EPSILON, game_rng, monitor, seed=seed)
    finally:
        env.close()
    return result, list(ActionLog.games[seed])


def assert_same_game(batched, single) -> None:
    assert (batched.score, batched.steps, batched.truncated) == (single.score, single.steps, single.truncated)
    # The same Q up to rounding: on the CPU a forward pass of several frame stacks and one of a single stack may
    # sum in another order (the convolution and matrix kernels pick their blocking by batch size), a few units in
    # the last place of float32; the greedy actions (compared one by one) and scores are identical.
    assert math.isclose(batched.max_q, single.max_q, rel_tol=1e-5)
    assert math.isclose(batched.max_q_std, single.max_q_std, rel_tol=1e-5)


@pytest.mark.parametrize("model", ["Dsqn", "Dqn"])
def test_games_played_at_once_equal_each_game_played_alone(model):
    agent = varied_agent(model)
    ActionLog.games = {}
    envs = EvaluationEnvs(logged_env, EPISODES)
    try:
        batched = evaluate(agent, envs, EPISODES, EPSILON, np.random.default_rng(5))
    finally:
        envs.close()
    played_at_once = {seed: list(actions) for seed, actions in ActionLog.games.items()}
    games = game_streams(draw_evaluation_seed(np.random.default_rng(5)), EPISODES)
    assert len({seed for seed, _ in games}) == EPISODES
    outcomes = set()
    for (seed, game_rng), result in zip(games, batched):
        single, actions = alone(agent, seed, game_rng)
        assert played_at_once[seed] == actions and len(actions) == result.steps
        assert_same_game(result, single)
        assert not math.isnan(result.max_q)  # greedy steps happened
        outcomes.add(result.truncated)
    assert outcomes == {True, False}  # games that ended and games cut by the limit
    assert len({r.score for r in batched}) > 1 or len({r.steps for r in batched}) > 1  # the games differ


def test_spike_counts_of_each_game_are_its_own():
    agent = varied_agent("Dsqn")
    with SpikeMonitor(agent.net) as monitor:
        envs = EvaluationEnvs(logged_env, EPISODES)
        try:
            batched = evaluate(agent, envs, EPISODES, EPSILON, np.random.default_rng(6), monitor=monitor)
        finally:
            envs.close()
        games = game_streams(draw_evaluation_seed(np.random.default_rng(6)), EPISODES)
        for (seed, game_rng), result in zip(games, batched):
            single, _ = alone(agent, seed, game_rng, monitor)
            mine, theirs = result.spike_stats, single.spike_stats
            assert mine.actions == theirs.actions > 0  # greedy actions only
            assert mine.actions < result.steps
            assert mine.spikes == theirs.spikes and mine.sops == theirs.sops and mine.rates == theirs.rates


def test_fewer_slots_one_env_and_worker_processes_give_the_same_games():
    agent = varied_agent("Dsqn")
    make = functools.partial(evaluation_env, env_id=GAME, seed=0, **paper_env(max_episode_step=50))
    outcomes = []
    for env in (EvaluationEnvs(make, EPISODES), EvaluationEnvs(make, 2), make(0), EvaluationEnvs(make, 3, workers=2)):
        order = []
        try:
            results = evaluate(agent, env, EPISODES, EPSILON, np.random.default_rng(8),
                               on_episode=lambda index, result, order=order: order.append(index))
        finally:
            env.close()
        assert sorted(order) == list(range(EPISODES))
        outcomes.append([(r.score, r.steps, r.truncated, r.max_q) for r in results])
    assert all(outcome == outcomes[0] for outcome in outcomes[1:])


def test_a_game_seed_depends_on_the_evaluation_seed_and_the_game_only():
    few, many = game_streams(11, 3), game_streams(11, 30)
    assert [seed for seed, _ in few] == [seed for seed, _ in many[:3]]
    assert [g.random() for _, g in few] == [g.random() for _, g in many[:3]]
    assert [seed for seed, _ in game_streams(12, 3)] != [seed for seed, _ in few]


def test_play_writes_the_same_report_with_its_games_at_once_or_one_after_the_other(trained_run, tmp_path):
    import json
    import os

    import run as run_py

    played = {}
    for name, extra in (("at_once", []), ("one_by_one", ["--eval_envs", "1"])):
        run_py.main(["--method", "play", "--model_path", trained_run("Dsqn").model_path, "--eval_episode_num", "3",
                     "--max_episode_step", "60", "--eval_epsilon", "0.2", "--use_spike_monitor", "--device", "cpu",
                     "--output_dir", str(tmp_path), "--run_name", name, *extra])
        with open(os.path.join(tmp_path, name, "summary.json")) as file:
            played[name] = json.load(file)
    at_once, one_by_one = played["at_once"], played["one_by_one"]
    assert at_once["scores"] == one_by_one["scores"] and at_once["greedy_actions"] == one_by_one["greedy_actions"] > 0
    assert at_once["layer_spikes_per_action"] == one_by_one["layer_spikes_per_action"]
    assert math.isclose(at_once["average_max_q"], one_by_one["average_max_q"], rel_tol=1e-5)


def test_a_state_saved_with_one_evaluation_env_resumes_on_games_at_once(tmp_path):
    """A run saved with a single evaluation env (as before the games were played at once) continues on an
    EvaluationEnvs: its games start from their own seeds, so the old env's state is not needed."""
    from synthetic import RememberTheSideEnv
    from torch.utils.tensorboard import SummaryWriter

    from agent import Trainer
    from replay_memory import ReplayMemory

    def trainer(eval_env, folder: str, steps: int) -> Trainer:
        config = Config(model="Dqn", timestep_num=steps, replay_start_size=32, eval_freq=10, eval_episode_num=2,
                        replay_memory_size=500, seed=0, log_freq=5)
        torch.manual_seed(0)
        nets = [build_network("Dqn", 2, **config.network_kwargs()) for _ in range(2)]
        agent = Agent(config, nets[0], torch.device("cpu"), target_net=nets[1])
        os.makedirs(tmp_path / folder)
        return Trainer(config, agent, RememberTheSideEnv(seed=1), eval_env,
                       ReplayMemory(500, config.history_len, seed=agent.rngs["replay"]), str(tmp_path / folder),
                       SummaryWriter(str(tmp_path / folder / "tb")))

    old = trainer(RememberTheSideEnv(seed=2), "old", 12)
    old.learn()
    new = trainer(EvaluationEnvs(lambda slot: RememberTheSideEnv(seed=slot), 2), "new", 16)
    new.run.restore(old.run.state(), replay_kept=False)
    assert new.p.timestep == 12 and not new.p.finished  # a larger budget: it trains on
    new.learn()  # and evaluates its final network on the games at once
    assert new.p.timestep == 16 and new.p.finished
