"""Tests for environment/: DeepMind / baselines Atari preprocessing on real ALE games."""

import cv2
import gymnasium as gym
import numpy as np
import pytest
from conftest import paper_env

from environment import GAMES, UnknownEnvError, check_env_id, make_env, warp_frame
from environment.wrappers import EpisodicLifeEnv, FireResetEnv, MaxAndSkipEnv, NoopResetEnv

BREAKOUT = "BreakoutNoFrameskip-v4"
PONG = "PongNoFrameskip-v4"
NO_FIRE_GAME = "TutankhamNoFrameskip-v4"  # CrazyClimber and Tutankham are the two of GAMES without FIRE


def raw_env(env_id, seed=0):
    env = gym.make(env_id, max_episode_steps=None, max_num_frames_per_episode=0)
    env.reset(seed=seed)
    return env


def wrapper_types(env):
    types = []
    while isinstance(env, gym.Wrapper):
        types.append(type(env))
        env = env.env
    return types


def by_hand(frame_a, frame_b):
    """Baselines' frame: max of two RGB frames, then gray, then 84x84 INTER_AREA resize."""
    gray = cv2.cvtColor(np.maximum(frame_a, frame_b), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (84, 84), interpolation=cv2.INTER_AREA)


class Spy(gym.Wrapper):
    """Records the actions, RGB frames and rewards of every raw step."""

    def __init__(self, env):
        super().__init__(env)
        self.actions, self.frames, self.rewards = [], [], []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.actions.append(int(action))
        self.frames.append(obs.copy())
        self.rewards.append(float(reward))
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("env_id", [BREAKOUT, PONG])
def test_observation_is_uint8_stack(env_id, training):
    env = make_env(env_id, training=training, seed=1, **paper_env())
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, info = env.reset()
    assert type(obs) is np.ndarray and obs.dtype == np.uint8 and obs.shape == (4, 84, 84)
    assert all((obs[i] == obs[0]).all() for i in range(4))  # reset padding repeats the first frame
    assert "lives" in info
    previous = obs
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert type(obs) is np.ndarray and obs.dtype == np.uint8 and obs.shape == (4, 84, 84)
        assert (obs[:3] == previous[1:]).all()  # rolling stack, newest frame last
        assert isinstance(reward, float) and "lives" in info
        previous = obs
    env.close()


def test_history_len_and_spaces():
    env = make_env(PONG, training=False, **paper_env(history_len=2))
    assert env.reset()[0].shape == (2, 84, 84)
    assert env.action_space == gym.spaces.Discrete(6)


def test_warp_frame_matches_cv2_by_hand():
    env = raw_env(BREAKOUT)
    frames = [env.step(a)[0].copy() for a in (1, 1, 3, 3, 3, 3, 3, 3)]
    a, b = frames[-2], frames[-1]
    assert not (a == b).all()  # the max actually matters
    warped = warp_frame(np.maximum(a, b))
    assert warped.dtype == np.uint8 and warped.shape == (84, 84)
    np.testing.assert_array_equal(warped, by_hand(a, b))
    # the order matters: gray-then-max or a different interpolation give other frames
    linear = cv2.resize(cv2.cvtColor(np.maximum(a, b), cv2.COLOR_RGB2GRAY), (84, 84))
    assert not (warped == linear).all()


def test_max_and_skip_maxes_last_two_raw_frames_and_sums_rewards():
    spy = Spy(raw_env(PONG))
    env = MaxAndSkipEnv(spy, skip=4)
    env.action_space.seed(0)
    total = 0.0
    for step in range(1, 301):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert len(spy.actions) == 4 * step and len(set(spy.actions[-4:])) == 1
        np.testing.assert_array_equal(obs, np.maximum(spy.frames[-2], spy.frames[-1]))
        assert reward == sum(spy.rewards[-4:])
        total += abs(reward)
        assert not (terminated or truncated)
    assert total > 0  # some points were scored, so reward summing was exercised


def test_eval_env_equals_baselines_replay_on_raw_env():
    """End to end on Breakout: replay noops, FIRE, action 2 and 4x skips on a raw env by hand."""
    env = make_env(BREAKOUT, training=False, seed=5, **paper_env())
    obs, info = env.reset()
    noops = info["episode_frame_number"] - 8  # noops, then FIRE and action 2, 4 frames each
    assert 1 <= noops <= 30

    raw = raw_env(BREAKOUT, seed=5)
    for _ in range(noops):
        raw.step(0)
    for action in (1, 2):
        frames = [raw.step(action)[0].copy() for _ in range(4)]
    expected = np.stack([by_hand(frames[2], frames[3])] * 4)
    np.testing.assert_array_equal(obs, expected)

    rng = np.random.default_rng(0)
    for _ in range(60):
        action = int(rng.integers(env.action_space.n))
        obs, reward, *_ = env.step(action)
        steps = [raw.step(action) for _ in range(4)]
        expected = np.concatenate([expected[1:], by_hand(steps[2][0], steps[3][0])[None]])
        np.testing.assert_array_equal(obs, expected)
        assert reward == sum(s[1] for s in steps)


def test_noop_reset_draws_1_to_30_noops_from_env_rng():
    spy = Spy(raw_env(NO_FIRE_GAME, seed=0))
    env = NoopResetEnv(spy, noop_max=30)
    counts = []
    for _ in range(15):
        spy.actions.clear()
        _, info = env.reset()
        counts.append(len(spy.actions))
        assert set(spy.actions) == {0}
        assert info["episode_frame_number"] == counts[-1]  # the game was really reset first
    assert all(1 <= c <= 30 for c in counts) and len(set(counts)) > 3

    # the same through make_env (no FIRE: the frame number after reset is the no-op count),
    # unaffected by global numpy seeding
    env = make_env(NO_FIRE_GAME, training=False, seed=0, **paper_env())
    np.random.seed(0)
    counts = [env.reset()[1]["episode_frame_number"] for _ in range(10)]
    assert all(1 <= c <= 30 for c in counts) and len(set(counts)) > 3
    np.random.seed(1)
    env = make_env(NO_FIRE_GAME, training=False, seed=0, **paper_env())
    assert [env.reset()[1]["episode_frame_number"] for _ in range(10)] == counts


def test_fire_reset_only_for_games_with_fire():
    breakout = make_env(BREAKOUT, training=False, seed=0, **paper_env())
    assert FireResetEnv in wrapper_types(breakout)
    tutankham = make_env(NO_FIRE_GAME, training=False, seed=0, **paper_env())
    assert "FIRE" not in tutankham.unwrapped.get_action_meanings()
    assert FireResetEnv not in wrapper_types(tutankham)
    assert 1 <= tutankham.reset()[1]["episode_frame_number"] <= 30

    # Breakout: 2 extra agent steps (8 frames) after the no-ops launch the ball, so doing
    # nothing loses a life; without FIRE the ball never comes and no life is lost.
    _, info = breakout.reset()
    assert 9 <= info["episode_frame_number"] <= 38
    for _ in range(100):
        _, _, _, _, info = breakout.step(0)
        if info["lives"] < 5:
            break
    assert info["lives"] == 4
    raw = raw_env(BREAKOUT)
    for _ in range(400 + 30):
        _, _, _, _, raw_info = raw.step(0)
    assert raw_info["lives"] == 5


def test_episodic_life_on_breakout():
    env = make_env(BREAKOUT, training=True, seed=0, **paper_env())
    assert EpisodicLifeEnv in wrapper_types(env)
    ale = env.unwrapped.ale
    _, info = env.reset()
    assert info["lives"] == 5
    for lives_left in (4, 3, 2, 1):
        for _ in range(500):
            _, _, terminated, truncated, info = env.step(0)
            if terminated or truncated:
                break
        assert terminated and not truncated
        assert info["lives"] == lives_left and not ale.game_over()
        frame = info["episode_frame_number"]
        _, info = env.reset()  # not a real reset: one no-op step, then FIRE and action 2
        assert info["lives"] == lives_left and ale.lives() == lives_left
        assert info["episode_frame_number"] == frame + 12
    for _ in range(500):
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    assert terminated and info["lives"] == 0 and ale.game_over()
    _, info = env.reset()  # the game is really over: real reset
    assert info["lives"] == 5 and 9 <= info["episode_frame_number"] <= 38


def test_truncation_makes_next_training_reset_real():
    env = make_env(BREAKOUT, training=True, seed=0, **paper_env(max_episode_step=10))
    env.reset()
    for step in range(1, 9):  # the 2 FireReset steps count: truncation at the 8th step here
        _, _, terminated, truncated, info = env.step(0)
        assert not terminated and truncated == (step == 8)
    assert info["lives"] == 5 and info["episode_frame_number"] > 38
    frame_number = info["frame_number"]  # ALE's total frame count, not reset by a game reset
    _, info = env.reset()
    assert info["lives"] == 5 and 9 <= info["episode_frame_number"] <= 38
    # a direct real reset: no no-op step was taken before it
    assert info["frame_number"] - frame_number == info["episode_frame_number"]


def test_eval_env_plays_whole_game_with_raw_rewards():
    env = make_env(BREAKOUT, training=False, seed=0, **paper_env())
    assert EpisodicLifeEnv not in wrapper_types(env)
    env.reset()
    lives_seen = set()
    for _ in range(2000):  # keep pressing FIRE (no FireReset between lives here), never move
        _, _, terminated, truncated, info = env.step(1)
        lives_seen.add(info["lives"])
        if terminated or truncated:
            break
    assert terminated and env.unwrapped.ale.game_over() and info["lives"] == 0
    assert {0, 1, 2, 3, 4} <= lives_seen  # the game went on through every life loss

    # same seed and actions: training reward == sign(eval reward) until the first life loss
    train = make_env("SpaceInvadersNoFrameskip-v4", training=True, seed=3, **paper_env())
    evaluate = make_env("SpaceInvadersNoFrameskip-v4", training=False, seed=3, **paper_env())
    train_obs, _ = train.reset()
    eval_obs, _ = evaluate.reset()
    np.testing.assert_array_equal(train_obs, eval_obs)
    rewards = []
    for _ in range(1000):
        action = train.action_space.sample()
        assert evaluate.action_space.sample() == action
        train_obs, r_train, terminated, _, _ = train.step(action)
        eval_obs, r_eval, eval_terminated, _, _ = evaluate.step(action)
        np.testing.assert_array_equal(train_obs, eval_obs)
        assert r_train == np.sign(r_eval)
        rewards.append(r_eval)
        if terminated:
            break
    assert terminated and not eval_terminated  # life lost: only the training episode ends
    assert max(rewards) > 1


@pytest.mark.parametrize("env_id, agent_steps", [(NO_FIRE_GAME, 50), (BREAKOUT, 48)])
def test_time_limit_truncates_at_max_episode_step(env_id, agent_steps):
    # agent steps = MaxAndSkip steps; on Breakout the 2 FireReset steps are 2 of the 50
    env = make_env(env_id, training=False, seed=0, **paper_env(max_episode_step=50))
    for _ in range(2):
        env.reset()
        for step in range(1, agent_steps + 1):
            _, _, terminated, truncated, _ = env.step(0)
            assert not terminated and truncated == (step == agent_steps)


def test_same_seed_same_trajectory_different_seed_different_noops():
    def rollout(seed):
        env = make_env(PONG, training=True, seed=seed, **paper_env())
        frames = [env.reset()[1]["episode_frame_number"]]  # a first game, then a second one
        observations, rewards = [env.reset()[0]], []
        for _ in range(40):
            obs, reward, *_ = env.step(env.action_space.sample())
            observations.append(obs)
            rewards.append(reward)
        return frames, np.stack(observations), rewards

    frames_a, obs_a, rewards_a = rollout(11)
    frames_b, obs_b, rewards_b = rollout(11)
    assert frames_a == frames_b
    np.testing.assert_array_equal(obs_a, obs_b)
    assert rewards_a == rewards_b

    def noop_counts(seed):
        env = make_env(NO_FIRE_GAME, training=False, seed=seed, **paper_env())
        return [env.reset()[1]["episode_frame_number"] for _ in range(3)]

    assert noop_counts(0) == [22, 1, 1]  # verified values for this gymnasium / ale-py
    assert noop_counts(1) != noop_counts(0)
    assert noop_counts(2) != noop_counts(1)


@pytest.mark.parametrize(
    "env_id", ["FooNoFrameskip-v4", "CartPole-v1", "ALE/Breakout-v5", "Breakout-v4", "BreakoutNoFrameskip-v0", None]
)
def test_unknown_env_id(env_id):
    for call in (lambda: check_env_id(env_id), lambda: make_env(env_id, training=False, **paper_env())):
        with pytest.raises(UnknownEnvError) as error:
            call()
        message = str(error.value)
        assert isinstance(error.value, ValueError)
        assert "\n" not in message and repr(env_id) in message
        assert all(game in message for game in GAMES)


def test_known_ids_accepted():
    assert len(GAMES) == 17 and len(set(GAMES)) == 17
    assert GAMES[3] == BREAKOUT and GAMES[10] == PONG
    for env_id in GAMES + ("SeaquestNoFrameskip-v4",):
        assert check_env_id(env_id) is None


@pytest.mark.slow
def test_all_games_construct_reset_and_step():
    for env_id in GAMES:
        for training in (True, False):
            env = make_env(env_id, training=training, seed=0, **paper_env())
            obs, info = env.reset()
            assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and "lives" in info
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert obs.shape == (4, 84, 84) and not (terminated or truncated)
            env.close()


def test_video_dir_writes_mp4(tmp_path):
    video_dir = tmp_path / "videos"
    env = make_env(PONG, training=False, seed=0, video_dir=str(video_dir), **paper_env(max_episode_step=30))
    env.reset()
    truncated = False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
    env.close()
    videos = list(video_dir.glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    with pytest.raises(ValueError):
        make_env(PONG, training=True, video_dir=str(video_dir), **paper_env())
