"""The critic's tail (agent.cost.CriticTailConfig, TaskHeads.tail_value): the critic term's value moved toward
the model's imagination of the policy beyond the plan, by at most a trust. Through `oda eval`: tests/test_task.py."""

from __future__ import annotations

import pytest
import torch

from agent.cost import CostModule, CriticTailConfig
from world_models.task import TaskHeads, symlog


def test_the_critic_tail_moves_the_value_toward_the_model_s_imagination_by_at_most_its_trust():
    """Heads whose reward reads 1 and whose critic reads 5 everywhere, a model that stays put: the policy's
    imagined return over K steps is sum_k gamma^k + gamma^K * 5, above the critic's 5; the tail value is the
    critic's moved toward it, by no more than ``trust``; the critic term of the cost reads it."""
    heads = TaskHeads(4, 2, 8, critics=2, gamma=0.9)
    with torch.no_grad():
        for net, out in [(heads.reward_net, 1.0), *((head, 5.0) for head in heads.critic)]:
            net[-1].weight.zero_()
            net[-1].bias.fill_(float(symlog(torch.tensor(out))))
    z, stay = torch.randn(3, 4), (lambda z, a: z)
    steps = 6
    imagined = sum(0.9 ** k for k in range(steps)) + 0.9 ** steps * 5.0  # 9.25...
    with torch.no_grad():
        for trust, expected in [(0.0, 5.0), (1.5, 6.5), (100.0, imagined)]:
            torch.testing.assert_close(heads.tail_value(z, stay, steps, trust), torch.full((3,), expected))
        cost = CostModule({"critic": 1.0})
        cost.task = heads
        plan_z, plan_a = torch.randn(3, 2, 4), torch.zeros(3, 2, 2)
        torch.testing.assert_close(cost(plan_z, plan_a)[1]["critic"], torch.full((3,), -0.81 * 5.0))
        cost.terminal_value = lambda last: heads.tail_value(last, stay, steps, 1.5)
        torch.testing.assert_close(cost(plan_z, plan_a)[1]["critic"], torch.full((3,), -0.81 * 6.5))
    with pytest.raises(ValueError, match="steps"):
        CriticTailConfig(steps=0)
    with pytest.raises(ValueError, match="trust"):
        CriticTailConfig(trust=-1.0)
