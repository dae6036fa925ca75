"""check_surface on hand-built meshes in the working frame: a correct fit, the failed box, a bubble,
a capped partial scan, missed scan, and the exactness of the scan→mesh distance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from conftest import sphere_points

from recon.core.surface_check import SurfaceCheckConfig, check_surface, distance_to_mesh
from recon.errors import InputError

BOUND = 1.2
RADIUS = 0.8
# The fit closes its mesh 2 voxels inside the bound; resolution 128 here.
BOX_HALF = BOUND - 2 * (2 * BOUND / 127)
DOMAIN_VOLUME = (2 * BOUND) ** 3


def noisy_sphere_scan(n: int = 20_000, seed: int = 0) -> np.ndarray:
    """(n, 3) points on the radius-0.8 sphere with 0.001 noise."""
    points, _ = sphere_points(n, radius=RADIUS, seed=seed)
    return points + 0.001 * np.random.default_rng(seed + 1).normal(size=points.shape)


def icosphere(radius: float = RADIUS, center=(0.0, 0.0, 0.0), subdivisions: int = 4) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(center)
    return mesh


def half_ball() -> trimesh.Trimesh:
    """Closed half-ball z >= 0: the icosphere's lower half flattened onto the disc z = 0.

    Orthographic projection maps the lower hemisphere one-to-one onto the disc, so the result stays
    closed and consistently wound.
    """
    mesh = icosphere()
    vertices = mesh.vertices.copy()
    vertices[:, 2] = np.maximum(vertices[:, 2], 0.0)
    return trimesh.Trimesh(vertices, mesh.faces, process=False)


def check(mesh: trimesh.Trimesh, scan: np.ndarray, **kwargs):
    return check_surface(mesh.vertices, mesh.faces, scan, domain_bound=BOUND, **kwargs)


def test_correct_sphere_is_not_suspect():
    result = check(icosphere(), noisy_sphere_scan())
    assert not result.suspect and result.reasons == []
    # Noise (σ = 0.001) and the facets' sag (under 0.001) are each well under 0.1 % of the 2.77 diagonal.
    assert result.scan_to_mesh_median < 0.001
    assert result.scan_within_0_5pct == 1.0
    assert result.invented_area_share < 0.001
    assert result.invented_outside_share < 0.001
    assert not result.touches_border and result.border_area_share == 0.0
    assert result.volume_share == pytest.approx(4 / 3 * np.pi * RADIUS**3 / DOMAIN_VOLUME, rel=0.01)
    # Median nearest-neighbour distance of uniform random points: sqrt(ln 2 / (π density)).
    density = 20_000 / (4 * np.pi * RADIUS**2)
    diagonal = 2 * RADIUS * np.sqrt(3)
    assert result.point_spacing == pytest.approx(np.sqrt(np.log(2) / (np.pi * density)) / diagonal, rel=0.05)


@pytest.mark.parametrize("inside_out", [False, True], ids=["box", "box-around-inverted-sphere"])
def test_failed_box_is_suspect(inside_out):
    """The fitting domain's box; inside-out, it also carries the scanned sphere as a hollow."""
    scan = noisy_sphere_scan()
    scan = scan[scan[:, 2] > 0.3]
    box = trimesh.creation.box(extents=[2 * BOX_HALF] * 3)
    expected_volume = (2 * BOX_HALF) ** 3
    if inside_out:
        hollow = icosphere()
        hollow.invert()
        box = trimesh.util.concatenate([box, hollow])
        expected_volume -= 4 / 3 * np.pi * RADIUS**3
    result = check(box, scan)

    assert result.suspect and result.touches_border
    assert result.border_area_share == pytest.approx((2 * BOX_HALF) ** 2 * 6 / box.area, rel=1e-6)
    assert result.volume_share == pytest.approx(expected_volume / DOMAIN_VOLUME, rel=0.01)
    assert result.invented_outside_share > 0.5
    assert any("border of the fitting domain" in r for r in result.reasons)
    assert any("encloses" in r for r in result.reasons)
    # Inside-out, the scan lies on the mesh: coverage alone would not have caught it.
    assert (result.scan_within_1pct == 1.0) if inside_out else (result.scan_within_1pct == 0.0)


def test_border_area_counts_triangles_inside_one_border_slab():
    """A tall coarse box: its top and bottom lie on the border; its sides join them through the inside."""
    box = trimesh.creation.box(extents=[1.0, 1.0, 2 * BOX_HALF])
    result = check(box, noisy_sphere_scan(2_000) * 0.5)
    assert result.touches_border
    assert result.border_area_share == pytest.approx(2.0 / box.area, rel=1e-9)
    assert (
        result.reasons[0] == f"{200 / box.area:.0f} % of the surface lies on the border of the fitting domain"
    )


def test_bubble_outside_the_hull_is_suspect():
    """A radius-0.3 sphere 0.25 outside the scanned one (beyond the hull tolerance of 5 % of the diagonal,
    0.14): 1.13 of 9.2 area units, 12 % of the mesh."""
    center = np.full(3, 0.78)
    bubble = icosphere(radius=0.3, center=center)
    mesh = trimesh.util.concatenate([icosphere(), bubble])
    assert np.linalg.norm(center) - 0.3 - RADIUS > 0.24
    assert np.abs(mesh.vertices).max() < BOUND * (1 - SurfaceCheckConfig().border_tolerance)
    result = check(mesh, noisy_sphere_scan())

    assert result.suspect
    assert result.invented_outside_share == pytest.approx(bubble.area / mesh.area, abs=0.01)
    assert result.invented_cap_share < 0.005
    assert not result.touches_border and result.scan_within_1pct == 1.0
    assert len(result.reasons) == 1 and "convex hull" in result.reasons[0]


def test_capped_partial_scan_is_not_suspect():
    """Scan of the upper hemisphere; the mesh closes it with a flat disc (a third of its area)."""
    scan = noisy_sphere_scan()
    scan = scan[scan[:, 2] > 0.0]
    mesh = half_ball()
    result = check(mesh, scan)

    assert not result.suspect, result.reasons
    disc_share = np.pi * RADIUS**2 / mesh.area
    # The rim of the disc lies within 5 spacings of the scan, so a little less than the disc is invented.
    assert 0.8 * disc_share < result.invented_cap_share < disc_share
    assert result.invented_outside_share < 0.005
    assert result.scan_within_1pct == 1.0
    assert result.volume_share == pytest.approx(mesh.volume / DOMAIN_VOLUME, rel=1e-6)


@pytest.mark.parametrize(
    ("mesh", "covered"),
    [(icosphere(radius=0.2), 0.0), (half_ball(), 0.5)],
    ids=["small-sphere", "half-ball"],
)
def test_mesh_missing_the_scan_is_suspect(mesh, covered):
    result = check(mesh, noisy_sphere_scan())
    assert result.suspect
    # The half-ball's disc also passes within 1 % of the diagonal of the equator band, |z| < 0.028.
    assert result.scan_within_1pct == pytest.approx(covered, abs=0.03)
    # Missed as a whole: the uncovered part is one patch (the half-ball misses the lower hemisphere).
    assert result.scan_uncovered_patches == pytest.approx(1 - covered, abs=0.05)
    assert [r.split()[0] for r in result.reasons] == ["only", f"{100 * result.scan_uncovered_patches:.0f}"]
    # What the mesh adds lies inside the scan's hull: covering too little is the only failure.
    assert result.invented_outside_share < 0.005


def brute_force_distances(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """(n,) distance from each point to every triangle (trimesh's closest point), minimum taken."""
    pairs_points = np.repeat(points, len(mesh.faces), axis=0)
    pairs_triangles = np.tile(mesh.triangles, (len(points), 1, 1))
    closest = trimesh.triangles.closest_point(pairs_triangles, pairs_points)
    return np.linalg.norm(closest - pairs_points, axis=1).reshape(len(points), -1).min(axis=1)


def test_distance_is_exact():
    """Points near, inside and far from a sphere plus one huge triangle, against brute force."""
    big = trimesh.Trimesh([[1.1, -1, -1], [1.1, 1, -1], [1.1, 0, 1.1]], [[0, 1, 2]])
    mesh = trimesh.util.concatenate([icosphere(subdivisions=2), big])
    rng = np.random.default_rng(3)
    points = rng.normal(size=(400, 3)) * rng.choice([0.05, 0.5, 2.0], size=(400, 1))
    points = np.concatenate([points, mesh.vertices[:80] + 1e-4 * rng.normal(size=(80, 3))])

    expected = brute_force_distances(points, mesh)
    for cap in (np.inf, 0.3, 0.01):
        distances = distance_to_mesh(points, mesh.vertices, mesh.faces, cap=cap)
        # float32 BVH picks the triangle; between near-ties it may pick one farther by float32 rounding
        np.testing.assert_allclose(distances, np.minimum(expected, cap), rtol=0, atol=1e-6)

    # All scan points are used when there are fewer than scan_samples: the median is the exact one.
    in_domain = np.abs(points).max(axis=1) < 1.0
    scan = points[in_domain]
    result = check(mesh, scan, config=SurfaceCheckConfig(distance_cap=10.0))
    diagonal = np.linalg.norm(scan.max(axis=0) - scan.min(axis=0))
    assert result.scan_to_mesh_median == pytest.approx(np.median(expected[in_domain]) / diagonal, abs=1e-6)
    assert check(mesh, scan).scan_to_mesh_p95 == pytest.approx(SurfaceCheckConfig().distance_cap)


def test_same_seed_same_result_and_json_ready():
    mesh, scan = half_ball(), noisy_sphere_scan()
    config = SurfaceCheckConfig(scan_samples=5_000, mesh_samples=20_000)
    first = check(mesh, scan, config=config, seed=7).to_dict()
    second = check(mesh, scan, config=config, seed=7).to_dict()
    del first["seconds"], second["seconds"]
    assert first == second
    assert json.loads(json.dumps(first)) == first
    assert type(first["suspect"]) is bool and type(first["volume_share"]) is float


def test_thresholds_come_from_the_config():
    mesh, scan = half_ball(), noisy_sphere_scan(5_000)
    scan = scan[scan[:, 2] > 0]
    assert not check(mesh, scan).suspect
    result = check(mesh, scan, config=SurfaceCheckConfig(max_volume_share=0.01))
    assert result.suspect
    assert result.reasons == [f"the surface encloses {100 * result.volume_share:.0f} % of the fitting domain"]


@pytest.mark.parametrize(
    ("vertices", "faces", "scan", "message"),
    [
        (np.zeros((3, 3)), np.zeros((0, 3), dtype=int), np.eye(4, 3), "faces"),
        (np.eye(3), [[0, 1, 2]], np.eye(3), "n >= 4"),
        (np.eye(3), [[0, 1, 2]], [[np.nan, 0, 0]] + np.eye(4, 3).tolist(), "finite"),
        (np.eye(3), [[0, 1, 3]], np.eye(4, 3), "index"),
        (np.eye(3), [[0.0, 1.0, 2.0]], np.eye(4, 3), "integer"),
        (np.zeros((3, 3)), [[0, 1, 2]], np.eye(4, 3), "zero surface area"),
        (np.eye(3), [[0, 1, 2]], np.ones((5, 3)), "coincide"),
        (np.eye(3), [[0, 1, 2]], np.outer(np.linspace(-0.5, 0.5, 50), [1, 0, 0]), "line"),
    ],
    ids=["no-faces", "three-points", "nan", "bad-index", "float-faces", "no-area", "one-point", "collinear"],
)
def test_degenerate_inputs_raise_a_clear_value_error(vertices, faces, scan, message):
    with pytest.raises(ValueError, match=message) as error:
        check_surface(vertices, faces, scan, domain_bound=BOUND)
    assert isinstance(error.value, InputError)


def fin_points(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) points on a thin square fin (0.3 × 0.3, in the plane y = 0) standing out of the sphere at +x."""
    rng = np.random.default_rng(seed)
    return np.c_[RADIUS + 0.05 + 0.3 * rng.random(n), np.zeros(n), 0.3 * rng.random(n) - 0.15]


def test_a_missed_thin_part_is_suspect_although_most_of_the_scan_is_covered():
    """A sphere with a fin (6 % of the scan), meshed as the sphere alone: the torn-off wing of a thin part."""
    scan = np.concatenate([noisy_sphere_scan(), fin_points(1_300)])
    result = check(icosphere(), scan)
    assert result.scan_within_1pct == pytest.approx(20_000 / 21_300, abs=0.01)  # passes the 70 % test
    assert result.scan_uncovered_patches == pytest.approx(1_300 / 21_300, rel=0.1)
    assert result.suspect and len(result.reasons) == 1 and "patches" in result.reasons[0]


def test_thick_noise_leaves_no_uncovered_patches():
    """Noise of 0.6 % of the diagonal leaves a tenth of the scan beyond 1 %, scattered, not in patches."""
    points, _ = sphere_points(20_000, radius=RADIUS, seed=3)
    diagonal = 2 * RADIUS * np.sqrt(3)
    scan = points + 0.006 * diagonal * np.random.default_rng(4).normal(size=points.shape)
    result = check(icosphere(), scan)
    assert result.scan_within_1pct < 0.93
    assert result.scan_uncovered_patches < 0.005
    assert result.scan_torn_patches == 0.0 and not result.has_tear
    assert not result.suspect, result.reasons


def test_a_torn_off_toe_is_a_tear_not_a_suspect():
    """A sphere with a small fin (1 % of the scan) 0.1 beyond it, meshed as the sphere alone: too little of
    the scan for the uncovered-patch criterion (3 %), but all of it more than 3 % of the diagonal away."""
    fin = fin_points(200) + [0.05, 0.0, 0.0]
    result = check(icosphere(), np.concatenate([noisy_sphere_scan(), fin]))
    assert not result.suspect, result.reasons
    assert result.scan_torn_patches == pytest.approx(200 / 20_200, rel=0.1)
    assert result.has_tear
    assert not check(icosphere(), noisy_sphere_scan()).has_tear
    loose = check(icosphere(), np.concatenate([noisy_sphere_scan(), fin]),
                  config=SurfaceCheckConfig(max_tear_share=0.02))  # fmt: skip
    assert not loose.has_tear and loose.scan_torn_patches == result.scan_torn_patches


def test_tear_settings_are_validated():
    with pytest.raises(InputError, match="tear_distance"):
        check(icosphere(), noisy_sphere_scan(), config=SurfaceCheckConfig(tear_distance=0.0))


def test_patch_settings_are_validated():
    with pytest.raises(InputError, match="patch_far_share"):
        check(icosphere(), noisy_sphere_scan(), config=SurfaceCheckConfig(patch_far_share=0.0))


def brute_force_winding(points: np.ndarray, normals: np.ndarray, area: float):
    """(m, 3) → (m,) the generalized winding number of a uniformly sampled oriented surface of ``area``,
    summed over every point (recon.core.winding.winding_numbers, no tree)."""
    from recon.core.winding import winding_numbers

    dipoles = normals * (area / len(points))
    return lambda queries: winding_numbers(queries, points, dipoles)


def torus_scan(n: int = 20_000):
    """(n, 3) points and outward normals on the torus of radii 0.6 / 0.2 around z, and its mesh."""
    mesh = trimesh.creation.torus(major_radius=0.6, minor_radius=0.2, major_sections=96, minor_sections=48)
    points, faces = trimesh.sample.sample_surface(mesh, n, seed=0)
    return points, mesh.face_normals[faces], mesh


def test_a_lobe_beyond_the_closure_is_measured_and_flagged():
    """A radius-0.15 sphere in the torus's hole: inside the convex hull (the outside-hull test passes it),
    far from every scan point, where the torus's winding number is 0. 6 % of the mesh area."""
    points, normals, torus = torus_scan()
    lobe = icosphere(radius=0.15)
    mesh = trimesh.util.concatenate([torus, lobe])
    winding = brute_force_winding(points, normals, torus.area)
    assert np.abs(winding(lobe.vertices)).max() < 0.05

    result = check(mesh, points, winding=winding)
    assert result.invented_beyond_closure_share == pytest.approx(lobe.area / mesh.area, abs=0.01)
    assert result.invented_outside_share < 0.005
    assert result.has_lobe and not result.suspect and result.failed == []
    loose = check(mesh, points, winding=winding, config=SurfaceCheckConfig(max_beyond_closure_share=0.1))
    assert not loose.has_lobe
    assert not check(torus, points, winding=winding).has_lobe
    # Without the winding number nothing is measured, and nothing else sees the lobe.
    blind = check(mesh, points)
    assert blind.invented_beyond_closure_share is None and not blind.has_lobe and not blind.suspect


def test_a_cap_over_a_hole_is_not_beyond_the_closure():
    """The half-ball's flat disc closes a scanned hemisphere where its winding number is ½ (the rim's
    plane sees the hemisphere under half the sphere of directions)."""
    points, normals = sphere_points(20_000, radius=RADIUS, seed=0)
    upper = points[:, 2] > 0
    winding = brute_force_winding(points[upper], normals[upper], 2 * np.pi * RADIUS**2)
    result = check(half_ball(), points[upper], winding=winding)
    assert result.invented_cap_share > 0.2
    assert result.invented_beyond_closure_share < 0.005
    assert not result.suspect and not result.has_lobe, result.reasons


def test_the_closure_margin_is_validated():
    with pytest.raises(InputError, match="closure_margin"):
        check(icosphere(), noisy_sphere_scan(), config=SurfaceCheckConfig(closure_margin=0.5))
