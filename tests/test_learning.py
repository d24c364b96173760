"""DQN and DSQN learn a tiny image task in which the right action is visible in the frame.

The networks, agent, replay memory and update are the real ones; only the environment is a one-step synthetic
task (tests/synthetic.py) and the learning rate is raised so that the budget fits CI.
"""

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from agent import Agent, Config
from neural_network import build_network
from replay_memory import ReplayMemory
from synthetic import SideOfTheBlockEnv


@pytest.mark.parametrize("model", ["Dqn", "Dsqn"])
def test_agent_learns_to_read_the_frame(model, tmp_path):
    torch.manual_seed(0)
    config = Config(model=model, timestep_num=300, replay_start_size=64, eval_freq=10**9, eval_episode_num=20,
                    minibatch_size=32, replay_memory_size=2000, update_freq=1, target_net_update_freq=50,
                    learning_rate=1e-3, final_epsilon_frame=150, T=8, seed=0)
    net = build_network(model, 2, **config.network_kwargs())
    agent = Agent(config, net, torch.device("cpu"), writer=SummaryWriter(str(tmp_path / "tb")))
    test_env = SideOfTheBlockEnv(seed=3)

    before = np.mean([r.score for r in agent.evaluate(test_env, 100, epsilon=0.0)])
    agent.learn(SideOfTheBlockEnv(seed=1), SideOfTheBlockEnv(seed=2), ReplayMemory(2000, seed=0),
                build_network(model, 2, **config.network_kwargs()), str(tmp_path / "model.pkl"))
    after = np.mean([r.score for r in agent.evaluate(test_env, 100, epsilon=0.0)])

    # An untrained network answers blindly (about half right); a trained one reads the block's side.
    assert before < 0.8
    assert after >= 0.95, (before, after)
