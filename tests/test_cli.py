"""The `oda` console script: `oda envs` and `oda envs show`."""

import json
import subprocess
import sys
from pathlib import Path

import imageio
import imageio.v3 as iio
import numpy as np
import pytest

import envs
from agent.cli import main, parse_overrides


def test_oda_envs_json_lists_every_task(capsys):
    assert main(["envs", "--json", "--family", "oda"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == {s.id for s in envs.list_specs(family="oda")}
    maze = next(r for r in rows if r["id"] == "oda/PointMaze-v0")
    assert maze["observation"] == "float32[4]" and maze["action"] == "float32[2]"
    assert maze["episode_length"] == envs.get_spec("oda/PointMaze-v0").episode_steps
    assert "goal" in maze["tags"]


def test_oda_envs_table_through_the_console_script():
    exe = Path(sys.executable).parent / "oda"
    assert exe.exists(), "the `oda` console script is not installed"
    out = subprocess.run([str(exe), "envs", "--tag", "safety"], capture_output=True, text=True, timeout=120, check=True)
    assert "oda/ArmReach-v0" in out.stdout and "dmc/walker-walk" not in out.stdout


def test_oda_envs_show_writes_png_and_mp4(tmp_path, capsys):
    assert main(["envs", "show", "oda/PointMaze-v0", "layout=open", "--out", str(tmp_path),
                 "--steps", "12", "--size", "96"]) == 0
    png = iio.imread(tmp_path / "oda_PointMaze-v0.png")
    assert png.shape == (96, 96, 3) and png.std() > 0
    with imageio.get_reader(tmp_path / "oda_PointMaze-v0.mp4") as reader:
        frames = list(reader.iter_data())
    assert len(frames) == 13 and frames[0].shape == (96, 96, 3)
    assert not np.array_equal(frames[0], frames[-1]), "random actions should move the agent"
    assert not list(tmp_path.glob("*.tmp.*")), "temporary video file left behind"


def test_mp4_without_imageio_ffmpeg_names_the_missing_package(tmp_path, monkeypatch):
    """Without imageio-ffmpeg imageio would pick another writer by the suffix and fail on `fps` (seen on a
    GPU machine whose image lacked it): the error names the package instead, and no file is left."""
    from envs.rendering import write_mp4

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # `import imageio_ffmpeg` raises ImportError
    with pytest.raises(ModuleNotFoundError, match="imageio-ffmpeg"):
        write_mp4(tmp_path / "v.mp4", [np.zeros((8, 8, 3), np.uint8)])
    assert not list(tmp_path.iterdir())


def test_mp4_path_without_the_suffix_is_refused_by_name(tmp_path):
    """imageio picks its writer by the suffix: without `.mp4` it failed with a message about backends."""
    from envs.rendering import write_mp4

    with pytest.raises(ValueError, match=r"ending in \.mp4"):
        write_mp4(tmp_path / "clip", [np.zeros((8, 8, 3), np.uint8)])
    assert not list(tmp_path.iterdir())


def test_bad_id_and_bad_parameter_give_clear_errors(capsys):
    assert main(["envs", "show", "oda/NoSuchTask-v0"]) == 2
    assert "unknown env id 'oda/NoSuchTask-v0'" in capsys.readouterr().err
    assert main(["envs", "show", "oda/PointMaze-v0", "layout=7"]) == 2
    assert "layout" in capsys.readouterr().err


def test_overrides_may_follow_the_options_and_strays_are_refused(capsys):
    # `layout=7` after the options reaches the task (and is refused by it), as it does before them
    assert main(["envs", "show", "oda/PointMaze-v0", "--steps", "2", "layout=7"]) == 2
    assert "layout" in capsys.readouterr().err
    for argv in (["envs", "show", "oda/PointMaze-v0", "--no-such-flag"], ["envs", "--json", "layout=open"],
                 ["envs", "show", "oda/PointMaze-v0", "--steps", "2", "stray"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_overrides_are_parsed_as_data_not_code():
    assert parse_overrides(["a=1", "b=[1, 2]", "c=hello", "d=__import__('os')"]) == {
        "a": 1, "b": [1, 2], "c": "hello", "d": "__import__('os')"}


def test_oda_envs_lists_extras_that_are_not_installed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ogbench", None)  # import now raises ImportError
    assert main(["envs", "--json", "--family", "ogbench"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(not r["installed"] and r["observation"] == "needs ogbench" for r in rows)
