"""The learning rule and the training loop's schedule, on hand-made batches, tiny synthetic envs and real games.

What is checked: the TD target (vanilla: the max on the TARGET network; --double: the online network's argmax
valued by the target network) and the loss of one update; which steps update, copy the target, evaluate and
save; the epsilon the loop applies; the >= rule of the best checkpoint; that a life loss and a time-limit
truncation are stored as terminal while the game goes on; that evaluation plays whole games across lives; and
that the evaluation budget leaves training untouched (independent random streams).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import paper_env, paper_network
from synthetic import RememberTheSideEnv
from torch.utils.tensorboard import SummaryWriter

import agent.training as training
from agent import Agent, Config, EpisodeResult, StopRequest, Trainer, epsilon_at, evaluate, random_streams
from environment import make_env
from neural_network import build_network
from replay_memory import Batch, ReplayMemory
from utils.cli import Diverged, Stopped

GAME = "BreakoutNoFrameskip-v4"


def make_agent(config: Config, n_actions: int = 4, seed: int = 0) -> Agent:
    torch.manual_seed(seed)
    net = build_network(config.model, n_actions, **config.network_kwargs())
    target = build_network(config.model, n_actions, **config.network_kwargs())
    return Agent(config, net, torch.device("cpu"), target_net=target)


def make_trainer(tmp_path, config: Config, env_cls=RememberTheSideEnv, n_actions: int = 2) -> Trainer:
    agent = make_agent(config, n_actions)
    replay = ReplayMemory(config.replay_memory_size, config.history_len, seed=agent.rngs["replay"])
    writer = SummaryWriter(str(tmp_path / "tensorboard"))
    return Trainer(config, agent, env_cls(n_actions, seed=1), env_cls(n_actions, seed=2), replay, str(tmp_path),
                   writer)


def small_config(**changes) -> Config:
    values = dict(model="Dqn", timestep_num=25, replay_start_size=32, eval_freq=10, eval_episode_num=2,
                  minibatch_size=32, replay_memory_size=500, update_freq=4, target_net_update_freq=10,
                  final_epsilon_frame=20, log_freq=5, seed=0)
    return Config(**{**values, **changes})


# -- the learning rule on hand-made batches ---------------------------------------------------------------------------


def hand_made_batch(n: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        states=torch.randint(0, 256, (n, 4, 84, 84), generator=g, dtype=torch.uint8),
        actions=torch.tensor([0, 1, 2, 3, 1, 0][:n]),
        rewards=torch.tensor([1.0, -1.0, 0.0, 1.0, 0.0, 1.0][:n]),
        next_states=torch.randint(0, 256, (n, 4, 84, 84), generator=g, dtype=torch.uint8),
        dones=torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 0.0][:n]),
    )


def test_td_target_takes_the_max_on_the_target_network():
    agent = make_agent(small_config())
    with torch.no_grad():  # make the two networks disagree
        for p in agent.target_net.parameters():
            p.mul_(-1.5)
    batch = hand_made_batch()
    with torch.no_grad():
        q_target = agent.target_net(batch.next_states)
        q_online = agent.net(batch.next_states)
    y = agent.td_target(batch.rewards, batch.dones, batch.next_states)
    expected = [batch.rewards[i] + (0.0 if batch.dones[i] else 0.99 * q_target[i].max()) for i in range(6)]
    torch.testing.assert_close(y, torch.stack(expected), rtol=0, atol=1e-6)
    assert y[2] == 0.0 and y[4] == 0.0  # done: the reward alone
    with_online = batch.rewards + 0.99 * (1 - batch.dones) * q_online.max(1).values
    assert not torch.allclose(y, with_online)  # the test can tell the two networks apart


def test_double_target_values_the_online_argmax_with_the_target_network():
    vanilla, double = make_agent(small_config()), make_agent(small_config(double=True))
    double.target_net.load_state_dict(vanilla.target_net.state_dict())
    with torch.no_grad():
        for p in double.target_net.parameters():
            p.mul_(-1.5)
    vanilla.target_net.load_state_dict(double.target_net.state_dict())
    batch = hand_made_batch()
    with torch.no_grad():
        q_target, q_online = double.target_net(batch.next_states), double.net(batch.next_states)
    chosen = q_online.argmax(1)
    assert (chosen != q_target.argmax(1)).any(), "the two rules must pick different actions somewhere"
    y = double.td_target(batch.rewards, batch.dones, batch.next_states)
    expected = batch.rewards + 0.99 * (1 - batch.dones) * q_target[torch.arange(6), chosen]
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    y_vanilla = vanilla.td_target(batch.rewards, batch.dones, batch.next_states)
    assert not torch.allclose(y, y_vanilla)
    assert (y_vanilla >= y - 1e-6).all()  # the max can only be larger than any other choice


def test_update_is_one_adam_step_on_the_smooth_l1_loss():
    agent = make_agent(small_config())
    batch = hand_made_batch()
    reference = paper_network("Dqn", 4)
    reference.load_state_dict(agent.net.state_dict())
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-4)
    y = agent.td_target(batch.rewards, batch.dones, batch.next_states)
    q = reference(batch.states)[torch.arange(6), batch.actions]
    expected_loss = torch.nn.functional.smooth_l1_loss(q, y)
    expected_loss.backward()
    optimizer.step()
    loss = agent.update(batch)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-6)
    for ours, theirs in zip(agent.net.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


# -- the loop's schedule ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("final_eval", ["one_more_step", "at_budget"])
def test_the_loop_updates_copies_evaluates_and_saves_on_schedule(tmp_path, monkeypatch, final_eval):
    # RememberTheSideEnv's episodes are two steps long and learning starts with one: step 24 ends none
    trainer = make_trainer(tmp_path, small_config(checkpoint_freq=7, final_eval=final_eval))
    calls = {"update": [], "sync": [], "evaluate": [], "save": [], "epsilon": []}
    agent = trainer.agent
    real_update, real_sync, real_act = agent.update, agent.sync_target, agent.act
    real_evaluate, real_save = trainer.evaluate, trainer.run.save
    monkeypatch.setattr(agent, "update", lambda batch: calls["update"].append(trainer.p.timestep) or real_update(batch))
    monkeypatch.setattr(agent, "sync_target", lambda: calls["sync"].append(trainer.p.timestep) or real_sync())
    monkeypatch.setattr(trainer, "evaluate", lambda label: calls["evaluate"].append(label) or real_evaluate(label))
    monkeypatch.setattr(trainer.run, "save", lambda: calls["save"].append(trainer.p.timestep) or real_save())

    def act(frame_stack, epsilon, rng):
        if rng is agent.rngs["explore"] and trainer.p.explored == 32:  # learning steps only, not evaluation
            calls["epsilon"].append((trainer.p.timestep, epsilon))
        return real_act(frame_stack, epsilon, rng)

    monkeypatch.setattr(agent, "act", act)
    trainer.learn()
    steps = 26 if final_eval == "one_more_step" else 25  # the original's loop runs on into step 25, then evaluates
    assert calls["update"] == [0, 4, 8, 12, 16, 20, 24]
    assert calls["sync"] == [0, 10, 20]
    assert calls["evaluate"] == [0, 10, 20, 25]  # the final network too, once, labelled timestep_num
    assert calls["save"] == [1, 8, 15, 22, 25]  # after steps 0, 7, 14, 21 (counters: steps done) and at the end
    assert [t for t, _ in calls["epsilon"]] == list(range(steps))
    for t, epsilon in calls["epsilon"]:
        assert epsilon == epsilon_at(t, 1.0, 0.1, 20) == (1.0 - 0.9 * t / 20 if t < 20 else 0.1)
    assert len(trainer.replay) == 32 + steps
    manifest = json.load(open(tmp_path / "state" / "manifest.json"))
    assert manifest["timestep"] == 25 and manifest["finished"] is True


def test_the_steps_before_the_learning_starts_threshold_are_random_and_learn_nothing(tmp_path, monkeypatch):
    # One loop over all steps: the first replay_start_size take the explore generator's random actions, in order,
    # into the replay memory, with no epsilon-greedy action, update or target copy, and are no learning steps;
    # learning step 0 follows them, from a reset of the env.
    config = small_config(replay_start_size=31, timestep_num=6, eval_freq=3, final_eval="at_budget")
    trainer = make_trainer(tmp_path, config, n_actions=4)
    agent = trainer.agent
    draws = copy.deepcopy(agent.rngs["explore"])
    random_actions = [int(draws.integers(4)) for _ in range(31)]
    calls, labels, resets = [], [], []

    def recorded(name, real):
        def call(*args):
            if name != "act" or args[2] is agent.rngs["explore"]:  # (not the evaluation's actions)
                calls.append((name, len(trainer.replay), trainer.p.explored, trainer.p.timestep))
            return real(*args)
        return call

    for name in ("act", "update", "sync_target"):
        monkeypatch.setattr(agent, name, recorded(name, getattr(agent, name)))
    real_evaluate, real_reset = trainer.evaluate, trainer.train_env.reset
    monkeypatch.setattr(trainer, "evaluate", lambda label: labels.append(label) or real_evaluate(label))
    monkeypatch.setattr(trainer.train_env, "reset", lambda **kw: resets.append(len(trainer.replay)) or real_reset(**kw))
    trainer.learn()
    assert trainer.replay._actions[:31].tolist() == random_actions
    assert [(name, size) for name, size, _, _ in calls[:3]] == [("act", 31), ("update", 32), ("sync_target", 32)]
    assert all(explored == 31 for _, _, explored, _ in calls)
    assert [t for name, _, _, t in calls if name == "act"] == list(range(6))
    assert [t for name, _, _, t in calls if name == "update"] == [0, 4]
    assert resets == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 31, 33, 35]  # two-step episodes
    assert labels == [0, 3, 6] and trainer.p.timestep == 6 and len(trainer.replay) == 31 + 6


def test_a_run_stopped_at_the_learning_starts_threshold_resumes_exactly(tmp_path):
    # SIGTERM in the last random step: the saved state already holds the reset that learning starts with, so the
    # resumed run (replay memory kept, --save_replay) equals the run never stopped
    config = small_config(replay_start_size=31, timestep_num=8, save_replay=True)

    def trainer_in(folder, stop=None) -> Trainer:
        agent = make_agent(config, n_actions=2)
        os.makedirs(folder / "state", exist_ok=True)
        replay = ReplayMemory(config.replay_memory_size, config.history_len, seed=agent.rngs["replay"],
                              frames_file=str(folder / "state" / "replay-frames.u8"))
        return Trainer(config, agent, RememberTheSideEnv(2, seed=1), RememberTheSideEnv(2, seed=2), replay,
                       str(folder), SummaryWriter(str(folder / "tensorboard")), stop=stop)

    straight = trainer_in(tmp_path / "straight")
    straight.learn()
    with StopRequest() as stop:
        stopped = trainer_in(tmp_path / "stopped", stop)
        real_step = stopped.train_env.step

        def step(action):
            if stopped.p.explored == 30:
                os.kill(os.getpid(), signal.SIGTERM)
            return real_step(action)

        stopped.train_env.step = step
        with pytest.raises(Stopped) as error:
            stopped.learn()
    assert error.value.exit_status == 143
    stopped.replay.close_journal()
    manifest = json.load(open(tmp_path / "stopped" / "state" / "manifest.json"))
    assert (manifest["explored"], manifest["timestep"]) == (31, 0)
    resumed = trainer_in(tmp_path / "stopped")
    assert resumed.run.resume()["replay"]
    resumed.learn()
    ours, theirs = resumed.agent.net.state_dict(), straight.agent.net.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    n = len(straight.replay)
    assert len(resumed.replay) == n
    assert np.array_equal(resumed.replay._actions[:n], straight.replay._actions[:n])
    assert np.array_equal(resumed.replay._rewards[:n], straight.replay._rewards[:n])
    evaluations = [(tmp_path / folder / "evaluations.csv").read_text() for folder in ("stopped", "straight")]
    assert evaluations[0] == evaluations[1]


@pytest.mark.parametrize(("final_eval", "timestep_num", "evaluations"), [
    ("at_budget", 40, [0, 10, 20, 30, 40]), ("at_budget", 0, [0]), ("at_budget", 9, [0, 9]),
    # the original's schedule: step 39 ends an episode (the two-step episodes start at step 0), so the loop stops
    # there and 40 is not evaluated; step 8 ends none, so 9 is, after step 9; with no step before it, 0 is
    ("one_more_step", 40, [0, 10, 20, 30]), ("one_more_step", 0, [0]), ("one_more_step", 9, [0, 9]),
])
def test_evaluation_steps(tmp_path, monkeypatch, final_eval, timestep_num, evaluations):
    trainer = make_trainer(tmp_path, small_config(timestep_num=timestep_num, eval_episode_num=1,
                                                  final_eval=final_eval))
    labels = []
    real_evaluate = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda label: labels.append(label) or real_evaluate(label))
    trainer.learn()
    assert labels == evaluations
    assert os.path.exists(tmp_path / "best.pkl")  # even a run of 0 learning steps saves the network it evaluated


def test_best_checkpoint_is_saved_when_the_average_reaches_the_best_so_far(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, small_config(timestep_num=40, eval_episode_num=1))
    scores = iter([[1.0, 3.0], [2.0, 2.0], [0.0, 1.0], [5.0, 5.0], [5.0, 4.0]])  # averages 2, 2, 0.5, 5, 4.5
    snapshots = []

    def fake_evaluate(agent, env, episode_num, epsilon, rng, **kwargs):
        snapshots.append(agent.net.fc2.bias.detach().clone())
        return [EpisodeResult(score, 1.0, 0.1, 10) for score in next(scores)]

    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    saved = []
    real_save = training.save_checkpoint
    monkeypatch.setattr(training, "save_checkpoint",
                        lambda net, path, game: saved.append(trainer.p.pending_eval) or real_save(net, path, game))
    trainer.learn()
    assert saved == [0, 10, 30]  # a tie (step 10) is saved, as in the original; lower averages are not
    best = torch.load(tmp_path / "best.pkl", weights_only=True)["state_dict"]
    assert torch.equal(best["fc2.bias"], snapshots[3])
    assert trainer.p.best_score == 5.0


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, small_config(timestep_num=40, checkpoint_freq=5, log_freq=100))
    real_update = trainer.agent.update

    def update(batch):
        loss = real_update(batch)
        if trainer.p.timestep >= 12:  # from learning step 12 on, the network is ruined
            with torch.no_grad():
                trainer.agent.net.fc1.weight.fill_(float("nan"))
            return torch.tensor(float("nan"))
        return loss

    monkeypatch.setattr(trainer.agent, "update", update)
    with pytest.raises(Diverged, match="non-finite .* at learning step 12") as error:
        trainer.learn()
    assert "learning step 11" in str(error.value) and "--learning_rate" in str(error.value)
    manifest = json.load(open(tmp_path / "state" / "manifest.json"))
    assert manifest["timestep"] == 11  # saved after step 10; nothing later replaced it
    assert json.load(open(tmp_path / "status.json"))["status"] == "diverged"
    best = torch.load(tmp_path / "best.pkl", weights_only=True)["state_dict"]
    assert all(torch.isfinite(value).all() for value in best.values() if value.is_floating_point())


# -- terminal transitions and evaluation on a real game ---------------------------------------------------------------


class Recorder(gym.Wrapper):
    """Remembers lives, the frame number and the end flags of every step (outermost, stateless)."""

    def __init__(self, env):
        super().__init__(env)
        self.steps = []

    def step(self, action):
        out = self.env.step(action)
        self.steps.append({"lives": out[4]["lives"], "frame": out[4]["episode_frame_number"],
                           "terminated": out[2], "truncated": out[3]})
        return out

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


def explore_recorded(tmp_path, max_episode_step: int, steps: int):
    """``steps`` exploration steps of the real loop on Breakout's training env (a budget of 0 learning steps);
    (the steps seen, replay dones)."""
    config = small_config(replay_start_size=steps, replay_memory_size=1000, max_episode_step=max_episode_step,
                          timestep_num=0, final_eval="at_budget", eval_episode_num=1)
    agent = make_agent(config)
    env = Recorder(make_env(GAME, training=True, seed=0, **paper_env(max_episode_step=max_episode_step)))
    trainer = Trainer(config, agent, env, make_env(GAME, training=False, seed=0, **paper_env(max_episode_step=10)),
                      ReplayMemory(1000, config.history_len, seed=agent.rngs["replay"]), str(tmp_path),
                      SummaryWriter(str(tmp_path / "tensorboard")))
    trainer.learn()
    assert len(env.steps) == len(trainer.replay) == steps
    return env.steps, trainer.replay._dones[:steps].tolist()


def test_a_life_loss_is_terminal_while_the_game_goes_on(tmp_path):
    steps, dones = explore_recorded(tmp_path, max_episode_step=10_000, steps=400)
    life_losses = 0
    for i in range(1, len(steps) - 1):
        lost_life = 0 < steps[i]["lives"] < steps[i - 1]["lives"]
        assert dones[i] == (lost_life or steps[i]["terminated"]), i
        if lost_life:
            life_losses += 1
            assert steps[i + 1]["frame"] > steps[i]["frame"]  # the same game goes on
            assert steps[i + 1]["lives"] == steps[i]["lives"]
    assert life_losses >= 3


def test_a_time_limit_truncation_is_terminal_and_starts_a_new_game(tmp_path):
    steps, dones = explore_recorded(tmp_path, max_episode_step=30, steps=100)
    truncations = [i for i, step in enumerate(steps) if step["truncated"]]
    assert len(truncations) >= 3
    for i in truncations[:-1]:
        assert dones[i] and steps[i + 1]["frame"] < steps[i]["frame"] and steps[i + 1]["lives"] == 5


def test_evaluation_plays_whole_games_across_lives_with_raw_scores():
    agent = Agent(small_config(), paper_network("Dqn", 4), torch.device("cpu"))
    env = Recorder(make_env(GAME, training=False, seed=3, **paper_env(max_episode_step=5000)))
    results = evaluate(agent, env, 2, epsilon=1.0, rng=np.random.default_rng(0))
    ends = [i for i, step in enumerate(env.steps) if step["terminated"] or step["truncated"]]
    assert len(ends) == 2 and ends[-1] == len(env.steps) - 1
    first_game = env.steps[: ends[0] + 1]
    assert first_game[0]["lives"] == 5 and first_game[-1]["lives"] == 0 and first_game[-1]["terminated"]
    assert results[0].steps == len(first_game) and results[1].steps == ends[1] - ends[0]
    assert all(r.score == math.floor(r.score) and r.score >= 0 for r in results)


# -- the final evaluation on a real game: the original's schedule ---------------------------------------------------


def breakout_trainer(tmp_path, **changes) -> Trainer:
    """The real loop on Breakout: a Dqn, the training env (episodic life, clipped rewards) and the evaluation env."""
    config = small_config(**{"eval_freq": 1000, "eval_episode_num": 1, "max_episode_step": 16, "minibatch_size": 8,
                             "replay_start_size": 16, "log_freq": 1000, **changes})
    agent = make_agent(config)
    return Trainer(config, agent, make_env(GAME, training=True, seed=0, **config.env_kwargs()),
                   make_env(GAME, training=False, seed=0, **paper_env(max_episode_step=20)),
                   ReplayMemory(config.replay_memory_size, config.history_len, seed=agent.rngs["replay"]),
                   str(tmp_path), SummaryWriter(str(tmp_path / "tensorboard")))


def recorded_learn(trainer: Trainer, monkeypatch) -> list[tuple]:
    """Run the loop; the updates (learning step, weights after) and evaluations (label, weights evaluated), in
    order."""
    events = []
    agent, real_update, real_evaluate = trainer.agent, trainer.agent.update, trainer.evaluate

    def weights():
        return {k: v.clone() for k, v in agent.net.state_dict().items()}

    def update(batch):
        loss = real_update(batch)
        events.append(("update", trainer.p.timestep, weights()))
        return loss

    def evaluate(label):
        events.append(("evaluate", label, weights()))
        real_evaluate(label)

    monkeypatch.setattr(agent, "update", update)
    monkeypatch.setattr(trainer, "evaluate", evaluate)
    trainer.learn()
    return events


def test_the_final_evaluation_follows_one_more_step_and_its_update_unless_an_episode_just_ended(tmp_path,
                                                                                                monkeypatch):
    # Breakout's learning steps (after 16 exploration steps) are the same whatever the budget, as the evaluations
    # have their own env and random stream; measured: of steps 0..23 steps 8 and 22 end an episode.
    def episode_ended_at(trainer: Trainer, step: int) -> bool:
        return bool(trainer.replay._dones[16 + step])

    with_update, skipped = 8, 9  # an update at step 8 (every 4 steps); step 7 ends no episode, step 8 ends one
    trainer = breakout_trainer(tmp_path / "update", timestep_num=with_update)
    events = recorded_learn(trainer, monkeypatch)
    assert not episode_ended_at(trainer, with_update - 1)
    kinds = [(kind, step) for kind, step, _ in events]
    # the original's loop: step with_update is taken, its update done, and then evaluated with that label
    assert kinds[-2:] == [("update", with_update), ("evaluate", with_update)]
    assert kinds[0] == ("update", 0) and kinds[1] == ("evaluate", 0)
    before, after, evaluated = events[-3][2], events[-2][2], events[-1][2]
    assert all(torch.equal(evaluated[k], after[k]) for k in after)
    assert not all(torch.equal(before[k], after[k]) for k in after)  # the last update changed the network
    assert len(trainer.replay) == 16 + with_update + 1 and trainer.p.final_step and trainer.p.finished

    trainer = breakout_trainer(tmp_path / "skipped", timestep_num=skipped)
    events = recorded_learn(trainer, monkeypatch)
    assert episode_ended_at(trainer, skipped - 1)
    assert [step for kind, step, _ in events if kind == "evaluate"] == [0]  # no evaluation labelled `skipped`
    assert len(trainer.replay) == 16 + skipped and trainer.p.finished and not trainer.p.final_step

    # --final_eval at_budget: the network after exactly timestep_num steps, always evaluated
    trainer = breakout_trainer(tmp_path / "at_budget", timestep_num=skipped, final_eval="at_budget")
    events = recorded_learn(trainer, monkeypatch)
    assert episode_ended_at(trainer, skipped - 1)
    assert [step for kind, step, _ in events if kind == "evaluate"] == [0, skipped]
    last_update = [e for e in events if e[0] == "update"][-1]
    assert last_update[1] == max(t for t in range(skipped) if t % 4 == 0)
    assert all(torch.equal(events[-1][2][k], last_update[2][k]) for k in last_update[2])
    assert len(trainer.replay) == 16 + skipped


def test_a_larger_budget_goes_on_after_the_step_the_final_evaluation_took(tmp_path, monkeypatch):
    # budget 8, then continued to 12 (as --resume --timestep_num 12 does): step 8 is not taken twice, and the
    # network equals that of a run with budget 12 from the start (steps 0..12, updates at 0, 4, 8, 12)
    resumed = breakout_trainer(tmp_path / "resumed", timestep_num=8)
    first = list(recorded_learn(resumed, monkeypatch))  # (its recorder goes on recording: a copy)
    assert resumed.p.final_step and resumed.p.timestep == 8
    state = {**resumed.run.state(), "replay": resumed.replay.state_dict()}  # the frames stay in memory
    resumed.config = dataclasses.replace(resumed.config, timestep_num=12)
    resumed.run.restore(state, replay_kept=True)
    assert resumed.p.timestep == 9 and not resumed.p.finished and not resumed.p.final_step
    second = recorded_learn(resumed, monkeypatch)
    straight = breakout_trainer(tmp_path / "straight", timestep_num=12)
    events = recorded_learn(straight, monkeypatch)
    assert [(kind, step) for kind, step, _ in events] == [("update", 0), ("evaluate", 0), ("update", 4),
                                                           ("update", 8), ("update", 12), ("evaluate", 12)]
    assert [(kind, step) for kind, step, _ in first + second] == [("update", 0), ("evaluate", 0), ("update", 4),
                                                                   ("update", 8), ("evaluate", 8), ("update", 12),
                                                                   ("evaluate", 12)]
    ours, theirs = resumed.agent.net.state_dict(), straight.agent.net.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert len(resumed.replay) == len(straight.replay) == 16 + 13


# -- independent random streams ---------------------------------------------------------------------------------------


def test_random_streams_are_independent():
    streams = random_streams(7)
    draws = {name: rng.integers(0, 2**31, 8).tolist() for name, rng in streams.items()}
    assert len({tuple(d) for d in draws.values()}) == 3
    assert random_streams(7)["explore"].integers(0, 2**31, 8).tolist() == draws["explore"]


def test_the_evaluation_budget_leaves_training_unchanged(tmp_path):
    finals = []
    for episodes in (1, 4):
        trainer = make_trainer(tmp_path / str(episodes), small_config(eval_episode_num=episodes, timestep_num=30))
        trainer.learn()
        finals.append((trainer.agent.net.state_dict(), trainer.replay._actions[:62].copy(),
                       trainer.agent.rngs["explore"].bit_generator.state))
    (net_a, actions_a, rng_a), (net_b, actions_b, rng_b) = finals
    assert all(torch.equal(net_a[k], net_b[k]) for k in net_a)
    assert np.array_equal(actions_a, actions_b) and rng_a == rng_b
