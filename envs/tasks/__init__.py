"""Our own MuJoCo tasks (MJCF generated in code); importing this package registers them."""

from envs.tasks import arm_reach, point_maze, push  # noqa: F401
