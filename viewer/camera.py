"""Named view directions, the up axis of a shape, and a deterministic camera that frames a bounding box.

Cameras follow the pinhole convention shared with Open3D: camera coordinates have x to the right, y down
and z forward (into the scene); pixel centres sit at integer coordinates. Views are named in a Y-up
*view frame* (x right, y up, z towards the viewer of the front view); :func:`up_frame` turns that frame
so that its y axis is the shape's own up axis, given or guessed by :func:`guess_up_axis`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ELEVATION_DEGREES = 25.0
"""Height of the ``elevated`` view's eye above the horizon: enough to see the top, low enough to see a
standing shape from the front."""
_ELEVATION = np.radians(ELEVATION_DEGREES)

# view name -> (direction from the target to the eye, direction that points up in the image), both in
# the view frame
VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "front": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "back": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "side": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "top": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "bottom": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "iso": ((1.0, 1.0, 1.0), (0.0, 1.0, 0.0)),
    "elevated": ((0.0, float(np.sin(_ELEVATION)), float(np.cos(_ELEVATION))), (0.0, 1.0, 0.0)),
}
DEFAULT_VIEWS = ("front", "side", "top", "iso")
UP_AXES: dict[str, tuple[float, float, float]] = {
    "+x": (1.0, 0.0, 0.0),
    "-x": (-1.0, 0.0, 0.0),
    "+y": (0.0, 1.0, 0.0),
    "-y": (0.0, -1.0, 0.0),
    "+z": (0.0, 0.0, 1.0),
    "-z": (0.0, 0.0, -1.0),
}
UP_CHOICES = ("auto", *UP_AXES)
ELONGATION = 1.3
""":func:`guess_up_axis` takes +z as up when the z extent exceeds this many times the x and y extents."""
TRIM_PERCENT = 1.0
"""Percent of the points cut off each end of every axis before measuring extents (stray scanner points)."""
FOV_DEGREES = 30.0
"""Vertical field of view: narrow enough that the perspective barely distorts, wide enough for depth cues."""
MARGIN = 1.06
"""Framing slack around the projected bounding box."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking at ``target`` from ``eye``.

    Attributes
    ----------
    eye, target, up : (3,) float
        Camera position, the point it looks at, and the world direction shown as up.
    width, height : int
        Image size in pixels.
    focal : float
        Focal length in pixels (square pixels).
    """

    eye: np.ndarray
    target: np.ndarray
    up: np.ndarray
    width: int
    height: int
    focal: float

    def rotation(self) -> np.ndarray:
        """(3, 3) world-to-camera rotation whose rows are the camera's right, down and forward axes."""
        forward = _unit(self.target - self.eye)
        right = _unit(np.cross(forward, self.up))
        down = np.cross(forward, right)
        return np.stack([right, down, forward])

    def extrinsic(self) -> np.ndarray:
        """(4, 4) world-to-camera matrix."""
        rot = self.rotation()
        m = np.eye(4)
        m[:3, :3] = rot
        m[:3, 3] = -rot @ self.eye
        return m

    def intrinsic(self) -> np.ndarray:
        """(3, 3) pinhole matrix with the principal point at the image centre."""
        return np.array(
            [
                [self.focal, 0.0, (self.width - 1) / 2.0],
                [0.0, self.focal, (self.height - 1) / 2.0],
                [0.0, 0.0, 1.0],
            ]
        )

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) world points in camera coordinates (x right, y down, z forward)."""
        return (np.asarray(points, dtype=np.float64) - self.eye) @ self.rotation().T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (n, 2) and depths (n,) of (n, 3) world points."""
        cam = self.to_camera(points)
        depth = cam[:, 2]
        safe = np.where(np.abs(depth) > 1e-12, depth, 1e-12)
        k = self.intrinsic()
        uv = np.stack([k[0, 0] * cam[:, 0] / safe + k[0, 2], k[1, 1] * cam[:, 1] / safe + k[1, 2]], axis=1)
        return uv, depth

    def scaled(self, factor: int) -> Camera:
        """The same view at ``factor`` times the resolution (for supersampling)."""
        return Camera(
            self.eye, self.target, self.up, self.width * factor, self.height * factor, self.focal * factor
        )


def guess_up_axis(points: np.ndarray) -> np.ndarray:
    """(3,) unit up axis of a shape in a file that does not say: +z if it stands tall along z, else +y.

    With ``e`` the extents of the points along x, y and z, measured between the :data:`TRIM_PERCENT`
    and 100 - :data:`TRIM_PERCENT` percentiles so that a few stray scanner points do not count, the
    answer is +z when ``e_z > ELONGATION * max(e_x, e_y)``, and otherwise +y, the convention of FAUST and
    of most OBJ/PLY tools. It relies on what many scans are (bodies, statues, figurines): taller along
    their up axis than across it. The rule only ever answers +y or +z, so:

    - a shape lying along z in a +y-up file (a car, an animal or a sofa seen end on) is stood on end;
    - a +z-up shape that is not tall (a table, a car) is taken as +y-up and seen from above;
    - the sign cannot be read from extents: an upside-down scan is shown upside down.

    Pass an explicit axis (``--up``) in those cases.

    Parameters
    ----------
    points : (n, 3) float
        Vertices or scan points; non-finite rows are ignored.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return np.array(UP_AXES["+y"])
    lo, hi = np.percentile(pts, [TRIM_PERCENT, 100.0 - TRIM_PERCENT], axis=0)
    ex, ey, ez = hi - lo
    return np.array(UP_AXES["+z" if ez > ELONGATION * max(ex, ey) else "+y"])


def resolve_up(up: str | Sequence[float], points: np.ndarray) -> np.ndarray:
    """(3,) unit up axis named or given by ``up``.

    Parameters
    ----------
    up : str or (3,) float
        A name from :data:`UP_CHOICES` ("auto": :func:`guess_up_axis` of ``points``) or a direction.
    points : (n, 3) float
        The shape, read only for "auto".
    """
    if isinstance(up, str):
        if up not in UP_CHOICES:
            raise ValueError(f"unknown up axis {up!r}; choose from {', '.join(UP_CHOICES)}")
        return guess_up_axis(points) if up == "auto" else np.array(UP_AXES[up])
    return _unit(np.asarray(up, dtype=np.float64))


def up_frame(up: Sequence[float]) -> np.ndarray:
    """(3, 3) rotation whose columns are the world directions of the view frame's x, y and z axes.

    y is ``up``; x (the front view's right) is the world x axis made orthogonal to ``up``, or the world z
    axis when ``up`` lies closest to x; z = x × y. So +y up gives the identity, and a +z-up shape is
    seen from -y, with x to the right, as in Blender's front view. ``points @ up_frame(up)`` gives
    (n, 3) points in the view frame, where they stand with +y up.
    """
    up = _unit(np.asarray(up, dtype=np.float64))
    reference = np.array(UP_AXES["+z"] if abs(up[0]) >= np.abs(up[1:]).max() else UP_AXES["+x"])
    right = _unit(reference - (reference @ up) * up)
    return np.stack([right, up, np.cross(right, up)], axis=1)


def frame_view(
    bounds: np.ndarray,
    view: str,
    size: tuple[int, int],
    *,
    up: Sequence[float] = UP_AXES["+y"],
    fov_degrees: float = FOV_DEGREES,
) -> Camera:
    """Camera for a named view that fits the box ``bounds`` into an image of ``size`` = (width, height).

    The camera depends only on the box, the view, the up axis and the size, so the same inputs give the
    same framing every time, whatever the geometry inside the box.

    Parameters
    ----------
    bounds : (2, 3) float
        Lower and upper corners of the box to frame.
    view : str
        One of :data:`VIEWS`.
    up : (3,) float
        The shape's up axis (see :func:`up_frame`); it points up in the image of every view but top and
        bottom.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    width, height = int(size[0]), int(size[1])
    lo, hi = np.asarray(bounds, dtype=np.float64)
    center = (lo + hi) / 2.0
    frame = up_frame(up)
    direction, up_hint = (frame @ np.asarray(v, dtype=np.float64) for v in VIEWS[view])
    direction = _unit(direction)
    right = _unit(np.cross(-direction, up_hint))
    image_up = np.cross(right, -direction)

    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    rel = corners - center
    half_w, half_h = np.abs(rel @ right).max(), np.abs(rel @ image_up).max()
    toward_eye = (rel @ direction).max()
    focal = (height / 2.0) / np.tan(np.radians(fov_degrees) / 2.0)
    # the nearest face of the box is the one that must fit, hence the depth offset
    reach = max(half_w / (width / 2.0 / focal), half_h / (height / 2.0 / focal))
    if reach <= 0:
        reach = max(float(np.abs(rel).max()), 1.0)
    distance = toward_eye + MARGIN * reach
    return Camera(center + distance * direction, center, image_up, width, height, float(focal))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
