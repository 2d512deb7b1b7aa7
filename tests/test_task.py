"""Reward tasks (issue 4): the reward head and critic (world_models.task.TaskHeads), the task and
critic cost terms, and a reward task trained and evaluated through the CLI."""

from __future__ import annotations

import json

import imageio
import numpy as np
import pytest
import torch

from agent.cost import CostModule
from agent.memory import EpisodeReplay
from planners import make_planner
from world_models.task import TaskHeads, symexp, symlog

GAMMA = 0.9


def train_critic(buf: EpisodeReplay, latent_dim: int, steps: int = 800, seed: int = 0,
                 gamma: float = GAMMA, bootstrap: str = "policy", target: str = "min") -> TaskHeads:
    """TaskHeads on latents that are the observations themselves, trained on replay windows as the
    world model trains them: reward head and critic by their losses, the policy up the critic."""
    torch.manual_seed(seed)
    heads = TaskHeads(latent_dim, 1, 64, critics=2, gamma=gamma, tau=0.05, bootstrap=bootstrap, target=target)
    optim = torch.optim.Adam(heads.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    policy_params = list(heads.policy.parameters())
    for _ in range(steps):
        b = buf.sample(128, 3, rng)
        z = torch.as_tensor(b["obs"])
        reward_loss, critic_loss, _ = heads.loss(z, z[:, 1:], torch.as_tensor(b["actions"]),
                                                 torch.as_tensor(b["rewards"]), torch.as_tensor(b["terminals"]))
        optim.zero_grad()
        (reward_loss + critic_loss).backward()
        policy_loss, _ = heads.policy_loss(z[:, :-1])
        for p, g in zip(policy_params, torch.autograd.grad(policy_loss, policy_params), strict=True):
            p.grad = g
        optim.step()
        heads.update_target()
    return heads


def test_symlog_inverts():
    x = torch.tensor([-120.0, -1.0, 0.0, 0.3, 1000.0])
    torch.testing.assert_close(symexp(symlog(x)), x)


@pytest.mark.parametrize("bootstrap", ["policy", "behaviour"])
def test_critic_learns_a_chain_value_and_never_bootstraps_through_a_terminal_state(bootstrap):
    """A chain 0 -> 1 -> ... -> 5, reward 1 per step, terminating on reaching cell 5, whose
    observation is made identical to cell 0's: bootstrapping through the terminal state would add
    gamma * V(0) to V(4). The value is (1 - gamma^(5 - k)) / (1 - gamma). The behaviour bootstrap
    must still learn V(4): the terminal step is always the last of its window, which has no next action."""
    cells = 5
    eye = np.eye(cells, dtype=np.float32)
    buf = EpisodeReplay(2000, (cells,), np.float32, 1)
    rng = np.random.default_rng(0)
    for _ in range(150):
        start = int(rng.integers(cells))
        path = list(range(start, cells)) + [0]  # the terminal cell looks like cell 0
        buf.add_episode(eye[path], rng.uniform(-1, 1, (len(path) - 1, 1)).astype(np.float32),
                        rewards=np.ones(len(path) - 1), terminated=True)
    heads = train_critic(buf, cells, bootstrap=bootstrap)
    with torch.no_grad():
        values = heads.value(torch.eye(cells)).numpy()
        rewards = heads.reward(torch.eye(cells), torch.zeros(cells, 1)).numpy()
    truth = (1 - GAMMA ** (cells - np.arange(cells))) / (1 - GAMMA)
    np.testing.assert_allclose(values, truth, rtol=0.1)
    np.testing.assert_allclose(rewards[1:], 1.0, atol=0.1)  # every step pays 1 (cell 0 is only ever a start)


def ring_replay(cells: int, seed: int, reward_of) -> EpisodeReplay:
    """200 episodes of 8 steps around a ring of one-hot cells from random starts, with uniform random
    actions, each cut by a time limit; ``reward_of(actions [8, 1]) -> rewards [8]``."""
    eye = np.eye(cells, dtype=np.float32)
    buf = EpisodeReplay(3000, (cells,), np.float32, 1)
    rng = np.random.default_rng(seed)
    for _ in range(200):
        start = int(rng.integers(cells))
        actions = rng.uniform(-1, 1, (8, 1)).astype(np.float32)
        buf.add_episode(eye[[(start + t) % cells for t in range(9)]], actions, rewards=reward_of(actions),
                        terminated=False)
    return buf


def test_critic_bootstraps_through_time_limit_truncations():
    """A ring of 5 cells walked forever, cut by a time limit every 8 steps: every state is worth
    1 / (1 - gamma) = 10. Treating truncations as terminal would pull the values down."""
    cells = 5
    heads = train_critic(ring_replay(cells, 1, lambda actions: np.ones(8)), cells, steps=1200)
    with torch.no_grad():
        values = heads.value(torch.eye(cells)).numpy()
    np.testing.assert_allclose(values, 1 / (1 - GAMMA), rtol=0.1)


def test_the_behaviour_bootstrap_values_the_data_s_actions_and_the_policy_bootstrap_the_policy_s():
    """A ring walked with uniform random actions whose reward is the action itself: acting as the data
    did earns 0 on average, so Q_behaviour(z, a) = a; following the policy (which learns a = 1) earns
    1 per step, so Q_policy(z, a) = a + gamma / (1 - gamma) = a + 9."""
    cells = 5
    buf = ring_replay(cells, 2, lambda actions: actions[:, 0])
    probe = torch.tensor([[-0.5], [0.0], [0.5]])
    grid = (torch.eye(cells)[:, None].expand(cells, 3, cells), probe.expand(cells, 3, 1))
    behaviour, policy = (train_critic(buf, cells, steps=1200, bootstrap=b) for b in ("behaviour", "policy"))
    with torch.no_grad():
        q_behaviour, q_policy = behaviour.q(*grid).numpy(), policy.q(*grid).numpy()
    np.testing.assert_allclose(q_behaviour, np.broadcast_to(probe[:, 0].numpy(), q_behaviour.shape), atol=0.25)
    # the policy bootstrap heads for 9 (1200 steps and its pessimism, min of 2 heads at a noisy action,
    # leave it near 7.7); the behaviour bootstrap never does
    assert (q_policy - probe[:, 0].numpy() > 6.0).all(), q_policy
    with pytest.raises(ValueError, match="bootstrap"):
        TaskHeads(4, 1, 16, bootstrap="greedy")
    from world_models.config import WorldModelConfig
    with pytest.raises(ValueError, match="train_horizon >= 2"):  # a one-step window has no next stored action
        WorldModelConfig(obs_dim=4, action_dim=1, reward_hidden=16, train_horizon=1,
                         critic_bootstrap="behaviour").validate()


def test_the_mean_target_combines_two_heads_without_the_minimum_s_pessimism():
    """Two target heads that say 2 and 8: the TD target's bootstrap takes 2 with ``target="min"`` and their
    mean (in symlog space, as the heads regress) with ``"mean"``. Trained on the ring whose reward is the
    action, the policy's value is a + 9 (less under the bootstrap's smoothing noise): both critics sit below it,
    the mean's higher, and it does not overshoot."""
    said = torch.tensor([2.0, 8.0])
    bootstraps = {}
    for target in ("min", "mean"):
        heads = TaskHeads(4, 1, 16, critics=2, gamma=0.9, target=target)
        with torch.no_grad():
            for head, value in zip(heads.target_critic, said, strict=True):
                head[-1].weight.zero_()
                head[-1].bias.fill_(float(symlog(value)))
        bootstraps[target] = heads._bootstrap(torch.zeros(3, 4))
    torch.testing.assert_close(bootstraps["min"], torch.full((3,), 2.0))
    torch.testing.assert_close(bootstraps["mean"], symexp(symlog(said).mean()).expand(3))
    with pytest.raises(ValueError, match="target"):
        TaskHeads(4, 1, 16, target="max")
    from world_models.config import WorldModelConfig
    with pytest.raises(ValueError, match="critic_target"):
        WorldModelConfig(obs_dim=4, action_dim=1, critic_target="max").validate()

    cells = 5
    buf = ring_replay(cells, 2, lambda actions: actions[:, 0])
    probe = torch.tensor([[-0.5], [0.0], [0.5]])
    grid = (torch.eye(cells)[:, None].expand(cells, 3, cells), probe.expand(cells, 3, 1))
    q = {}
    for target in ("min", "mean"):
        heads = train_critic(buf, cells, steps=1200, target=target)
        with torch.no_grad():
            q[target] = heads.q(*grid) - (probe[:, 0] + 9.0)  # the error against the noiseless value
    assert (q["mean"] - q["min"]).mean() > 0.07 and (q["mean"] < 0.5).all(), q


def test_td_targets_stay_within_the_returns_that_the_rewards_allow():
    """A target critic gone wild (values of 1e6) cannot lift the TD targets above max(r) / (1 - gamma)."""
    heads = TaskHeads(4, 1, 16, critics=2, gamma=0.9)
    with torch.no_grad():
        for head in heads.target_critic:
            head[-1].bias.fill_(float(symlog(torch.tensor(1e6))))
    z, actions = torch.randn(8, 4, 4), torch.rand(8, 3, 1)
    rewards = torch.rand(8, 3)
    _, _, logs = heads.loss(z, z[:, 1:], actions, rewards, torch.zeros(8, 3, dtype=torch.bool))
    assert float(logs["critic/target_mean"]) <= float(rewards.max()) / (1 - 0.9) + 1e-4
    assert float(heads.reward_high) == float(rewards.max()) and float(heads.reward_low) == 0.0


class Line:
    """A 1-D point, latent = position: x' = x + 0.1 a. Reward 1 once past x = 0.6, beyond the
    reach of a 3-step plan from the origin."""

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return z0[:, None] + 0.1 * torch.cumsum(actions, dim=1)


def line_replay(seed: int = 0) -> EpisodeReplay:
    """Random-action episodes on the line from random starts; reward 1 after each step ending past x = 0.6."""
    rng = np.random.default_rng(seed)
    buf = EpisodeReplay(200 * 41, (1,), np.float32, 1)
    for _ in range(200):
        actions = rng.uniform(-1, 1, (40, 1)).astype(np.float32)
        x = rng.uniform(-1.5, 1.5) + np.concatenate([[0.0], 0.1 * np.cumsum(actions[:, 0])])
        buf.add_episode(x[:, None].astype(np.float32), actions, rewards=(x[1:] > 0.6).astype(np.float32))
    return buf


def test_a_learned_critic_lets_a_short_plan_reach_a_reward_beyond_its_horizon():
    """Reward head and critic learned from random data on the line; MPPI at horizon 3 from the
    origin: with the critic it walks to the rewarding side, without it (the reward is never in
    view) it does not."""
    heads = train_critic(line_replay(), 1, gamma=0.98)
    model = Line()
    returns = {}
    for weights in ({"task": 1.0, "critic": 1.0}, {"task": 1.0}):
        cost = CostModule(weights)
        cost.task = heads
        assert not cost.needs_goal
        planner = make_planner("mppi", 1, horizon=3, samples=128, iterations=4, seed=0)
        x, total = torch.zeros(1), 0.0
        for _ in range(40):
            with torch.no_grad():
                plan = planner.plan(x, model.rollout, cost)
            x = x + 0.1 * plan.actions[0].clamp(-1, 1)
            total += float(x > 0.6)
            planner.shift(1)
        returns[tuple(weights)] = total
    assert returns[("task", "critic")] >= 25  # walks over and stays
    assert returns[("task", "critic")] > returns[("task",)] + 20  # without the critic the reward is out of view


def test_task_terms_need_task_heads_and_goal_terms_need_a_goal():
    cost = CostModule({"task": 1.0, "critic": 1.0})
    with pytest.raises(RuntimeError, match="need a world model with a reward head"):
        cost(torch.zeros(2, 3, 4), torch.zeros(2, 3, 1))
    goal = CostModule({"goal": 1.0, "task": 1.0})
    assert goal.needs_goal
    with pytest.raises(RuntimeError, match="before set_goal"):
        goal(torch.zeros(2, 3, 4), torch.zeros(2, 3, 1))


def test_reward_task_trains_and_evaluates_in_both_modes_through_the_cli(tmp_path, capsys):
    """cartpole-swingup's launch file, tiny: train, eval --json planning (mode 2) and with the
    policy alone (mode 1, --mode reactive), the policy's actions identical after a reload, a goal
    cost refused by name."""
    from agent.cli import main
    from agent.snapshot import load_agent

    run = tmp_path / "cp"
    assert main(["train", "launch/cartpole-swingup.yaml", "training.steps=300", "training.seed_steps=200",
                 "training.eval_every=0", "training.checkpoint_every=0", "training.batch_size=32",
                 "world_model.latent_dim=8", "world_model.hidden_dim=32", "world_model.reward_hidden=16",
                 "world_model.policy_hidden=16", "planner.params.samples=32", "planner.params.elites=8",
                 "planner.params.iterations=2", "planner.params.horizon=3", f"run_dir={run}", "--quiet"]) == 0
    capsys.readouterr()
    results = {}
    for mode in ("plan", "reactive"):
        assert main(["eval", str(run), "--episodes", "1", "--mode", mode, "--json"]) == 0
        results[mode] = json.loads(capsys.readouterr().out)
        assert results[mode]["task"] == "dmc/cartpole-swingup" and results[mode]["episode_len_mean"] == 500
        assert results[mode]["return_mean"] > 0  # cartpole pays a little even when the pole hangs
    assert results["reactive"]["planner"] == "policy"
    assert results["reactive"]["plan_ms_median"] < results["plan"]["plan_ms_median"]  # one call vs a search
    # the same evaluation again repeats the plan's return exactly: every sample the planner draws, its
    # policy proposals' noise included, follows the launch file's seed (not torch's global stream)
    assert main(["eval", str(run), "--episodes", "1", "--mode", "plan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] == results["plan"]["return_mean"]
    _, model = load_agent(sorted(run.glob("step_*"))[-1], torch.device("cpu"))
    _, again = load_agent(sorted(run.glob("step_*"))[-1], torch.device("cpu"))
    z = torch.randn(5, 8)
    torch.testing.assert_close(model.policy(z), again.policy(z), rtol=0, atol=0)
    # a video of a reward task: no goal image beside the frames (before, a KeyError 'image' stopped it)
    video = tmp_path / "cp.mp4"
    assert main(["record", str(run), "--episodes", "1", "--out", str(video), "--size", "48"]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert recorded["frames"] == 501 and recorded["return_mean"] == results["plan"]["return_mean"]
    with imageio.get_reader(video) as reader:
        frames = list(reader.iter_data())
    assert len(frames) == 501 and frames[0].shape == (48, 48, 3)  # the camera frame alone
    # the critic audit plays the same evaluation episode (same seed: the policy's return again) and scores
    # the critic's values of the actions taken against the discounted return that followed them
    from agent.critic_audit import main as audit_main

    assert audit_main([str(run), "--episodes", "1", "--mode", "reactive", "--over", "1e9", "--quiet"]) == 0
    audited = json.loads(capsys.readouterr().out)
    episode = audited["per_episode"][0]
    assert episode["return"] == pytest.approx(results["reactive"]["return_mean"], rel=1e-9)
    assert episode["length"] == 500 and 0 < episode["steps_scored"] < 500  # gamma^(500 - t) >= 0.05 left out
    assert audited["longest_over"] == 0 and np.isfinite(episode["q_minus_return_mean"])
    assert episode["q_minus_return_max"] >= episode["q_minus_return_mean"]
    # the critic term valued through the model's imagination: a trust of 0 plans exactly as the critic alone,
    # any other changes the plans; bad settings are refused by name
    assert main(["eval", str(run), "critic_tail={steps: 4, trust: 0}", "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] == results["plan"]["return_mean"]
    assert main(["eval", str(run), "critic_tail={steps: 4, trust: 1e6}", "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] != results["plan"]["return_mean"]
    assert main(["eval", str(run), "critic_tail={steps: 0}", "--episodes", "1"]) == 2
    assert "'critic_tail': steps must be an int >= 1" in capsys.readouterr().err
    assert main(["eval", str(run), "critic_tail={horizon: 5}", "--episodes", "1"]) == 2
    assert "valid keys: steps, trust" in capsys.readouterr().err
    assert main(["eval", str(run), "cost={goal: 1.0}", "--episodes", "1"]) == 2
    assert "is not goal-conditioned: a reward task plans with cost" in capsys.readouterr().err
    assert main(["eval", str(run), "guardrails=[{type: action_bound, limit: 0.5}]", "--mode", "reactive"]) == 2
    assert "only plans are checked" in capsys.readouterr().err


def test_the_policy_learns_to_ascend_the_critic_and_proposes_plans():
    """With a known critic that pays for pushing right (Q = a), the policy learns to push right
    from every latent; as the planner's proposal it seeds the first plan and some candidates."""
    torch.manual_seed(0)
    heads = TaskHeads(1, 1, 16, critics=1, gamma=0.9, policy_hidden=32)
    heads.q = lambda z, a: a[..., 0] + 2.0
    heads.reward = lambda z, a: z[..., 0]  # reward = position after the step (for the plan below)
    policy = heads.policy
    optim = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(200):
        loss, _ = heads.policy_loss(torch.randn(64, 1))
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert float(policy(torch.randn(100, 1)).detach().min()) > 0.9  # full right everywhere
    step = lambda z, a: z + 0.1 * a  # noqa: E731

    from agent.actor import policy_proposal

    class Model:
        predict = staticmethod(step)

    Model.policy = policy
    planner = make_planner("mppi", 1, horizon=4, samples=32, elites=8, iterations=1, policy_samples=6, seed=0)
    planner.proposal = policy_proposal(Model(), 4)
    proposals = planner.proposal(torch.zeros(1), 6)
    assert proposals.shape == (6, 4, 1) and float(proposals[0].min()) > 0.9  # the first one has no noise
    cost = CostModule({"task": 1.0})
    cost.task = heads
    plan = planner.plan(torch.zeros(1), Line().rollout, cost)
    torch.testing.assert_close(plan.info["init_mean"], proposals[0])  # the first plan starts from it
    assert float(plan.actions.mean()) > 0.5


def test_world_model_trains_its_reward_head_into_the_latent_and_its_critic_on_detached_latents():
    from world_models import JEPAWorldModel
    from world_models.config import WorldModelConfig

    cfg = WorldModelConfig(obs_dim=4, action_dim=2, latent_dim=8, hidden_dim=32, train_horizon=3, reward_hidden=16,
                           seed=0)
    model = JEPAWorldModel(cfg)
    obs, actions = torch.randn(5, 4, 4), torch.randn(5, 3, 2)
    rewards, terminals = torch.rand(5, 3), torch.zeros(5, 3, dtype=torch.bool)
    _, logs = model.loss(obs, actions, rewards=rewards, terminals=terminals, diagnostics=False)
    assert {"loss/reward", "loss/critic", "critic/value_mean"} <= set(logs)
    _, critic_loss, _ = model.task.loss(model.encode(obs), model.rollout(model.encode(obs[:, 0]), actions), actions,
                                        rewards, terminals)
    critic_loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # the critic reads detached latents
    reward_loss, _, _ = model.task.loss(model.encode(obs), model.rollout(model.encode(obs[:, 0]), actions), actions,
                                        rewards, terminals)
    reward_loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    shaped = JEPAWorldModel(WorldModelConfig(obs_dim=4, action_dim=2, latent_dim=8, hidden_dim=32, train_horizon=3,
                                             reward_hidden=16, critic_shapes_latent=True, seed=0))
    _, critic_loss, _ = shaped.task.loss(shaped.encode(obs), shaped.rollout(shaped.encode(obs[:, 0]), actions),
                                         actions, rewards, terminals)
    critic_loss.backward()  # with critic_shapes_latent the TD error trains the encoder and predictor too
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shaped.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shaped.predictor.parameters())
    with pytest.raises(ValueError, match="rewards and terminals must be \\[5, 3\\]"):
        model.loss(obs, actions, rewards=rewards[:, :2], terminals=terminals)
    with pytest.raises(ValueError, match="reward_hidden must be an int >= 0"):
        WorldModelConfig(obs_dim=4, action_dim=2, reward_hidden=-1).validate()


def test_gymnasium_terminations_are_stored_as_terminal_and_time_limits_are_not(tmp_path):
    """Hopper falls within a few dozen random steps (terminated); a 30-step time limit truncates
    the episodes that do not fall. Only the former mark their last action terminal."""
    from agent.launch import load_launch
    from agent.trainer import Trainer

    cfg = load_launch("launch/cartpole-swingup.yaml", [
        "env.id=gym/Hopper-v5", "env.action_repeat=1", "env.kwargs={episode_steps: 30}", "training.steps=300",
        "training.seed_steps=300", "training.eval_every=0", "training.checkpoint_every=0", "training.batch_size=16",
        "world_model.latent_dim=8", "world_model.hidden_dim=16", "world_model.reward_hidden=8",
        "world_model.policy_hidden=8", f"run_dir={tmp_path / 'hop'}"])
    trainer = Trainer(cfg, progress=False)
    trainer.train()
    state = trainer.replay.state_dict()
    ends = np.cumsum(state["episode_lengths"]) - 2  # the slot of each episode's last action
    lengths = state["episode_lengths"] - 1
    terminal = state["terminals"].astype(bool)
    assert terminal.sum() == terminal[ends].sum()  # only last actions can be terminal
    full = lengths[:-1] == 30  # the last episode may be cut by the training budget
    assert full.any() and (~full).any()
    np.testing.assert_array_equal(terminal[ends[:-1]], ~full)  # fell: terminal; timed out: not
    assert np.abs(state["rewards"][ends]).min() > 0  # Hopper pays a healthy reward every step
