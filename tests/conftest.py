import os

# Headless software rendering; set before MuJoCo creates a GL context.
os.environ.setdefault("MUJOCO_GL", "egl")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from agent.cli import main  # noqa: E402

# `make test` runs two pytest workers on two cores: one torch thread each avoids
# oversubscription, which slows small models by two orders of magnitude.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_launch() -> Path:
    return Path(__file__).parent.parent / "launch" / "demo.yaml"


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """Overrides that shrink the demo launch file to a run of seconds: a few hundred steps, a tiny model."""
    return ["training.steps=240", "training.seed_steps=120", "training.batch_size=16", "training.eval_every=240",
            "training.eval_episodes=1", "training.checkpoint_every=120", "training.episode_steps=40",
            "world_model.latent_dim=8", "world_model.hidden_dim=32", "world_model.train_horizon=3",
            "planner.params.samples=32", "planner.params.elites=8", "planner.params.horizon=4",
            "planner.params.iterations=2"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_launch, tiny) -> Path:
    """One tiny demo run per test worker, shared read-only: tests that change it work on a copy."""
    run = tmp_path_factory.mktemp("run")
    assert main(["train", str(demo_launch), *tiny, f"run_dir={run}", "--quiet"]) == 0
    return run
