"""`training.update_every`: an update-to-data ratio below one (pixel runs, where one update is costly)."""

from __future__ import annotations

import pytest

from agent.launch import load_launch
from agent.trainer import Trainer


@pytest.mark.parametrize("overlap", [False, True])
def test_updates_run_every_k_steps_and_the_pretraining_keeps_the_ratio(tmp_path, demo_launch, tiny, overlap):
    cfg = load_launch(demo_launch, [*tiny, "training.update_every=3", f"training.overlap_update={overlap}",
                                    f"run_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg, progress=False)
    trainer.train()
    # 120 seed steps -> 40 pretraining updates; then steps 121..240, an update at each multiple of 3: 40 more
    assert trainer.step == 240 and trainer.updates == 80
    assert trainer.timing_summary()["steps_timed"] == 120  # every step after seeding is timed, updated or not


def test_update_every_below_one_is_refused(demo_launch):
    with pytest.raises(ValueError, match="update_every"):
        load_launch(demo_launch, ["training.update_every=0"])
