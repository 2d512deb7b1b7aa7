import math

import pytest
import torch

from agent.cost import COST_TERMS, CostModule


def hand_built():
    # N=2 candidates, H=2 steps, D=2; goal at the origin.
    z = torch.tensor([[[3.0, 4.0], [0.0, 1.0]],    # distances 5, 1
                      [[0.0, 0.0], [6.0, 8.0]]])   # distances 0, 10
    actions = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],      # squares sum 2 over 4 entries -> 0.5
                            [[0.5, 0.5], [-1.0, -1.0]]])   # 0.5 + 2 = 2.5 over 4 -> 0.625
    return z, actions, torch.zeros(2)


def test_terms_exact():
    z, actions, goal = hand_built()
    torch.testing.assert_close(COST_TERMS["goal"](z, actions, goal), torch.tensor([3.0, 5.0]))
    torch.testing.assert_close(COST_TERMS["goal_final"](z, actions, goal), torch.tensor([1.0, 10.0]))
    torch.testing.assert_close(COST_TERMS["action"](z, actions, goal), torch.tensor([0.5, 0.625]))


def test_weighted_total_and_unweighted_terms():
    z, actions, goal = hand_built()
    cost = CostModule({"goal": 2.0, "goal_final": 0.5, "action": 0.0})
    cost.set_goal(goal + torch.tensor([0.0, 0.0]))
    total, terms = cost(z, actions)
    assert set(terms) == {"goal", "goal_final"}  # weight-0 terms are skipped
    torch.testing.assert_close(terms["goal"], torch.tensor([3.0, 5.0]))  # reported unweighted
    torch.testing.assert_close(total, torch.tensor([2 * 3.0 + 0.5 * 1.0, 2 * 5.0 + 0.5 * 10.0]))


def test_goal_shift_and_gradients():
    z = torch.tensor([[[1.0, 1.0]]], requires_grad=True)
    cost = CostModule({"goal_final": 1.0})
    cost.set_goal(torch.tensor([[1.0, 0.0]]))  # [1, D] accepted
    total, _ = cost(z, torch.zeros(1, 1, 3))
    assert math.isclose(total.item(), 1.0)
    total.sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([[[0.0, 1.0]]]))  # gradient planners need this


def test_rejections():
    valid = r"valid terms: \['action', 'cost_to_go', 'critic', 'goal'"
    with pytest.raises(ValueError, match=r"unknown cost term\(s\) \['gaol'\]; " + valid):
        CostModule({"gaol": 1.0})
    with pytest.raises(ValueError, match="must be a number >= 0"):
        CostModule({"goal": -1.0})
    with pytest.raises(ValueError, match="at least one"):
        CostModule({"goal": 0.0})
    cost = CostModule({"goal": 1.0})
    z, actions, _ = hand_built()
    with pytest.raises(RuntimeError, match="before set_goal"):
        cost(z, actions)
    cost.set_goal(torch.zeros(3))
    with pytest.raises(ValueError, match="latent dim 2"):
        cost(z, actions)


def test_guardrail_penalty_term_adds_the_violation_as_a_cost():
    cost = CostModule({"goal": 1.0, "guardrail_penalty": 10.0})
    cost.set_goal(torch.zeros(2))
    z, actions = torch.ones(3, 4, 2), torch.zeros(3, 4, 1)
    with pytest.raises(RuntimeError, match="no penalty"):
        cost(z, actions)
    cost.penalty = lambda z, a: torch.tensor([0.0, 0.5, 2.0])
    total, terms = cost(z, actions)
    torch.testing.assert_close(terms["guardrail_penalty"], torch.tensor([0.0, 0.5, 2.0]))
    torch.testing.assert_close(total, terms["goal"] + 10.0 * torch.tensor([0.0, 0.5, 2.0]))


def test_cost_to_go_term_scores_the_last_predicted_latent():
    cost = CostModule({"goal": 1.0, "cost_to_go": 2.0})
    cost.set_goal(torch.zeros(3))
    z, actions = torch.randn(5, 4, 3), torch.zeros(5, 4, 1)
    with pytest.raises(RuntimeError, match="value head"):
        cost(z, actions)
    cost.value = lambda zz, g: zz.sum(-1) - g.sum()  # any (z [N, D], goal [D]) -> [N]
    total, terms = cost(z, actions)
    torch.testing.assert_close(terms["cost_to_go"], z[:, -1].sum(-1))
    torch.testing.assert_close(total, terms["goal"] + 2.0 * z[:, -1].sum(-1))


def test_policy_prior_term_measures_each_action_against_the_policy_at_its_latent():
    """Action t is compared with pi(latent before it): z_start for the first, the predicted z_t after."""
    from world_models.task import TaskHeads

    heads = TaskHeads(latent_dim=3, action_dim=2, hidden_dim=8)
    cost = CostModule({"task": 1.0, "policy_prior": 5.0})
    cost.task = heads
    z, actions = torch.randn(4, 3, 3), torch.rand(4, 3, 2) * 2 - 1
    with pytest.raises(RuntimeError, match="start latent"):
        cost(z, actions)
    cost.z_start = torch.randn(3)
    total, terms = cost(z, actions)
    with torch.no_grad():
        before = torch.cat([cost.z_start.expand(4, 1, 3), z[:, :-1]], dim=1)
        expected = (actions - heads.policy(before)).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(terms["policy_prior"], expected)
    torch.testing.assert_close(total, terms["task"] + 5.0 * expected)
    # the policy's own imagined plan costs nothing under the prior
    latents, own = heads.policy.imagine(cost.z_start[None], lambda zz, a: zz + a.sum(-1, keepdim=True), 3)
    _, own_terms = cost(latents, own)
    assert own_terms["policy_prior"].abs().max() < 1e-10


def test_readout_goal_term_measures_a_measurement_against_its_readout_at_the_goal():
    """goal:<key>: mean over the plan's steps of the distance between the readout and the goal's readout,
    in the measurement's units, whatever the latent distance says."""
    cost = CostModule({"goal:block_xy": 10.0})
    assert cost.needs_goal
    cost.set_goal(torch.tensor([1.0, 1.0, 5.0]))  # readout (1, 1)
    z, actions = hand_built()[0].repeat(1, 1, 2)[..., :3], torch.zeros(2, 2, 1)  # [2, 2, 3]
    with pytest.raises(RuntimeError, match=r"\['block_xy'\] need the world model's readouts"):
        cost(z, actions)
    cost.readout = lambda zz, keys: {k: zz[..., :2] for k in keys}  # reads the first two latent dims
    total, terms = cost(z, actions)
    # candidate 0: readouts (3, 4), (0, 1) -> distances from (1, 1): sqrt(13), 1; candidate 1: (0, 0), (6, 8)
    expected = torch.tensor([(math.sqrt(13) + 1) / 2, (math.sqrt(2) + math.sqrt(74)) / 2])
    torch.testing.assert_close(terms["goal:block_xy"], expected)
    torch.testing.assert_close(total, 10.0 * expected)
    for bad in ("goal:", "gaol:block_xy"):
        with pytest.raises(ValueError, match="unknown cost term"):
            CostModule({bad: 1.0})
