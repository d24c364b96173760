"""Every option of a run in one place, with the paper's defaults (docs/METHOD.md): the library's networks, envs
and replay memory take these values from a :class:`Config`; none of them repeats a default of its own.

Each field is also run.py's command-line option of the same name: its default, help text and value check are
written once, here (``utils.cli.option``). Each option belongs to one group (:class:`utils.cli.OptionGroup`): what it
is for (run, network, games, learn, play, robustness, runtime), the section of ``run.py --help`` it is shown in,
and the methods it applies to. :func:`check_methods` derives from the groups which options a method refuses, and
:data:`RESUMABLE_OVERRIDES` collects the options declared ``resumable``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields

from neural_network.backend import BACKENDS
from neural_network.networks import MODELS, SURROGATES
from utils import cli
from utils.cli import OptionGroup, non_negative_float, refuse_misplaced

#: The perturbations of a trained agent's play (agent/robustness.py, docs/ROBUSTNESS.md).
PERTURBATIONS = ("sticky_actions", "obs_noise", "fgsm", "game_mode", "game_difficulty")
MAX_PIXEL = 255


def pixel_budget(text: str) -> int:
    """A whole number of pixel levels, 0..255 (the frames stay uint8)."""
    value = non_negative_float(text)
    if value != int(value) or value > MAX_PIXEL:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixel levels from 0 to {MAX_PIXEL} (frames "
                                         f"stay uint8), got {text}")
    return int(value)


# -- the groups: what each option is for, and the methods it applies to --------------------------------------------

RUN = OptionGroup("run", "what to run (every method)")
NETWORK = OptionGroup("network", "the network and its spiking neurons (every method)")
GAMES = OptionGroup("games", "how a game is played and evaluated (every method)")
LEARN = OptionGroup("learn", "the DQN training loop, with its saving, logging and tracking (--method learn; play "
                             "and robustness leave them unused)", methods=("learn",))
PLAY = OptionGroup("play", "a trained network's play, and the perturbations of it (--method play and robustness; "
                           "docs/ROBUSTNESS.md)", methods=("play", "robustness"),
                   why="it concerns the play of a trained network, not learning (learning plays the paper's games, "
                       "unperturbed; to continue a learning run: --resume RUN_FOLDER)")
ROBUSTNESS = OptionGroup("robustness", "a sweep over the levels of one perturbation (--method robustness; "
                                       "docs/ROBUSTNESS.md)", methods=("robustness",),
                         why="it sweeps the levels of one perturbation; --method play plays one setting: "
                             "--sticky_actions, --obs_noise, --fgsm_epsilon, --game_mode, --game_difficulty")
RUNTIME = OptionGroup("runtime", "where the run writes, and the hardware and kernels it runs on (every method)")
METHODS = ("learn", "play", "robustness")


@dataclass
class Config:
    # -- run ----------------------------------------------------------------------------------------------------------
    model: str = RUN("Dsqn", "the network", choices=MODELS)
    env_id: str = RUN("BreakoutNoFrameskip-v4", "an Atari <Game>NoFrameskip-v4 id, or its short name (Breakout)")
    method: str = RUN("learn", "learn: train a network; play: evaluate a saved one; robustness: play a saved one at "
                               "each level of a perturbation (docs/ROBUSTNESS.md)", choices=METHODS)
    seed: int = RUN(0, "seed of the networks' initialisation, the envs and every random stream", parse=cli.seed_int)
    double: bool = RUN(False, "Double DQN target: the online network picks a' = argmax Q(s'), the target network "
                              "values it")
    run_name: str | None = RUN(None, "the run folder's name (default: <model>_<game>_seed<seed>_<time>, or "
                                     "..._play_<time>); an existing name is never reused")
    # -- network ------------------------------------------------------------------------------------------------------
    T: int = NETWORK(64, "simulation time steps of the spiking networks (play: the checkpoint's T unless given)",
                     parse=cli.positive_int)
    tau: float = NETWORK(2.0, "membrane time constant of the LIF neurons (> 1)", parse=cli.greater_than_one)
    v_threshold: float = NETWORK(1.0, "firing threshold", parse=cli.positive_float)
    v_reset: float = NETWORK(0.0, "reset potential; -1 means soft reset (subtract the threshold)",
                             parse=cli.finite_float)
    surrogate_func: str = NETWORK("ATan", "surrogate gradient of the spike function", choices=SURROGATES)
    alpha: float = NETWORK(2.0, "sharpness of the surrogate gradient", parse=cli.positive_float)
    history_len: int = NETWORK(4, "frames per state (the frame stack)", parse=cli.positive_int)
    # -- games --------------------------------------------------------------------------------------------------------
    max_episode_step: int = GAMES(18_000, "time limit of a game in agent steps", parse=cli.positive_int)
    action_repeat: int = GAMES(4, "frames per agent step (max-and-skip); the ALE pipeline is built for 4",
                               parse=cli.positive_int)
    eval_episode_num: int = GAMES(30, "episodes per evaluation, and per play run", parse=cli.positive_int,
                                  resumable=True)
    eval_epsilon: float = GAMES(0.05, "epsilon of the epsilon-greedy policy during evaluation and play",
                                parse=cli.probability)
    # -- learn: the DQN loop ------------------------------------------------------------------------------------------
    timestep_num: int = LEARN(50_000_000, "agent steps of learning after the exploration phase (each step = "
                                          "action_repeat frames)", parse=cli.non_negative_int, resumable=True)
    replay_start_size: int = LEARN(50_000, "random-action exploration steps that fill the replay memory before "
                                           "learning", parse=cli.non_negative_int)
    replay_memory_size: int = LEARN(1_000_000, "capacity of the replay memory in transitions (about 7 KB each)",
                                    parse=cli.positive_int)
    minibatch_size: int = LEARN(32, "transitions per update", parse=cli.positive_int)
    update_freq: int = LEARN(4, "one update every this many learning steps", parse=cli.positive_int)
    target_net_update_freq: int = LEARN(10_000, "copy the online network to the target network every this many "
                                                "learning steps", parse=cli.positive_int)
    discount_factor: float = LEARN(0.99, "discount gamma of the Q-learning target", parse=cli.probability)
    learning_rate: float = LEARN(1e-4, "Adam learning rate", parse=cli.positive_float, resumable=True)
    init_epsilon: float = LEARN(1.0, "epsilon at learning step 0", parse=cli.probability)
    final_epsilon: float = LEARN(0.1, "epsilon after final_epsilon_frame learning steps", parse=cli.probability)
    final_epsilon_frame: int = LEARN(1_000_000, "learning steps over which epsilon falls linearly",
                                     parse=cli.non_negative_int)
    eval_freq: int = LEARN(250_000, "evaluate every this many learning steps, step 0 included (the last: see "
                                    "--final_eval)", parse=cli.positive_int)
    final_eval: str = LEARN("one_more_step", "the final evaluation (label timestep_num): one_more_step, the "
                                             "original's schedule: after one more learning step (timestep_num, "
                                             "with its update), skipped when step timestep_num - 1 ends an "
                                             "episode; at_budget: after exactly timestep_num steps, always",
                            choices=("one_more_step", "at_budget"))
    # -- learn: saving, logging, tracking, resuming -------------------------------------------------------------------
    checkpoint_freq: int | None = LEARN(None, "save the full training state every this many learning steps "
                                              "(default: at every evaluation)", parse=cli.positive_int,
                                        resumable=True)
    save_replay: bool = LEARN(False, "keep the replay memory as a memory-mapped file in the run folder, so that "
                                     "--resume continues bit for bit")
    log_freq: int = LEARN(1000, "write the training loss (mean since the last write), epsilon and steps/s to "
                                "TensorBoard every this many learning steps", parse=cli.positive_int, resumable=True)
    track: bool = LEARN(False, "also log the run to Weights & Biases (pip install -e \".[track]\"; WANDB_MODE=offline "
                               "logs without network, for a later `wandb sync`)", resumable=True)
    wandb_project: str = LEARN("dsqn-reproduction", "--track: the W&B project", resumable=True)
    wandb_entity: str | None = LEARN(None, "--track: the W&B entity (team or user; default: yours)", resumable=True)
    capture_video: bool = LEARN(False, "record training games as mp4 into the run folder's videos/train/ (every "
                                       "--video_freq-th game, game 0 first; pip install -e \".[video]\")",
                                resumable=True)
    video_freq: int = LEARN(100, "--capture_video: record every this many training games", parse=cli.positive_int,
                            resumable=True)
    resume: str | None = LEARN(None, "continue the run in this run folder from its last saved state")
    start_over: bool = LEARN(False, "with --resume: train again from step 0 in that folder, deleting its saved state "
                                    "(refused without it when the folder holds one that cannot be used)",
                             resumable=True)
    # -- play, and its perturbations (docs/ROBUSTNESS.md) -------------------------------------------------------------
    model_path: str | None = PLAY(None, "a checkpoint (.pkl) saved by run.py, or a run folder (its best.pkl)")
    use_video_recorder: bool = PLAY(False, "write an mp4 of every episode into the run folder's videos/")
    use_spike_monitor: bool = PLAY(False, "record firing rates, spikes and synaptic operations per greedy action of "
                                          "a spiking network")
    sticky_actions: float = PLAY(0.0, "the ALE's repeat_action_probability: at each emulator frame the previous "
                                      "action is kept with this probability (Machado et al. 2018: 0.25; the paper: "
                                      "0)", parse=cli.probability)
    game_mode: int | None = PLAY(None, "an ALE mode of the game, one of its available modes (default: the game's "
                                       "default)", parse=cli.non_negative_int)
    game_difficulty: int | None = PLAY(None, "an ALE difficulty of the game, one of its available difficulties "
                                             "(default: the game's default)", parse=cli.non_negative_int)
    obs_noise: float = PLAY(0.0, "std of Gaussian noise added to every 84x84 frame, in pixel levels (0-255); "
                                 "rounded and clipped back to uint8", parse=non_negative_float)
    fgsm_epsilon: int = PLAY(0, "FGSM budget in pixel levels (a whole number): the network sees x - epsilon * "
                                "sign(grad_x Q(x, a*)), a* its greedy action, clipped to 0-255", parse=pixel_budget)
    # -- robustness ---------------------------------------------------------------------------------------------------
    robustness: str | None = ROBUSTNESS(None, "the perturbation to sweep", choices=PERTURBATIONS)
    levels: list[float] | None = ROBUSTNESS(None, "its levels (default: per perturbation, docs/ROBUSTNESS.md)",
                                            parse=non_negative_float, nargs="+", metavar="LEVEL")
    # -- runtime ------------------------------------------------------------------------------------------------------
    output_dir: str = RUNTIME("runs", "the folder that receives the run folder (relative: to the repository)",
                              resumable=True)
    device: str = RUNTIME("auto", "auto: cuda if available, else cpu", choices=("auto", "cuda", "cpu"),
                          resumable=True)
    gpu: str | None = RUNTIME(None, "set CUDA_VISIBLE_DEVICES to this (default: leave it as the scheduler set it)",
                              resumable=True)
    backend: str = RUNTIME("auto", "neuron kernel: auto (SpikingJelly's choice), torch, cuda (alias cupy) or "
                                   "triton", choices=BACKENDS, resumable=True)
    compile: bool = RUNTIME(False, "torch.compile the networks (CUDA: with CUDA graphs); pays off on long runs",
                            resumable=True)
    cuda_graphs: bool = RUNTIME(True, "CUDA: act and update replayed as captured CUDA graphs (static input buffers "
                                      "filled from pinned memory without blocking, capturable Adam, no host sync); "
                                      "eager's numbers up to float rounding (bit for bit with --deterministic); a "
                                      "capture that fails is one warning and eager; --no-cuda_graphs: eager; off "
                                      "with --compile, no effect on the CPU", resumable=True)
    bf16: bool = RUNTIME(False, "spiking networks: forward passes of act and update in bfloat16 (torch.autocast); "
                                "CPU only (on CUDA SpikingJelly has no bf16 kernel but its slow PyTorch reference, "
                                "so it is refused). It changes the numbers: on untrained Dsqn (docs/benchmarks) it "
                                "moved Q by up to 17 %% (T=64) to 30 %% (T=8) of max |Q| and changed the spike count "
                                "of 47 %% (T=64) / 24 %% (T=8) of fc1's neurons, the greedy action kept on 64 frames")
    deterministic: bool = RUNTIME(False, "CUDA: deterministic algorithms (torch.use_deterministic_algorithms, "
                                         "CUBLAS_WORKSPACE_CONFIG=:4096:8), TF32 off for matmul and cuDNN and the "
                                         "same (capturable) Adam with and without graphs: graphs and eager give "
                                         "identical bits and a resumed run is bit-exact on the GPU too; slower. "
                                         "The CPU is deterministic without it (docs/GPU.md)", resumable=True)
    eval_envs: int | None = RUNTIME(None, "evaluation and play games played at once (one batched forward pass per "
                                          "step, each game from its own seed; the same scores for any number): "
                                          "default all of them; 1: one after the other", parse=cli.positive_int,
                                    resumable=True)
    eval_workers: int | None = RUNTIME(None, "processes that step the evaluation games' emulators (0: this "
                                             "process); default: on CUDA one per game up to the run's CPUs "
                                             "(OMP_NUM_THREADS, else the CPUs it may use) less one, on the CPU 0",
                                       parse=cli.non_negative_int, resumable=True)

    def env_kwargs(self) -> dict:
        """The game settings of :func:`environment.make_env` (and of ``environment.vector.evaluation_env``)."""
        return dict(max_episode_step=self.max_episode_step, history_len=self.history_len,
                    action_repeat=self.action_repeat)

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

    @property
    def checkpoint_every(self) -> int:
        return self.checkpoint_freq or self.eval_freq

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """A Config from a saved configuration (keys that are not options, such as the git commit, are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


#: The options that may differ when a run is continued with --resume (they do not change what is being learned,
#: or, like the learning rate and the budget, are the point of continuing differently): those declared resumable.
RESUMABLE_OVERRIDES = frozenset(f.name for f in fields(Config) if f.metadata["resumable"])


def check_methods(method: str, given) -> None:
    """Refuse (one line, UserError) an option typed for a method its group refuses: a play or robustness option with
    --method learn, a robustness option with --method play. The learn options are accepted and unused by play and
    robustness (their group gives no reason to refuse them)."""
    refuse_misplaced(Config, method, given)


def epsilon_at(timestep: int, init_epsilon: float, final_epsilon: float, final_epsilon_frame: int) -> float:
    """Linear epsilon schedule: ``init_epsilon`` at step 0, ``final_epsilon`` from ``final_epsilon_frame`` on."""
    if final_epsilon_frame <= 0 or timestep >= final_epsilon_frame:
        return final_epsilon
    return init_epsilon + (final_epsilon - init_epsilon) * timestep / final_epsilon_frame
