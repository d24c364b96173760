"""DQN and DSQN learn a tiny image task whose reward comes one step after the decision (SB3's "learns a trivial
task" test, with the bootstrap term exercised).

The networks, agent, replay memory, update and training loop are the real ones; only the environment is
synthetic (tests/synthetic.py: RememberTheSideEnv) and the learning rate is raised so that the budget fits CI.
"""

import numpy as np
import pytest
import torch
from synthetic import RememberTheSideEnv
from torch.utils.tensorboard import SummaryWriter

from agent import Agent, Config, Trainer, evaluate
from neural_network import build_network
from replay_memory import ReplayMemory


def greedy_score(agent: Agent, episodes: int = 60) -> float:
    env = RememberTheSideEnv(seed=3)
    return float(np.mean([r.score for r in evaluate(agent, env, episodes, 0.0, np.random.default_rng(0))]))


def train(model: str, steps: int, tmp_path, discount_factor: float = 0.99) -> tuple[float, float]:
    config = Config(model=model, timestep_num=steps, replay_start_size=64, eval_freq=10**9, eval_episode_num=1,
                    minibatch_size=16, replay_memory_size=2000, update_freq=1, target_net_update_freq=50,
                    learning_rate=1e-3, final_epsilon_frame=steps // 2, T=4, seed=0, log_freq=10**9,
                    discount_factor=discount_factor)
    torch.manual_seed(0)
    net = build_network(model, 2, **config.network_kwargs())
    agent = Agent(config, net, torch.device("cpu"), target_net=build_network(model, 2, **config.network_kwargs()))
    before = greedy_score(agent)
    Trainer(config, agent, RememberTheSideEnv(seed=1), RememberTheSideEnv(seed=2),
            ReplayMemory(2000, config.history_len, seed=agent.rngs["replay"]), str(tmp_path),
            SummaryWriter(str(tmp_path))).learn()
    return before, greedy_score(agent)


@pytest.mark.parametrize(("model", "steps"), [("Dqn", 100), pytest.param("Dsqn", 100, marks=pytest.mark.slow)])
def test_agent_learns_a_choice_whose_reward_comes_later(model, steps, tmp_path):
    before, after = train(model, steps, tmp_path)
    # Untrained, the choice is blind (about half right); trained, the network has carried the delayed reward
    # back to the decision through the target network's value of the next state.
    assert before < 0.8
    assert after >= 0.95, (before, after)


def test_without_the_bootstrap_term_the_choice_stays_blind(tmp_path):
    # gamma = 0 cuts the only path by which the reward reaches the decision: the same budget learns nothing.
    _, after = train("Dqn", 100, tmp_path, discount_factor=0.0)
    assert after < 0.8
