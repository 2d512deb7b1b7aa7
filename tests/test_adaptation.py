"""The residual memory: decision-time correction of a world model by the episode's own misses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.adaptation import AdaptationConfig, ResidualMemory
from agent.cost import CostModule
from agent.launch import load_launch
from planners.registry import make_planner

STEP = 0.1  # a unit action moves the point this far


def wall_blind_predict(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """A 'learned' model of a point that knows nothing of the wall."""
    return z + STEP * a


def true_step(xy: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The simulator: the same point, but a wall at x = 0 for |y| < 0.5 stops it on the left."""
    nxt = xy + STEP * np.clip(a, -1.0, 1.0)
    if xy[0] <= 0.0 < nxt[0] and abs(nxt[1]) < 0.5:
        nxt[0] = 0.0
    return nxt


def memory(size: int = 64, latent_scale: float = 0.05, action_scale: float = 0.5) -> ResidualMemory:
    return ResidualMemory(wall_blind_predict, AdaptationConfig(size, latent_scale, action_scale), project=None)


def test_a_remembered_miss_corrects_the_same_move_and_leaves_other_moves_alone():
    mem = memory()
    z, right = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    assert torch.equal(mem.predict(z[None], right[None]), wall_blind_predict(z[None], right[None]))  # empty
    miss = mem.observe(z, right, torch.tensor([0.0, 0.0]))  # pushed right into the wall: did not move
    assert miss == pytest.approx(STEP)
    assert torch.allclose(mem.predict(z[None], right[None]), z[None], atol=1e-6)  # now predicted to stay
    up = torch.tensor([[0.0, 1.0]])
    corrected_up = mem.predict(z[None], up)  # action distance sqrt(2) = 2.8 scales: weight exp(-4)
    assert torch.allclose(corrected_up, torch.tensor([[-STEP * float(np.exp(-4.0)), STEP]]), atol=1e-6)
    far = torch.tensor([[0.0, 1.0]])  # the same push 20 latent scales away: the model's own prediction
    assert torch.allclose(mem.predict(far, right[None]), far + torch.tensor([[STEP, 0.0]]), atol=1e-6)
    # many identical misses weigh as one (the correction is an average, not a sum)
    for _ in range(5):
        mem.observe(z, right, torch.tensor([0.0, 0.0]))
    assert torch.allclose(mem.predict(z[None], right[None]), z[None], atol=1e-6)


def test_the_correction_is_the_kernel_formula_near_and_far_from_the_remembered_steps():
    torch.manual_seed(0)
    mem = memory(size=8)
    steps = [(torch.randn(2) * 0.05, torch.rand(2) * 2 - 1, torch.randn(2)) for _ in range(8)]
    for z, a, z_next in steps:
        mem.observe(z, a, z_next)
    # queries at remembered steps, near them, and far away (weights that underflow: 0 to float precision)
    z = torch.cat([torch.stack([s[0] for s in steps]) + 0.02 * torch.randn(8, 2), 3.0 * torch.randn(8, 2)])
    a = torch.cat([torch.stack([s[1] for s in steps]) + 0.1 * torch.randn(8, 2), torch.rand(8, 2) * 2 - 1])
    expected = torch.zeros(16, 2)
    for i in range(16):
        w = torch.stack([torch.exp(-0.5 * (((z[i] - zk) / 0.05).square().sum() + ((a[i] - ak) / 0.5).square().sum()))
                         for zk, ak, _ in steps])
        residuals = torch.stack([zn - wall_blind_predict(zk, ak) for zk, ak, zn in steps])
        expected[i] = (w[:, None] * residuals).sum(0) / w.sum().clamp(min=1.0)
    assert expected[:8].abs().amax(1).min() > 0.05  # the near queries are corrected
    torch.testing.assert_close(mem.correction(z, a), expected, atol=1e-6, rtol=1e-5)
    assert mem.correction(z[8:], a[8:]).abs().max() < 1e-30  # the far queries are left alone


def test_the_memory_keeps_the_latest_steps_and_clears():
    mem = memory(size=3)
    for i in range(5):
        mem.observe(torch.tensor([float(i), 0.0]), torch.zeros(2), torch.tensor([float(i), 1.0]))
    assert len(mem) == 3
    assert torch.allclose(mem.correction(torch.tensor([[4.0, 0.0]]), torch.zeros(1, 2)), torch.tensor([[0.0, 1.0]]))
    assert torch.allclose(mem.correction(torch.tensor([[0.0, 0.0]]), torch.zeros(1, 2)), torch.zeros(1, 2))
    mem.clear()
    assert len(mem) == 0
    z, actions = torch.zeros(4, 2), torch.ones(4, 3, 2)
    assert torch.allclose(mem.rollout(z, actions), wall_blind_predict_rollout(z, actions))


def test_rollout_checks_shapes():
    with pytest.raises(ValueError, match="rollout expects"):
        memory().rollout(torch.zeros(2), torch.zeros(2, 3, 2))


@pytest.mark.parametrize("bad", [{"size": 0}, {"latent_scale": 0.0}, {"action_scale": -1.0}])
def test_bad_settings_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        AdaptationConfig(**bad)


def test_launch_files_validate_the_adaptation_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\nenv: {id: oda/PointMaze-v0}\nadaptation: {sizes: 3}\n")
    with pytest.raises(ValueError, match="'adaptation'.*valid keys: size, latent_scale, action_scale"):
        load_launch(path)


def run_point(adapt: bool, steps: int = 150) -> float:
    """MPC toward a goal behind the wall with the wall-blind model; the final distance to the goal."""
    planner = make_planner("mppi", 2, seed=0, horizon=30, samples=64, iterations=4)
    cost = CostModule({"goal": 1.0, "goal_final": 1.0})
    goal = np.array([0.5, 0.0])
    cost.set_goal(torch.tensor(goal, dtype=torch.float32))
    mem = memory(size=200)
    dynamics = mem.rollout if adapt else wall_blind_predict_rollout
    xy = np.array([-0.3, 0.05])
    for _ in range(steps):
        z = torch.tensor(xy, dtype=torch.float32)
        a = planner.plan(z, dynamics, cost).actions[0].numpy()
        planner.shift(1)
        xy_next = true_step(xy, a)
        mem.observe(z, torch.tensor(a), torch.tensor(xy_next, dtype=torch.float32))
        xy = xy_next
    return float(np.linalg.norm(xy - goal))


def wall_blind_predict_rollout(z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return z0[:, None] + STEP * actions.cumsum(dim=1)


def test_a_wall_blind_model_presses_into_the_wall_and_the_memory_gets_it_round():
    torch.manual_seed(0)
    assert run_point(adapt=False) > 0.45  # stuck at the wall's face, x = 0
    assert run_point(adapt=True) < 0.1    # round the end of the wall and to the goal
