"""Reconstruction metrics with their definitions: Chamfer (both conventions), Hausdorff, F-score, normals.

Every result carries a ``definitions`` block, because "Chamfer" means different things in different papers
(a sum or a mean of the two directions, squared or not). Surfaces are compared through point samples: a mesh is sampled area-uniformly with
``n_samples`` points, a point set is used as given (randomly subsampled to ``n_samples`` if larger).
Prediction, ground truth and scan draw from independent random streams derived from one ``seed``, so the
same seed always gives the same numbers, and identical meshes give the sampling floor rather than zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from recon.errors import InputError

#: Default F-score threshold as a fraction of the ground-truth bounding-box diagonal.
DEFAULT_TAU_FRACTION = 0.01
#: Points sampled on each surface by default (the paper's evaluation protocol uses 100k).
DEFAULT_SAMPLES = 100_000
#: Lengths are also reported as this multiple of (length / GT bounding-box diagonal).
DIAGONAL_MULTIPLIER = 1000.0
# Normals shorter than this are treated as missing when normalising them.
_MIN_NORMAL_LENGTH = 1e-12

# Morton order: 2^21 cells per axis fill 63 bits of a uint64 code.
_MORTON_CELLS = 1 << 21
_MORTON_MASKS = (
    (32, 0x1F00000000FFFF),
    (16, 0x1F0000FF0000FF),
    (8, 0x100F00F00F00F00F),
    (4, 0x10C30C30C30C30C3),
    (2, 0x1249249249249249),
)
# Stream ids for independent sampling of each input from one seed.
_PRED, _GT, _SCAN = 0, 1, 2

LENGTH_KEYS = ("accuracy", "completeness", "chamfer_l1", "chamfer_norm_l1", "chamfer_norm_l2", "hausdorff")
SQUARED_KEYS = ("chamfer_l2",)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, n: int, seed: int | np.random.SeedSequence = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sample points area-uniformly on a triangle mesh.

    Parameters
    ----------
    vertices : (v, 3) float
    faces : (f, 3) int
    n : int
        Number of samples.
    seed : int or numpy.random.SeedSequence
        Fixes the samples.

    Returns
    -------
    points : (n, 3) float64
        Samples on the surface.
    normals : (n, 3) float64
        Unit normal of the triangle each sample lies on (follows the face winding).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise InputError("cannot sample a surface without triangles")
    corners = vertices[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    total = double_area.sum()
    if not np.isfinite(total) or total <= 0:
        raise InputError("mesh has zero surface area or non-finite coordinates")
    rng = np.random.default_rng(seed)
    face_idx = rng.choice(len(faces), size=n, p=double_area / total)
    # Square-root warping of two uniforms gives uniform barycentric coordinates on a triangle.
    r1, r2 = rng.random((2, n))
    s = np.sqrt(r1)
    a, b, c = 1.0 - s, s * (1.0 - r2), s * r2
    tri = corners[face_idx]
    points = a[:, None] * tri[:, 0] + b[:, None] * tri[:, 1] + c[:, None] * tri[:, 2]
    normals = cross[face_idx] / double_area[face_idx, None]
    return points, normals


def evaluate_reconstruction(
    pred,
    gt,
    *,
    scan_points: np.ndarray | None = None,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    fscore_tau: float | None = None,
) -> dict:
    """Compare a reconstruction with the ground truth.

    Parameters
    ----------
    pred, gt : trimesh.Trimesh, or (points, normals) with points (n, 3) and normals (n, 3) or None,
        or a bare (n, 3) array of points.
        Meshes are sampled with ``n_samples`` area-uniform points; point sets are used as given
        (subsampled to ``n_samples`` if larger).
    scan_points : (s, 3) float, optional
        The input scan; adds the one-sided mean distance scan→prediction (holes in the reconstruction).
    n_samples : int
        Samples per surface.
    seed : int
        Fixes every random choice.
    fscore_tau : float, optional
        F-score threshold in data units; default 1% of the GT bounding-box diagonal.

    Returns
    -------
    dict
        Lengths in data units at the top level, the same values ×1000 of the GT bounding-box diagonal under
        ``"x1000_diag"``, the sizes and parameters used, and a ``"definitions"`` block stating each formula.
    """
    if n_samples < 1:
        raise InputError(f"n_samples must be positive, got {n_samples}")
    streams = np.random.SeedSequence(seed).spawn(3)
    pred_pts, pred_nrm = _surface_samples(pred, n_samples, streams[_PRED], "prediction")
    gt_pts, gt_nrm = _surface_samples(gt, n_samples, streams[_GT], "ground truth")
    diagonal = _bbox_diagonal(gt)
    tau = DEFAULT_TAU_FRACTION * diagonal if fscore_tau is None else float(fscore_tau)
    if not tau > 0:
        raise InputError(f"F-score threshold must be positive, got {tau}")

    # Queries in space-filling-curve order keep the trees' working set in cache: at 1M samples this
    # alone makes the nearest-neighbour queries ~5x cheaper. The sample sets are unchanged, only permuted.
    pred_pts, pred_nrm = _in_morton_order(pred_pts, pred_nrm)
    gt_pts, gt_nrm = _in_morton_order(gt_pts, gt_nrm)
    pred_tree, gt_tree = cKDTree(pred_pts), cKDTree(gt_pts)
    d_pred, i_pred = gt_tree.query(pred_pts, workers=-1)
    d_gt, i_gt = pred_tree.query(gt_pts, workers=-1)
    l1_pred, _ = gt_tree.query(pred_pts, p=1, workers=-1)
    l1_gt, _ = pred_tree.query(gt_pts, p=1, workers=-1)

    accuracy, completeness = float(d_pred.mean()), float(d_gt.mean())
    precision = float(np.mean(d_pred < tau))
    recall = float(np.mean(d_gt < tau))
    result: dict = {
        "accuracy": accuracy,
        "completeness": completeness,
        "chamfer_l1": 0.5 * (accuracy + completeness),
        "chamfer_l2": 0.5 * float(np.mean(d_pred**2) + np.mean(d_gt**2)),
        "chamfer_norm_l1": 0.5 * float(l1_pred.mean() + l1_gt.mean()),
        "chamfer_norm_l2": 0.5 * (accuracy + completeness),
        "hausdorff": float(max(d_pred.max(), d_gt.max())),
        "fscore": _fscore(precision, recall),
        "precision": precision,
        "recall": recall,
    }
    result["norm_ratio"] = _ratio(result["chamfer_norm_l1"], result["chamfer_norm_l2"])
    if pred_nrm is not None and gt_nrm is not None:
        dots_pred = np.sum(pred_nrm * gt_nrm[i_pred], axis=1)
        dots_gt = np.sum(gt_nrm * pred_nrm[i_gt], axis=1)
        result["normal_consistency"] = 0.5 * float(np.abs(dots_pred).mean() + np.abs(dots_gt).mean())
        result["normal_consistency_oriented"] = 0.5 * float(dots_pred.mean() + dots_gt.mean())
    n_scan = n_scan_points = None
    if scan_points is not None:
        scan_points = _checked_points(scan_points, "scan")
        scan, _ = _in_morton_order(_subsample(scan_points, n_samples, streams[_SCAN]), None)
        n_scan, n_scan_points = len(scan), len(scan_points)
        result["scan_to_pred"] = float(pred_tree.query(scan, workers=-1)[0].mean())

    result["x1000_diag"] = _scaled_by_diagonal(result, diagonal)
    result.update(
        gt_bbox_diagonal=diagonal,
        tau=tau,
        tau_x1000_diag=tau * DIAGONAL_MULTIPLIER / diagonal,
        n_samples=n_samples,
        n_pred=len(pred_pts),
        n_gt=len(gt_pts),
        n_scan=n_scan,
        n_pred_points=_point_count(pred),
        n_gt_points=_point_count(gt),
        n_scan_points=n_scan_points,
        seed=seed,
        definitions=metric_definitions(n_samples=n_samples, seed=seed, tau=tau, diagonal=diagonal),
    )
    return result


def metric_definitions(*, n_samples: int, seed: int, tau: float, diagonal: float) -> dict:
    """The formulas behind :func:`evaluate_reconstruction`, for results files."""
    return {
        "sampling": (
            f"meshes: {n_samples} area-uniform samples per surface; point sets: as given, randomly "
            f"subsampled to {n_samples} if larger (n_*_points: their size before); prediction/GT/scan use "
            f"independent streams of seed {seed}"
        ),
        "d(x, Y)": "Euclidean distance from x to its nearest sample of Y",
        "accuracy": "mean over prediction samples p of d(p, GT)",
        "completeness": "mean over GT samples g of d(g, prediction)",
        "chamfer_l1": "(accuracy + completeness) / 2",
        "chamfer_l2": "(mean d(p, GT)^2 + mean d(g, prediction)^2) / 2 (occupancy-networks convention)",
        "chamfer_norm_l1": (
            "(mean_p min_g |p - g|_1 + mean_g min_p |g - p|_1) / 2: nearest-neighbour distance in the L1 norm"
        ),
        "chamfer_norm_l2": "same with the L2 norm (equals chamfer_l1)",
        "norm_ratio": "chamfer_norm_l1 / chamfer_norm_l2, always within [1, sqrt(3)]; null when both are 0",
        "hausdorff": "max(max_p d(p, GT), max_g d(g, prediction))",
        "precision": "fraction of prediction samples with d(p, GT) < tau",
        "recall": "fraction of GT samples with d(g, prediction) < tau",
        "fscore": "2 precision recall / (precision + recall), 0 when both are 0",
        "tau": f"{tau:.6g} data units ({tau * DIAGONAL_MULTIPLIER / diagonal:.4g} x1000_diag)",
        "normal_consistency": (
            "(mean_p |n_p . n_nn(p)| + mean_g |n_g . n_nn(g)|) / 2 with unit normals, nn = nearest sample of "
            "the other surface; normal_consistency_oriented: same without the absolute value"
        ),
        "scan_to_pred": "mean over scan points s of d(s, prediction) (one-sided)",
        "units": (
            "top-level lengths are in the data's units; x1000_diag holds length / GT bounding-box diagonal "
            f"x {DIAGONAL_MULTIPLIER:g} and chamfer_l2 / diagonal^2 x {DIAGONAL_MULTIPLIER:g}^2; "
            f"GT bounding-box diagonal = {diagonal:.6g}"
        ),
    }


def _surface_samples(
    geometry, n: int, stream: np.random.SeedSequence, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """(m, 3) points and unit normals (or None) standing for ``geometry``, m <= n."""
    if hasattr(geometry, "faces") and hasattr(geometry, "vertices"):
        vertices = _checked_points(geometry.vertices, name)
        try:
            return sample_surface(vertices, geometry.faces, n, stream)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
    points, normals = _as_point_set(geometry)
    points = _checked_points(points, name)
    keep = _subsample_index(len(points), n, stream)
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float64)
        if normals.shape != points.shape:
            raise InputError(f"{name}: {len(normals)} normals for {len(points)} points")
        normals = _unit(normals if keep is None else normals[keep])
    return (points if keep is None else points[keep]), normals


def _point_count(geometry) -> int | None:
    """How many points a point-set input had before subsampling; None for a mesh."""
    if hasattr(geometry, "faces") and hasattr(geometry, "vertices"):
        return None
    return len(_as_point_set(geometry)[0])


def _as_point_set(geometry) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(geometry, np.ndarray):
        return geometry, None
    if isinstance(geometry, Sequence) and len(geometry) == 2:
        return geometry[0], geometry[1]
    raise TypeError("expected a trimesh.Trimesh, a (points, normals) pair or an (n, 3) array")


def _checked_points(points, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{name}: expected (n, 3) points, got shape {points.shape}")
    if len(points) == 0:
        raise InputError(f"{name}: no points")
    if not np.isfinite(points).all():
        raise InputError(f"{name}: non-finite coordinates")
    return points


def _subsample_index(n_points: int, n: int, stream: np.random.SeedSequence) -> np.ndarray | None:
    """Sorted indices of ``n`` of ``n_points`` items, or None when all are kept."""
    if n_points <= n:
        return None
    return np.sort(np.random.default_rng(stream).choice(n_points, size=n, replace=False))


def _subsample(points: np.ndarray, n: int, stream: np.random.SeedSequence) -> np.ndarray:
    keep = _subsample_index(len(points), n, stream)
    return points if keep is None else points[keep]


def _in_morton_order(points: np.ndarray, normals: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, 3) points, and their (n, 3) normals if given, reordered along a Z-order (Morton) curve."""
    lower = points.min(axis=0)
    span = max(float((points.max(axis=0) - lower).max()), np.finfo(np.float64).tiny)
    cells = np.floor((points - lower) * ((_MORTON_CELLS - 1) / span)).astype(np.uint64)
    order = np.argsort(_morton_codes(cells), kind="stable")
    return points[order], (None if normals is None else normals[order])


def _morton_codes(cells: np.ndarray) -> np.ndarray:
    """(n,) uint64 Z-order codes of (n, 3) integer cell coordinates below 2^21: bit b of axis a → bit 3b + a."""
    cells = cells.astype(np.uint64)
    code = _spread_bits(cells[:, 0]) | (_spread_bits(cells[:, 1]) << np.uint64(1))
    return code | (_spread_bits(cells[:, 2]) << np.uint64(2))


def _spread_bits(values: np.ndarray) -> np.ndarray:
    """(n,) uint64 of 21-bit integers with two zero bits inserted after every bit (Morton interleave)."""
    x = values & np.uint64(0x1FFFFF)
    for shift, mask in _MORTON_MASKS:
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def _unit(vectors: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(length, _MIN_NORMAL_LENGTH)


def _bbox_diagonal(geometry) -> float:
    """Bounding-box diagonal of the vertices a mesh uses, or of a whole point set."""
    if hasattr(geometry, "faces") and hasattr(geometry, "vertices"):
        points = np.asarray(geometry.vertices, dtype=np.float64)[np.unique(np.asarray(geometry.faces))]
    else:
        points = np.asarray(_as_point_set(geometry)[0], dtype=np.float64)
    diagonal = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    if not diagonal > 0:
        raise InputError("ground truth has a zero-size bounding box")
    return diagonal


def _fscore(precision: float, recall: float) -> float:
    total = precision + recall
    return 0.0 if total == 0 else 2.0 * precision * recall / total


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _scaled_by_diagonal(result: dict, diagonal: float) -> dict:
    factor = DIAGONAL_MULTIPLIER / diagonal
    scaled = {key: result[key] * factor for key in LENGTH_KEYS}
    scaled.update({key: result[key] * factor**2 for key in SQUARED_KEYS})
    if "scan_to_pred" in result:
        scaled["scan_to_pred"] = result["scan_to_pred"] * factor
    return scaled
