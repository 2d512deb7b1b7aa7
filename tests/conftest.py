import os

# Headless software rendering; set before MuJoCo creates a GL context.
os.environ.setdefault("MUJOCO_GL", "egl")
