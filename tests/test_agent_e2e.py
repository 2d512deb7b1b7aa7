"""The agent end to end through the CLI: train, eval --json, record, resume, checkpoints."""

import json
import shutil

import imageio
import numpy as np
import pytest
import torch

from agent.build import make_actor, make_env
from agent.checkpoint import latest_checkpoint
from agent.cli import main
from agent.evaluate import EVAL_SEED_BASE, run_episode
from agent.launch import eval_overrides, load_launch
from agent.snapshot import load_agent
from agent.trainer import Trainer


def test_train_writes_checkpoints_tensorboard_and_eval_log(trained_run):
    ckpts = sorted(p.name for p in trained_run.glob("step_*"))
    assert ckpts == ["step_00000120", "step_00000240"]
    assert list((trained_run / "tb").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained_run / "tb")).Reload()
    tags = events.Tags()["scalars"]
    for tag in ("train/episode_success", "train/episode_touched", "latent/effective_rank", "latent/std_min",
                "loss/pred", "loss/smooth", "loss/idm", "eval/success_rate",
                "time/plan_ms_per_step", "time/update_ms_per_step"):
        assert tag in tags, tag
    # training success means what evaluation's does: at the goal when the episode ends, never more than touched
    success, touched = ([e.value for e in events.Scalars(f"train/episode_{k}")] for k in ("success", "touched"))
    assert len(success) == len(touched) > 0 and all(s <= t for s, t in zip(success, touched, strict=True))
    evals = [json.loads(line) for line in (trained_run / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["step"] == 240 and evals[-1]["episodes"] == 1


def test_eval_json_has_the_documented_fields(trained_run, capsys):
    assert main(["eval", str(trained_run / "step_00000240"), "--episodes", "2", "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("task", "episodes", "success_rate", "return_mean", "return_std", "episode_len_mean",
                "plan_ms_median", "plan_ms_p95", "violations_total", "violation_episodes"):
        assert key in result, key
    assert result["task"] == "oda/PointMaze-v0" and result["episodes"] == 2
    assert result["episode_len_mean"] == 40 and result["plan_ms_median"] > 0


def test_eval_shows_progress_on_stderr_and_quiet_silences_it(trained_run, capsys):
    checkpoint = str(trained_run / "step_00000240")
    assert main(["eval", checkpoint, "--episodes", "2", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["episodes"] == 2  # stdout stays one JSON object
    assert "eval" in captured.err and "2/2" in captured.err and "success=" in captured.err
    assert main(["eval", checkpoint, "--episodes", "1", "--json", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_eval_with_another_planner(trained_run, capsys):
    assert main(["eval", str(trained_run / "step_00000240"), "--episodes", "1", "--json", "--planner", "cem",
                 "--planner-params", "samples=16", "elites=4", "iterations=2"]) == 0
    assert json.loads(capsys.readouterr().out)["planner"] == "cem"


def test_record_writes_a_video_with_the_plan(trained_run, tmp_path, capsys):
    out = tmp_path / "rollout.mp4"
    assert main(["record", str(trained_run / "step_00000240"), "--episodes", "1", "--out", str(out),
                 "--size", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 41
    with imageio.get_reader(out) as reader:
        frames = list(reader.iter_data())
    assert len(frames) == 41 and frames[0].shape == (64, 64, 3)
    # one chosen episode of the seed block (e.g. a failure to look at): the episode `oda eval` played
    assert main(["record", str(trained_run / "step_00000240"), "--only", "3", "--out", str(out), "--size", "64"]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert recorded["episodes"] == 1 and recorded["frames"] == 41
    finals = []
    for index in ("3", "0"):
        assert main(["eval", str(trained_run / "step_00000240"), "--only", index, "--json"]) == 0
        finals.append(json.loads(capsys.readouterr().out)["final_goal_distance_mean"])
    assert recorded["final_goal_distance_mean"] == finals[0] != finals[1]
    # an --out that is not an .mp4 is refused by name before any episode runs, and nothing is written
    assert main(["record", str(trained_run / "step_00000240"), "--out", str(tmp_path / "clip"), "--size", "64"]) == 2
    assert "ending in .mp4" in capsys.readouterr().err
    assert not list(tmp_path.glob("clip*"))


def test_saved_and_loaded_agent_act_identically(trained_run):
    cfg, model = load_agent(trained_run / "step_00000240", torch.device("cpu"))
    _, again = load_agent(trained_run / "step_00000240", torch.device("cpu"))
    env = make_env(cfg)
    obs, _ = env.reset(seed=5)
    goal = env.unwrapped.goal_observation()
    actions = []
    for m in (model, again):
        actor = make_actor(cfg, m, 2, torch.device("cpu"))
        actor.reset(goal)
        actions.append(np.stack([actor.act(obs) for _ in range(3)]))
    np.testing.assert_array_equal(actions[0], actions[1])
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_an_evaluation_episode_plays_the_same_wherever_it_falls_in_a_run(trained_run):
    """The planner's draws restart from the episode's seed: episode 1 after episode 0 is episode 1 alone,
    so two evaluations compare episode by episode (before, the generator ran on across episodes)."""
    cfg, model = load_agent(trained_run / "step_00000240", torch.device("cpu"))
    env = make_env(cfg)
    alone = run_episode(env, make_actor(cfg, model, 2, torch.device("cpu")), EVAL_SEED_BASE + 1)
    actor = make_actor(cfg, model, 2, torch.device("cpu"))
    actions = []
    first = run_episode(env, actor, EVAL_SEED_BASE, on_step=lambda e, a, i: actions.append(a.last_plan))
    assert actions[-1] is not None and len(actions) == first["length"] + 1  # it planned
    after = run_episode(env, actor, EVAL_SEED_BASE + 1)
    assert after == alone and after["final_goal_distance"] != first["final_goal_distance"]


def test_eval_split_over_worker_processes_gives_the_one_process_result(trained_run, capsys):
    common = ["eval", str(trained_run / "step_00000240"), "--episodes", "3", "--per-episode", "--json",
              "--threads", "1", "--device", "cpu"]
    assert main(common) == 0
    one = json.loads(capsys.readouterr().out)
    assert main([*common, "--workers", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in two["per_episode"]] == [EVAL_SEED_BASE + i for i in range(3)]
    assert two["per_episode"] == one["per_episode"] and two["episodes"] == 3
    timing = ("plan_ms_median", "plan_ms_p95")
    assert {k: v for k, v in two.items() if k not in timing} == {k: v for k, v in one.items() if k not in timing}
    assert main([*common, "--workers", "0"]) == 2 and "--workers" in capsys.readouterr().err
    # chosen episodes (e.g. an earlier run's failures) play as they did in the full run, on any worker
    assert main([*common, "--only", "2,0", "--workers", "2"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert chosen["episodes"] == 2 and chosen["per_episode"] == [one["per_episode"][0], one["per_episode"][2]]
    for bad in ("1,x", "-1", ""):
        assert main([*common, "--only", bad]) == 2 and "--only" in capsys.readouterr().err


def test_resume_continues_at_the_saved_step_with_the_replay(trained_run, tmp_path, demo_launch, tiny):
    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "step_00000240")
    cfg = load_launch(demo_launch, [*tiny, f"run_dir={run}"])
    trainer = Trainer(cfg, resume=True, progress=False)
    assert trainer.step == 120 and trainer.replay.num_steps == 120
    assert trainer.replay.num_episodes == 3
    trainer.train()
    assert trainer.step == 240 and latest_checkpoint(run).name == "step_00000240"
    timing = trainer.timing_summary()  # every resumed step planned and updated
    assert timing["steps_timed"] == 120
    assert 0 < timing["plan_ms_median"] <= timing["plan_ms_p95"]
    assert timing["update_ms_median"] > 0 and timing["step_ms_median"] >= timing["plan_ms_median"]


def test_resume_with_a_longer_budget_grows_the_replay(trained_run, tmp_path, demo_launch, tiny):
    """training.steps raised at --resume: the replay takes the new budget, so nothing saved is evicted."""
    run = tmp_path / "longer"
    shutil.copytree(trained_run, run)
    cfg = load_launch(demo_launch, [*tiny, "training.steps=600", f"run_dir={run}"])
    trainer = Trainer(cfg, resume=True, progress=False)
    episode_steps = trainer.env.unwrapped.episode_steps
    assert trainer.step == 240 and trainer.replay.num_steps == 240
    assert trainer.replay.capacity == 600 + 2 * episode_steps + 1
    shorter = Trainer(load_launch(demo_launch, [*tiny, "training.steps=120", f"run_dir={run}"]), resume=True,
                      progress=False)
    assert shorter.replay.capacity == 240 + 2 * episode_steps + 1  # the saved size: nothing dropped


def test_corrupt_and_foreign_checkpoints_are_refused(trained_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(trained_run / "step_00000240", bad)
    (bad / "weights.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    assert main(["eval", str(bad), "--episodes", "1"]) == 2
    assert "corrupt" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    shutil.copytree(trained_run / "step_00000240", foreign)
    (foreign / "config.json").write_text(json.dumps({"format": "something-else", "version": 3}))
    assert main(["eval", str(foreign), "--episodes", "1"]) == 2
    assert "oda checkpoint" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing"), "--episodes", "1"]) == 2
    # checkpoints of another version of the world model: an unknown setting, tensors that do not fit
    older = tmp_path / "older"
    shutil.copytree(trained_run / "step_00000240", older)
    config = json.loads((older / "config.json").read_text())
    config["world_model"]["policy_horizon"] = 3  # retired: ignored
    config["world_model"]["bogus_setting"] = 1
    (older / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(older), "--episodes", "1"]) == 2
    assert "setting(s) ['bogus_setting'] are unknown here" in capsys.readouterr().err
    config["world_model"].pop("bogus_setting")
    config["world_model"]["hidden_dim"] *= 2
    (older / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(older), "--episodes", "1"]) == 2
    assert "does not fit this version's world model" in capsys.readouterr().err


def test_benchmark_writes_results_table_and_plots(tmp_path, capsys, demo_launch, tiny):
    out = tmp_path / "bench"
    assert main(["benchmark", str(demo_launch), "--seeds", "0", "--episodes", "1", "--planners", "mppi", "random",
                 "--set", *tiny, "--out", str(out), "--quiet"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["planner"] for r in rows] == ["mppi", "random"]
    assert all(r["env_steps"] == 240 and r["episodes"] == 1 for r in rows)
    table = (out / "results.md").read_text()
    assert "| demo | oda/PointMaze-v0 | mppi | 1 |" in table and "| random |" in table
    assert "| return |" in table and f"| {rows[0]['return_mean']:.3g} +- 0 |" in table
    for png in ("success_vs_steps.png", "return_vs_steps.png", "plan_latency.png"):
        assert (out / png).stat().st_size > 1000


def test_benchmark_runs_seeds_on_worker_processes(tmp_path, demo_launch, tiny):
    out = tmp_path / "bench"
    assert main(["benchmark", str(demo_launch), "--seeds", "0", "1", "--episodes", "1", "--workers", "2",
                 "--set", *tiny, "--out", str(out), "--quiet"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [(r["seed"], r["planner"]) for r in rows] == [(0, "mppi"), (1, "mppi")]
    assert (out / "demo" / "seed1" / "step_00000240" / "weights.safetensors").is_file()
    assert "| demo | oda/PointMaze-v0 | mppi | 2 |" in (out / "results.md").read_text()
    assert main(["benchmark", str(demo_launch), "--workers", "0", "--out", str(out)]) == 2


def test_benchmark_puts_the_mode_1_policy_beside_the_planner_in_one_table(tmp_path, capsys, demo_launch):
    """`--planners mppi policy` on a reward task: one row planning (mode 2), one acting with the policy alone
    (mode 1), which answers in less time per action; its return is `oda eval --mode reactive`'s."""
    out = tmp_path / "bench"
    tiny_reward = ["training.steps=300", "training.seed_steps=200", "training.eval_every=0",
                   "training.checkpoint_every=0", "training.batch_size=32", "world_model.latent_dim=8",
                   "world_model.hidden_dim=32", "world_model.reward_hidden=16", "world_model.policy_hidden=16",
                   "planner.params.samples=32", "planner.params.elites=8", "planner.params.iterations=2"]
    cartpole = demo_launch.parent / "cartpole-swingup.yaml"
    assert main(["benchmark", str(cartpole), "--seeds", "0", "--episodes", "1", "--planners",
                 "mppi", "policy", "--set", *tiny_reward, "--out", str(out), "--quiet"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["planner"] for r in rows] == ["mppi", "policy"]
    assert rows[1]["plan_ms_median"] < rows[0]["plan_ms_median"]  # one policy call against a search
    assert "| cartpole-swingup | dmc/cartpole-swingup | policy | 1 |" in (out / "results.md").read_text()
    capsys.readouterr()
    run = out / "cartpole-swingup" / "seed0"
    assert main(["eval", str(run), "--mode", "reactive", "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] == rows[1]["return_mean"]


def test_benchmark_refuses_unknown_planners_before_training(tmp_path, capsys, demo_launch):
    out = tmp_path / "bench"
    assert main(["benchmark", str(demo_launch), "--planners", "mppi", "bogus", "--out", str(out), "--quiet"]) == 2
    assert "unknown planner 'bogus' in --planners" in capsys.readouterr().err
    # the goal-reaching demo trains no mode-1 policy: asked for one, it says so before training
    assert main(["benchmark", str(demo_launch), "--planners", "policy", "--out", str(out), "--quiet"]) == 2
    assert "trains no mode-1 policy" in capsys.readouterr().err
    assert not out.exists()


def test_benchmark_refuses_an_override_given_as_a_launch_file_before_training(tmp_path, capsys, demo_launch):
    out = tmp_path / "bench"
    assert main(["benchmark", str(demo_launch), "training.steps=100", "--out", str(out), "--quiet"]) == 2
    assert "--set training.steps=100" in capsys.readouterr().err
    assert not out.exists()  # nothing trained, nothing written


def test_learned_cost_to_go_trains_checkpoints_and_plans(tmp_path, trained_run, capsys, demo_launch, tiny):
    run = tmp_path / "value"
    value = ["world_model.value_hidden=16", "cost={goal: 1.0, cost_to_go: 0.1}"]
    assert main(["train", str(demo_launch), *tiny, *value, f"run_dir={run}", "--quiet"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert {"value/loss", "value/steps_mean"} <= set(EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"])
    cfg, model = load_agent(run / "step_00000240", torch.device("cpu"))
    assert model.value is not None and any(k.startswith("value.target.") for k in model.state_dict())
    z = model.encode(torch.randn(5, model.cfg.obs_dim))
    steps = model.cost_to_go(z, z[0])
    assert steps.shape == (5,) and torch.all(steps >= 0)
    capsys.readouterr()
    for cost in ([], ["cost={goal: 1.0}"]):  # with the value term, and without it at evaluation time
        assert main(["eval", str(run), *cost, "--episodes", "1", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["episodes"] == 1
    assert main(["eval", str(trained_run), "cost={goal: 1.0, cost_to_go: 0.1}", "--episodes", "1"]) == 2
    assert "value_hidden" in capsys.readouterr().err


def test_a_readout_goal_term_is_chosen_at_evaluation_time(trained_run, capsys):
    """cost goal:<measurement> plans on the world model's readout of it; one it has no readout for is refused."""
    capsys.readouterr()
    assert main(["eval", str(trained_run), "cost={goal: 1.0, 'goal:agent_xy': 5.0}", "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    assert main(["eval", str(trained_run), "cost={goal: 1.0, 'goal:block_xy': 5.0}", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "['goal:block_xy']" in err and "no readout" in err and "agent_xy" in err


def test_launch_evaluation_section_sets_how_the_trained_agent_plans(tmp_path, demo_launch, tiny):
    """`evaluation:` in a launch file: the agent trains flat and is evaluated (by the trainer, by
    `oda eval`) over a hierarchy; command-line overrides still come last."""
    import argparse

    from agent.cli import _load_actor
    from planners.hierarchical import HierarchicalPlanner

    run = tmp_path / "evaluation"
    hierarchy = "{landmarks: 8, max_edge: 15.0, reach: 5.0}"
    cfg = load_launch(demo_launch, [*tiny, "world_model.value_hidden=16", f"run_dir={run}",
                               f"evaluation={{hierarchy: {hierarchy}, cost: {{goal: 1.0, action: 0.1}}}}"])
    trainer = Trainer(cfg, progress=False)
    trainer.train()
    assert not isinstance(trainer.actor.planner, HierarchicalPlanner)  # trained with the flat planner
    assert dict(trainer.actor.cost.weights) == cfg.cost
    evaluated = trainer._eval_actor
    assert isinstance(evaluated.planner, HierarchicalPlanner) and len(evaluated.planner.graph) == 8
    assert dict(evaluated.cost.weights) == {"goal": 1.0, "action": 0.1}

    def load(*overrides):
        args = argparse.Namespace(checkpoint=str(run), overrides=list(overrides), device="cpu", planner=None,
                                  planner_params=[], mode="plan", calibrate=0, seed=0)
        return _load_actor(args)

    cfg_eval, _, actor, _ = load()
    assert cfg_eval.evaluation == {} and isinstance(actor.planner, HierarchicalPlanner)
    assert len(actor.planner.graph) == 8 and dict(actor.cost.weights) == {"goal": 1.0, "action": 0.1}
    _, _, actor, _ = load("hierarchy=null", "cost={goal: 2.0}")  # the command line overrides the file
    assert not isinstance(actor.planner, HierarchicalPlanner) and dict(actor.cost.weights) == {"goal": 2.0}
    _, _, actor, _ = load("hierarchy.goal_only_terms=[action]")  # a term that scores the goal only
    assert actor.planner.config.goal_only_terms == ["action"]
    for bad, why in (("[goal_final]", "no active cost term"), ("[goal, action]", "none would be left")):
        with pytest.raises(ValueError, match=why):
            load(f"hierarchy.goal_only_terms={bad}")


def test_seeding_with_the_tasks_play_policy(tmp_path, demo_launch, tiny):
    """training.seed_policy=play fills the replay from the task's scripted play policy (on Push: the block
    moves); a task without one is refused by name before any data is collected."""
    push = ["env.id=oda/Push-v0", "env.kwargs={block: square, episode_steps: 80}", "training.steps=80",
            "training.seed_steps=80", "training.eval_every=80", "training.checkpoint_every=0"]
    cfg = load_launch(demo_launch, [*tiny, *push, "training.seed_policy=play", f"run_dir={tmp_path / 'p'}"])
    trainer = Trainer(cfg, progress=False)
    trainer.train()
    block = trainer.replay._meas["block_xy"][: trainer.replay._used]
    assert np.abs(np.diff(block, axis=0)).sum() > 0.02  # play pushed the block about (2 cm at least)
    # the evaluation reports where the block ended, from the simulator (Push's position and angle errors)
    base = trainer.eval_env.unwrapped
    position, angle = base.task.errors(base.physics)
    assert trainer.history[-1]["final_position_error_mean"] == pytest.approx(position)
    assert trainer.history[-1]["final_angle_error_mean"] == pytest.approx(angle)
    maze = Trainer(load_launch(demo_launch, [*tiny, "training.seed_policy=play", f"run_dir={tmp_path / 'm'}"]),
                   progress=False)
    with pytest.raises(ValueError, match=r"seed_policy=play: oda/PointMaze-v0 has no play policy"):
        maze.train()
    assert maze.replay.num_steps == 0


def test_a_residual_memory_is_chosen_at_evaluation_time_and_remembers_every_executed_step(trained_run, capsys):
    """adaptation={...} at eval: the actor compares each observed latent with the model's prediction for its
    last action, one miss per executed step, cleared with the episode; the CLI evaluates with it."""
    cfg, model = load_agent(trained_run / "step_00000240", torch.device("cpu"))
    cfg = eval_overrides(cfg, ["adaptation={size: 8}", "training.replan_every=2"])
    env = make_env(cfg)
    actor = make_actor(cfg, model, 2, torch.device("cpu"), env=env)
    obs, _ = env.reset(seed=5)
    actor.reset(env.unwrapped.goal_observation())
    for step in range(5):
        obs, *_ = env.step(actor.act(obs))
        assert len(actor.adaptation) == step  # the first action had no next latent yet when taken
    actor.executed(None)  # the last step was not the actor's (a trainer's random step): nothing to learn from
    obs, *_ = env.step(env.action_space.sample())
    actor.act(obs)
    assert len(actor.adaptation) == 4
    actor.reset(env.unwrapped.goal_observation())
    assert len(actor.adaptation) == 0
    capsys.readouterr()
    assert main(["eval", str(trained_run), "adaptation={size: 16, latent_scale: 0.1}", "--episodes=1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    assert main(["eval", str(trained_run), "adaptation={size: 0}", "--episodes", "1"]) == 2
    assert "size must be an int >= 1" in capsys.readouterr().err


def test_training_with_a_residual_memory_learns_only_from_the_steps_it_planned(tmp_path, demo_launch, tiny):
    """Training adds exploration noise to the planned action: the memory compares the next latent with the
    prediction for the noisy action actually taken, so every remembered miss is one the model made."""
    cfg = load_launch(demo_launch, [*tiny, "adaptation={size: 500}", "training.steps=200", "training.eval_every=0",
                               f"run_dir={tmp_path / 'r'}"])
    trainer = Trainer(cfg, progress=False)
    trainer.train()
    mem = trainer.actor.adaptation
    assert len(mem) == 40 - 1  # the last training episode: every step but the first
    assert cfg.training.exploration_noise > 0
    taken = trainer.replay._actions  # the replay holds the actions executed, noise included
    for a in mem._a.cpu().numpy():
        assert np.all(taken == a, axis=1).any(), "a remembered action was not one the agent executed"
