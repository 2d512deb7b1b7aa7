"""Planar geometry of rigid 2-D shapes: angles, block frames, oriented boxes against rectangles and discs.

Pure functions on floats (no MuJoCo), used by the Push task to sample starts and goals and to read its
safety and contact signals.
"""

from __future__ import annotations

import math

import numpy as np


def wrap(angle: float, period: float = 2 * math.pi) -> float:
    """``angle`` wrapped into [-period/2, period/2)."""
    return (angle + period / 2) % period - period / 2


def to_world(pose: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The world xy of a point at ``offset`` in the frame of a block at ``pose`` (x, y, theta)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return np.array([pose[0] + c * offset[0] - s * offset[1], pose[1] + s * offset[0] + c * offset[1]])


Box = tuple[float, float, float, float, float]  # world center x, y, half extents a, b, angle


def box_overlaps_rect(box: Box, rect: np.ndarray) -> bool:
    """Separating-axis test of an oriented box against an axis-aligned (xmin, ymin, xmax, ymax)."""
    cx, cy, a, b, th = box
    xmin, ymin, xmax, ymax = (float(v) for v in rect)
    rx, ry = (xmax - xmin) / 2, (ymax - ymin) / 2
    dx, dy = cx - (xmin + xmax) / 2, cy - (ymin + ymax) / 2
    c, s = math.cos(th), math.sin(th)
    ac, as_ = abs(c), abs(s)
    return (abs(dx) < ac * a + as_ * b + rx and abs(dy) < as_ * a + ac * b + ry
            and abs(c * dx + s * dy) < a + ac * rx + as_ * ry and abs(-s * dx + c * dy) < b + as_ * rx + ac * ry)


def point_box_distance(px: float, py: float, box: Box) -> float:
    """Distance from a point to an oriented box (0 inside)."""
    cx, cy, a, b, th = box
    c, s = math.cos(th), math.sin(th)
    dx, dy = px - cx, py - cy
    return math.hypot(max(abs(c * dx + s * dy) - a, 0.0), max(abs(-s * dx + c * dy) - b, 0.0))


def disc_overlaps_rect(px: float, py: float, radius: float, rect: np.ndarray) -> bool:
    """Whether a disc of ``radius`` at (px, py) overlaps the axis-aligned (xmin, ymin, xmax, ymax)."""
    xmin, ymin, xmax, ymax = (float(v) for v in rect)
    return math.hypot(px - min(max(px, xmin), xmax), py - min(max(py, ymin), ymax)) < radius
