"""The critic audit's arithmetic, and its refusal of a goal task's checkpoint (the CLI run on a reward
task is in test_task.py, beside the tiny cartpole run it shares)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.critic_audit import longest_run, main, returns_to_go


def test_returns_to_go_discount_the_rewards_that_follow_and_bootstrap_the_tail():
    rewards = np.array([1.0, 0.0, 2.0])
    # G_2 = 2 + 0.5 * 4, G_1 = 0 + 0.5 * G_2, G_0 = 1 + 0.5 * G_1
    np.testing.assert_allclose(returns_to_go(rewards, 0.5, tail_value=4.0), [2.0, 2.0, 4.0])
    np.testing.assert_allclose(returns_to_go(rewards, 0.9), [1.0 + 0.81 * 2.0, 0.9 * 2.0, 2.0])
    assert returns_to_go(np.zeros(0), 0.9).shape == (0,)


def test_longest_run_counts_consecutive_flags():
    assert longest_run(np.array([True, True, False, True, True, True, False])) == 3
    assert longest_run(np.array([False, False])) == 0
    assert longest_run(np.array([], dtype=bool)) == 0


def test_a_goal_task_checkpoint_is_refused_by_name(trained_run, capsys):
    checkpoint = sorted(trained_run.glob("step_*"))[-1]
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoint), "--episodes", "1", "--quiet"])
    assert exit_info.value.code == 2
    assert "no reward head and critic to audit: it is a goal task" in capsys.readouterr().err
