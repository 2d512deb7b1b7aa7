"""Offscreen frames from a MuJoCo model, fast by default, and the files people look at."""

from __future__ import annotations

import atexit
import os
import weakref
from pathlib import Path

import mujoco
import numpy as np

from envs.core import FAST_RENDER_FLAGS, GOAL_GROUP

_FLAG_IDS = {
    "shadow": mujoco.mjtRndFlag.mjRND_SHADOW,
    "reflection": mujoco.mjtRndFlag.mjRND_REFLECTION,
    "skybox": mujoco.mjtRndFlag.mjRND_SKYBOX,
}


# (centre xyz, rgba, size): size r is a sphere of radius r; (r, h) a vertical disc (cylinder of
# radius r and half-height h), e.g. a zone on the floor.
Markers = list[tuple[np.ndarray, tuple[float, float, float, float], float | tuple[float, float]]]
_EYE = np.eye(3).ravel()


def _add_markers(scene: mujoco.MjvScene, markers: Markers) -> None:
    for xyz, rgba, size in markers:
        if scene.ngeom >= scene.maxgeom:
            break
        if isinstance(size, tuple) and len(size) == 3:  # half-sizes
            kind, dims = mujoco.mjtGeom.mjGEOM_BOX, np.array(size, dtype=np.float64)
        elif isinstance(size, tuple):  # radius, half-height
            kind, dims = mujoco.mjtGeom.mjGEOM_CYLINDER, np.array([size[0], size[1], 0.0])
        else:
            kind, dims = mujoco.mjtGeom.mjGEOM_SPHERE, np.array([size, 0.0, 0.0])
        mujoco.mjv_initGeom(scene.geoms[scene.ngeom], kind, dims, np.asarray(xyz, dtype=np.float64), _EYE,
                            np.asarray(rgba, dtype=np.float32))
        scene.ngeom += 1


class FrameRenderer:
    """One `mujoco.Renderer` per frame size, with shadows, reflections and skybox off unless
    ``fast=False`` (small frames render 3-6x faster without them)."""

    def __init__(self, model: mujoco.MjModel, fast: bool = True):
        self.model = model
        self.fast = fast
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._options = {show: mujoco.MjvOption() for show in (True, False)}  # with / without the goal marks
        for show, option in self._options.items():
            option.geomgroup[GOAL_GROUP] = option.sitegroup[GOAL_GROUP] = int(show)
        # Free GL contexts when collected, or at exit before EGL itself is terminated; left to
        # `Renderer.__del__` at interpreter shutdown, EGL raises noisy errors.
        self._finalizer = weakref.finalize(self, _close_all, self._renderers)

    def render(self, data: mujoco.MjData, width: int, height: int,
               camera: str | int | mujoco.MjvCamera = -1, markers: Markers | None = None,
               show_goal: bool = True) -> np.ndarray:
        """A uint8 frame; ``markers`` are extra spheres ``(xyz, rgba, radius)`` drawn into the
        scene (e.g. a planned trajectory), seen by the same camera as everything else.
        ``show_goal=False`` leaves out the goal marks (geoms and sites of ``GOAL_GROUP``)."""
        key = (width, height)
        renderer = self._renderers.get(key)
        if renderer is None:
            vis = self.model.vis.global_
            vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
            first = not self._renderers
            renderer = self._renderers[key] = mujoco.Renderer(self.model, height, width)
            if first:  # registered after the GL context exists, so it runs before EGL's exit hook
                atexit.register(_close_all, self._renderers)
        renderer.update_scene(data, camera=camera, scene_option=self._options[bool(show_goal)])
        if markers:
            _add_markers(renderer.scene, markers)
        for name, flag in _FLAG_IDS.items():
            renderer.scene.flags[flag] = FAST_RENDER_FLAGS[name] if self.fast else True
        return renderer.render()

    def close(self) -> None:
        self._finalizer()


def _close_all(renderers: dict[tuple[int, int], mujoco.Renderer]) -> None:
    for renderer in renderers.values():
        renderer.close()
    renderers.clear()


def write_png(path: str | os.PathLike, frame: np.ndarray) -> Path:
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frame)
    return path


def mp4_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, refused unless it ends in .mp4 (imageio picks its writer by the suffix, and without
    it fails with a message about backends); callers check it before the work whose frames it will hold."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"an MP4 video needs a path ending in .mp4, got {str(path)!r}")
    return path


def write_mp4(path: str | os.PathLike, frames: list[np.ndarray], fps: int = 30) -> Path:
    """Encode frames to an H.264 MP4 with imageio-ffmpeg (bundled ffmpeg binary)."""
    import imageio

    try:  # without it imageio picks another plugin by the suffix and fails on `fps` with a TypeError
        import imageio_ffmpeg  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError("writing MP4 needs the package 'imageio-ffmpeg' (a dependency of oda): "
                                  "pip install imageio-ffmpeg", name="imageio_ffmpeg") from err
    if not frames:
        raise ValueError("no frames to write")
    path = mp4_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, quality=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    tmp.replace(path)
    return path
