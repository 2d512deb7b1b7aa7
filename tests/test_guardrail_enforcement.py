"""Guardrails enforced by the actor: no executed plan is predicted infeasible, the declared and
least-violation fallbacks, and the model's readout error measured (calibration) to widen them."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from agent.guardrails import GuardrailSet


class PointMassModel:
    """An exact analytic world model (latent = observation = [x, y, vx, vy]) for the actor."""

    readout_keys = ("xy",)
    dt, damping = 0.1, 0.5
    device = torch.device("cpu")
    bias = 0.0  # a readout offset along x, to give the model a known error

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float()

    def step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        vel = s[..., 2:] + self.dt * (a - self.damping * s[..., 2:])
        return torch.cat([s[..., :2] + self.dt * vel, vel], dim=-1)

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        out, z = [], z0
        for t in range(actions.shape[1]):
            z = self.step(z, actions[:, t])
            out.append(z)
        return torch.stack(out, dim=1)

    def readout(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"xy": z[..., :2] + torch.tensor([self.bias, 0.0])}


def _brake(obs) -> np.ndarray:
    return np.clip(-2.0 * np.asarray(obs[2:4], dtype=np.float32), -1.0, 1.0)


@pytest.mark.parametrize("seed", range(8))
def test_actor_never_executes_a_plan_predicted_infeasible(seed):
    """Random disc and goal (possibly inside the disc): each executed action comes from a plan
    predicted feasible over its whole horizon, or is the fallback; with an exact model the true
    path never enters the disc."""
    from agent.actor import MPCActor
    from agent.cost import CostModule
    from planners import make_planner

    g = torch.Generator().manual_seed(seed)
    center = torch.rand(2, generator=g) * 0.6 + 0.35  # the start (origin) is outside every disc
    radius = float(torch.rand(1, generator=g)) * 0.2 + 0.1
    goal = torch.rand(2, generator=g) * 1.2
    model = PointMassModel()
    rails = GuardrailSet([{"type": "keep_out", "key": "xy", "center": center.tolist(), "radius": radius}],
                         model.readout, model.readout_keys)
    actor = MPCActor(model, make_planner("mppi", 2, seed=seed, horizon=12, samples=128, iterations=4),
                     CostModule({"goal": 1.0, "goal_final": 1.0}), guardrails=rails, fallback=_brake)
    state = torch.zeros(4)
    actor.reset(torch.cat([goal, torch.zeros(2)]))
    for _ in range(40):
        fallbacks_before = actor.fallbacks
        action = torch.as_tensor(actor.act(state))
        if actor.fallbacks == fallbacks_before:
            assert actor.last_plan.feasible and not actor.predicted_violation
        state = model.step(state, action)
        assert float((state[:2] - center).norm()) >= radius - 1e-4, (seed, state.tolist())
    if float((goal - center).norm()) > radius + 0.1:
        assert float((state[:2] - goal).norm()) < 0.15, "a reachable goal outside the disc is still reached"


def test_goal_inside_the_disc_the_actor_stops_at_its_edge():
    from agent.actor import MPCActor
    from agent.cost import CostModule
    from planners import make_planner

    model = PointMassModel()
    center, radius = [0.6, 0.3], 0.2
    rails = GuardrailSet([{"type": "keep_out", "key": "xy", "center": center, "radius": radius}],
                         model.readout, model.readout_keys)
    actor = MPCActor(model, make_planner("mppi", 2, seed=0, horizon=12, samples=128, iterations=4),
                     CostModule({"goal": 1.0, "goal_final": 1.0}), guardrails=rails, fallback=_brake)
    state = torch.zeros(4)
    actor.reset(torch.tensor([*center, 0.0, 0.0]))
    for _ in range(60):
        state = model.step(state, torch.as_tensor(actor.act(state)))
        assert float((state[:2] - torch.tensor(center)).norm()) >= radius - 1e-4
    assert float((state[:2] - torch.tensor(center)).norm()) < radius + 0.05  # as close as allowed
    assert float(state[2:].norm()) < 0.1


@pytest.mark.parametrize("rule", ["declared", "least_violation"])
def test_a_start_inside_the_margin_brakes_for_good_unless_the_least_violation_rule_steps_out(rule):
    """At rest 0.05 inside a disc's margin no plan is feasible and the brake keeps the violation:
    the declared fallback stays put; the least-violation rule takes the best plan's first action,
    which is predicted to violate less, steps out of the margin and goes on to the goal, never
    entering the disc itself."""
    from agent.actor import MPCActor
    from agent.cost import CostModule
    from planners import make_planner

    model = PointMassModel()
    rails = GuardrailSet([{"type": "keep_out", "key": "xy", "center": [0.0, 0.0], "radius": 0.2, "margin": 0.1}],
                         model.readout, model.readout_keys)
    actor = MPCActor(model, make_planner("mppi", 2, seed=0, horizon=12, samples=128, iterations=4),
                     CostModule({"goal": 1.0, "goal_final": 1.0}), guardrails=rails, fallback=_brake,
                     least_violation=rule == "least_violation")
    state, goal = torch.tensor([0.25, 0.0, 0.0, 0.0]), torch.tensor([0.8, 0.3])
    actor.reset(torch.cat([goal, torch.zeros(2)]))
    for _ in range(60):
        state = model.step(state, torch.as_tensor(actor.act(state)))
        assert float(state[:2].norm()) >= 0.2
    if rule == "declared":
        torch.testing.assert_close(state, torch.tensor([0.25, 0.0, 0.0, 0.0]))
        assert actor.fallbacks == 60 and actor.recoveries == 0
    else:
        assert 0 < actor.recoveries == actor.fallbacks < 10  # only until the margin is cleared
        assert float((state[:2] - goal).norm()) < 0.1


def test_with_a_residual_memory_the_fallback_is_judged_by_the_corrected_model():
    """A current the model does not know carries the point 0.03 per step toward a disc it rests 0.01 from:
    no action can keep it out, so the actor falls back to braking. The memory of the current's misses
    predicts that the brake violates (the uncorrected model would call it safe, and the confusion counts
    would score a 'predicted safe, actually violated' step)."""
    from agent.actor import MPCActor
    from agent.adaptation import AdaptationConfig, ResidualMemory
    from agent.cost import CostModule
    from planners import make_planner

    model, drift = PointMassModel(), torch.tensor([0.03, 0.0, 0.0, 0.0])
    rails = GuardrailSet([{"type": "keep_out", "key": "xy", "center": [0.6, 0.0], "radius": 0.15}],
                         model.readout, model.readout_keys)
    state = torch.tensor([0.44, 0.0, 0.0, 0.0])
    memory = ResidualMemory(model.step, AdaptationConfig(size=32, latent_scale=0.5, action_scale=5.0), project=None)
    actor = MPCActor(model, make_planner("mppi", 2, seed=0, horizon=8, samples=64, iterations=2),
                     CostModule({"goal": 1.0, "goal_final": 1.0}), guardrails=rails, fallback=_brake,
                     adaptation=memory)
    actor.reset(torch.tensor([0.6, 0.0, 0.0, 0.0]))
    for _ in range(20):  # the misses it saw at rest here (a reset clears the memory: seeded after it)
        memory.observe(state, torch.zeros(2), model.step(state, torch.zeros(2)) + drift)
    action = actor.act(state)
    assert actor.fallbacks == 1 and not actor.last_plan.feasible
    np.testing.assert_array_equal(action, np.zeros(2, np.float32))  # the brake at rest
    assert actor.predicted_violation is True
    actual = model.step(state, torch.as_tensor(action)) + drift
    assert float((actual[:2] - torch.tensor([0.6, 0.0])).norm()) < 0.15  # and so it is


def test_readout_error_calibration_measures_the_models_error_per_step():
    from agent.calibration import readout_errors

    model = PointMassModel()
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(3):
        states, actions = [torch.zeros(4)], torch.as_tensor(rng.uniform(-1, 1, (30, 2)), dtype=torch.float32)
        for a in actions:
            states.append(model.step(states[-1], a))
        obs = torch.stack(states).numpy()
        runs.append({"obs": obs, "actions": actions.numpy(), "measurements": {"xy": obs[:, :2]}})
    exact = readout_errors(model, runs, horizon=5)
    assert exact["xy"].shape == (5,) and float(exact["xy"].max()) < 1e-5
    model.bias = 0.03
    torch.testing.assert_close(readout_errors(model, runs, horizon=5)["xy"], torch.full((5,), 0.03))
    with pytest.raises(ValueError, match="no calibration episode has 40 steps"):
        readout_errors(model, runs, horizon=40)
    with pytest.raises(ValueError, match="quantile"):
        readout_errors(model, runs, horizon=5, quantile=1.0)


def test_calibration_near_the_zones_measures_the_error_where_it_can_cause_a_violation():
    """A model exact near x = 0 and 0.5 m off beyond x = 2: the global bound is 0.5, the bound
    near a keep-out disc at the origin is 0; with too few samples near it, every sample counts."""
    from agent.calibration import readout_errors

    class FarOff(PointMassModel):
        def step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            return s  # the runs below stay at rest

        def readout(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"xy": z[..., :2] + torch.stack([0.5 * (z[..., 0] > 2.0), 0 * z[..., 0]], dim=-1)}

    model, runs = FarOff(), []
    for x in (0.0, 4.0):  # one run at rest near the origin, one far from it
        obs = np.zeros((301, 4), np.float32)
        obs[:, 0] = x
        runs.append({"obs": obs, "actions": np.zeros((300, 2), np.float32), "measurements": {"xy": obs[:, :2]}})
    rails = GuardrailSet([{"type": "keep_out", "key": "xy", "center": [0, 0], "radius": 0.1}],
                         readout=model.readout, readout_keys=("xy",))
    assert float(readout_errors(model, runs, horizon=3)["xy"].min()) == pytest.approx(0.5)
    counts: dict[str, list[int]] = {}
    near = readout_errors(model, runs, horizon=3, near=partial(rails.near, radius=1.0), counts=counts)
    assert float(near["xy"].max()) == pytest.approx(0.0, abs=1e-6) and counts["xy"] == [298] * 3
    few = readout_errors(model, [runs[0]] + [runs[1]] * 3, horizon=3, quantile=0.999,
                         near=partial(rails.near, radius=1.0), counts=counts)
    assert counts["xy"] == [4 * 298] * 3 and float(few["xy"].min()) == pytest.approx(0.5)  # 298 < 999 needed
