"""The learned cost-to-go (world_models.value.GoalValue) and its hindsight-goal sampler."""

import numpy as np
import pytest
import torch

from agent.memory import EpisodeReplay
from world_models.value import GoalValue

N_STATES = 8


def chain_replay(episodes: int = 60, steps: int = 30, seed: int = 0) -> EpisodeReplay:
    """Random walks on a chain of N_STATES cells (one-hot observations; moves -1, 0, +1, clipped)."""
    rng = np.random.default_rng(seed)
    buf = EpisodeReplay(episodes * (steps + 1), (N_STATES,), np.float32, 1)
    for _ in range(episodes):
        cells = [int(rng.integers(N_STATES))]
        moves = rng.integers(-1, 2, size=steps)
        for m in moves:
            cells.append(int(np.clip(cells[-1] + m, 0, N_STATES - 1)))
        buf.add_episode(np.eye(N_STATES, dtype=np.float32)[cells], moves[:, None].astype(np.float32))
    return buf


def test_goals_are_the_state_itself_a_later_state_of_its_episode_or_any_state():
    buf = EpisodeReplay(100, (2,), np.float32, 1)
    for ep in range(4):  # obs = (episode, t)
        t = np.arange(11, dtype=np.float32)
        buf.add_episode(np.stack([np.full_like(t, ep), t], 1), np.zeros((10, 1), np.float32))
    batch = buf.sample_goals(4000, np.random.default_rng(0), p_current=0.2, p_future=0.5)
    obs, nxt, goal, reached = batch["obs"], batch["next_obs"], batch["goal_obs"], batch["reached"]
    assert obs.shape == nxt.shape == goal.shape == (4000, 2) and reached.dtype == bool
    np.testing.assert_array_equal(nxt[:, 0], obs[:, 0])           # a transition of one episode
    np.testing.assert_array_equal(nxt[:, 1], obs[:, 1] + 1)
    np.testing.assert_array_equal(goal[reached], obs[reached])    # reached: the goal is the state itself
    later = (goal[:, 0] == obs[:, 0]) & (goal[:, 1] > obs[:, 1])
    assert 0.15 < reached.mean() < 0.25
    assert 0.5 < later.mean() < 0.7                               # future goals (+ a few random ones)
    assert np.all(goal[:, 1] <= 10) and len(np.unique(goal[~reached & ~later][:, 0])) == 4
    with pytest.raises(ValueError, match="no transition"):
        EpisodeReplay(10, (2,), np.float32, 1).sample_goals(4, np.random.default_rng(0))


def test_value_learns_shortest_path_steps_on_a_chain():
    """Random walks are slow (expected hitting times >> distance); the high expectile recovers the
    shortest-path number of steps |i - j| that the data also contains."""
    torch.manual_seed(0)
    buf, rng = chain_replay(), np.random.default_rng(1)
    value = GoalValue(N_STATES, 64, gamma=0.9, expectile=0.9, tau=0.05)
    optim = torch.optim.Adam(value.net.parameters(), lr=3e-3)
    for _ in range(1500):
        b = buf.sample_goals(256, rng, p_current=0.2, p_future=0.5)
        loss, _ = value.loss(*(torch.as_tensor(b[k]) for k in ("obs", "next_obs", "goal_obs")),
                             torch.as_tensor(b["reached"]))
        optim.zero_grad()
        loss.backward()
        optim.step()
        value.update_target()
    eye = torch.eye(N_STATES)
    with torch.no_grad():
        steps = value.steps(eye[:, None, :].expand(-1, N_STATES, -1), eye[None, :, :].expand(N_STATES, -1, -1))
    true = torch.cdist(torch.arange(N_STATES, dtype=torch.float32)[:, None],
                       torch.arange(N_STATES, dtype=torch.float32)[:, None])
    assert torch.all((steps - true).abs() <= 0.3 * true + 0.6), f"steps\n{steps.round(decimals=1)}"
    assert torch.all(steps.diagonal() < 0.5)
    off = ~torch.eye(N_STATES, dtype=torch.bool)
    # farther cells are more steps away, from every start: each row increases away from the diagonal
    for i in range(N_STATES):
        assert torch.all(steps[i, i + 1:].diff() > 0) and torch.all(steps[i, :i].diff() < 0)
    assert steps[off].min() > 0.7


def test_value_rejects_bad_settings():
    for kwargs in ({"gamma": 1.0}, {"expectile": 0.3}, {"tau": 0.0}):
        with pytest.raises(ValueError):
            GoalValue(4, 8, **kwargs)
