"""A virtual range scanner: turns a mesh into a FAUST-like raw scan.

Pinhole cameras placed around the object cast one ray per pixel against the mesh (Open3D's
``RaycastingScene``), so occlusion is real: concavities and surfaces facing away from every camera stay
unseen, as under the feet of a person in a body scanner. Each hit is then degraded the way structured-light
scanners degrade data: hits at grazing incidence are lost, density falls with incidence and distance,
patches go missing (specular or dark spots), the depth is perturbed along the ray with a standard deviation
that grows with the squared depth, and a fraction of points are outliers. Normals come from the hit
triangle and face the camera that saw the point, as a scanner's triangulated range image would give them.

All lengths in a :class:`ScannerConfig` are in units of the mesh's bounding-box diagonal, so one config
gives comparable scans of meshes in millimetres or metres. A fixed ``seed`` gives identical output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import trimesh

from recon.errors import InputError, ReconError

# Oversampling of the auto-chosen resolution: the views should yield comfortably more hits than asked for,
# so that the final uniform subsample keeps the density pattern of the views.
_AUTO_OVERSAMPLE = 1.5
_PROBE_RESOLUTION = 64
_MAX_RESOLUTION = 2048


@dataclass(frozen=True)
class ScannerConfig:
    """Settings of the virtual range scanner; lengths are in bounding-box diagonals of the mesh."""

    n_views: int = 6
    """Number of pinhole views (camera positions)."""
    resolution: int | None = None
    """Pixels per side of each square image; None picks it so that the views yield about 1.5× n_points."""
    fov_deg: float = 40.0
    """Field of view of each camera, degrees."""
    distance: float | None = None
    """Camera distance from the bounding-box centre; None frames the bounding sphere in the field of view."""
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    """Up direction of the object; elevations are measured from the plane orthogonal to it."""
    elevation_deg: tuple[float, float] = (5.0, 45.0)
    """Range of camera elevations; no camera below the lower bound, so the underside stays unseen."""
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    """Range over which the cameras are spread evenly around ``up``; azimuth 0 looks at the front."""
    noise_a: float = 2e-4
    """Constant part of the depth noise: sigma = noise_a + noise_b * depth², depth in diagonals."""
    noise_b: float = 1e-4
    """Quadratic part of the depth noise (structured-light error grows with the squared depth)."""
    grazing_cos: float = 0.1
    """Hits whose |cos(incidence)| is below this are lost."""
    incidence_falloff: float = 0.5
    """A hit is kept with probability |cos(incidence)| ** incidence_falloff (uneven density)."""
    hole_fraction: float = 0.0
    """Fraction of each view's hits lost in smooth random patches (specular or dark spots)."""
    hole_cells: int = 12
    """Cells per image side of the random field that shapes the patches (more cells: smaller holes)."""
    outlier_fraction: float = 0.0
    """Fraction of the returned points that are outliers."""
    outlier_near_share: float = 0.5
    """Share of the outliers that lie near the surface (along the ray); the rest are uniform in the box."""
    outlier_near_sigma: float = 0.02
    """Standard deviation of the along-ray offset of near-surface outliers."""
    outlier_box_margin: float = 0.1
    """Uniform outliers fill the bounding box grown by this much on every side."""
    normal_noise_deg: float = 0.0
    """Angular noise of the normals, degrees (scanners estimate normals from noisy range images)."""
    n_points: int | None = 100_000
    """Points in the scan (uniform subsample of all hits); None keeps every hit."""
    seed: int = 0
    """Seed of every random choice; the same seed gives the same scan."""

    def __post_init__(self) -> None:
        problems = [
            (self.n_views < 1, "n_views must be at least 1"),
            (self.resolution is not None and self.resolution < 2, "resolution must be at least 2"),
            (not 0 < self.fov_deg < 180, "fov_deg must be in (0, 180)"),
            (self.distance is not None and self.distance <= 0, "distance must be positive"),
            (self.elevation_deg[0] > self.elevation_deg[1], "elevation_deg must be (low, high)"),
            (self.azimuth_deg[0] > self.azimuth_deg[1], "azimuth_deg must be (low, high)"),
            (min(self.noise_a, self.noise_b) < 0, "noise_a and noise_b must be non-negative"),
            (not 0 <= self.grazing_cos < 1, "grazing_cos must be in [0, 1)"),
            (self.incidence_falloff < 0, "incidence_falloff must be non-negative"),
            (not 0 <= self.hole_fraction < 1, "hole_fraction must be in [0, 1)"),
            (self.hole_cells < 1, "hole_cells must be at least 1"),
            (not 0 <= self.outlier_fraction < 1, "outlier_fraction must be in [0, 1)"),
            (not 0 <= self.outlier_near_share <= 1, "outlier_near_share must be in [0, 1]"),
            (self.n_points is not None and self.n_points < 1, "n_points must be at least 1"),
            (np.linalg.norm(self.up) == 0, "up must be a non-zero vector"),
        ]
        for bad, message in problems:
            if bad:
                raise ReconError(f"scanner config: {message}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScannerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ReconError(f"scanner config: unknown field(s) {', '.join(unknown)}")
        tuples = {k: tuple(v) for k, v in d.items() if k in ("up", "elevation_deg", "azimuth_deg")}
        return cls(**{**d, **tuples})


PRESETS: dict[str, ScannerConfig] = {
    # Close to a good body scanner: little noise, no outliers, holes only where no camera sees.
    "clean": ScannerConfig(),
    # A cheaper scanner: 10× the depth noise, outliers, missing patches, noisy normals.
    "noisy": ScannerConfig(
        noise_a=1e-3,
        noise_b=1e-3,
        incidence_falloff=1.0,
        hole_fraction=0.05,
        outlier_fraction=0.01,
        normal_noise_deg=8.0,
    ),
    # Three views from the front half only: the back is never seen.
    "partial": ScannerConfig(
        n_views=3,
        azimuth_deg=(-40.0, 40.0),
        elevation_deg=(10.0, 40.0),
        noise_a=5e-4,
        noise_b=5e-4,
        hole_fraction=0.02,
        outlier_fraction=0.002,
        normal_noise_deg=3.0,
    ),
    # A second scanner, so that nothing is tuned to the three above: four hand-held views from low
    # elevations, depth noise that does not grow with depth, fewer and larger dropouts, some outliers.
    "handheld": ScannerConfig(
        n_views=4,
        fov_deg=50.0,
        elevation_deg=(0.0, 25.0),
        azimuth_deg=(20.0, 380.0),
        noise_a=6e-4,
        noise_b=0.0,
        incidence_falloff=1.5,
        hole_fraction=0.08,
        hole_cells=6,
        outlier_fraction=0.005,
        normal_noise_deg=5.0,
    ),
}


def scanner_preset(name: str, **overrides) -> ScannerConfig:
    """The preset ``name`` ('clean', 'noisy', 'partial', 'handheld') with some fields replaced."""
    if name not in PRESETS:
        raise ReconError(f"unknown scanner preset {name!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


@dataclass
class VirtualScan:
    """A virtual scan with what the scanner knows about it.

    Attributes
    ----------
    points : (n, 3) float
        Scanned points in the mesh's frame.
    normals : (n, 3) float
        Unit normals, each facing the camera of its view.
    view_ids : (n,) int
        Index of the view (camera) each point comes from.
    outlier : (n,) bool
        True for outliers.
    eyes : (n_views, 3) float
        Camera positions.
    resolution : int
        Pixels per image side that were used.
    hits_per_view : list of int
        Points each view yielded before subsampling.
    """

    points: np.ndarray
    normals: np.ndarray
    view_ids: np.ndarray
    outlier: np.ndarray
    eyes: np.ndarray
    resolution: int
    hits_per_view: list[int] = field(default_factory=list)


def virtual_scan(mesh: trimesh.Trimesh, config: ScannerConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scan ``mesh`` with the virtual range scanner.

    Returns
    -------
    points : (n, 3) float
    normals : (n, 3) float
        Unit normals facing the scanning camera.
    view_ids : (n,) int
        The view each point comes from.
    """
    scan = scan_mesh(mesh, config)
    return scan.points, scan.normals, scan.view_ids


def scan_mesh(mesh: trimesh.Trimesh, config: ScannerConfig) -> VirtualScan:
    """Scan ``mesh`` and return the points with their views, outlier flags and camera positions."""
    if len(mesh.faces) == 0:
        raise InputError("cannot scan a mesh without faces")
    rng = np.random.default_rng(config.seed)
    lo, hi = mesh.bounds
    center = (lo + hi) / 2.0
    diagonal = float(np.linalg.norm(hi - lo))
    if not np.isfinite(diagonal) or diagonal <= 0:
        raise InputError("cannot scan a mesh with zero or non-finite extent")
    # Ray casting is float32: cast in a frame centred on the box so large coordinates keep their precision.
    scene = _raycasting_scene(mesh.vertices - center, mesh.faces)
    face_normals = np.asarray(mesh.face_normals, dtype=np.float64)
    eyes = camera_positions(config, diagonal)
    resolution = config.resolution or _auto_resolution(scene, face_normals, eyes, config)

    parts = [_scan_view(scene, face_normals, eye, resolution, config, diagonal, rng) for eye in eyes]
    points = np.concatenate([p for p, _ in parts])
    normals = np.concatenate([n for _, n in parts])
    view_ids = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, (p, _) in enumerate(parts)])
    if len(points) == 0:
        raise InputError("the virtual scanner saw nothing: check the mesh and the camera settings")

    n_outliers, keep = _budget(len(points), config)
    if keep < len(points):
        kept = np.sort(rng.choice(len(points), size=keep, replace=False))
        points, normals, view_ids = points[kept], normals[kept], view_ids[kept]
    out_p, out_n, out_v = _outliers(
        n_outliers, points, normals, view_ids, eyes, lo - center, hi - center, config, diagonal, rng
    )
    is_outlier = np.concatenate([np.zeros(len(points), bool), np.ones(len(out_p), bool)])
    points = np.concatenate([points, out_p])
    normals = np.concatenate([normals, out_n])
    view_ids = np.concatenate([view_ids, out_v])

    # Shuffle so that consumers taking contiguous batches (as the reference code does) see every view.
    order = rng.permutation(len(points))
    return VirtualScan(
        points=points[order] + center,
        normals=normals[order],
        view_ids=view_ids[order],
        outlier=is_outlier[order],
        eyes=eyes + center,
        resolution=int(resolution),
        hits_per_view=[len(p) for p, _ in parts],
    )


def camera_positions(config: ScannerConfig, diagonal: float) -> np.ndarray:
    """(n_views, 3) camera positions relative to the bounding-box centre of a mesh of this diagonal.

    Azimuths are spread evenly over ``config.azimuth_deg`` (a full turn is split into equal steps, a
    partial range includes both ends); elevations are drawn uniformly in ``config.elevation_deg``.
    """
    rng = np.random.default_rng([config.seed, 1])
    up, front, side = _object_axes(config.up)
    n = config.n_views
    az_lo, az_hi = config.azimuth_deg
    full_turn = az_hi - az_lo >= 360.0
    steps = np.arange(n) / (n if full_turn or n == 1 else n - 1)
    azimuth = np.radians(az_lo + (az_hi - az_lo) * steps)
    elevation = np.radians(rng.uniform(*config.elevation_deg, size=n))
    direction = (
        np.cos(elevation)[:, None] * (np.cos(azimuth)[:, None] * front + np.sin(azimuth)[:, None] * side)
        + np.sin(elevation)[:, None] * up
    )
    return direction * camera_distance(config, diagonal)


def camera_distance(config: ScannerConfig, diagonal: float) -> float:
    """Distance from the box centre to each camera (in the mesh's units)."""
    if config.distance is not None:
        return config.distance * diagonal
    # The bounding sphere (radius = half the diagonal) fits in the field of view, with a 5% margin.
    return 1.05 * (diagonal / 2.0) / np.sin(np.radians(config.fov_deg) / 2.0)


def depth_sigma(depth: np.ndarray, config: ScannerConfig, diagonal: float) -> np.ndarray:
    """Standard deviation of the depth noise (mesh units) at ``depth`` (mesh units)."""
    d = np.asarray(depth) / diagonal
    return diagonal * (config.noise_a + config.noise_b * d**2)


def pinhole_rays(
    eye: np.ndarray, target: np.ndarray, up: np.ndarray, fov_deg: float, resolution: int
) -> np.ndarray:
    """(resolution², 3) unit ray directions of a square pinhole camera at ``eye`` looking at ``target``.

    Rows are image rows from top to bottom, pixels sampled at their centres.
    """
    forward = _unit(target - eye)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along up: any right vector will do
        right = np.cross(forward, _any_orthogonal(forward))
    right = _unit(right)
    cam_up = np.cross(right, forward)
    half = np.tan(np.radians(fov_deg) / 2.0)
    coords = (np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
    x, y = np.meshgrid(coords * half, -coords * half)
    dirs = forward + x.reshape(-1, 1) * right + y.reshape(-1, 1) * cam_up
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def _scan_view(scene, face_normals, eye, resolution, config, diagonal, rng):
    """Points (k, 3) and camera-facing normals (k, 3) seen from one camera, before subsampling."""
    dirs = pinhole_rays(eye, np.zeros(3), _unit(np.asarray(config.up, float)), config.fov_deg, resolution)
    depth, face = _cast(scene, eye, dirs)
    hit = np.isfinite(depth)
    cos = np.zeros(len(dirs))
    cos[hit] = -np.einsum("ij,ij->i", dirs[hit], face_normals[face[hit]])
    keep = hit & (np.abs(cos) >= config.grazing_cos)
    keep &= rng.random(len(dirs)) < np.abs(cos) ** config.incidence_falloff
    if config.hole_fraction > 0:
        keep &= ~_hole_mask(resolution, keep, config, rng)
    dirs, depth, cos, face = dirs[keep], depth[keep], cos[keep], face[keep]
    noisy_depth = depth + rng.normal(size=len(depth)) * depth_sigma(depth, config, diagonal)
    points = eye + dirs * noisy_depth[:, None]
    normals = face_normals[face] * np.where(cos >= 0, 1.0, -1.0)[:, None]
    if config.normal_noise_deg > 0:
        normals = _perturbed_normals(normals, dirs, config.normal_noise_deg, rng)
    return points, normals


def _hole_mask(resolution, keep, config, rng):
    """(resolution²,) bool: pixels lost in smooth random patches covering ~hole_fraction of the hits."""
    cells = config.hole_cells
    coarse = rng.random((cells + 1, cells + 1))
    t = np.linspace(0.0, cells, resolution)
    i0 = np.minimum(t.astype(int), cells - 1)
    w = t - i0
    rows = coarse[i0] * (1 - w)[:, None] + coarse[i0 + 1] * w[:, None]
    smooth = rows[:, i0] * (1 - w)[None, :] + rows[:, i0 + 1] * w[None, :]
    smooth = smooth.reshape(-1)
    if not keep.any():
        return np.zeros_like(keep)
    return smooth < np.quantile(smooth[keep], config.hole_fraction)


def _perturbed_normals(normals, dirs, noise_deg, rng):
    noisy = normals + rng.normal(scale=np.radians(noise_deg), size=normals.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    facing = np.einsum("ij,ij->i", noisy, dirs) < 0
    return np.where(facing[:, None], noisy, -noisy)


def _budget(n_hits: int, config: ScannerConfig) -> tuple[int, int]:
    """(number of outliers, number of surface points to keep)."""
    total = n_hits if config.n_points is None else config.n_points
    n_outliers = int(round(config.outlier_fraction * total))
    return n_outliers, min(n_hits, total - n_outliers)


def _outliers(n, points, normals, view_ids, eyes, lo, hi, config, diagonal, rng):
    """Outlier points, normals and view ids: near-surface ones along the rays, the rest uniform in the box."""
    n_near = int(round(config.outlier_near_share * n))
    src = rng.choice(len(points), size=n_near)
    ray = _unit_rows(points[src] - eyes[view_ids[src]])
    near = points[src] + ray * rng.normal(scale=config.outlier_near_sigma * diagonal, size=(n_near, 1))
    margin = config.outlier_box_margin * diagonal
    far = rng.uniform(lo - margin, hi + margin, size=(n - n_near, 3))
    far_views = rng.integers(len(eyes), size=n - n_near)
    far_normals = _unit_rows(eyes[far_views] - far)
    return (
        np.concatenate([near, far]),
        np.concatenate([normals[src], far_normals]),
        np.concatenate([view_ids[src], far_views]),
    )


def _auto_resolution(scene, face_normals, eyes, config) -> int:
    """Resolution at which the views are expected to yield about 1.5× the requested points."""
    if config.n_points is None:
        raise ReconError("scanner config: set resolution when n_points is None")
    expected = 0.0
    for eye in eyes:
        dirs = pinhole_rays(
            eye, np.zeros(3), _unit(np.asarray(config.up, float)), config.fov_deg, _PROBE_RESOLUTION
        )
        depth, face = _cast(scene, eye, dirs)
        hit = np.isfinite(depth)
        cos = np.abs(np.einsum("ij,ij->i", dirs[hit], face_normals[face[hit]]))
        expected += np.sum((cos >= config.grazing_cos) * cos**config.incidence_falloff)
    expected *= 1.0 - config.hole_fraction
    if expected == 0:
        raise InputError("the virtual scanner saw nothing: check the mesh and the camera settings")
    wanted = _AUTO_OVERSAMPLE * config.n_points * (1.0 - config.outlier_fraction)
    scale = np.sqrt(wanted / expected)
    return int(np.clip(np.ceil(_PROBE_RESOLUTION * scale), 16, _MAX_RESOLUTION))


def _raycasting_scene(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    return scene


def _cast(scene, eye: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hit distances (k,) (inf on a miss) and hit face indices (k,) of unit rays from ``eye``."""
    import open3d as o3d

    rays = np.hstack([np.broadcast_to(eye, dirs.shape), dirs]).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays))
    depth = ans["t_hit"].numpy().astype(np.float64)
    face = ans["primitive_ids"].numpy().astype(np.int64)
    face[~np.isfinite(depth)] = 0
    return depth, face


def _object_axes(up) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit up, front and side axes of the object frame (front: z unless up is along z)."""
    up = _unit(np.asarray(up, dtype=np.float64))
    ref = np.array([0.0, 0.0, 1.0]) if abs(up[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    front = _unit(ref - ref.dot(up) * up)
    return up, front, np.cross(up, front)


def _any_orthogonal(v: np.ndarray) -> np.ndarray:
    return np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
