"""Planners on an analytic, differentiable 2-D double integrator (point mass with damping):
closed-loop MPC reaches the goal, beats random shooting at equal budget, respects a keep-out disc,
warm-starts, is repeatable, stays in [-1, 1] and batches one dynamics call per iteration."""

from __future__ import annotations

import pytest
import torch

from planners import PLANNERS, GradientConfig, GradientPlanner, Plan, make_planner
from planners.base import rank

torch.set_num_threads(1)

DT, DAMPING = 0.1, 0.5
START = torch.tensor([0.0, 0.0, 0.0, 0.0])
GOAL = torch.tensor([1.0, 0.5])
# Small budgets keep the file fast; the defaults (512 x 6) behave the same, only slower.
FAST = {
    "cem": {"samples": 128, "iterations": 4, "elites": 16},
    "mppi": {"samples": 128, "iterations": 4, "elites": 16},
    "gradient": {"iterations": 12, "restarts": 8},
    "random": {"samples": 128, "iterations": 4},
}
SEARCHERS = ["cem", "mppi", "gradient"]


def step(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """z = [x, y, vx, vy]; the action is a force in [-1, 1]^2 (unit mass)."""
    vel = state[..., 2:] + DT * (action - DAMPING * state[..., 2:])
    return torch.cat([state[..., :2] + DT * vel, vel], dim=-1)


def rollout(z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    states, state = [], z0
    for t in range(actions.shape[1]):
        state = step(state, actions[:, t])
        states.append(state)
    return torch.stack(states, dim=1)


class CountingDynamics:
    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(actions.shape[0])
        return rollout(z0, actions)


def goal_objective(goal: torch.Tensor):
    def objective(z: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        dist = (z[..., :2] - goal).square().sum(-1)
        return dist.mean(1) + dist[:, -1], {"goal": dist.mean(1), "goal_final": dist[:, -1]}

    return objective


def keep_out(center: torch.Tensor, radius: float):
    def constraint(z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return (radius - (z[..., :2] - center).norm(dim=-1)).clamp_min(0.0).sum(1)

    return constraint


def closed_loop(planner, start, goal, max_steps, constraint=None, tol=0.05):
    """Plan, execute the first action on the true system, shift(1), repeat. Returns (steps to reach
    the goal or None, visited states, per-step plans)."""
    state, states, plans = start.clone(), [start.clone()], []
    objective = goal_objective(goal)
    for t in range(max_steps):
        plan = planner.plan(state, rollout, objective, constraint)
        plans.append(plan)
        state = step(state, plan.actions[0])
        states.append(state)
        planner.shift(1)
        if (state[:2] - goal).norm() < tol and state[2:].norm() < 0.1:
            return t + 1, torch.stack(states), plans
    return None, torch.stack(states), plans


@pytest.mark.parametrize("name", SEARCHERS)
def test_closed_loop_mpc_reaches_goal(name):
    planner = make_planner(name, 2, seed=0, **FAST[name])
    steps, states, plans = closed_loop(planner, START, GOAL, max_steps=40)
    assert steps is not None, f"{name} ended at {states[-1].tolist()}"
    assert steps <= 30  # ~20 steps (2 s) for a 1.1 m move from rest with |force| <= 1
    assert all(isinstance(p, Plan) and p.feasible for p in plans)


@pytest.mark.parametrize("name", SEARCHERS)
def test_beats_random_shooting_at_equal_budget(name):
    """Open-loop plan cost, averaged over seeds and starts; random gets the same number of rollouts."""
    cfg = FAST[name]
    budget = cfg["restarts"] * cfg["iterations"] if name == "gradient" else cfg["samples"] * cfg["iterations"]
    starts = [torch.tensor(s) for s in ([0.0, 0.0, -1.0, 0.5], [0.5, -0.5, 0.5, 1.0], [-0.3, 0.2, 0.0, -1.0])]
    objective = goal_objective(GOAL)
    ours, rand = [], []
    for seed in range(3):
        for start in starts:
            ours.append(make_planner(name, 2, seed=seed, horizon=15, **cfg).plan(start, rollout, objective).cost)
            shooter = make_planner("random", 2, seed=seed, horizon=15, samples=budget, iterations=1)
            rand.append(shooter.plan(start, rollout, objective).cost)
    ours_mean, rand_mean = sum(ours) / len(ours), sum(rand) / len(rand)
    assert ours_mean < 0.9 * rand_mean, (name, ours_mean, rand_mean)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_warm_start_shift_and_reset(name):
    planner = make_planner(name, 2, seed=0, horizon=6, **FAST[name])
    objective = goal_objective(GOAL)
    assert planner.warm_start is None
    first = planner.plan(START, rollout, objective)
    assert torch.equal(first.info["init_mean"], torch.zeros(6, 2))  # first plan of an episode starts at zeros
    assert torch.equal(planner.warm_start, first.actions)
    planner.shift(1)
    shifted = torch.cat([first.actions[1:], torch.zeros(1, 2)])  # zero padding at the end
    assert torch.equal(planner.warm_start, shifted)
    second = planner.plan(step(START, first.actions[0]), rollout, objective)
    assert torch.equal(second.info["init_mean"], shifted)
    planner.shift(10)  # beyond the horizon: nothing left of the old plan
    assert torch.equal(planner.warm_start, torch.zeros(6, 2))
    planner.reset()
    assert planner.warm_start is None
    third = planner.plan(START, rollout, objective)
    assert torch.equal(third.info["init_mean"], torch.zeros(6, 2))


@pytest.mark.parametrize("name", SEARCHERS)
def test_keep_out_disc_never_entered(name):
    center, radius = torch.tensor([0.75, 0.0]), 0.3
    goal = torch.tensor([1.5, 0.05])  # straight behind the disc, slightly off-axis
    planner = make_planner(name, 2, seed=0, **FAST[name])
    steps, states, plans = closed_loop(planner, START, goal, max_steps=60, constraint=keep_out(center, radius))
    assert (states[:, :2] - center).norm(dim=-1).min() >= radius - 1e-5
    assert all(p.feasible for p in plans)
    assert steps is not None, f"{name} did not get around the disc: {states[-1].tolist()}"


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_infeasible_start_reports_infeasible_and_minimises_violation(name):
    """Starting at the centre of a disc too large to leave within the horizon: every sequence
    violates, so the plan says feasible=False and is the least violating one found."""
    center, radius = torch.zeros(2), 1.0
    constraint = keep_out(center, radius)
    objective = goal_objective(center)  # the goal is inside the disc too
    plan = make_planner(name, 2, seed=0, horizon=5, **FAST[name]).plan(START, rollout, objective, constraint)
    assert plan.feasible is False
    still = constraint(rollout(START[None], torch.zeros(1, 5, 2)), None)
    assert constraint(plan.latents[None], plan.actions[None]) < still


@pytest.mark.parametrize("name", SEARCHERS)
def test_goal_inside_disc_is_not_pursued(name):
    """A goal inside the disc from a start outside: plans stay feasible and stop at the edge."""
    center, radius = torch.tensor([0.75, 0.0]), 0.3
    planner = make_planner(name, 2, seed=0, **FAST[name])
    _, states, plans = closed_loop(planner, START, center, max_steps=25, constraint=keep_out(center, radius))
    assert all(p.feasible for p in plans)
    dist = (states[:, :2] - center).norm(dim=-1)
    assert dist.min() >= radius - 1e-5 and dist[-1] < radius + 0.1


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_repeatable_with_seed(name):
    near = goal_objective(torch.tensor([0.2, 0.1]))  # reachable within the horizon: an interior optimum
    plans = [make_planner(name, 2, seed=s, **FAST[name]).plan(START, rollout, near) for s in (7, 7, 8)]
    assert torch.equal(plans[0].actions, plans[1].actions) and plans[0].cost == plans[1].cost
    assert not torch.equal(plans[0].actions, plans[2].actions)
    assert plans[0].info["elapsed_ms"] > 0 and plans[0].info["iterations"] == FAST[name]["iterations"]


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_actions_stay_in_bounds(name):
    far = goal_objective(torch.tensor([50.0, -50.0]))  # the unconstrained optimum lies far outside [-1, 1]
    planner = make_planner(name, 2, seed=0, **FAST[name])
    for _ in range(3):
        plan = planner.plan(START, rollout, far)
        assert plan.actions.abs().max() <= 1.0
        planner.shift(1)
    if name == "gradient":  # projected Adam ends exactly on the bounds
        assert torch.equal(plan.actions, torch.tensor([1.0, -1.0]).expand(10, 2))
    elif name != "random":
        assert plan.actions[0, 0] > 0.9 and plan.actions[0, 1] < -0.9


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_one_batched_dynamics_call_per_iteration(name):
    dynamics = CountingDynamics()
    cfg = FAST[name]
    plan = make_planner(name, 2, seed=0, **cfg).plan(START, dynamics, goal_objective(GOAL))
    assert len(dynamics.batch_sizes) == cfg["iterations"] + 1  # + the final evaluation of the result
    per_iteration = cfg["restarts"] if name == "gradient" else cfg["samples"]
    assert dynamics.batch_sizes[:-1] == [per_iteration] * cfg["iterations"]
    # Plan fields describe exactly the returned actions.
    latents = rollout(START[None], plan.actions[None])
    cost, terms = goal_objective(GOAL)(latents, plan.actions[None])
    assert torch.allclose(plan.latents, latents[0])
    assert plan.cost == pytest.approx(float(cost[0]), rel=1e-5)
    assert plan.terms == pytest.approx({k: float(v[0]) for k, v in terms.items()}, rel=1e-5)


def test_nan_samples_rank_last():
    def objective(z, actions):
        cost = (z[..., :2] - GOAL).square().sum(-1).mean(1)
        return torch.where(actions[:, 0, 0] > 0.5, torch.nan, cost), {}

    for name in sorted(PLANNERS):
        plan = make_planner(name, 2, seed=0, **FAST[name]).plan(START, rollout, objective)
        assert plan.actions[0, 0] <= 0.5 and plan.cost == plan.cost, name


def test_rank_puts_feasible_first():
    cost = torch.tensor([3.0, 1.0, 2.0, 0.5, 4.0])
    violation = torch.tensor([0.0, 0.0, 0.2, 0.1, 0.0])
    assert rank(cost, violation).tolist() == [1, 0, 4, 3, 2]
    assert rank(cost, None, 2).tolist() == [3, 1]


def test_gradient_planner_leaves_model_grads_alone_and_needs_gradients():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 4)

    def dynamics(z0, actions):
        return torch.stack([layer(torch.cat([z0, actions[:, t]], -1)) for t in range(actions.shape[1])], 1)

    planner = GradientPlanner(GradientConfig(horizon=4, iterations=3, restarts=2), 2, seed=0)
    planner.plan(torch.zeros(4), dynamics, goal_objective(GOAL))
    assert all(p.grad is None for p in layer.parameters())

    def frozen(z0, actions):
        with torch.no_grad():
            return rollout(z0, actions)

    with pytest.raises(ValueError, match="differentiable"):
        planner.plan(START, frozen, goal_objective(GOAL))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_cuda_planning_is_on_device_and_repeatable(name):
    device = torch.device("cuda")
    goal = GOAL.to(device)
    plans = [
        make_planner(name, 2, device="cuda", seed=3, **FAST[name]).plan(START.to(device), rollout, goal_objective(goal))
        for _ in range(2)
    ]
    assert plans[0].actions.device.type == "cuda" and plans[0].latents.device.type == "cuda"
    assert torch.equal(plans[0].actions, plans[1].actions) and plans[0].actions.abs().max() <= 1.0


def test_make_planner_validates_names_and_options():
    with pytest.raises(ValueError, match=r"unknown planner 'ilqr'.*cem, gradient, mppi, random"):
        make_planner("ilqr", 2)
    with pytest.raises(ValueError, match=r"unknown cem planner option\(s\) 'temperature'.*valid options: horizon"):
        make_planner("cem", 2, temperature=1.0)
    with pytest.raises(ValueError, match="elites"):
        make_planner("mppi", 2, samples=8, elites=16)
    with pytest.raises(ValueError, match="horizon"):
        make_planner("random", 2, horizon=0)
    with pytest.raises(ValueError, match="action_dim"):
        make_planner("gradient", 0)
    with pytest.raises(ValueError, match="z0"):
        make_planner("cem", 2).plan(torch.zeros(2, 4), rollout, goal_objective(GOAL))
    assert make_planner("mppi", 3, temperature=0.1).config.temperature == 0.1


@pytest.mark.parametrize("name", SEARCHERS)
def test_bfloat16_precision_rolls_out_under_autocast(name):
    """precision="bfloat16": the model's matmuls run in bf16, the plan is float32 and still good."""
    seen: list[torch.dtype] = []

    def dynamics(z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        seen.append(torch.nn.functional.linear(z0, torch.eye(4)).dtype)
        return rollout(z0, actions)

    planner = make_planner(name, 2, seed=0, precision="bfloat16", **FAST[name])
    plan = planner.plan(START, dynamics, goal_objective(GOAL))
    assert set(seen) == {torch.bfloat16}
    assert plan.latents.dtype == torch.float32 and plan.actions.dtype == torch.float32
    steps, _, _ = closed_loop(make_planner(name, 2, seed=0, precision="bfloat16", **FAST[name]), START, GOAL, 40)
    assert steps is not None and steps <= 30
    with pytest.raises(ValueError, match="precision must be one of"):
        make_planner(name, 2, precision="float8")
