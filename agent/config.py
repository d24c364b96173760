"""Every option of a run in one place, with the paper's defaults (docs/METHOD.md).

Each field is also run.py's command-line option of the same name: its default, help text and value check are
written once, here (``utils.cli.option``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields

from neural_network.backend import BACKENDS
from neural_network.networks import MODELS, SURROGATES
from utils import cli
from utils.cli import non_negative_float, option

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


#: Options that may differ when a run is continued with --resume (they do not change what is being learned,
#: or, like the learning rate and the budget, are the point of continuing differently).
RESUMABLE_OVERRIDES = frozenset({
    "timestep_num", "learning_rate", "eval_episode_num", "checkpoint_freq", "log_freq", "device", "gpu", "backend",
    "compile", "output_dir", "track", "wandb_project", "wandb_entity", "capture_video", "video_freq",
    "eval_envs", "eval_workers", "cuda_graphs", "deterministic", "start_over",
})


@dataclass
class Config:
    # -- what to run ------------------------------------------------------------------------------------------------
    model: str = option("Dsqn", "the network", choices=MODELS)
    env_id: str = option("BreakoutNoFrameskip-v4", "an Atari <Game>NoFrameskip-v4 id, or its short name (Breakout)")
    method: str = option("learn", "learn: train a network; play: evaluate a saved one; robustness: play a saved one "
                                  "at each level of a perturbation (docs/ROBUSTNESS.md)",
                         choices=("learn", "play", "robustness"))
    seed: int = option(0, "seed of the networks' initialisation, the envs and every random stream", parse=cli.seed_int)
    double: bool = option(False, "Double DQN target: the online network picks a' = argmax Q(s'), the target "
                                 "network values it")
    model_path: str | None = option(None, "play: a checkpoint (.pkl) saved by run.py, or a run folder (its best.pkl)")
    use_video_recorder: bool = option(False, "play: write an mp4 of every episode into the run folder's videos/")
    # -- experiment tracking (learn; utils/tracking.py) --
    track: bool = option(False, "learn: also log the run to Weights & Biases (pip install -e \".[track]\"; "
                                "WANDB_MODE=offline logs without network, for a later `wandb sync`)")
    wandb_project: str = option("dsqn-reproduction", "--track: the W&B project")
    wandb_entity: str | None = option(None, "--track: the W&B entity (team or user; default: yours)")
    capture_video: bool = option(False, "learn: record training games as mp4 into the run folder's videos/train/ "
                                        "(every --video_freq-th game, game 0 first; pip install -e \".[video]\")")
    video_freq: int = option(100, "--capture_video: record every this many training games", parse=cli.positive_int)
    use_spike_monitor: bool = option(False, "play: record firing rates, spikes and synaptic operations per greedy "
                                            "action of a spiking network")
    # -- perturbed play: generalisation and robustness (play, robustness; docs/ROBUSTNESS.md) ------------------------
    sticky_actions: float = option(0.0, "play: the ALE's repeat_action_probability: at each emulator frame "
                                        "the previous action is kept with this probability (Machado et al. 2018: "
                                        "0.25; the paper: 0)", parse=cli.probability)
    game_mode: int | None = option(None, "play: an ALE mode of the game, one of its available modes "
                                         "(default: the game's default)", parse=cli.non_negative_int)
    game_difficulty: int | None = option(None, "play: an ALE difficulty of the game, one of its available "
                                               "difficulties (default: the game's default)",
                                         parse=cli.non_negative_int)
    obs_noise: float = option(0.0, "play: std of Gaussian noise added to every 84x84 frame, in pixel levels "
                                   "(0-255); rounded and clipped back to uint8", parse=non_negative_float)
    fgsm_epsilon: int = option(0, "play: FGSM budget in pixel levels (a whole number): the network sees x - "
                                  "epsilon * sign(grad_x Q(x, a*)), a* its greedy action, clipped to 0-255",
                               parse=pixel_budget)
    robustness: str | None = option(None, "--method robustness: the perturbation to sweep", choices=PERTURBATIONS)
    levels: list[float] | None = option(None, "--method robustness: its levels (default: per perturbation, "
                                              "docs/ROBUSTNESS.md)", parse=non_negative_float, nargs="+",
                                        metavar="LEVEL")
    # -- where, and on what -------------------------------------------------------------------------------------------
    output_dir: str = option("runs", "the folder that receives the run folder (relative: to the repository)")
    run_name: str | None = option(None, "the run folder's name (default: <model>_<game>_seed<seed>_<time>, "
                                        "or ..._play_<time>); an existing name is never reused")
    resume: str | None = option(None, "continue the run in this run folder from its last saved state")
    start_over: bool = option(False, "with --resume: train again from step 0 in that folder, deleting its saved "
                                     "state (refused without it when the folder holds one that cannot be used)")
    device: str = option("auto", "auto: cuda if available, else cpu", choices=("auto", "cuda", "cpu"))
    gpu: str | None = option(None, "set CUDA_VISIBLE_DEVICES to this (default: leave it as the scheduler set it)")
    backend: str = option("auto", "neuron kernel: auto (SpikingJelly's choice), torch, cuda (alias cupy) or triton",
                          choices=BACKENDS)
    compile: bool = option(False, "torch.compile the networks (CUDA: with CUDA graphs); pays off on long runs")
    cuda_graphs: bool = option(True, "CUDA: act and update replayed as captured CUDA graphs (static input buffers "
                                     "filled from pinned memory without blocking, capturable Adam, no host sync); "
                                     "eager's numbers up to float rounding (bit for bit with --deterministic); a "
                                     "capture that fails is one warning and eager; --no-cuda_graphs: eager; off "
                                     "with --compile, no effect on the CPU")
    bf16: bool = option(False, "spiking networks: forward passes of act and update in bfloat16 (torch.autocast); "
                               "CPU only (on CUDA SpikingJelly has no bf16 kernel but its slow PyTorch reference, "
                               "so it is refused). It changes the numbers: on untrained Dsqn (docs/benchmarks) it "
                               "moved Q by up to 17 %% (T=64) to 30 %% (T=8) of max |Q| and changed the spike count "
                               "of 47 %% (T=64) / 24 %% (T=8) of fc1's neurons, the greedy action kept on 64 frames")
    deterministic: bool = option(False, "CUDA: deterministic algorithms (torch.use_deterministic_algorithms, "
                                        "CUBLAS_WORKSPACE_CONFIG=:4096:8), TF32 off for matmul and cuDNN and the "
                                        "same (capturable) Adam with and without graphs: graphs and eager give "
                                        "identical bits and a resumed run is bit-exact on the GPU too; slower. "
                                        "The CPU is deterministic without it (docs/GPU.md)")
    # -- saving and logging -----------------------------------------------------------------------------------------
    checkpoint_freq: int | None = option(None, "save the full training state every this many learning steps "
                                               "(default: at every evaluation)", parse=cli.positive_int)
    save_replay: bool = option(False, "keep the replay memory as a memory-mapped file in the run folder, so that "
                                      "--resume continues bit for bit")
    log_freq: int = option(1000, "write the training loss (mean since the last write), epsilon and steps/s to "
                                 "TensorBoard every this many learning steps", parse=cli.positive_int)
    # -- the DQN training loop --------------------------------------------------------------------------------------
    timestep_num: int = option(50_000_000, "agent steps of learning after the exploration phase (each step = "
                                           "action_repeat frames)", parse=cli.non_negative_int)
    eval_freq: int = option(250_000, "evaluate every this many learning steps, step 0 included (the last: see "
                                     "--final_eval)", parse=cli.positive_int)
    final_eval: str = option("one_more_step", "the final evaluation (label timestep_num): one_more_step, the "
                                              "original's schedule: after one more learning step (timestep_num, "
                                              "with its update), skipped when step timestep_num - 1 ends an "
                                              "episode; at_budget: after exactly timestep_num steps, always",
                             choices=("one_more_step", "at_budget"))
    eval_episode_num: int = option(30, "episodes per evaluation, and per play run", parse=cli.positive_int)
    eval_envs: int | None = option(None, "evaluation and play games played at once (one batched forward pass per "
                                         "step, each game from its own seed; the same scores for any number): "
                                         "default all of them; 1: one after the other", parse=cli.positive_int)
    eval_workers: int | None = option(None, "processes that step the evaluation games' emulators (0: this "
                                            "process); default: on CUDA one per game up to the run's CPUs "
                                            "(OMP_NUM_THREADS, else the CPUs it may use) less one, on the CPU 0",
                                      parse=cli.non_negative_int)
    eval_epsilon: float = option(0.05, "epsilon of the epsilon-greedy policy during evaluation and play",
                                 parse=cli.probability)
    max_episode_step: int = option(18_000, "time limit of a game in agent steps", parse=cli.positive_int)
    minibatch_size: int = option(32, "transitions per update", parse=cli.positive_int)
    replay_memory_size: int = option(1_000_000, "capacity of the replay memory in transitions (about 7 KB each)",
                                     parse=cli.positive_int)
    history_len: int = option(4, "frames per state (the frame stack)", parse=cli.positive_int)
    target_net_update_freq: int = option(10_000, "copy the online network to the target network every this many "
                                                 "learning steps", parse=cli.positive_int)
    discount_factor: float = option(0.99, "discount gamma of the Q-learning target", parse=cli.probability)
    action_repeat: int = option(4, "frames per agent step (max-and-skip); the ALE pipeline is built for 4",
                                parse=cli.positive_int)
    update_freq: int = option(4, "one update every this many learning steps", parse=cli.positive_int)
    learning_rate: float = option(1e-4, "Adam learning rate", parse=cli.positive_float)
    init_epsilon: float = option(1.0, "epsilon at learning step 0", parse=cli.probability)
    final_epsilon: float = option(0.1, "epsilon after final_epsilon_frame learning steps", parse=cli.probability)
    final_epsilon_frame: int = option(1_000_000, "learning steps over which epsilon falls linearly",
                                      parse=cli.non_negative_int)
    replay_start_size: int = option(50_000, "random-action exploration steps that fill the replay memory before "
                                            "learning", parse=cli.non_negative_int)
    # -- spiking networks -------------------------------------------------------------------------------------------
    T: int = option(64, "simulation time steps of the spiking networks (play: the checkpoint's T unless given)",
                    parse=cli.positive_int)
    tau: float = option(2.0, "membrane time constant of the LIF neurons (> 1)", parse=cli.greater_than_one)
    v_threshold: float = option(1.0, "firing threshold", parse=cli.positive_float)
    v_reset: float = option(0.0, "reset potential; -1 means soft reset (subtract the threshold)",
                            parse=cli.finite_float)
    surrogate_func: str = option("ATan", "surrogate gradient of the spike function", choices=SURROGATES)
    alpha: float = option(2.0, "sharpness of the surrogate gradient", parse=cli.positive_float)

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


def epsilon_at(timestep: int, init_epsilon: float, final_epsilon: float, final_epsilon_frame: int) -> float:
    """Linear epsilon schedule: ``init_epsilon`` at step 0, ``final_epsilon`` from ``final_epsilon_frame`` on."""
    if final_epsilon_frame <= 0 or timestep >= final_epsilon_frame:
        return final_epsilon
    return init_epsilon + (final_epsilon - init_epsilon) * timestep / final_epsilon_frame
