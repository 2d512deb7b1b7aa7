"""Environment suite: Gymnasium MuJoCo tasks, the dm_control suite and our own MuJoCo tasks,
behind one interface (`envs.core.OdaEnv`) and one registry.

    import envs
    env = envs.make("oda/PointMaze-v0", obs="pixels", seed=0)
    env = gymnasium.make("dmc/walker-walk")      # same thing through gymnasium
"""

from envs.core import OBS_MODES, OdaEnv
from envs.factory import make
from envs.registry import TaskSpec, get_spec, list_specs, register_task

__all__ = ["OBS_MODES", "OdaEnv", "TaskSpec", "get_spec", "list_specs", "make", "register_task"]

# Importing the families registers their tasks.
from envs import dmc, extras, gym_mujoco, tasks  # noqa: E402, F401
