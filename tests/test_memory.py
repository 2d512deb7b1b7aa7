import numpy as np
import pytest

from agent.memory import EpisodeReplay, ShortTermMemory


def make_episode(ep_id: int, steps: int, action_dim: int = 2):
    """obs[t] = (ep_id, t); actions[t] = (ep_id, t + 0.5); measurements encode the same."""
    t = np.arange(steps + 1, dtype=np.float32)
    obs = np.stack([np.full_like(t, ep_id), t], axis=1)
    actions = np.stack([np.full(steps, ep_id, np.float32), np.arange(steps, dtype=np.float32) + 0.5], axis=1)
    meas = {"xy": np.stack([t * 2, np.full_like(t, ep_id)], axis=1)}
    return obs, actions[:, :action_dim], meas


def filled(capacity=200, lengths=(3, 10, 1, 7, 25, 5, 12)):
    buf = EpisodeReplay(capacity, (2,), np.float32, 2, {"xy": 2})
    for ep_id, steps in enumerate(lengths):
        buf.add_episode(*make_episode(ep_id, steps))
    return buf


def check_windows(batch, seq_len):
    obs, actions, xy = batch["obs"], batch["actions"], batch["measurements"]["xy"]
    assert obs.shape[1:] == (seq_len + 1, 2) and actions.shape[1:] == (seq_len, 2)
    for b in range(obs.shape[0]):
        ep = obs[b, :, 0]
        assert np.all(ep == ep[0]), "window crosses an episode boundary"
        t = obs[b, :, 1]
        np.testing.assert_array_equal(np.diff(t), np.ones(seq_len))  # contiguous in time
        np.testing.assert_array_equal(actions[b, :, 0], ep[:-1])
        np.testing.assert_array_equal(actions[b, :, 1], t[:-1] + 0.5)  # action taken from obs t
        np.testing.assert_array_equal(xy[b, :, 0], t * 2)
        np.testing.assert_array_equal(xy[b, :, 1], ep)


def test_windows_never_cross_boundaries_and_skip_short_episodes():
    buf = filled()
    assert buf.num_episodes == 7 and buf.num_steps == 3 + 10 + 1 + 7 + 25 + 5 + 12
    rng = np.random.default_rng(0)
    batch = buf.sample(512, 6, rng)
    check_windows(batch, 6)
    sampled_eps = set(batch["obs"][:, 0, 0].astype(int))
    assert sampled_eps == {1, 3, 4, 6}  # episodes with >= 6 actions only (0, 2, 5 are too short)
    # uniform over valid windows: episode 4 has 20 of the 5+2+20+7=34 windows
    share = np.mean(batch["obs"][:, 0, 0] == 4)
    assert abs(share - 20 / 34) < 0.08


def test_no_long_enough_episode_raises():
    buf = filled(lengths=(2, 3))
    with pytest.raises(ValueError, match="seq_len=4"):
        buf.sample(4, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="seq_len"):
        EpisodeReplay(10, (2,), np.float32, 2).sample(1, 1, np.random.default_rng(0))


def test_eviction_keeps_newest_whole_episodes_and_wraps():
    buf = EpisodeReplay(30, (2,), np.float32, 2, {"xy": 2})
    for ep_id in range(10):  # 10 episodes of 8 slots (7 actions) through 30 slots: wraps the ring
        buf.add_episode(*make_episode(ep_id, 7))
        assert buf.num_steps + buf.num_episodes <= 30
    assert buf.num_episodes == 3 and buf.episode_lengths() == [7, 7, 7]
    batch = buf.sample(300, 7, np.random.default_rng(1))
    check_windows(batch, 7)
    assert set(batch["obs"][:, 0, 0].astype(int)) == {7, 8, 9}
    assert buf.episodes_added == 10 and buf.steps_added == 70
    # a long episode evicts as many old ones as needed
    buf.add_episode(*make_episode(10, 20))  # 21 slots: evicts episodes 7 and 8, keeps 9 (8 + 21 <= 30)
    assert buf.episode_lengths() == [7, 20]
    batch = buf.sample(50, 7, np.random.default_rng(2))
    check_windows(batch, 7)
    assert set(batch["obs"][:, 0, 0].astype(int)) == {9, 10}


def test_episode_observations_are_whole_episodes_in_time_order_with_their_ids():
    """What experience edges between landmarks read: whole episodes (also across the ring's wrap),
    oldest first, each in time order, at most `limit` observations (but always one episode)."""
    buf = EpisodeReplay(30, (2,), np.float32, 2, {"xy": 2})
    for ep_id in range(10):  # wraps the ring: episodes 7, 8, 9 remain
        buf.add_episode(*make_episode(ep_id, 7))
    obs, ids = buf.episode_observations(limit=24, seed=0)
    assert obs.shape == (24, 2) and ids.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    np.testing.assert_array_equal(obs[:, 0], [7] * 8 + [8] * 8 + [9] * 8)
    np.testing.assert_array_equal(obs[:, 1], np.tile(np.arange(8), 3))
    obs, ids = buf.episode_observations(limit=17, seed=1)  # room for two of the three
    assert obs.shape == (16, 2) and len(set(ids.tolist())) == 2 and np.all(np.diff(obs[:, 0]) >= 0)
    for i in set(ids.tolist()):  # one id per episode, its observations in time order
        np.testing.assert_array_equal(obs[ids == i, 1], np.arange(8))
        assert len(set(obs[ids == i, 0].tolist())) == 1
    obs, ids = buf.episode_observations(limit=3, seed=0)  # smaller than any episode: still one
    assert obs.shape == (8, 2) and set(ids.tolist()) == {ids[0]}
    empty = EpisodeReplay(10, (2,), np.float32, 2).episode_observations(100)
    assert empty[0].shape == (0, 2) and empty[1].shape == (0,)


def test_pixel_storage_is_uint8():
    buf = EpisodeReplay(100, (64, 64, 3), np.uint8, 1)
    assert buf._obs.dtype == np.uint8 and buf._obs.nbytes == 100 * 64 * 64 * 3
    obs = np.random.default_rng(0).integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
    buf.add_episode(obs, np.zeros((5, 1), np.float32))
    batch = buf.sample(3, 5, np.random.default_rng(0))
    assert batch["obs"].dtype == np.uint8
    np.testing.assert_array_equal(batch["obs"][0], obs)
    with pytest.raises(ValueError, match="obs: dtype float32"):
        buf.add_episode(obs.astype(np.float32), np.zeros((5, 1), np.float32))


def test_add_episode_validation_names_field():
    buf = EpisodeReplay(50, (2,), np.float32, 2, {"xy": 2})
    obs, actions, meas = make_episode(0, 5)
    with pytest.raises(ValueError, match="obs: expected shape"):
        buf.add_episode(obs[:-1], actions, meas)
    with pytest.raises(ValueError, match="actions: expected shape"):
        buf.add_episode(obs, actions[:, :1], meas)
    with pytest.raises(ValueError, match=r"measurements\['xy'\]"):
        buf.add_episode(obs, actions, {"xy": meas["xy"][:, :1]})
    with pytest.raises(ValueError, match="missing \\['xy'\\]"):
        buf.add_episode(obs, actions, {})
    with pytest.raises(ValueError, match="does not fit"):
        buf.add_episode(*make_episode(0, 60))
    with pytest.raises(ValueError, match="NaN"):
        buf.add_episode(obs, actions * np.nan, meas)
    assert buf.num_episodes == 0  # nothing was half-written


def test_state_dict_round_trip_restores_sampling():
    buf = EpisodeReplay(40, (2,), np.float32, 2, {"xy": 2})
    for ep_id, steps in enumerate([9, 4, 12, 8, 6]):  # wraps and evicts
        buf.add_episode(*make_episode(ep_id, steps))
    state = buf.state_dict()
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state.values())
    assert set(state) == {"obs", "actions", "rewards", "terminals", "meas/xy", "episode_starts", "episode_lengths",
                          "capacity", "counters"}

    other = EpisodeReplay(40, (2,), np.float32, 2, {"xy": 2})
    other.load_state_dict(state)
    assert other.episode_lengths() == buf.episode_lengths() and other.num_steps == buf.num_steps
    assert (other.episodes_added, other.steps_added) == (buf.episodes_added, buf.steps_added)
    a, b = buf.sample(64, 4, np.random.default_rng(3)), other.sample(64, 4, np.random.default_rng(3))
    np.testing.assert_array_equal(a["obs"], b["obs"])
    np.testing.assert_array_equal(a["actions"], b["actions"])
    np.testing.assert_array_equal(a["measurements"]["xy"], b["measurements"]["xy"])
    # and they keep evolving identically
    for replay in (buf, other):
        replay.add_episode(*make_episode(9, 15))
    assert other.episode_lengths() == buf.episode_lengths()
    a, b = buf.sample(64, 5, np.random.default_rng(4)), other.sample(64, 5, np.random.default_rng(4))
    np.testing.assert_array_equal(a["obs"], b["obs"])


def test_rewards_and_terminals_ride_with_their_actions_and_survive_a_round_trip():
    """reward[t] belongs to the action taken from obs t; only a terminated episode's last action is
    terminal (a truncated one bootstraps); checkpoints from before rewards existed still load."""
    buf = EpisodeReplay(60, (2,), np.float32, 2, {"xy": 2})
    for ep_id, steps in enumerate([6, 9, 5]):
        obs, actions, meas = make_episode(ep_id, steps)
        buf.add_episode(obs, actions, meas, rewards=100 * ep_id + np.arange(steps), terminated=ep_id == 1)
    batch = buf.sample(256, 3, np.random.default_rng(0))
    ep, t = batch["obs"][:, :-1, 0], batch["obs"][:, :-1, 1]
    np.testing.assert_array_equal(batch["rewards"], 100 * ep + t)
    np.testing.assert_array_equal(batch["terminals"], (ep == 1) & (t == 8))
    assert batch["terminals"].any()
    state = buf.state_dict()
    other = EpisodeReplay(60, (2,), np.float32, 2, {"xy": 2})
    other.load_state_dict(state)
    again = other.sample(256, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(again["rewards"], batch["rewards"])
    np.testing.assert_array_equal(again["terminals"], batch["terminals"])
    old = EpisodeReplay(60, (2,), np.float32, 2, {"xy": 2})
    old.load_state_dict({k: v for k, v in state.items() if k not in ("rewards", "terminals")})
    assert not old.sample(64, 3, np.random.default_rng(0))["rewards"].any()
    with pytest.raises(ValueError, match="rewards: expected 6 finite values"):
        buf.add_episode(*make_episode(5, 6), rewards=np.ones(7))
    with pytest.raises(ValueError, match="'rewards'.*got float64"):
        other.load_state_dict({**state, "rewards": state["rewards"].astype(np.float64)})


def test_load_state_dict_validates():
    buf = filled(capacity=100)
    state = buf.state_dict()
    fresh = lambda: EpisodeReplay(100, (2,), np.float32, 2, {"xy": 2})
    with pytest.raises(ValueError, match="70 slots exceed capacity 69"):  # 7 episodes, 63 steps, 70 slots
        EpisodeReplay(69, (2,), np.float32, 2, {"xy": 2}).load_state_dict(state)
    with pytest.raises(ValueError, match="capacity must be one value"):
        fresh().load_state_dict({**state, "capacity": np.array([100, 100])})
    with pytest.raises(ValueError, match="missing keys \\['meas/xy'\\]"):
        fresh().load_state_dict({k: v for k, v in state.items() if k != "meas/xy"})
    with pytest.raises(ValueError, match="'obs'.*got float64"):
        fresh().load_state_dict({**state, "obs": state["obs"].astype(np.float64)})
    bad = dict(state, episode_lengths=state["episode_lengths"] + 1)
    with pytest.raises(ValueError, match="inconsistent"):
        fresh().load_state_dict(bad)


def test_a_larger_buffer_takes_a_saved_state_and_evicts_nothing_more():
    """A resume with a longer training budget loads the saved replay into a larger buffer: the same
    episodes and samples, then room for the new ones where the saved buffer would have evicted."""
    buf = filled(capacity=80)  # 70 slots used
    larger = EpisodeReplay(160, (2,), np.float32, 2, {"xy": 2})
    larger.load_state_dict(buf.state_dict())
    assert larger.episode_lengths() == buf.episode_lengths() and larger.capacity == 160
    a, b = buf.sample(64, 4, np.random.default_rng(5)), larger.sample(64, 4, np.random.default_rng(5))
    np.testing.assert_array_equal(a["obs"], b["obs"])
    for replay in (buf, larger):
        replay.add_episode(*make_episode(7, 30))
    assert larger.num_episodes == 8 and larger.num_steps == 63 + 30
    assert buf.num_episodes < 8  # the saved size had to evict
    assert larger.state_dict()["capacity"].tolist() == [160]


def test_short_term_memory():
    mem = ShortTermMemory(3)
    for i in range(5):
        mem.push(obs=i, latent=i * 10, action=-i)
    assert len(mem) == 3
    assert [item.obs for item in mem.recent()] == [2, 3, 4]
    assert [item.latent for item in mem.recent(2)] == [30, 40]
    assert mem.recent(0) == [] and mem.latest().action == -4
    mem.clear()
    assert len(mem) == 0 and mem.latest() is None
    with pytest.raises(ValueError):
        ShortTermMemory(0)
