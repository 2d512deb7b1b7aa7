"""PointMaze and its maze layouts: parsing, generation, success, hazards, walls, episode length."""

from __future__ import annotations

import numpy as np
import pytest

import envs
import envs.tasks.point_maze  # noqa: F401  (registers oda/PointMaze-v0)
from envs.tasks.maze_layout import PRESETS, MazeLayout, generate_rooms, make_layout
from envs.tasks.point_maze import PointMazeTask, episode_steps_for

ID = "oda/PointMaze-v0"
HAZARD_LAYOUT = """
#######
#S.x..#
#..x.G#
#######
"""


def _make(**kwargs):
    return envs.make(ID, **kwargs)


def _zero_step(env):
    return env.step(np.zeros(2, dtype=np.float32))


# ----- layouts --------------------------------------------------------------------------------
def test_layout_string_parses():
    layout = MazeLayout.from_string(HAZARD_LAYOUT)
    assert layout.shape == (4, 7)
    assert int(layout.walls.sum()) == 4 * 7 - 10
    assert len(layout.free_cells()) == 10 and len(layout.safe_cells()) == 8
    assert layout.start == (1, 1) and layout.goal == (2, 5)
    assert {tuple(c) for c in np.argwhere(layout.hazards)} == {(1, 3), (2, 3)}
    assert layout.to_string() == HAZARD_LAYOUT.strip()
    assert layout.shortest_path_length((1, 1), (2, 5)) == 5
    assert layout.longest_shortest_path() == 5 and layout.is_connected()
    np.testing.assert_allclose(layout.cell_to_xy((1, 1)), [-2.0, 0.5])
    assert layout.xy_to_cell(np.array([-2.3, 0.9])) == (1, 1)
    assert layout.xy_to_cell(layout.cell_to_xy((2, 5), 2.0), 2.0) == (2, 5)


@pytest.mark.parametrize("text, problem", [
    ("#####\n#...#\n#..#\n#####", "ragged"),
    ("#####\n#.z.#\n#####", "unknown character 'z' at row 1, column 2"),
    ("#####\n#####\n#####", "no free cell"),
    ("#######\n#..#..#\n#######", "not connected"),
    ("#####\n#....\n#####", "border is not closed"),
    ("#####\n#S.S#\n#####", "more than one start"),
    ("#####\n#GG.#\n#####", "more than one goal"),
    ("", "empty"),
])
def test_bad_layout_strings_are_rejected(text, problem):
    with pytest.raises(ValueError, match=problem):
        MazeLayout.from_string(text)
    with pytest.raises(ValueError, match="layout"):  # the env names the bad parameter
        PointMazeTask(layout=text if "#" in text else "nonsense")


def test_generated_mazes_are_connected():
    for name in PRESETS:
        for seed in range(12):
            layout = make_layout(name, seed)
            assert layout.is_connected(), (name, seed)
            dist = layout.distances_from(layout.free_cells()[0])
            assert (dist[~layout.walls] >= 0).all()
    for rows, cols in ((1, 4), (5, 3), (2, 7)):
        for seed in range(6):
            layout = make_layout(f"{rows}x{cols}", seed)
            assert layout.shape == (rows * 4 + 1, cols * 4 + 1) and layout.is_connected()
    assert make_layout("2x2").to_string() == make_layout("2x2").to_string()  # presets are deterministic
    assert make_layout("2x2", 1).to_string() != make_layout("2x2", 2).to_string()


def test_giant_has_ogbench_scale():
    layout = make_layout("giant")
    assert layout.shape == (13, 17)  # OGBench giant: 12 x 16
    assert 80 <= len(layout.free_cells()) <= 130 and 25 <= layout.longest_shortest_path() <= 80


def test_wall_boxes_cover_exactly_the_walls():
    layout = generate_rooms(3, 4, 2, seed=5)
    cover = np.zeros(layout.shape, dtype=int)
    for r0, c0, r1, c1 in layout.wall_boxes():
        cover[r0:r1 + 1, c0:c1 + 1] += 1
    np.testing.assert_array_equal(cover, layout.walls.astype(int))
    assert len(layout.wall_boxes()) < int(layout.walls.sum()) / 3


def test_random_hazards_keep_safe_cells_connected():
    base = make_layout("3x3")
    layout = base.with_random_hazards(15, np.random.default_rng(0))
    assert int(layout.hazards.sum()) == 15
    safe = layout.safe_cells()
    reach = MazeLayout(layout.walls | layout.hazards).distances_from(safe[0])  # hazards as walls
    assert all(reach[c] >= 0 for c in safe)


# ----- the env ---------------------------------------------------------------------------------
def test_success_exactly_inside_radius():
    env = _make(layout="open", success_radius=0.3)
    for offset, expected in ((0.299, True), (0.301, False)):
        goal = np.array([0.0, 0.0])
        _, info = env.reset(seed=0, options={"goal_xy": goal, "start_xy": goal + [offset, 0.0]})
        assert info["success"] is expected
        _, reward, *_, info = _zero_step(env)
        assert info["success"] is expected and reward == float(expected)
        np.testing.assert_allclose(info["measurements"]["goal_distance"], [offset], atol=1e-9)


def test_p_controller_reaches_nearby_goal():
    env = _make(layout="open", terminate_on_success=True)
    obs, info = env.reset(seed=3, options={"start_cell": (1, 1), "goal_cell": (3, 4)})
    assert not info["success"]
    for _ in range(100):
        error = info["desired_goal"] - obs[:2]
        obs, reward, terminated, truncated, info = env.step(np.clip(2.0 * error - 0.4 * obs[2:], -1, 1))
        if terminated:
            break
    assert terminated and info["success"] and reward == 1.0
    assert info["measurements"]["goal_distance"][0] < 0.25


def test_hazard_fires_only_inside_hazard_cells():
    env = _make(layout=HAZARD_LAYOUT)
    layout = env.unwrapped.task.layout
    hazard_x = layout.cell_to_xy((1, 3))[0]  # hazard column spans x in [hazard_x - 0.5, hazard_x + 0.5]
    for dx, expected in ((0.0, True), (0.49, True), (-0.49, True), (0.51, False), (-0.51, False), (-2.0, False)):
        _, info = env.reset(seed=0, options={"start_xy": [hazard_x + dx, 0.3]})
        assert info["safety"] == {"hazard": expected}, dx
        _, _, _, _, info = _zero_step(env)
        assert info["safety"]["hazard"] is expected, dx
    for seed in range(20):  # starts and goals are never sampled on hazards
        _, info = _make(layout=HAZARD_LAYOUT.replace("S", ".").replace("G", ".")).reset(seed=seed)
        assert not info["safety"]["hazard"]
        assert not layout.hazards[layout.xy_to_cell(info["desired_goal"])]
    _, info = _make().reset(seed=0)
    assert info["safety"] == {"hazard": False}


def test_point_mass_cannot_pass_through_walls():
    env = _make(layout="#######\n#.....#\n#..#..#\n#.....#\n#######")
    layout = env.unwrapped.task.layout
    wall_left = layout.cell_to_xy((2, 3))[0] - 0.5
    obs, _ = env.reset(seed=0, options={"start_cell": (2, 2), "goal_cell": (1, 5)})
    for _ in range(300):
        obs, *_ = env.step(np.array([1.0, 0.0], dtype=np.float32))
    radius = 0.2
    assert obs[0] < wall_left - radius + 0.01 and abs(obs[1]) < 1e-6
    assert obs[0] > wall_left - radius - 0.05  # it did reach the wall
    obs, _ = env.reset(seed=0, options={"start_cell": (1, 1)})
    for _ in range(300):  # push into the outer corner
        obs, *_ = env.step(np.array([-1.0, 1.0], dtype=np.float32))
    corner = layout.cell_to_xy((1, 1)) + [-0.5, 0.5]
    assert obs[0] > corner[0] + radius - 0.01 and obs[1] < corner[1] - radius + 0.01


def test_point_mass_stops_without_force():
    env = _make(layout="open")
    env.reset(seed=1, options={"start_cell": (3, 3)})
    for _ in range(5):
        env.step(np.array([1.0, 0.5], dtype=np.float32))
    for _ in range(40):
        obs, *_, info = _zero_step(env)
    assert info["measurements"]["agent_speed"][0] < 1e-3


def test_episode_length_scales_with_maze_size():
    lengths = {name: _make(layout=name).unwrapped.episode_steps for name in ("open", "2x2", "4x4", "giant")}
    assert lengths["open"] < lengths["2x2"] < lengths["4x4"] <= lengths["giant"]
    assert 200 <= lengths["2x2"] <= 300 and lengths["giant"] >= 1000
    assert envs.get_spec(ID).episode_steps == lengths["2x2"] == episode_steps_for(make_layout("2x2"))
    env = _make(layout="open", episode_steps=7)
    env.reset(seed=0)
    for i in range(7):
        *_, truncated, _ = _zero_step(env)
        assert truncated == (i == 6)


def test_goal_observation_and_goal_keys():
    env = _make(layout="3x3")
    obs, info = env.reset(seed=4)
    goal_obs = env.unwrapped.goal_observation()
    np.testing.assert_allclose(goal_obs, np.r_[info["desired_goal"], 0.0, 0.0].astype(np.float32))
    np.testing.assert_allclose(info["achieved_goal"], obs[:2], atol=1e-6)
    obs2, *_ = _zero_step(env)
    np.testing.assert_allclose(obs2, obs)  # goal_observation restored the state
    _, info = env.reset(seed=0, options={"start_xy": info["desired_goal"], "goal_xy": info["desired_goal"]})
    np.testing.assert_allclose(env.unwrapped.goal_observation(), env.unwrapped.task.get_observation(
        env.unwrapped.physics))
    assert info["success"]


def test_reset_determinism_and_info_contract():
    env_a, env_b = _make(layout="4x4"), _make(layout="4x4")
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 2)).astype(np.float32)
    obs_a, info_a = env_a.reset(seed=11)
    obs_b, _ = env_b.reset(seed=11)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert obs_a.dtype == np.float32 and obs_a.shape == (4,) and env_a.observation_space.contains(obs_a)
    keys = set(info_a["measurements"])
    assert keys == set(env_a.unwrapped.measurement_keys)
    for a in actions:
        step_a, step_b = env_a.step(a), env_b.step(a)
        np.testing.assert_array_equal(step_a[0], step_b[0])
        assert set(step_a[4]["measurements"]) == keys
        assert all(v.dtype == np.float64 and v.ndim == 1 for v in step_a[4]["measurements"].values())
    assert not np.array_equal(env_a.reset(seed=12)[0], obs_a)
    for seed in range(10):  # goal never in the start cell
        _, info = env_a.reset(seed=seed)
        layout = env_a.unwrapped.task.layout
        assert layout.xy_to_cell(info["achieved_goal"]) != layout.xy_to_cell(info["desired_goal"])


def test_bad_parameters_and_options_raise():
    for kwargs, name in (({"cell_size": 0.0}, "cell_size"), ({"success_radius": 2.0}, "success_radius"),
                         ({"max_force": -1.0}, "max_force"), ({"episode_steps": 0}, "episode_steps"),
                         ({"layout": "0x3"}, "layout"), ({"n_hazards": -1}, "n_hazards"),
                         ({"layout": "open", "n_hazards": 30}, "n_hazards=30: cannot place")):
        with pytest.raises(ValueError, match=name):
            PointMazeTask(**kwargs)
    env = _make(layout="open")
    for options, name in (({"start_cell": (0, 0)}, "start_cell"), ({"goal_xy": [9.0, 0.0]}, "goal_xy"),
                          ({"stat_cell": (1, 1)}, "unknown reset options")):
        with pytest.raises(ValueError, match=name):
            env.reset(seed=0, options=options)


def test_pixels_show_agent_goal_and_hazards():
    env = _make(layout=HAZARD_LAYOUT, obs="pixels", image_size=64)
    frame, _ = env.reset(seed=0)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    red = (frame[..., 0] > 180) & (frame[..., 1] < 80) & (frame[..., 2] < 80)
    purple = (frame[..., 0] > 120) & (frame[..., 2] > 180) & (frame[..., 1] < 100)
    assert red.sum() > 5 and purple.sum() > 50
    shown = env.unwrapped.render_frame(64, 64)  # the goal marker: in frames for people, not in observations

    def green(f):
        return int(((f[..., 1] > 150) & (f[..., 0] < 80)).sum())

    assert green(shown) > 5 and green(frame) == 0
    goal_frame = env.unwrapped.goal_observation()
    assert goal_frame.shape == frame.shape and not np.array_equal(goal_frame, frame)


def _follow_path(env, start, goal, cell_size):
    """A BFS waypoint follower with a PD controller; returns the step count at success or None."""
    task = env.unwrapped.task
    layout = task.layout
    obs, info = env.reset(seed=0, options={"start_cell": start, "goal_cell": goal})
    assert info["measurements"]["goal_path_distance"][0] == layout.shortest_path_length(start, goal) * cell_size
    dist = layout.distances_from(goal)
    for t in range(task.episode_steps):
        cell = layout.xy_to_cell(obs[:2], cell_size)
        target = info["desired_goal"]
        if cell != goal:
            nbrs = [(cell[0] + dr, cell[1] + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))]
            target = layout.cell_to_xy(min((n for n in nbrs if layout.is_free(n)), key=lambda n: dist[n]), cell_size)
        obs, _, _, _, info = env.step(np.clip(3.0 * (target - obs[:2]) / cell_size - 0.3 * obs[2:] / cell_size, -1, 1))
        if info["success"]:
            return t + 1
    return None


@pytest.mark.parametrize("layout, cell_size", [("2x2", 2.0), ("giant", 1.0)])
def test_episode_budget_allows_the_longest_path(layout, cell_size):
    env = _make(layout=layout, cell_size=cell_size)
    maze = env.unwrapped.task.layout
    free = maze.free_cells()
    dists = {a: maze.distances_from(a) for a in free}
    far = max(((a, b) for a in free for b in free), key=lambda p: dists[p[0]][p[1]])
    assert maze.shortest_path_length(*far) == maze.longest_shortest_path()
    steps = _follow_path(env, *far, cell_size)
    assert steps is not None and steps < 0.6 * env.unwrapped.episode_steps
