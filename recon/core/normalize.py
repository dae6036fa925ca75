"""Centre and scale scans into the working frame, and map results back to the scan's frame.

The working frame puts the scan's bounding-box centre at the origin and its largest half-extent at
``target_half_extent`` (default 0.9), so the reference sampling box [-1.1, 1.1]³ and the meshing box
[-1.2, 1.2]³ contain the whole scan with a margin. The transform is saved with every run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Normalization:
    """x_work = (x_scan - center) * scale.

    Attributes
    ----------
    center : (3,) float
        Point of the scan frame that maps to the origin.
    scale : float
        Isotropic factor from scan units to working units.
    """

    center: tuple[float, float, float]
    scale: float

    @classmethod
    def fit(cls, points: np.ndarray, target_half_extent: float = 0.9) -> Normalization:
        """Normalization that maps the bounding box of ``points`` (n, 3) into [-t, t]³."""
        lo, hi = points.min(axis=0), points.max(axis=0)
        center = (lo + hi) / 2.0
        half_extent = float((hi - lo).max()) / 2.0
        if not np.isfinite(half_extent) or half_extent <= 0:
            raise ValueError("points have zero extent")
        return cls(center=tuple(float(c) for c in center), scale=target_half_extent / half_extent)

    @classmethod
    def identity(cls) -> Normalization:
        return cls(center=(0.0, 0.0, 0.0), scale=1.0)

    def to_work(self, points: np.ndarray) -> np.ndarray:
        """Map (n, 3) scan-frame points into the working frame."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) * self.scale

    def to_scan(self, points: np.ndarray) -> np.ndarray:
        """Map (n, 3) working-frame points back into the scan frame."""
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.center)

    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix of ``to_work``."""
        m = np.eye(4) * self.scale
        m[3, 3] = 1.0
        m[:3, 3] = -np.asarray(self.center) * self.scale
        return m

    def to_dict(self) -> dict:
        d = asdict(self)
        d["center"] = list(self.center)
        d["matrix"] = self.matrix().tolist()
        d["definition"] = "x_work = (x_scan - center) * scale"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(center=tuple(float(c) for c in d["center"]), scale=float(d["scale"]))
