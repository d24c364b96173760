"""Every hyperparameter of a run in one place, with the paper's defaults (PAPER_NOTES §3-4).

run.py builds its command line from :data:`HYPERPARAMETERS`, so an option's name, type, default and help
text are written once, here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class Config:
    # -- what to run ------------------------------------------------------------------------------------------------
    model: str = "Dsqn"
    env_id: str = "BreakoutNoFrameskip-v4"
    method: str = "learn"
    device: str = "auto"
    gpu: str = "0"
    seed: int = 0
    model_path: str | None = None
    use_video_recorder: bool = False
    use_spike_monitor: bool = False
    backend: str = "auto"
    compile: bool = False
    # -- DQN training loop (PAPER_NOTES §3) --------------------------------------------------------------------------
    timestep_num: int = 50_000_000
    eval_freq: int = 250_000
    eval_episode_num: int = 30
    eval_epsilon: float = 0.05
    max_episode_step: int = 18_000
    minibatch_size: int = 32
    replay_memory_size: int = 1_000_000
    history_len: int = 4
    target_net_update_freq: int = 10_000
    discount_factor: float = 0.99
    action_repeat: int = 4
    update_freq: int = 4
    learning_rate: float = 1e-4
    init_epsilon: float = 1.0
    final_epsilon: float = 0.1
    final_epsilon_frame: int = 1_000_000
    replay_start_size: int = 50_000
    # -- spiking networks (PAPER_NOTES §4) ---------------------------------------------------------------------------
    T: int = 64
    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float = 0.0
    surrogate_func: str = "ATan"
    alpha: float = 2.0

    def network_kwargs(self) -> dict:
        """The keyword arguments of :func:`neural_network.build_network` (v_reset -1 means soft reset)."""
        return dict(
            history_len=self.history_len,
            T=self.T,
            tau=self.tau,
            v_threshold=self.v_threshold,
            v_reset=None if self.v_reset == -1 else self.v_reset,
            surrogate_func=self.surrogate_func,
            alpha=self.alpha,
        )

    def to_dict(self) -> dict:
        return asdict(self)


HELP = {
    "timestep_num": "agent steps of learning after the exploration phase (each step = action_repeat frames)",
    "eval_freq": "evaluate every this many learning steps, step 0 included",
    "eval_episode_num": "episodes per evaluation, and per play run",
    "eval_epsilon": "epsilon of the epsilon-greedy policy during evaluation and play",
    "max_episode_step": "time limit of an episode in agent steps",
    "minibatch_size": "transitions per update",
    "replay_memory_size": "capacity of the replay memory in transitions (about 7 KB each)",
    "history_len": "frames per state (the frame stack)",
    "target_net_update_freq": "copy the online network to the target network every this many steps",
    "discount_factor": "discount gamma of the Q-learning target",
    "action_repeat": "frames per agent step (max-and-skip); the ALE pipeline is built for 4",
    "update_freq": "one update every this many agent steps",
    "learning_rate": "Adam learning rate",
    "init_epsilon": "epsilon at learning step 0",
    "final_epsilon": "epsilon after final_epsilon_frame learning steps",
    "final_epsilon_frame": "learning steps over which epsilon falls linearly",
    "replay_start_size": "random-action exploration steps that fill the replay memory before learning",
    "T": "simulation time steps of the spiking networks",
    "tau": "membrane time constant of the LIF neurons",
    "v_threshold": "firing threshold",
    "v_reset": "reset potential; -1 means soft reset (subtract the threshold)",
    "alpha": "sharpness of the surrogate gradient",
}

#: (name, type, default, help) of the numeric hyperparameters exposed on run.py's command line.
HYPERPARAMETERS = [
    (f.name, type(f.default), f.default, HELP[f.name]) for f in fields(Config) if f.name in HELP
]


def epsilon_at(timestep: int, init_epsilon: float, final_epsilon: float, final_epsilon_frame: int) -> float:
    """Linear epsilon schedule: ``init_epsilon`` at step 0, ``final_epsilon`` from ``final_epsilon_frame`` on."""
    if final_epsilon_frame <= 0 or timestep >= final_epsilon_frame:
        return final_epsilon
    return init_epsilon + (final_epsilon - init_epsilon) * timestep / final_epsilon_frame
