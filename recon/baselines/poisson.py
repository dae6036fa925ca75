"""Screened Poisson surface reconstruction (Kazhdan & Hoppe 2013) through PyMeshLab or Open3D.

The classic baseline, run as an expert would (a baseline at full strength, never its weakest default): the isolated
points the levelset fit drops are dropped here too (recon.core.outliers, same rule and defaults as the fast
preset), normals are taken from the scan or estimated and consistently oriented, the solve runs on an
adaptive octree of the chosen depth, and the lowest-density vertices can be trimmed to remove the sheets a
closed solve grows over unobserved regions. The solve runs in the working frame (recon.core.normalize) and the
mesh is mapped back to the scan's frame.

:func:`prepare_scan` does the work every configuration shares (filter, normals, frame) once, so a sweep over
backends, depths and trims (the ``poisson-best`` batch method) pays for it once; :func:`solve` runs one
configuration on it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from recon.core.normalize import Normalization
from recon.core.normals import estimate_normals
from recon.core.outliers import isolated_point_mask
from recon.errors import InputError
from recon.io.cleanup import drop_unreferenced

BACKENDS = ("pymeshlab", "open3d")
NORMAL_SOURCES = ("auto", "scan", "estimate")
# Fewer points than this cannot define a surface worth solving for.
MIN_POINTS = 10


@dataclass
class PoissonConfig:
    """Settings of :func:`screened_poisson`."""

    depth: int = 9
    """Maximum octree depth: the finest grid is at most 2^depth per side (each +1 costs about 4x time)."""
    backend: str = "pymeshlab"
    """Implementation: 'pymeshlab' (MeshLab's filter) or 'open3d' (create_from_point_cloud_poisson)."""
    density_trim_quantile: float = 0.0
    """Drop mesh vertices whose sampling density is below this quantile (0 keeps all; 0.02 trims the sheets
    over the holes of an open scan, but always removes that share, punching small holes in a closed one)."""
    point_weight: float = 4.0
    """Screening weight of the point interpolation term (0 gives unscreened Poisson)."""
    samples_per_node: float = 1.5
    """Minimum number of points per octree node; raise it (up to ~20) for noisy scans."""
    scale: float = 1.1
    """Ratio of the reconstruction cube's diameter to the points' bounding cube."""
    outlier_ratio: float = 5.0
    """Drop scan points whose mean distance to their outlier-neighbors nearest points exceeds this multiple
    of the scan's median, as the levelset fit does (0 keeps every point)."""
    outlier_neighbors: int = 16
    """k of the isolated-point test."""
    normals: str = "auto"
    """'scan' uses the scan's normals (error without them), 'estimate' ignores them, 'auto' prefers them."""
    normal_neighbours: int = 20
    """Neighbours used to estimate and orient normals when they are estimated."""
    threads: int = 0
    """Solver threads; 0 uses every core."""
    seed: int = 0
    """Fixes the subsample used to orient estimated normals on large clouds."""

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"unknown Poisson backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.normals not in NORMAL_SOURCES:
            choices = ", ".join(NORMAL_SOURCES)
            raise InputError(f"unknown normals source {self.normals!r}; choose one of {choices}")
        if not 1 <= self.depth <= 16:
            raise InputError(f"Poisson depth must be within 1..16, got {self.depth}")
        if not 0.0 <= self.density_trim_quantile < 1.0:
            raise InputError(f"density trim quantile must be in [0, 1), got {self.density_trim_quantile}")
        if not (self.outlier_ratio == 0.0 or self.outlier_ratio > 1.0):
            raise InputError(f"outlier ratio must be 0 (off) or > 1, got {self.outlier_ratio}")
        if self.outlier_neighbors < 1:
            raise InputError(f"outlier neighbours must be at least 1, got {self.outlier_neighbors}")


@dataclass(frozen=True)
class OrientedScan:
    """A scan ready for the solver: isolated points dropped, oriented normals, in the working frame."""

    points: np.ndarray
    """(m, 3) float64 points kept, in the working frame."""
    normals: np.ndarray
    """(m, 3) float64 oriented unit normals."""
    frame: Normalization
    """Scan frame → working frame (fitted on the kept points)."""
    info: dict = field(default_factory=dict)
    """What was done: point counts, the isolated points dropped, the normals' source, seconds."""


def prepare_scan(
    points: np.ndarray, normals: np.ndarray | None = None, config: PoissonConfig | None = None
) -> OrientedScan:
    """Drop the isolated points, take or estimate oriented normals, move to the working frame.

    Parameters
    ----------
    points : (n, 3) float
        Scan points in the scan's frame.
    normals : (n, 3) float, optional
        Oriented normals; estimated and oriented outward when missing (see ``config.normals``).
    config : PoissonConfig, optional
        Only its outlier and normal fields are used.

    Returns
    -------
    OrientedScan
    """
    config = config or PoissonConfig()
    config.validate()
    points = _checked_points(points)
    start = time.perf_counter()
    isolated = np.zeros(len(points), dtype=bool)
    if config.outlier_ratio > 0:
        isolated = isolated_point_mask(points, neighbors=config.outlier_neighbors, ratio=config.outlier_ratio)
    kept = points[~isolated]
    if len(kept) < MIN_POINTS:
        raise InputError(
            f"only {len(kept)} of the scan's points are not isolated; Poisson needs at least {MIN_POINTS}"
        )
    if normals is not None:
        normals = np.asarray(normals)[~isolated] if np.shape(normals) == points.shape else None
    frame = Normalization.fit(kept)
    work_points = frame.to_work(kept)
    work_normals, normal_source = _oriented_normals(work_points, normals, config)
    info = {
        "n_points": len(points),
        "n_points_used": len(kept),
        "isolated_points": {
            "dropped": int(isolated.sum()),
            "ratio": config.outlier_ratio,
            "neighbors": config.outlier_neighbors,
            "rule": "mean distance to the k nearest scan points > ratio x the scan's median (recon.core.outliers)",
        },
        "normals": normal_source,
        "seconds_prepare": time.perf_counter() - start,
        "normalization": frame.to_dict(),
    }
    return OrientedScan(work_points, work_normals, frame, info)


def solve(scan: OrientedScan, config: PoissonConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run one solver configuration on a prepared scan.

    Parameters
    ----------
    scan : OrientedScan
    config : PoissonConfig
        Its backend, depth, density trim, point weight, samples per node, scale and threads are used.

    Returns
    -------
    vertices : (v, 3) float64
        Mesh vertices in the scan's frame.
    faces : (f, 3) int64
    info : dict
        ``scan.info``, the solve's seconds, mesh sizes, trimmed vertex count and the backend's version.
    """
    config.validate()
    start = time.perf_counter()
    run_solver = _solve_pymeshlab if config.backend == "pymeshlab" else _solve_open3d
    vertices, faces, density = run_solver(scan.points, scan.normals, config)
    solve_seconds = time.perf_counter() - start

    n_before = len(vertices)
    if config.density_trim_quantile > 0:
        vertices, faces = _trim_low_density(vertices, faces, density, config.density_trim_quantile)
    if len(faces) == 0:
        raise InputError("Poisson reconstruction produced an empty mesh (too few points or bad normals?)")
    info = scan.info | {
        "backend": config.backend,
        "backend_version": _backend_version(config.backend),
        "config": asdict(config),
        "seconds_poisson": solve_seconds,
        "n_vertices": len(vertices),
        "n_faces": len(faces),
        "n_trimmed_vertices": n_before - len(vertices),
    }
    return scan.frame.to_scan(vertices), faces, info


def screened_poisson(
    points: np.ndarray, normals: np.ndarray | None = None, config: PoissonConfig | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Reconstruct a surface from a scan: :func:`prepare_scan`, then :func:`solve`.

    Parameters
    ----------
    points : (n, 3) float
        Scan points in the scan's frame.
    normals : (n, 3) float, optional
        Oriented normals; estimated and oriented outward when missing (see ``config.normals``).
    config : PoissonConfig, optional

    Returns
    -------
    vertices : (v, 3) float64
        Mesh vertices in the scan's frame.
    faces : (f, 3) int64
    info : dict
        Points used and isolated points dropped, normal source, timings in seconds, mesh sizes, trimmed
        vertex count and the backend's version.
    """
    config = config or PoissonConfig()
    return solve(prepare_scan(points, normals, config), config)


def _checked_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"expected (n, 3) points, got shape {points.shape}")
    if len(points) < MIN_POINTS:
        raise InputError(f"Poisson reconstruction needs at least {MIN_POINTS} points, got {len(points)}")
    if not np.isfinite(points).all():
        raise InputError("scan has non-finite coordinates")
    return points


def _oriented_normals(
    points: np.ndarray, normals: np.ndarray | None, config: PoissonConfig
) -> tuple[np.ndarray, str]:
    """(n, 3) unit normals for ``points`` and where they came from: 'scan' or 'estimated'."""
    usable = normals is not None and _usable_normals(np.asarray(normals, dtype=np.float64), len(points))
    if config.normals == "scan" and not usable:
        raise InputError("normals='scan' but the scan has no usable normals (missing, zero or non-finite)")
    if usable and config.normals != "estimate":
        normals = np.asarray(normals, dtype=np.float64)
        return normals / np.linalg.norm(normals, axis=1, keepdims=True), "scan"
    return estimate_normals(points, k=config.normal_neighbours), "estimated"


def _usable_normals(normals: np.ndarray, n: int) -> bool:
    if normals.shape != (n, 3) or not np.isfinite(normals).all():
        return False
    return bool(np.all(np.linalg.norm(normals, axis=1) > 1e-8))


def _threads(config: PoissonConfig) -> int:
    return config.threads if config.threads > 0 else (os.cpu_count() or 1)


def _solve_pymeshlab(
    points: np.ndarray, normals: np.ndarray, config: PoissonConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (v, 3), faces (f, 3) and per-vertex density (v,) from MeshLab's screened Poisson filter."""
    import pymeshlab

    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(pymeshlab.Mesh(vertex_matrix=points, v_normals_matrix=normals))
    meshes.generate_surface_reconstruction_screened_poisson(
        depth=config.depth,
        scale=config.scale,
        samplespernode=config.samples_per_node,
        pointweight=config.point_weight,
        threads=_threads(config),
    )
    mesh = meshes.current_mesh()
    # MeshLab stores the sampling density of each output vertex as its scalar ("quality").
    density = mesh.vertex_scalar_array() if mesh.has_vertex_scalar() else np.ones(mesh.vertex_number())
    return (
        np.asarray(mesh.vertex_matrix(), dtype=np.float64),
        np.asarray(mesh.face_matrix(), dtype=np.int64),
        np.asarray(density, dtype=np.float64),
    )


def _solve_open3d(
    points: np.ndarray, normals: np.ndarray, config: PoissonConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (v, 3), faces (f, 3) and per-vertex density (v,) from Open3D's Poisson reconstruction."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud,
        depth=config.depth,
        scale=config.scale,
        samples_per_node=config.samples_per_node,
        point_weight=config.point_weight,
        n_threads=_threads(config),
    )
    return (
        np.asarray(mesh.vertices, dtype=np.float64),
        np.asarray(mesh.triangles, dtype=np.int64),
        np.asarray(density, dtype=np.float64),
    )


def _trim_low_density(
    vertices: np.ndarray, faces: np.ndarray, density: np.ndarray, quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """Remove vertices below the density ``quantile`` with their faces; reindex the rest."""
    keep = density >= np.quantile(density, quantile)
    return drop_unreferenced(vertices, faces[keep[faces].all(axis=1)])


def _backend_version(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = ("pymeshlab",) if backend == "pymeshlab" else ("open3d-cpu", "open3d")
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "unknown"
