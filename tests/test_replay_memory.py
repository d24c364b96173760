"""Tests for replay_memory.ReplayMemory (frames stored once, stacks rebuilt at sample time)."""

import time
from collections import namedtuple

import numpy as np
import pytest
import torch

from replay_memory import Batch, ReplayMemory, ReplayMemoryTooLargeError
from replay_memory import replay_memory as rm_module

H = 4
SHAPE = (84, 84)
Record = namedtuple("Record", "state action reward done next_state")


def make_frame(episode, step):
    """Distinct 84x84 frame for (episode, step); step may be negative (pre-episode frames)."""
    img = np.full(SHAPE, (step + 1) % 256, dtype=np.uint8)
    img[0, 0] = episode % 256
    img[0, 1] = (episode // 256) % 256
    img[0, 2] = step % 256
    img[0, 3] = (step // 256) % 256
    return img


def episode_stacks(episode, length, start_mode):
    """Env-like stacks s_0 .. s_length of one episode, oldest frame first.

    repeat:   [f0,f0,f0,f0], [f0,f0,f0,f1], ...   (baselines reset semantics)
    distinct: [p-3,p-2,p-1,f0], [p-2,p-1,f0,f1], ... (episode begun with a non-repeated stack)
    partial:  [p,p,q,f0], ...                       (leading run of 2 repeated frames)
    """
    frames = [make_frame(episode, s) for s in range(length + 1)]
    if start_mode == "repeat":
        prefix = [frames[0]] * (H - 1)
    elif start_mode == "distinct":
        prefix = [make_frame(episode, -k) for k in range(H - 1, 0, -1)]
    elif start_mode == "partial":
        p, q = make_frame(episode, -2), make_frame(episode, -1)
        prefix = ([p] * (H - 1) + [q])[-(H - 1):] if H > 1 else []
    else:
        raise ValueError(start_mode)
    seq = prefix + frames
    return [np.stack(seq[k:k + H]) for k in range(length + 1)]


def feed(memory, lengths, start_modes=("repeat",), rng=None, cut_prob=0.0):
    """Append episodes of the given lengths; return one Record per append (index = action).

    With ``cut_prob`` an episode's last transition has done=False (caller moved on without
    a terminal flag): the memory must detect the discontinuity by itself.
    """
    rng = rng or np.random.default_rng(0)
    records = []
    for ep, length in enumerate(lengths):
        mode = start_modes[int(rng.integers(len(start_modes)))]
        stacks = episode_stacks(ep, length, mode)
        cut = rng.random() < cut_prob
        for k in range(length):
            n = len(records)
            done = (k == length - 1) and not cut
            reward = float(rng.choice([-1.0, 0.0, 1.0]))
            memory.append(stacks[k], n, reward, done, stacks[k + 1])
            records.append(Record(stacks[k], n, reward, done, stacks[k + 1]))
    return records


def valid_numbers(memory):
    return np.arange(memory._first_valid, memory._num_appended)


def check_all_sampleable(memory, records):
    """Every sampleable transition rebuilds exactly what was appended."""
    nums = valid_numbers(memory)
    assert len(nums) == len(memory)
    assert len(memory) <= memory.capacity
    assert nums[0] >= len(records) - memory.capacity
    states, actions, rewards, next_states, dones = memory._gather(nums)
    for i, n in enumerate(nums):
        rec = records[n]
        assert actions[i] == n
        np.testing.assert_array_equal(states[i], rec.state, err_msg=f"state of transition {n}")
        np.testing.assert_array_equal(next_states[i], rec.next_state, err_msg=f"next state of {n}")
        assert rewards[i] == rec.reward
        assert bool(dones[i]) == rec.done


def check_samples(memory, records, rounds=20):
    """Samples through the public API match the appended records and cover all of them."""
    nums = set(valid_numbers(memory).tolist())
    seen = set()
    for _ in range(rounds):
        batch = memory.sample(len(memory))
        for i, n in enumerate(batch.actions.tolist()):
            assert n in nums, f"sampled transition {n} which is not sampleable"
            rec = records[n]
            assert torch.equal(batch.states[i], torch.from_numpy(rec.state))
            assert torch.equal(batch.next_states[i], torch.from_numpy(rec.next_state))
            assert batch.rewards[i].item() == rec.reward
            assert batch.dones[i].item() == (1.0 if rec.done else 0.0)
            seen.add(n)
    assert seen == nums


def test_single_episode_starts_with_repeated_frame():
    mem = ReplayMemory(capacity=100, history_len=H, seed=0)
    records = feed(mem, [6])
    assert len(mem) == 6
    check_all_sampleable(mem, records)
    # Frames stored once: 1 start frame + 1 per transition.
    assert mem._num_frames == 7
    states, _, _, next_states, dones = mem._gather(np.arange(6))
    f0 = make_frame(0, 0)
    for k in range(H):
        np.testing.assert_array_equal(states[0, k], f0)
    np.testing.assert_array_equal(next_states[0, :3], np.stack([f0] * 3))
    np.testing.assert_array_equal(next_states[0, 3], make_frame(0, 1))
    assert dones.tolist() == [False] * 5 + [True]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_episodes_no_wrap(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, size=15).tolist()  # many shorter than history_len
    assert any(length < H for length in lengths)
    mem = ReplayMemory(capacity=1000, history_len=H, seed=seed)
    records = feed(mem, lengths, rng=rng)
    assert len(mem) == sum(lengths)
    check_all_sampleable(mem, records)
    check_samples(mem, records, rounds=10)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_wraparound_capacity_50_after_237_appends(seed):
    rng = np.random.default_rng(100 + seed)
    lengths = []
    while sum(lengths) < 237:
        lengths.append(int(rng.integers(1, 30)))
    lengths[-1] -= sum(lengths) - 237
    if lengths[-1] == 0:
        lengths.pop()
    assert sum(lengths) == 237
    mem = ReplayMemory(capacity=50, history_len=H, seed=seed, frame_headroom=0.2)
    records = feed(mem, lengths, start_modes=("repeat", "distinct", "partial"), rng=rng, cut_prob=0.2)
    assert mem._num_appended == 237
    assert 0 < len(mem) <= 50
    check_all_sampleable(mem, records)
    check_samples(mem, records)


def test_wraparound_keeps_full_capacity_for_long_episodes():
    # 237 appends into capacity 50 with episodes of >= 20 steps: the frame headroom suffices,
    # so exactly the newest 50 transitions remain sampleable, spanning the wrap point.
    mem = ReplayMemory(capacity=50, history_len=H, seed=0, frame_headroom=0.1)
    records = feed(mem, [40, 25, 60, 33, 20, 59])
    assert len(records) == 237
    assert len(mem) == 50
    assert valid_numbers(mem).tolist() == list(range(187, 237))
    check_all_sampleable(mem, records)
    check_samples(mem, records)


def test_frame_ring_overflow_drops_oldest_transitions_but_stays_exact():
    # One-step episodes begun with non-repeated stacks need 5 frames per transition;
    # the frame ring (about 56 rows) then limits how many transitions remain sampleable.
    mem = ReplayMemory(capacity=50, history_len=H, seed=0, frame_headroom=0.0)
    records = feed(mem, [1] * 120, start_modes=("distinct",))
    assert 0 < len(mem) < 50
    assert mem._num_frame_rows == 50 + H + 1
    assert len(mem) == mem._num_frame_rows // (H + 1)
    check_all_sampleable(mem, records)
    check_samples(mem, records)


def test_discontinuity_without_done_is_a_new_episode():
    mem = ReplayMemory(capacity=100, history_len=H, seed=0)
    a = episode_stacks(0, 5, "repeat")
    b = episode_stacks(1, 5, "distinct")
    records = []
    for k in range(3):  # episode 0 abandoned without done=True
        mem.append(a[k], len(records), 0.0, False, a[k + 1])
        records.append(Record(a[k], len(records), 0.0, False, a[k + 1]))
    for k in range(5):
        done = k == 4
        mem.append(b[k], len(records), 1.0, done, b[k + 1])
        records.append(Record(b[k], len(records), 1.0, done, b[k + 1]))
    check_all_sampleable(mem, records)
    # Episode 1's early stacks contain no frame of episode 0.
    states, *_ = mem._gather(np.array([3]))
    assert (states[0, :, 0, 0] == 1).all()  # episode id pixel
    np.testing.assert_array_equal(states[0], b[0])


def test_len_grows_then_saturates_at_capacity():
    mem = ReplayMemory(capacity=30, history_len=H, seed=0)
    stacks = episode_stacks(0, 80, "repeat")
    lens = []
    for k in range(80):
        mem.append(stacks[k], 0, 0.0, False, stacks[k + 1])
        lens.append(len(mem))
    assert lens == [min(k + 1, 30) for k in range(80)]


def test_sample_shapes_dtypes_device():
    mem = ReplayMemory(capacity=200, history_len=H, seed=0)
    feed(mem, [10, 3, 7, 40])
    batch = mem.sample(32)
    assert isinstance(batch, Batch)
    assert batch.states.shape == (32, H, 84, 84) and batch.states.dtype == torch.uint8
    assert batch.next_states.shape == (32, H, 84, 84) and batch.next_states.dtype == torch.uint8
    assert batch.actions.shape == (32,) and batch.actions.dtype == torch.int64
    assert batch.rewards.shape == (32,) and batch.rewards.dtype == torch.float32
    assert batch.dones.shape == (32,) and batch.dones.dtype == torch.float32
    assert set(batch.dones.tolist()) <= {0.0, 1.0}
    for t in batch:
        assert t.device == torch.device("cpu")
    # states and next_states do not share storage
    assert batch.states.data_ptr() != batch.next_states.data_ptr()


def test_other_history_len_and_frame_shape():
    mem = ReplayMemory(capacity=20, history_len=2, frame_shape=(3, 5), seed=0)
    rng = np.random.default_rng(0)
    records = []
    for _ in range(12):
        frames = [rng.integers(0, 256, size=(3, 5), dtype=np.uint8) for _ in range(4)]
        seq = [frames[0]] + frames
        for k in range(3):
            s, ns = np.stack(seq[k:k + 2]), np.stack(seq[k + 1:k + 3])
            mem.append(s, len(records), 0.5, k == 2, ns)
            records.append(Record(s, len(records), 0.5, k == 2, ns))
    assert mem.sample(5).states.shape == (5, 2, 3, 5)
    check_all_sampleable(mem, records)


def test_determinism_with_seed():
    def run(seed):
        mem = ReplayMemory(capacity=64, history_len=H, seed=seed)
        feed(mem, [20, 5, 2, 30, 9])
        return [mem.sample(16) for _ in range(3)]

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b):
        for tx, ty in zip(x, y):
            assert torch.equal(tx, ty)
    assert any(not torch.equal(x.actions, z.actions) for x, z in zip(a, c))


def test_sample_errors():
    mem = ReplayMemory(capacity=10, history_len=H, seed=0)
    with pytest.raises(ValueError):
        mem.sample(1)  # empty
    feed(mem, [3])
    with pytest.raises(ValueError):
        mem.sample(4)
    with pytest.raises(ValueError):
        mem.sample(0)
    assert mem.sample(3).states.shape[0] == 3


def test_constructor_errors():
    for kwargs in ({"capacity": 0}, {"capacity": -5}, {"history_len": 0}):
        with pytest.raises(ValueError) as info:
            ReplayMemory(**{"capacity": 10, "history_len": H, **kwargs})
        assert "\n" not in str(info.value)


def test_append_validates_input():
    mem = ReplayMemory(capacity=10, history_len=H)
    good = np.zeros((H, 84, 84), np.uint8)
    with pytest.raises(ValueError):
        mem.append(np.zeros((3, 84, 84), np.uint8), 0, 0.0, False, good)
    with pytest.raises(TypeError):
        mem.append(good.astype(np.float32), 0, 0.0, False, good)


def test_memory_per_transition():
    mem = ReplayMemory(capacity=10_000, history_len=H)
    bpt = mem.bytes_per_transition
    print(f"\nbytes per transition (capacity 1e4): {bpt:.1f}")
    print(f"estimate for capacity 1e6: {ReplayMemory.estimate_bytes(1_000_000, 4, (84, 84)) / 1e9:.3f} GB")
    assert bpt < 1.1 * 84 * 84 + 64
    assert bpt < 2 * 84 * 84  # far below whole stacks (4 * 7056)
    assert mem.nbytes == ReplayMemory.estimate_bytes(10_000, 4, (84, 84))
    assert ReplayMemory.estimate_bytes(1_000_000, 4, (84, 84)) < 7.5e9


def test_too_large_raises_without_allocating():
    t0 = time.perf_counter()
    with pytest.raises(ReplayMemoryTooLargeError) as info:
        ReplayMemory(capacity=10**9, history_len=H)
    assert time.perf_counter() - t0 < 1.0
    msg = str(info.value)
    assert "\n" not in msg
    assert "--replay_memory_size" in msg
    assert "1000000000 transitions" in msg
    assert isinstance(info.value, MemoryError)


def test_too_large_uses_available_memory(monkeypatch):
    class FakeVM:
        available = 1_000_000

    monkeypatch.setattr(rm_module.psutil, "virtual_memory", lambda: FakeVM())
    with pytest.raises(ReplayMemoryTooLargeError):
        ReplayMemory(capacity=1000, history_len=H)  # ~7 MB > 1 MB
    ReplayMemory(capacity=100, history_len=H)  # ~0.7 MB fits
    ReplayMemory(capacity=1000, history_len=H, check_memory=False)


def test_memory_mapped_memory_goes_back_to_its_checkpoint_with_the_undo_journal(tmp_path):
    """A checkpoint of a memory-mapped memory is a flush and its metadata; after more appends that overwrite frames
    (the ring wraps), the undo journal and the metadata give back exactly the memory of the checkpoint, and the
    same appends then give exactly the same memory as before."""
    frames = str(tmp_path / "frames.u8")
    mem = ReplayMemory(capacity=50, history_len=H, seed=0, frames_file=frames, frame_headroom=0.1)
    records = feed(mem, [40, 25, 60])  # 125 appends: the ring has wrapped
    mem.flush()
    checkpoint = mem.state_dict()
    mem.start_journal(str(tmp_path / "undo.bin"))
    at_checkpoint = mem._gather(valid_numbers(mem))
    more = feed(mem, [33, 20], rng=np.random.default_rng(1))  # overwrites frames the checkpoint still needs
    after = [mem._gather(valid_numbers(mem)), mem.state_dict()]
    mem.close_journal()
    del mem

    reopened = ReplayMemory(capacity=50, history_len=H, seed=5, frames_file=frames, frame_headroom=0.1)
    assert reopened.undo(str(tmp_path / "undo.bin")) > 0
    reopened.load_state_dict(checkpoint)
    for ours, theirs in zip(reopened._gather(valid_numbers(reopened)), at_checkpoint):
        np.testing.assert_array_equal(ours, theirs)
    check_all_sampleable(reopened, records)
    # The same appends again: the same memory, and the same samples from the restored generator.
    feed(reopened, [33, 20], rng=np.random.default_rng(1))
    for ours, theirs in zip(reopened._gather(valid_numbers(reopened)), after[0]):
        np.testing.assert_array_equal(ours, theirs)
    state = reopened.state_dict()
    assert all(torch.equal(state[k], after[1][k]) if isinstance(state[k], torch.Tensor) else state[k] == after[1][k]
               for k in state)
    assert len(more) == 53
