"""Environment suite: Gymnasium MuJoCo tasks, the dm_control suite and our own MuJoCo tasks,
behind one interface (`envs.core.OdaEnv`) and one registry.

    import envs
    env = envs.make("oda/PointMaze-v0", obs="pixels", seed=0)
    env = gymnasium.make("dmc/walker-walk")      # same thing through gymnasium
"""

import os
import sys

# Headless Linux: render offscreen with EGL unless the user chose a backend. This must happen
# before MuJoCo / dm_control pick their GL backend at import.
if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from envs.core import OBS_MODES, OdaEnv  # noqa: E402
from envs.factory import make  # noqa: E402
from envs.registry import TaskSpec, get_spec, list_specs, register_task  # noqa: E402

__all__ = ["OBS_MODES", "OdaEnv", "TaskSpec", "get_spec", "list_specs", "make", "register_task"]

# Importing the families registers their tasks.
from envs import dmc, extras, gym_mujoco, tasks  # noqa: E402, F401
