"""The critic-surprise escape (agent.escape): when it tumbles, when it does not, and through `oda eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agent.escape import EscapeConfig, SurpriseEscape
from world_models.task import TaskHeads, symlog


def constant_heads(reward: float, value: float, gamma: float = 0.99) -> TaskHeads:
    """Task heads whose reward head reads ``reward`` and whose critic reads ``value`` everywhere."""
    heads = TaskHeads(latent_dim=4, action_dim=2, hidden_dim=8, critics=3, gamma=gamma)
    with torch.no_grad():
        for net, out in [(heads.reward_net, reward), *((head, value) for head in heads.critic)]:
            net[-1].weight.zero_()
            net[-1].bias.fill_(float(symlog(torch.tensor(out))))
    return heads


def play(escape: SurpriseEscape, steps: int, seed: int = 0) -> list[np.ndarray | None]:
    """``steps`` calls as the actor makes them: observe, a tumble or a planned action, that action taken."""
    escape.reset(seed)
    gen = torch.Generator().manual_seed(seed)
    tumbles = []
    for _ in range(steps):
        z = torch.randn(4, generator=gen)
        escape.observe(z)
        tumble = escape.action()
        tumbles.append(tumble)
        escape.taken(tumble if tumble is not None else np.zeros(2, np.float32))
    return tumbles


def test_a_critic_that_keeps_its_promises_never_tumbles():
    # reward 1 per step and Q = 1 / (1 - gamma): what follows any window is exactly what was promised
    escape = SurpriseEscape(constant_heads(1.0, 100.0), EscapeConfig(window=20, threshold=0.02, steps=5), 2)
    assert all(t is None for t in play(escape, 200))
    assert escape.tumbles == 0 and abs(escape.surprise) < 1e-3


def test_a_critic_that_overrates_where_the_reward_stops_tumbles_with_a_held_full_force_direction():
    # the prone walker: Q 182 where 0.03 a step follows; 20 steps later 18% of the promise is missing
    config = EscapeConfig(window=20, threshold=0.1, steps=5)
    escape = SurpriseEscape(constant_heads(0.03, 182.0), config, 2)
    tumbles = play(escape, 80)
    assert all(t is None for t in tumbles[:20])  # no verdict before a window of steps has passed
    first = tumbles[20:25]
    assert all(t is not None for t in first) and all(np.array_equal(t, first[0]) for t in first)
    assert np.abs(first[0]).max() == pytest.approx(1.0) and np.all(np.abs(first[0]) <= 1.0)
    assert escape.surprise == pytest.approx(0.18, abs=0.01)
    # a window after the tumble began (its own steps count: the promise of a tumble's action is checked too)
    # it judges again, and tumbles again
    assert all(t is None for t in tumbles[25:40]) and tumbles[40] is not None
    assert escape.tumbles == 3
    # the draws follow the episode's seed
    again = SurpriseEscape(constant_heads(0.03, 182.0), config, 2)
    assert all(np.array_equal(a, b) if a is not None else b is None for a, b in zip(play(again, 80), tumbles,
                                                                                    strict=True))
    other = [t for t in play(again, 80, seed=1) if t is not None]
    assert not np.array_equal(other[0], first[0])


def test_escape_settings_are_checked():
    with pytest.raises(ValueError, match="window"):
        EscapeConfig(window=0)
    with pytest.raises(ValueError, match="threshold"):
        EscapeConfig(threshold=0.0)


def test_escape_through_oda_eval_and_its_refusals(tmp_path, capsys):
    """A tiny cartpole agent: `oda eval` with an escape counts its tumbles per episode and repeats its return;
    with guardrails or an unknown key it is refused by name; the reactive mode builds none."""
    from agent.cli import main

    run = tmp_path / "cp"
    assert main(["train", "launch/cartpole-swingup.yaml", "training.steps=550", "training.seed_steps=500",
                 "training.eval_every=0", "training.checkpoint_every=0", "training.batch_size=16",
                 "world_model.latent_dim=8", "world_model.hidden_dim=16", "world_model.reward_hidden=16",
                 "world_model.policy_hidden=16", "planner.params.samples=16", "planner.params.elites=4",
                 "planner.params.iterations=1", "escape={window: 5, threshold: 1e-6, steps: 3}",
                 f"run_dir={run}", "--quiet"]) == 0
    capsys.readouterr()
    # set at the top level, the escape acts in training too; each planned episode's tumbles go to TensorBoard
    # (one entry: the first episode, all seeding, logs none)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = EventAccumulator(str(run / "tb")).Reload().Scalars("train/episode_tumbles")
    assert len(logged) == 1 and logged[0].step == 550 and logged[0].value > 0
    # an untrained critic's promises are far from what follows: it tumbles
    assert main(["eval", str(run), "escape={window: 5, threshold: 1e-6, steps: 3}", "--episodes", "1",
                 "--per-episode", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tumbles"] == result["per_episode"][0]["tumbles"] > 0 and result["tumble_episodes"] == 1
    assert main(["eval", str(run), "escape={window: 5, threshold: 1e-6, steps: 3}", "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] == result["return_mean"]
    assert main(["eval", str(run), "escape={window: 5, threshold: 1e9, steps: 3}", "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tumbles"] == 0
    assert main(["eval", str(run), "escape={window: 5, threshold: 0.1, steps: 3}", "--mode", "reactive",
                 "--episodes", "1", "--json"]) == 0  # the policy alone does not plan: the escape is not built
    assert "tumbles" not in json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "escape={window: 5, threshold: 0.1, steps: 3}",
                 "guardrails=[{type: action_bound, limit: 0.5}]", "--episodes", "1"]) == 2
    assert "escape tumbles between plans" in capsys.readouterr().err
    assert main(["eval", str(run), "escape={window: 5, threshold: 0.1, steps: 3}", "guardrail_mode=soft",
                 "guardrails=[{type: action_bound, limit: 0.5}]", "cost={task: 1, critic: 1, guardrail_penalty: 1}",
                 "--episodes", "1"]) == 2
    assert "escape tumbles between plans" in capsys.readouterr().err
    assert main(["eval", str(run), "escape={windows: 5}", "--episodes", "1"]) == 2
    assert "'escape'" in capsys.readouterr().err
