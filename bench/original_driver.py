"""Times the learning loop of the original DSQN code (Liu et al.'s release); bench/original.py runs it inside the
original's own virtualenv (SpikingJelly 0.0.0.0.8, CuPy). It imports the original's ``agent``, ``neural_network``
and ``replay_memory`` packages from --checkout and runs its own DsqnAgent.learn; nothing of the original is copied.

The original's ``environment`` package needs gym <= 0.21 and atari-py, which no longer install on Python 3.12, so
the envs are this repository's ``environment.make_env`` (the same DeepMind pipeline, the same one our runs use),
given the pre-0.26 gym interface and the channels-last frame stacks (baselines' LazyFrames layout) the original's
agent expects; numpy 2 gets back the alias numpy.NINF (= -inf) that the original uses. The original's
DsqnAgent._evaluate reads max_q_std before assigning it (an UnboundLocalError at its first evaluation, at learning
step 0, so the released code cannot train a Dsqn as it is): the driver skips the evaluation, which the timing
leaves out anyway. Prints one JSON line: seconds per learning step of each run, the versions and the neuron backend.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import random
import sys
import tempfile
import time


class OldGymApi:
    """reset() -> obs, step(a) -> (obs, reward, done, info), observations [84, 84, 4] (the original's interface)."""

    def __init__(self, env):
        self.env, self.action_space = env, env.action_space

    def reset(self):
        return self.env.reset()[0].transpose(1, 2, 0)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs.transpose(1, 2, 0), reward, terminated or truncated, info


class Enough(Exception):
    """Raised by the timed agent once it has acted for the steps to be timed."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkout", required=True, help="the original code (a folder with agent/, neural_network/)")
    p.add_argument("--repo", required=True, help="this repository (for environment.make_env)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--backend", default="cupy", choices=["cupy", "torch"], help="SpikingJelly neuron backend")
    p.add_argument("--T", type=int, default=64)
    p.add_argument("--steps", type=int, default=402, help="learning steps per run (2 + a multiple of 4)")
    p.add_argument("--replay_start", type=int, default=500)
    p.add_argument("--replay_capacity", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()

    sys.path.insert(0, args.repo)
    environment = importlib.import_module("environment")  # ours, before the original's packages shadow the name
    sys.path.remove(args.repo)
    sys.path.insert(0, args.checkout)
    import numpy as np
    import torch
    from spikingjelly.clock_driven import neuron
    from torch.utils.tensorboard import SummaryWriter

    if args.threads:
        torch.set_num_threads(args.threads)
    np.NINF = -np.inf  # removed in numpy 2.0; the original starts its best score at numpy.NINF
    if args.backend != "cupy":  # the original hard-codes backend="cupy": CuPy and a CUDA device
        def with_backend(init):
            return lambda self, *a, **kw: init(self, *a, **{**kw, "backend": args.backend})

        for cls in (neuron.MultiStepLIFNode, neuron.MultiStepIFNode):
            cls.__init__ = with_backend(cls.__init__)
    from agent import DsqnAgent
    from neural_network import Dsqn
    from replay_memory import ReplayMemory

    class TimedAgent(DsqnAgent):
        def _select_action(self, *a):  # called once per learning step, before acting
            self.stamps.append(time.perf_counter())
            if len(self.stamps) > args.steps:
                raise Enough
            return super()._select_action(*a)

        def _evaluate(self, episodes, epsilon, timestep, max_average_score, model_path):
            return max_average_score  # not timed; the original's own one fails (see the module docstring)

    game, seconds = "BreakoutNoFrameskip-v4", []
    for repeat in range(args.repeats):
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        # run.py's defaults (agent.config cannot be imported here: the original's packages take the name agent)
        train_env = OldGymApi(environment.make_env(game, training=True, max_episode_step=18_000, history_len=4,
                                                   action_repeat=4, seed=args.seed))
        n = int(train_env.action_space.n)
        device = torch.device(args.device)
        nets = [Dsqn(4, n, 1e-4, device, args.T, 2.0, 1.0, 0.0, "ATan", 2.0) for _ in range(2)]
        with tempfile.TemporaryDirectory(prefix="dsqn_original_run_") as out:
            writer = SummaryWriter(log_dir=out)
            agent = TimedAgent(None, nets[0], writer, train_env, nets[1], ReplayMemory(args.replay_capacity))
            agent.stamps = []
            try:  # no evaluation, epsilon held at 0.1 as in bench/run.py
                agent.learn(10**12, args.replay_start, 32, 0.99, 4, 10_000, 10**12, 1, 0.05, 0.1, 0.1, 1_000_000,
                            model_path=os.path.join(out, "model.pkl"))
            except Enough:
                pass
            writer.close()
        s = agent.stamps
        seconds.append((s[args.steps - 1] - s[1]) / (args.steps - 2))
        print(f"original run {repeat + 1}: {1 / seconds[-1]:.3g} learning steps/s", file=sys.stderr, flush=True)
    versions = {"torch": torch.__version__, "spikingjelly": importlib.metadata.version("spikingjelly"),
                "python": sys.version.split()[0], "numpy": np.__version__}
    try:
        versions["cupy"] = importlib.import_module("cupy").__version__
    except ImportError:
        versions["cupy"] = None
    print(json.dumps({"seconds_per_step": seconds, "backend": args.backend, "device": args.device, "T": args.T,
                      "steps": args.steps, "versions": versions}))


if __name__ == "__main__":
    main()
