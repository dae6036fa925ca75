"""Is a fitted surface plausible for its scan? Catches the failures that every topological check passes.

When inside and outside get swapped, the fit meshes the box of the fitting domain with the scan pressed
into one face, or grows sheets and bubbles far from the data; the result is still a watertight,
manifold mesh. :func:`check_surface` compares the mesh with the scan it was fitted to, in the working
frame of the fit, and flags it as *suspect* when it

- covers a noticeable area of the border of the extraction domain [-b, b]³,
- encloses most of that domain (a correct object fills well under half of it),
- invents much surface far from every scan point *outside* the scan's convex hull,
- leaves much of the scan uncovered, or
- leaves whole patches of the scan uncovered (a thin part dissolved: a torn wing), which noise does not:
  it leaves its far points scattered among near ones.

Surface invented *inside* the convex hull is reported but never suspect on its own: a correct fit of a
partial scan closes the holes and unseen sides there. Given the scan's generalized winding number (the
global inside/outside the fit started from), the check also measures the invented surface *beyond the
closure*, where that number says clearly outside: a lobe grown in space no scan point saw, which passes
every test above. It is not a suspect criterion (on one-sided scans of open shapes a small network's
closure reaches there too); the fit redoes a mesh with much of it (recon.core.reconstruct).

Lengths are in units of the scan's bounding-box diagonal. Distances from scan points to the mesh are
point-to-triangle distances (float64, nearest triangle from a float32 BVH) up to a cap; distances from
the mesh to the scan use area-uniform mesh samples.
Both use fixed-size random subsets drawn from ``seed``, so the result is deterministic for a seed and
the cost is bounded for large inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial import ConvexHull, QhullError, cKDTree

from recon.core.mesh_ops import face_areas, signed_volume
from recon.core.metrics import sample_surface
from recon.errors import InputError

# Points per block in the hull test, bounding temporary memory.
_BLOCK = 2048
# Directions whose extreme scan points span the convex hull used to split invented area.
_HULL_DIRECTIONS = 512
# Invented samples tested against the hull; the inside/outside split of the invented area is estimated
# from them (±1.4 % of the invented area at 2σ), which bounds the cost when most of the mesh is invented.
_HULL_TESTS = 5000
# Invented samples whose winding number is computed; the share beyond the closure is estimated from them
# (±3 % of the invented area at 2σ, ±0.8 % of the mesh area for a lobe on a partial scan), which keeps the
# cost near 0.2 s: a query near the scan sums many fine cells of the scan's dipoles.
_WINDING_TESTS = 1_000
# Neighbours queried for the point spacing; the first non-zero one skips duplicated points.
_SPACING_NEIGHBORS = 8


CRITERIA = ("border", "volume", "invented_outside", "coverage", "uncovered_patches")
"""Names of the check's suspect criteria, in the order their sentences are given."""


class SurfaceCheckError(InputError, ValueError):
    """The mesh, scan or configuration given to :func:`check_surface` cannot be checked."""


@dataclass
class SurfaceCheckConfig:
    """Sample sizes, tolerances and the thresholds beyond which a surface is suspect."""

    scan_samples: int = 20_000
    """Scan points (a fixed random subset) whose exact distance to the mesh is measured. 20k keeps a
    share like ``scan_within_1pct`` within about ±0.7 % (2σ) and the cost bounded for large scans."""
    distance_cap: float = 0.05
    """Scan→mesh distances are resolved up to this (in diagonals); farther points count as this far, so
    median and p95 read as "at least" when they reach it. Searching farther costs much more (seconds on
    the failed box), and beyond five times the coverage threshold the exact value changes no verdict."""
    mesh_samples: int = 50_000
    """Area-uniform mesh samples for the mesh→scan distances. 50k resolves area shares to about ±0.5 %."""
    invented_spacings: float = 5.0
    """Mesh samples farther than this many scan point spacings from every scan point are *invented*. On
    a randomly sampled surface a point is farther than 3 median spacings from all samples with
    probability 0.2 %, and than 5 with probability 3e-8; 5 leaves room for noise and for density
    varying by a factor of about 3, while a hole wider than about 10 spacings still counts."""
    hull_tolerance: float = 0.05
    """Invented samples more than this (in diagonals) outside the scan's convex hull count as outside.
    It absorbs scan noise, the bulge of a smooth cap closing an unseen side beyond the flat hull face
    (measured: 2–4 % of the diagonal for a small network's cap over a hemisphere's opening), and the hull
    being built from a subset of the scan; the faces of the fitting domain's box lie ≥ 10 % beyond."""
    border_tolerance: float = 0.08
    """Vertices with |x|_inf >= (1 - border_tolerance) * domain_bound lie on the domain border. The fit
    closes its mesh on the box faces 2 voxels inside the bound, 2 * 2 / (resolution - 1) of the bound:
    1.6 % at resolution 256, 6.3 % at 64; 0.08 covers resolutions from 51 up while staying 0.2
    working units outside the normalized scan, whose largest half-extent is 0.9."""
    max_border_area_share: float = 0.02
    """Suspect above this share of the mesh area on the border. A correct fit keeps away from the
    border entirely; 2 % tolerates a stray spur."""
    max_volume_share: float = 0.6
    """Suspect above this share of the domain volume enclosed. A solid filling the normalized scan's
    whole bounding cube [-0.9, 0.9]³ encloses (0.9 / 1.2)³ = 42 % of the default domain; the failed box
    encloses about (1 - 2 voxels / bound)³, over 80 % from resolution 64, less the scan's dent."""
    max_invented_outside_share: float = 0.10
    """Suspect above this share of the mesh area invented outside the scan's convex hull (sheets,
    bubbles, box faces). A correct fit invents next to none there; one face of the failed box alone is
    a sixth of its area."""
    min_scan_within_1pct: float = 0.70
    """Suspect below this share of scan points within 1 % of the diagonal from the mesh. A correct fit
    covers nearly all of a clean scan; 0.7 leaves room for noise and for up to 30 % outliers in a raw
    scan, while a mesh missing half of the scan falls clearly below."""
    patch_neighbors: int = 16
    """Neighbours (within the measured subset of scan points) that decide whether a far point is alone."""
    patch_far_share: float = 0.9
    """A scan point farther than 1 % of the diagonal from the mesh lies in an uncovered patch when at least
    this share of its ``patch_neighbors`` is that far too."""
    max_uncovered_patch_share: float = 0.03
    """Suspect above this share of the scan in uncovered patches. Calibrated on 153 fits
    (bench/surface_check/coverage.md): the 145 not broken reach at most 0.023 (one-sided scans without
    normals, and with 0.5 % of the diagonal of depth noise, whose 1 % coverage is down to 84 %); torn
    fits 0.031–0.20 (airplane wings without normals, a scan with 20 % outliers), of which the 1 %
    coverage passed every one (77–96 %)."""
    tear_distance: float = 0.03
    """A scan point farther than this (in diagonals) from the mesh, with ``patch_far_share`` of its
    ``patch_neighbors`` that far too, lies where the surface *tore away* from the scan (a foot's toes missing,
    a thin part cut off): three times the coverage distance, so that depth noise (σ up to 0.4 % of the
    diagonal on the bench) does not reach it."""
    max_tear_share: float = 0.005
    """Above this share of the scan in torn patches a mesh *has a tear* (``has_tear``; not suspect, a
    quality loss to repair like a lobe). Calibrated on 396 finished fits of the bench, the no-normals family
    and the open set (bench/surface_check/tears.md): fits within 1.15× of their scan's best reach at most
    0.0027 (head_partial's chin and neck 0.0017–0.0025 on every draw); a torn foot (CD-L1 1.34× the best
    draw) 0.011, a noisy one-sided body (1.28×) 0.010."""
    closure_margin: float = 0.1
    """Invented surface lies *beyond the closure* where the scan's winding number w is below this: the
    global inside/outside puts it clearly outside, whereas a cap closing a hole or an unseen side lies
    where w is near ½. (Invented surface where w is near 1 is not counted: correct fits of noisy thin
    shapes put a tenth of their area there, bench/surface_check/beyond_closure.md.)"""
    max_beyond_closure_share: float = 0.02
    """Above this share of the mesh area invented beyond the closure a mesh *has a lobe* (``has_lobe``; not
    suspect). Calibrated on the default preset's fits in bench/surface_check/beyond_closure.md: the others
    reach at most 0.013 (scans without normals, whose estimated orientation makes the winding number least
    sharp); a lobe grown beside a foot in unseen space 0.052 (CD-L1 1.32× the best seed), webs between the
    ears and under the feet 0.022 (1.22×). The ``tiny`` preset's closure of a one-sided open saddle reaches
    0.025–0.07 (tests/test_fit_stability.py), which is why a lobe is repaired when it can be, not refused."""


@dataclass
class SurfaceCheck:
    """Measurements of a mesh against its scan, lengths in scan bounding-box diagonals, and the verdict."""

    scan_to_mesh_median: float
    """Median distance from scan points to the mesh."""
    scan_to_mesh_p95: float
    """95th percentile of the distance from scan points to the mesh."""
    scan_within_0_5pct: float
    """Share of scan points within 0.5 % of the diagonal from the mesh."""
    scan_within_1pct: float
    """Share of scan points within 1 % of the diagonal from the mesh."""
    scan_uncovered_patches: float
    """Share of scan points farther than 1 % of the diagonal from the mesh whose neighbours nearly all are
    too (``patch_far_share`` of ``patch_neighbors``): parts of the scan the mesh misses as a whole."""
    scan_torn_patches: float
    """Share of scan points in patches farther than ``tear_distance`` from the mesh (see
    ``scan_uncovered_patches``): parts of the scan the surface tore away from."""
    has_tear: bool
    """``scan_torn_patches`` exceeds ``max_tear_share``."""
    point_spacing: float
    """Typical scan point spacing: median distance to the nearest other (distinct) scan point."""
    invented_area_share: float
    """Share of the mesh area farther than ``invented_spacings`` point spacings from every scan point."""
    invented_cap_share: float
    """Share of the mesh area that is invented and inside the scan's convex hull (closed holes, unseen
    sides)."""
    invented_outside_share: float
    """Share of the mesh area that is invented and outside the scan's convex hull (sheets, bubbles, box
    faces)."""
    invented_beyond_closure_share: float | None
    """Share of the mesh area that is invented where the scan's winding number is below
    ``closure_margin`` (None when no winding number was given)."""
    has_lobe: bool
    """``invented_beyond_closure_share`` exceeds ``max_beyond_closure_share``."""
    touches_border: bool
    """Some vertex lies on the border of the extraction domain."""
    border_area_share: float
    """Share of the mesh area in triangles lying on the domain border (all corners in one border slab)."""
    volume_share: float
    """|enclosed volume| / domain volume (divergence theorem; meaningful for a closed mesh)."""
    suspect: bool
    """Some criterion failed; see ``reasons``."""
    failed: list[str] = field(default_factory=list)
    """The failed suspect criteria, by name (``CRITERIA``)."""
    reasons: list[str] = field(default_factory=list)
    """One short sentence per failed criterion."""
    seconds: float = 0.0
    """Wall-clock time of the check."""

    def to_dict(self) -> dict:
        """JSON-ready copy: plain floats rounded to 4 significant digits, bools, a list of strings."""
        return {key: _plain(value) for key, value in asdict(self).items()}


def _plain(value):
    """``value`` as a JSON-ready Python value, floats to 4 significant digits."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.4g}")
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


def check_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    scan_points: np.ndarray,
    *,
    domain_bound: float,
    config: SurfaceCheckConfig | None = None,
    seed: int = 0,
    winding: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SurfaceCheck:
    """Measure a fitted mesh against its scan and say whether it is suspect.

    Parameters
    ----------
    vertices : (v, 3) float
        Mesh vertices in the working frame of the fit.
    faces : (f, 3) int
        Triangles, consistently wound for a meaningful volume.
    scan_points : (n, 3) float
        The scan in the same frame, n >= 4.
    domain_bound : float
        Half-width b of the extraction domain [-b, b]³.
    config : SurfaceCheckConfig, optional
        Sample sizes, tolerances and thresholds; defaults when omitted.
    seed : int
        Fixes the scan subset and the mesh samples.
    winding : callable, optional
        (m, 3) points → (m,) generalized winding numbers of the scan, in the same frame (the one the fit's
        start used, recon.core.winding). Without it ``invented_beyond_closure_share`` is None and
        ``has_lobe`` False.

    Returns
    -------
    SurfaceCheck

    Raises
    ------
    SurfaceCheckError
        (a ``ValueError`` and an ``InputError``) for empty, malformed or non-finite inputs, a scan with
        fewer than 4 points or no extent, a mesh without area, or an invalid configuration.
    """
    start = time.perf_counter()
    config = config or SurfaceCheckConfig()
    _check_config(config, domain_bound)
    vertices, faces, scan = _checked_inputs(vertices, faces, scan_points)
    scan_stream, mesh_stream = np.random.SeedSequence(seed).spawn(2)

    diagonal = float(np.linalg.norm(scan.max(axis=0) - scan.min(axis=0)))
    if not diagonal > 0:
        raise SurfaceCheckError("the scan points all coincide; there is nothing to check against")
    areas = face_areas(vertices, faces)
    if not areas.sum() > 0:
        raise SurfaceCheckError("the mesh has zero surface area")

    rng = np.random.default_rng(scan_stream)
    subset = scan[_subset(len(scan), config.scan_samples, rng)]
    scan_tree = cKDTree(scan)
    spacing = _point_spacing(scan_tree, subset)
    to_mesh = distance_to_mesh(subset, vertices, faces, cap=config.distance_cap * diagonal) / diagonal
    far = to_mesh > 0.01
    torn_share = uncovered_patch_share(
        subset, to_mesh > config.tear_distance, config.patch_neighbors, config.patch_far_share
    )

    samples, _ = sample_surface(vertices, faces, config.mesh_samples, seed=mesh_stream)
    reach = config.invented_spacings * spacing
    # The bound stops the search early; without it, samples far inside a scanned shell visit the whole tree.
    to_scan, _ = scan_tree.query(samples, distance_upper_bound=reach)
    invented = np.flatnonzero(to_scan > reach)
    invented_share = len(invented) / len(samples)
    outside_share = 0.0
    if len(invented):
        tested = samples[invented[_subset(len(invented), _HULL_TESTS, rng)]]
        outside = _outside_hull(tested, subset, config.hull_tolerance * diagonal)
        outside_share = invented_share * float(outside.mean())
    beyond_closure_share = None
    if winding is not None:
        beyond_closure_share = 0.0
        if len(invented):
            tested = samples[invented[_subset(len(invented), _WINDING_TESTS, rng)]]
            w = np.asarray(winding(tested), dtype=np.float64)
            beyond_closure_share = invented_share * float(np.mean(w < config.closure_margin))

    border_faces, touches_border = _border_faces(
        vertices, faces, (1.0 - config.border_tolerance) * domain_bound
    )
    volume = abs(signed_volume(vertices, faces)) / (2.0 * domain_bound) ** 3

    check = SurfaceCheck(
        scan_to_mesh_median=float(np.median(to_mesh)),
        scan_to_mesh_p95=float(np.percentile(to_mesh, 95)),
        scan_within_0_5pct=float(np.mean(to_mesh <= 0.005)),
        scan_within_1pct=float(np.mean(~far)),
        scan_uncovered_patches=uncovered_patch_share(
            subset, far, config.patch_neighbors, config.patch_far_share
        ),
        scan_torn_patches=torn_share,
        has_tear=torn_share > config.max_tear_share,
        point_spacing=spacing / diagonal,
        invented_area_share=invented_share,
        invented_cap_share=invented_share - outside_share,
        invented_outside_share=outside_share,
        invented_beyond_closure_share=beyond_closure_share,
        has_lobe=beyond_closure_share is not None and beyond_closure_share > config.max_beyond_closure_share,
        touches_border=touches_border,
        border_area_share=float(areas[border_faces].sum() / areas.sum()),
        volume_share=float(volume),
        suspect=False,
    )
    failed = _failed_criteria(check, config)
    check.failed = [criterion for criterion, _ in failed]
    check.reasons = [sentence for _, sentence in failed]
    check.suspect = bool(failed)
    check.seconds = time.perf_counter() - start
    return check


def _border_faces(vertices: np.ndarray, faces: np.ndarray, inner: float) -> tuple[np.ndarray, bool]:
    """(f,) bool for triangles on the border (|x|_inf >= inner), and whether any vertex reaches it.

    A triangle is on the border when its corners lie in one slab, say x >= inner: the slab is convex, so
    the whole triangle does. Corners in different slabs can span the interior (a coarse box's side).
    """
    corners = vertices[faces]
    on_border = np.zeros(len(faces), dtype=bool)
    for axis in range(3):
        for side in (-1.0, 1.0):
            on_border |= (side * corners[:, :, axis] >= inner).all(axis=1)
    return on_border, bool((np.abs(corners) >= inner).any())


def _failed_criteria(check: SurfaceCheck, config: SurfaceCheckConfig) -> list[tuple[str, str]]:
    """(criterion, sentence) for each threshold the measurements cross; criteria as in ``CRITERIA``."""
    tests = (
        (
            "border",
            check.border_area_share > config.max_border_area_share,
            f"{_percent(check.border_area_share)} of the surface lies on the border of the fitting domain",
        ),
        (
            "volume",
            check.volume_share > config.max_volume_share,
            f"the surface encloses {_percent(check.volume_share)} of the fitting domain",
        ),
        (
            "invented_outside",
            check.invented_outside_share > config.max_invented_outside_share,
            f"{_percent(check.invented_outside_share)} of the surface is far from every scan point, "
            "outside the scan's convex hull",
        ),
        (
            "coverage",
            check.scan_within_1pct < config.min_scan_within_1pct,
            f"only {_percent(check.scan_within_1pct)} of the scan lies within 1 % of its size from the surface",
        ),
        (
            "uncovered_patches",
            check.scan_uncovered_patches > config.max_uncovered_patch_share,
            f"{_percent(check.scan_uncovered_patches)} of the scan lies in patches the surface misses "
            "entirely (more than 1 % of its size away)",
        ),
    )
    return [(criterion, sentence) for criterion, failed, sentence in tests if failed]


def uncovered_patch_share(points: np.ndarray, far: np.ndarray, neighbors: int, far_share: float) -> float:
    """Share of the (m, 3) ``points`` that are ``far`` ((m,) bool) with ``far_share`` of their ``neighbors``
    nearest other points far too: patches the mesh misses as a whole rather than scattered noisy points."""
    if not far.any():
        return 0.0
    k = min(neighbors, len(points) - 1)
    _, nearest = cKDTree(points).query(points[far], k=k + 1, workers=-1)
    far_around = far[nearest[:, 1:]].mean(axis=1)
    return float(np.count_nonzero(far_around >= far_share)) / len(points)


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"


def _check_config(config: SurfaceCheckConfig, domain_bound: float) -> None:
    if not (np.isfinite(domain_bound) and domain_bound > 0):
        raise SurfaceCheckError(f"domain_bound must be a positive number, got {domain_bound}")
    if min(config.scan_samples, config.mesh_samples, config.distance_cap, config.invented_spacings) <= 0:
        raise SurfaceCheckError(
            "scan_samples, mesh_samples, distance_cap and invented_spacings must be positive"
        )
    if not (config.hull_tolerance >= 0 and 0 <= config.border_tolerance < 1):
        raise SurfaceCheckError("hull_tolerance must be non-negative and border_tolerance in [0, 1)")
    if not (config.patch_neighbors >= 1 and 0 < config.patch_far_share <= 1):
        raise SurfaceCheckError("patch_neighbors must be at least 1 and patch_far_share in (0, 1]")
    if not (config.tear_distance > 0 and config.max_tear_share >= 0):
        raise SurfaceCheckError("tear_distance must be positive and max_tear_share non-negative")
    if not 0 < config.closure_margin < 0.5:
        raise SurfaceCheckError("closure_margin must be in (0, 0.5)")


def _checked_inputs(vertices, faces, scan_points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs as float64 / int64 arrays, or a SurfaceCheckError saying what is wrong with them."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    scan = np.asarray(scan_points, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise SurfaceCheckError(f"vertices must have shape (v, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise SurfaceCheckError(f"faces must have shape (f, 3) with f >= 1, got {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise SurfaceCheckError(f"faces must be integer vertex indices, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise SurfaceCheckError(f"faces index vertices outside 0..{len(vertices) - 1}")
    if scan.ndim != 2 or scan.shape[1] != 3 or len(scan) < 4:
        raise SurfaceCheckError(f"scan_points must have shape (n, 3) with n >= 4, got {scan.shape}")
    if not (np.isfinite(vertices).all() and np.isfinite(scan).all()):
        raise SurfaceCheckError("vertices and scan points must be finite (found NaN or inf)")
    return vertices, faces.astype(np.int64), scan


def _subset(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of min(n, size) distinct items out of n."""
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _point_spacing(scan_tree: cKDTree, points: np.ndarray) -> float:
    """Median distance from ``points`` (m, 3) to their nearest distinct scan point, in scan units."""
    k = min(_SPACING_NEIGHBORS, scan_tree.n)
    distances, _ = scan_tree.query(points, k=k)
    nearest = np.where(distances > 0, distances, np.inf).min(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    if not len(nearest):
        raise SurfaceCheckError("the scan points are all duplicates; their spacing is undefined")
    return float(np.median(nearest))


def distance_to_mesh(
    points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, *, cap: float = np.inf
) -> np.ndarray:
    """Euclidean distance from each point to a triangle mesh, or ``cap`` if that is smaller.

    Open3D's BVH (float32) finds each point's nearest triangle; the distance to that triangle is then
    computed in float64. Where two triangles are within float32 rounding of each other the choice between
    them can differ from an exact search by that rounding (about 1e-7 of the mesh's extent), never more.

    Parameters
    ----------
    points : (n, 3) float
    vertices : (v, 3) float
    faces : (f, 3) int
        At least one triangle with non-zero area.
    cap : float
        Largest distance reported.

    Returns
    -------
    distances : (n,) float64
        min(distance to the mesh, cap).
    """
    import open3d as o3d

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if not len(points):
        return np.zeros(0)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32))
    )
    closest = scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
    nearest = closest["primitive_ids"].numpy().astype(np.int64)
    corners = np.ascontiguousarray(vertices[faces[nearest]].transpose(1, 2, 0))
    distances = _pair_distances(points, corners)
    # A zero-area triangle has no Voronoi regions to project into; its float32 answer stands.
    degenerate = ~np.isfinite(distances)
    if degenerate.any():
        found = closest["points"].numpy()[degenerate].astype(np.float64)
        distances[degenerate] = np.linalg.norm(found - points[degenerate], axis=1)
    return np.minimum(distances, cap)


def _pair_distances(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """(p,) distance from each of (p, 3) ``points`` to its own triangle, corners (3 corners, 3 axes, p).

    The closest point is found by the Voronoi region of the triangle the point projects into (Ericson,
    Real-Time Collision Detection, 5.1.5), on component-major (3, p) arrays, which numpy handles
    several times faster than (p, 3) ones.
    """
    p = points.T
    a, b, c = corners
    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    # (v, w) are the weights of ab and ac at the closest point; each region overrides the ones before it,
    # in reverse order of Ericson's tests. Divisions by zero happen only in regions that get overridden.
    with np.errstate(divide="ignore", invalid="ignore"):
        v, w = vb / (va + vb + vc), vc / (va + vb + vc)
        on_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        regions = (
            ((va <= 0) & (d4 >= d3) & (d5 >= d6), 1.0 - on_bc, on_bc),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), 0.0, d2 / (d2 - d6)),
            ((d6 >= 0) & (d5 <= d6), 0.0, 1.0),
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), d1 / (d1 - d3), 0.0),
            ((d3 >= 0) & (d4 <= d3), 1.0, 0.0),
            ((d1 <= 0) & (d2 <= 0), 0.0, 0.0),
        )
        for mask, region_v, region_w in regions:
            v = np.where(mask, region_v, v)
            w = np.where(mask, region_w, w)
    offset = ap - v * ab - w * ac
    return np.sqrt(_dot(offset, offset))


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(p,) dot products of component-major (3, p) vectors."""
    return x[0] * y[0] + x[1] * y[1] + x[2] * y[2]


def _outside_hull(points: np.ndarray, scan: np.ndarray, tolerance: float) -> np.ndarray:
    """(m,) bool: points (m, 3) more than ``tolerance`` outside the convex hull of the scan (n, 3).

    The hull is spanned by the scan's extreme points in ``_HULL_DIRECTIONS`` fixed directions: it lies
    inside the true hull, keeps its corners, and sags below it by about 0.5 % of the radius on a sphere,
    far less than the tolerance.
    """
    directions = _fibonacci_directions(_HULL_DIRECTIONS)
    corners = scan[np.unique(np.argmax(directions @ scan.T, axis=1))]
    try:
        hull = ConvexHull(corners)
    except QhullError:
        # A flat scan has no 3-D hull; joggling gives a thin one, as good within the tolerance.
        try:
            hull = ConvexHull(corners, qhull_options="QJ")
        except QhullError as error:
            raise SurfaceCheckError("the scan points lie on a line; they bound no surface") from error
    normals, offsets = hull.equations[:, :3], hull.equations[:, 3]
    outside = np.empty(len(points), dtype=bool)
    for i in range(0, len(points), _BLOCK):
        block = points[i : i + _BLOCK]
        outside[i : i + _BLOCK] = (block @ normals.T + offsets).max(axis=1) > tolerance
    return outside


def _fibonacci_directions(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere."""
    z = 1.0 - (2.0 * np.arange(n) + 1.0) / n
    angle = np.pi * (3.0 - np.sqrt(5.0)) * np.arange(n)
    ring = np.sqrt(1.0 - z**2)
    return np.stack([ring * np.cos(angle), ring * np.sin(angle), z], axis=1)
