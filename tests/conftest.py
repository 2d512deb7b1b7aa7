import os

# Headless software rendering; set before MuJoCo creates a GL context.
os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

# `make test` runs two pytest workers on two cores: one torch thread each avoids
# oversubscription, which slows small models by two orders of magnitude.
torch.set_num_threads(1)
