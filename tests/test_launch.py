import json
from pathlib import Path

import pytest

from agent.launch import LaunchConfig, load_launch

ROOT = Path(__file__).resolve().parents[1]

VALID = """\
name: pointmaze-open
env:
  id: oda/PointMaze-v0
  obs: state
  kwargs: {layout: open}
world_model:
  latent_dim: 32
  lr: 1e-3          # YAML 1.1 would read this as a string
planner:
  name: cem
  params: {horizon: 10, samples: 256}
cost: {goal: 1.0, goal_final: 2, action: 0.0}
training:
  steps: 2000
  batch_size: 32
seed: 3
device: cpu
"""


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_file_loads(tmp_path):
    cfg = load_launch(write(tmp_path, VALID))
    assert cfg.name == "pointmaze-open" and cfg.env.id == "oda/PointMaze-v0" and cfg.env.kwargs == {"layout": "open"}
    assert cfg.env.action_repeat is None and cfg.env.image_size == 64
    assert cfg.world_model == {"latent_dim": 32, "lr": 0.001}
    assert cfg.planner.name == "cem" and cfg.planner.params == {"horizon": 10, "samples": 256}
    assert cfg.cost == {"goal": 1.0, "goal_final": 2.0, "action": 0.0}
    assert isinstance(cfg.cost["goal_final"], float)
    assert cfg.training.steps == 2000 and cfg.training.batch_size == 32 and cfg.training.replan_every == 1
    assert cfg.training.episode_steps is None
    assert (cfg.seed, cfg.device, cfg.run_dir) == (3, "cpu", "runs/pointmaze-open")


def test_to_dict_from_dict_round_trip(tmp_path):
    cfg = load_launch(write(tmp_path, VALID))
    data = json.loads(json.dumps(cfg.to_dict()))  # survives JSON (checkpoint config)
    assert LaunchConfig.from_dict(data) == cfg
    data["training"]["stepz"] = 1
    with pytest.raises(ValueError, match="<dict>: unknown key 'training.stepz'"):
        LaunchConfig.from_dict(data)


@pytest.mark.parametrize("text, pattern", [
    (VALID + "extra: 1\n", r"exp.yaml: unknown key 'extra'"),
    (VALID.replace("  batch_size: 32", "  batch_sise: 32"), r"exp.yaml: unknown key 'training.batch_sise'"),
    (VALID.replace("  obs: state", "  obs: state\n  colour: red"), r"unknown key 'env.colour'"),
    (VALID.replace("steps: 2000", "steps: lots"), r"exp.yaml: 'training.steps' must be int, got str 'lots'"),
    (VALID.replace("steps: 2000", "steps: 2.5"), r"'training.steps' must be int"),
    (VALID.replace("seed: 3", "seed: true"), r"'seed' must be int, got bool"),
    (VALID.replace("goal: 1.0,", "goal: high,"), r"'cost.goal' must be float"),
    (VALID.replace("world_model:\n  latent_dim: 32\n  lr: 1e-3", "world_model: 5"), r"'world_model' must be a mapping"),
    (VALID.replace("  obs: state", "  obs: video"), r"'env.obs' must be one of"),
    (VALID.replace("batch_size: 32", "batch_size: 0"), r"'training.batch_size' must be >= 1"),
    (VALID.replace("batch_size: 32", "batch_size: 32\n  seed_policy: scripted"),
     r"'training.seed_policy' must be one of \('random', 'play'\)"),
    (VALID.replace("batch_size: 32", "batch_size: 32\n  random_actions: brownian"),
     r"'training.random_actions' must be one of \('sticky', 'tumble'\)"),
    (VALID.replace("batch_size: 32", "batch_size: 32\n  explore_bridge: 1.5"),
     r"'training.explore_bridge' must be in \[0, 1\]"),
    (VALID.replace("batch_size: 32", "batch_size: 32\n  explore_steps: -1"), r"'training.explore_steps' must be >= 0"),
    (VALID.replace("batch_size: 32", "batch_size: 32\n  explore_patience: 0"),
     r"'training.explore_patience' must be >= 1"),
    (VALID.replace("device: cpu", "device: tpu"), r"'device' must be 'auto'"),
    (VALID.replace("goal: 1.0,", "gaol: 1.0,"), r"unknown cost term\(s\) \['gaol'\]"),
    (VALID.replace("goal: 1.0,", "'goal:': 1.0,"), r"unknown cost term\(s\) \['goal:'\].*'goal:<measurement>'"),
    (VALID.replace("name: pointmaze-open\n", ""), r"missing required key 'name'"),
    (VALID.replace("  id: oda/PointMaze-v0\n", ""), r"missing required key 'env.id'"),
    (VALID + "seed: 4\n", r"exp.yaml: malformed YAML at line 18.*duplicate key 'seed'"),
    (VALID.replace("  batch_size: 32", "  batch_size: [32"), r"exp.yaml: malformed YAML at line \d+"),
    (VALID + "guardrails: {type: keep_out}\n", r"'guardrails' must be a list"),
    (VALID + "guardrail_mode: medium\n", r"'guardrail_mode' must be one of \('hard', 'soft'\)"),
    (VALID + "guardrails: [5]\n", r"'guardrails.0' must be a mapping"),
    (VALID + "guardrails:\n  - {type: action_rate, limit: 0.5}\n  - {type: wall}\n",
     r"exp.yaml: 'guardrails.1': unknown guardrail type 'wall'"),
    (VALID + "guardrails: [{type: keep_out, key: agent_xy, center: [0, 0]}]\n", r"'guardrails.0':.*keep_out.radius"),
    ("- a\n- b\n", r"top level must be a mapping"),
    ("", r"empty"),
])
def test_bad_files_name_the_problem(tmp_path, text, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_launch(write(tmp_path, text))


def test_malformed_yaml_line_number(tmp_path):
    path = write(tmp_path, "name: x\nenv:\n  id: a\n   bad: [\n")
    with pytest.raises(ValueError) as info:
        load_launch(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="launch file not found: .*nope.yaml"):
        load_launch(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    path = write(tmp_path, VALID)
    cfg = load_launch(path, ["training.steps=500", "planner.params.horizon=8", "planner.params.new.deep=[1, 2]",
                             "world_model.lr=3e-4", "env.kwargs.layout=4x4", "cost.action=0.1",
                             "training.episode_steps=null", "run_dir=/tmp/r", "planner.name=mppi"])
    assert cfg.training.steps == 500 and cfg.planner.params["horizon"] == 8
    assert cfg.planner.params["new"] == {"deep": [1, 2]} and cfg.world_model["lr"] == 3e-4
    assert cfg.env.kwargs["layout"] == "4x4" and cfg.cost["action"] == 0.1 and cfg.run_dir == "/tmp/r"
    assert cfg.planner.name == "mppi"
    # a dict (already-parsed values, e.g. from the CLI) works too
    assert load_launch(path, {"training.seed_steps": 7}).training.seed_steps == 7
    # a section the file omits can still be overridden key by key
    minimal = write(tmp_path, "name: m\nenv: {id: oda/PointMaze-v0}\n", "minimal.yaml")
    assert load_launch(minimal, ["training.steps=9"]).training.steps == 9


@pytest.mark.parametrize("override, pattern", [
    ("training.stepz=5", r"unknown key 'stepz' under 'training'"),
    ("trainin.steps=5", r"unknown key 'trainin' under '<top level>'"),
    ("training.steps.deep=5", r"unknown key 'deep' under 'training.steps'"),
    ("planner.horizon=5", r"unknown key 'horizon' under 'planner'"),
    ("training.steps=many", r"'training.steps' must be int, got str 'many'"),
    ("training.steps", r"expected key=value"),
    ("training.steps=[1", r"not valid YAML"),
    ("training..steps=1", r"empty path segment"),
])
def test_bad_overrides(tmp_path, override, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_launch(write(tmp_path, VALID), [override])


def test_override_values_are_never_evaluated(tmp_path):
    with pytest.raises(ValueError, match="not valid YAML"):  # python tags are refused by the safe loader
        load_launch(write(tmp_path, VALID), ["planner.params.y=!!python/object/apply:os.getcwd []"])
    cfg = load_launch(write(tmp_path, VALID), ["planner.params.x=__import__('os').getcwd()"])
    assert cfg.planner.params["x"] == "__import__('os').getcwd()"  # stays a plain string


@pytest.mark.parametrize("path", sorted((ROOT / "launch").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_launch_files_load_and_build(path):
    """Every shipped launch file builds its env, world model and actor (bad keys would raise here)."""
    import torch

    from agent.build import env_dims, make_actor, make_env, world_model_config
    from world_models import JEPAWorldModel

    cfg = load_launch(path)
    assert cfg.name and cfg.env.id
    if cfg.env.id.startswith("ogbench/"):  # an optional extra: `pip install 'oda[ogbench]'`
        pytest.importorskip("ogbench")
    env = make_env(cfg, seed=0)
    obs_shape, _, action_dim, measurement_dims = env_dims(env)
    model = JEPAWorldModel(world_model_config(cfg, obs_shape, action_dim, measurement_dims))
    actor = make_actor(cfg, model, action_dim, torch.device("cpu"), env=env)
    assert actor.planner.horizon == cfg.planner.params.get("horizon", actor.planner.horizon)
    # goal-reaching tasks plan toward a goal latent; reward tasks (issue 4) with reward head + critic
    assert actor.cost.needs_goal == env.unwrapped.goal_conditioned
    assert (model.task is not None) == (not actor.cost.needs_goal)
    if actor.guardrails is not None:  # the constraint reads only the heads its guardrails need
        needed = {k for g in actor.guardrails.guardrails for k in g.measurement_keys()}
        assert set(actor.guardrails.readout(torch.zeros(3, model.cfg.latent_dim))) == needed
        assert needed < set(model.readout_keys)
    env.close()


def test_launch_device_resolution_and_seeding():
    """The launch file's `device` and `seed` are consumed by agent.device."""
    import random

    import numpy as np
    import torch

    from agent.device import resolve_device, seed_everything

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "cuda:x", "mps"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")
    draws = []
    for _ in range(2):
        seed_everything(5)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]


def test_flush_denormals_zeroes_subnormal_floats():
    """The trainer and the CLI flush subnormal floats (slow on x86) to zero; normal tiny values survive."""
    import torch

    from agent.device import flush_denormals

    was = torch.tensor([1e-39], dtype=torch.float32).item() != 0.0
    try:
        if not flush_denormals():
            pytest.skip("this CPU cannot flush subnormals")
        assert torch.tensor([1e-39], dtype=torch.float32).item() == 0.0
        assert torch.tensor([1e-30], dtype=torch.float32).item() > 0.0
        assert (torch.tensor([1e-20]) * torch.tensor([1e-20])).item() == 0.0  # a product that would be subnormal
    finally:
        torch.set_flush_denormal(not was)


def test_evaluation_section_applies_before_overrides_once(tmp_path):
    from agent.launch import eval_overrides

    text = VALID + "evaluation: {cost: {goal: 1.0, action: 0.1}, planner.params.horizon: 5}\n"
    cfg = load_launch(write(tmp_path, text))
    assert cfg.cost["goal_final"] == 2.0 and cfg.planner.params["horizon"] == 10  # training is unchanged
    evaluated = eval_overrides(cfg, None)
    assert evaluated.cost == {"goal": 1.0, "action": 0.1} and evaluated.planner.params["horizon"] == 5
    assert evaluated.planner.params["samples"] == 256 and evaluated.evaluation == {}
    again = eval_overrides(eval_overrides(cfg, ["cost={goal: 3.0}"]), None)  # applied once: the override stays
    assert again.cost == {"goal": 3.0} and again.planner.params["horizon"] == 5
    assert load_launch(write(tmp_path, text), ["evaluation.cost.goal=2.0"]).evaluation["cost"]["goal"] == 2.0
    with pytest.raises(ValueError, match=r"evaluation: \['world_model.latent_dim'\] cannot change at evaluation"):
        load_launch(write(tmp_path, VALID + "evaluation: {world_model.latent_dim: 4}\n"))


def test_hierarchy_and_adaptation_keys_override_one_by_one(tmp_path):
    from agent.launch import eval_overrides

    text = VALID + ("hierarchy: {landmarks: 32, reach: 4.0}\n"
                    "evaluation: {hierarchy: {landmarks: 64, reach: 8.0}, adaptation: {size: 16}}\n")
    cfg = load_launch(write(tmp_path, text), ["hierarchy.stuck_steps=50"])
    assert cfg.hierarchy == {"landmarks": 32, "reach": 4.0, "stuck_steps": 50}
    evaluated = eval_overrides(cfg, ["hierarchy.unrouted=toward", "adaptation.size=8"])  # on the evaluation's
    assert evaluated.hierarchy == {"landmarks": 64, "reach": 8.0, "unrouted": "toward"}
    assert evaluated.adaptation == {"size": 8}
    with pytest.raises(ValueError, match=r"'hierarchy': .*stuck_stepz.* \(valid keys: .*stuck_steps"):
        load_launch(write(tmp_path, text), ["hierarchy.stuck_stepz=5"])
    with pytest.raises(ValueError, match="unrouted must be one of"):
        eval_overrides(cfg, ["hierarchy.unrouted=around"])
    with pytest.raises(ValueError, match=r"'hierarchy' is None, not a mapping"):
        load_launch(write(tmp_path, VALID + "hierarchy: null\n"), ["hierarchy.reach=5"])
