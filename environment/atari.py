"""Atari environment factory: the DeepMind / baselines preprocessing pipeline on gymnasium 1.x."""

from __future__ import annotations

from collections.abc import Callable

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation, RecordVideo, TimeLimit, TransformObservation

from .games import GAMES
from .wrappers import (
    ClipRewardEnv,
    EpisodicLifeEnv,
    FireResetEnv,
    GameReturn,
    MaxAndSkipEnv,
    NoopResetEnv,
    Uint8ArrayObservation,
    WarpFrame,
)

gym.register_envs(ale_py)
# No start-up banner on stderr (it would break the programs' one-line error messages); warnings still show.
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)

NOOP_MAX = 30
VIDEO_FPS = 60  # the raw ALE env steps one 60 Hz Atari frame at a time
_ALE_ENTRY_POINT = "ale_py.env:AtariEnv"


class UnknownEnvError(ValueError):
    """An env id that is not a registered ALE ``<Game>NoFrameskip-v4`` id."""

    def __init__(self, env_id):
        super().__init__(
            f"unknown env id {env_id!r}: expected a registered ALE '<Game>NoFrameskip-v4' id; "
            f"the paper's games are: {', '.join(GAMES)}"
        )
        self.env_id = env_id


def check_env_id(env_id) -> None:
    """Raise :class:`UnknownEnvError` unless ``env_id`` is a registered ALE NoFrameskip-v4 id.

    Cheap: only looks the id up in gymnasium's registry, no env is created.
    """
    spec = gym.registry.get(env_id) if isinstance(env_id, str) else None
    if spec is None or not env_id.endswith("NoFrameskip-v4") or spec.entry_point != _ALE_ENTRY_POINT:
        raise UnknownEnvError(env_id)


def full_env_id(name):
    """A game as a user may name it -> its env id: ``Breakout`` (or ``breakout``) -> ``BreakoutNoFrameskip-v4``;
    an id ending in NoFrameskip-v4, or anything else, is returned unchanged (check_env_id judges it)."""
    if not isinstance(name, str) or not name or name.endswith("NoFrameskip-v4"):
        return name
    known = {game.removesuffix("NoFrameskip-v4").lower(): game for game in GAMES}
    return known.get(name.lower(), f"{name}NoFrameskip-v4")


def action_count(env_id: str) -> int:
    """The number of actions of a game's minimal action set (what the Q-networks output)."""
    check_env_id(env_id)
    env = gym.make(env_id)
    try:
        return int(env.action_space.n)
    finally:
        env.close()


def make_env(
    env_id: str,
    *,
    training: bool,
    max_episode_step: int,
    history_len: int,
    action_repeat: int,
    seed: int | None = None,
    video_dir: str | None = None,
    episodic_life: bool | None = None,
    clip_rewards: bool | None = None,
    sticky_actions: float = 0.0,
    game_mode: int | None = None,
    game_difficulty: int | None = None,
    frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> gym.Env:
    """Build the DeepMind-preprocessed Atari env (baselines ``make_atari`` + ``wrap_deepmind``).

    Wrappers, innermost first: raw ``<Game>NoFrameskip-v4`` (frameskip 1, no sticky actions,
    minimal action set) [-> RecordVideo] -> NoopReset(30) -> MaxAndSkip(``action_repeat``) ->
    TimeLimit(``max_episode_step`` agent steps) -> GameReturn [-> EpisodicLife if training] ->
    FireReset (games with FIRE) -> WarpFrame(84x84 gray) [-> ClipReward if training] ->
    FrameStack(``history_len``). Observations are ``np.uint8`` arrays of shape
    ``(history_len, 84, 84)``; ``info`` is the ALE's (``lives``, ``episode_frame_number``,
    ``frame_number``).

    ``training=True``: a life loss returns ``terminated=True`` but the next ``reset()`` continues
    the same game; rewards are clipped to their sign. ``training=False`` (evaluation): raw game
    score, and ``terminated or truncated`` means the whole game is over.

    Time limits: gymnasium's own TimeLimit is not applied (``max_episode_steps=None``; the v4 ids
    register none) and ALE's ``max_num_frames_per_episode`` cap (108,000 frames for these ids) is
    disabled (set to 0), so the only limit is ours: ``truncated=True`` at agent step
    ``max_episode_step`` of a game. The no-op steps of EpisodicLife's reset and the two FireReset
    steps are agent steps too and count towards it, as in baselines.

    max_episode_step, history_len, action_repeat: required; the paper's values are run.py's defaults
    (``agent.config.Config.env_kwargs()``).

    seed: if given, the raw env is reset once with ``reset(seed=seed)`` here (seeding the ALE and
    the env's ``np_random`` that draws the no-op counts) and ``action_space.seed(seed)`` is
    called, so the first ``reset()`` without a seed and everything after it is deterministic.

    episodic_life, clip_rewards: override the EpisodicLife / ClipReward choice that ``training`` makes (the
    conversion baseline plays on the episodic-life env with raw rewards: ``training=False, episodic_life=True``).

    video_dir: evaluation env only (``ValueError`` otherwise). Wraps the raw env (innermost, all
    frames at 60 fps) in RecordVideo recording every episode (= every game) as an mp4 into
    ``video_dir``; a video is written on the next ``reset()`` or on ``close()``.

    Perturbed play (agent/robustness.py, docs/ROBUSTNESS.md): ``sticky_actions`` is the raw env's
    ``repeat_action_probability`` (the ALE keeps its previous action at each emulator frame with this probability;
    0 = the paper's setting); ``game_mode`` / ``game_difficulty`` select another ALE mode / difficulty (None: the
    game's default; an unavailable one is a RuntimeError of the ALE); ``frame_transform`` maps every 84x84 uint8
    frame before it enters the frame stack (e.g. noise) and must return one of the same shape and dtype.
    """
    check_env_id(env_id)
    if max_episode_step < 1 or history_len < 1 or action_repeat < 1:
        raise ValueError(f"need max_episode_step, history_len and action_repeat >= 1, got {max_episode_step}, "
                         f"{history_len}, {action_repeat}")
    if video_dir is not None and training:
        raise ValueError("video_dir is only supported for the evaluation env (training=False)")

    env = gym.make(
        env_id,
        max_episode_steps=None,
        max_num_frames_per_episode=0,
        repeat_action_probability=sticky_actions,
        mode=game_mode,
        difficulty=game_difficulty,
        render_mode="rgb_array" if video_dir is not None else None,
    )
    if seed is not None:
        env.reset(seed=seed)
    if video_dir is not None:
        env = RecordVideo(
            env, video_dir, episode_trigger=lambda episode: True, fps=VIDEO_FPS, name_prefix=env_id
        )
    env = NoopResetEnv(env, noop_max=NOOP_MAX)
    env = MaxAndSkipEnv(env, skip=action_repeat)
    env = TimeLimit(env, max_episode_steps=max_episode_step)
    env = GameReturn(env)
    episodic_life = training if episodic_life is None else episodic_life
    clip_rewards = training if clip_rewards is None else clip_rewards
    if episodic_life:
        env = EpisodicLifeEnv(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = WarpFrame(env)
    if frame_transform is not None:
        env = TransformObservation(env, frame_transform, env.observation_space)
    if clip_rewards:
        env = ClipRewardEnv(env)
    env = FrameStackObservation(env, history_len, padding_type="reset")
    env = Uint8ArrayObservation(env)
    if seed is not None:
        env.action_space.seed(seed)
    return env
