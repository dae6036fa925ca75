"""Named view directions and a deterministic camera that frames a bounding box.

Cameras follow the pinhole convention shared with Open3D: camera coordinates have x to the right, y down
and z forward (into the scene); pixel centres sit at integer coordinates. The world is taken to be Y-up,
the convention of most scan formats (FAUST, the Stanford models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# view name -> (direction from the target to the eye, world direction that points up in the image)
VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "front": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "back": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "side": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "top": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "bottom": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "iso": ((1.0, 1.0, 1.0), (0.0, 1.0, 0.0)),
}
DEFAULT_VIEWS = ("front", "side", "top", "iso")
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


def frame_view(
    bounds: np.ndarray, view: str, size: tuple[int, int], *, fov_degrees: float = FOV_DEGREES
) -> Camera:
    """Camera for a named view that fits the box ``bounds`` into an image of ``size`` = (width, height).

    The camera depends only on the box, the view and the size, so the same inputs give the same framing
    every time, whatever the geometry inside the box.

    Parameters
    ----------
    bounds : (2, 3) float
        Lower and upper corners of the box to frame.
    view : str
        One of :data:`VIEWS`.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    width, height = int(size[0]), int(size[1])
    lo, hi = np.asarray(bounds, dtype=np.float64)
    center = (lo + hi) / 2.0
    direction, up_hint = (np.asarray(v, dtype=np.float64) for v in VIEWS[view])
    direction = _unit(direction)
    right = _unit(np.cross(-direction, up_hint))
    up = np.cross(right, -direction)

    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    rel = corners - center
    half_w, half_h = np.abs(rel @ right).max(), np.abs(rel @ up).max()
    toward_eye = (rel @ direction).max()
    focal = (height / 2.0) / np.tan(np.radians(fov_degrees) / 2.0)
    # the nearest face of the box is the one that must fit, hence the depth offset
    reach = max(half_w / (width / 2.0 / focal), half_h / (height / 2.0 / focal))
    if reach <= 0:
        reach = max(float(np.abs(rel).max()), 1.0)
    distance = toward_eye + MARGIN * reach
    return Camera(center + distance * direction, center, up, width, height, float(focal))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
