import numpy as np
import torch
from conftest import sphere_points, torus_points
from scipy.spatial import cKDTree

from recon.core.config import FitConfig, tiny_preset
from recon.core.fit import LevelSetFitter
from recon.core.initial_field import InitialFieldConfig, closure_ramp, signed_distance_estimate
from recon.core.winding import DipoleTree, point_areas, winding_numbers


def test_winding_number_of_a_sampled_sphere_is_one_inside_zero_outside():
    points, normals = sphere_points(4000, 0.7, seed=1)
    areas = point_areas(points)
    # The disc areas of an even sampling add up to about the sphere's area.
    assert abs(areas.sum() / (4 * np.pi * 0.49) - 1) < 0.15
    inside = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [0.0, 0.5, 0.0]])
    outside = np.array([[1.0, 0.0, 0.0], [0.9, 0.9, 0.9], [0.0, 0.0, -2.0]])
    w = winding_numbers(np.concatenate([inside, outside]), points, normals * areas[:, None])
    assert np.all(np.abs(w[:3] - 1) < 0.1)
    assert np.all(np.abs(w[3:]) < 0.1)


def test_signed_distance_estimate_of_a_torus_matches_the_analytic_one():
    rng = np.random.default_rng(0)
    major, minor = 0.6, 0.25
    points = torus_points(20_000, major, minor, seed=2)
    ring = np.stack([points[:, 0], points[:, 1], np.zeros(len(points))], axis=1)
    ring = major * ring / np.linalg.norm(ring, axis=1, keepdims=True)
    normals = (points - ring) / np.linalg.norm(points - ring, axis=1, keepdims=True)
    queries = rng.uniform(-1.0, 1.0, size=(3000, 3))
    radial = np.linalg.norm(queries[:, :2], axis=1)
    exact = np.hypot(radial - major, queries[:, 2]) - minor
    estimate = signed_distance_estimate(queries, points, normals, cKDTree(points), InitialFieldConfig())
    clear = np.abs(exact) > 0.03
    assert np.mean(np.sign(estimate[clear]) == np.sign(exact[clear])) > 0.99
    assert np.median(np.abs(np.abs(estimate) - np.abs(exact))) < 0.01


def test_signed_distance_start_puts_the_zero_set_on_the_scan():
    points, normals = sphere_points(5000, 0.6, seed=3)
    config = FitConfig.from_dict(tiny_preset().to_dict() | {"init": "signed-distance", "init_steps": 200})
    config.model.init_radius = 0.3
    fitter = LevelSetFitter(points, normals, config.validate())
    sphere = FitConfig.from_dict(tiny_preset().to_dict())
    sphere.model.init_radius = 0.3
    untouched = LevelSetFitter(points, normals, sphere)
    on_scan = np.abs(fitter.field(points)).mean()
    assert on_scan < 0.02 < np.abs(untouched.field(points)).mean()
    assert fitter.field(np.zeros((1, 3)))[0] < 0 < fitter.field(np.array([[1.0, 1.0, 1.0]]))[0]
    assert fitter.init_error is not None and fitter.seconds > 0


def test_resumed_fitter_skips_the_start():
    points, normals = sphere_points(2000, 0.6, seed=4)
    config = FitConfig.from_dict(tiny_preset().to_dict() | {"init": "signed-distance", "init_steps": 5})
    torch.manual_seed(0)
    fitter = LevelSetFitter(points, normals, config, initialize=False)
    assert fitter.init_error is None


def test_signed_distance_start_estimates_missing_normals():
    points, _ = sphere_points(3000, 0.6, seed=5)
    config = FitConfig.from_dict(tiny_preset().to_dict() | {"init": "signed-distance", "init_steps": 150})
    fitter = LevelSetFitter(points, None, config.validate())
    assert np.abs(fitter.field(points)).mean() < 0.03
    assert fitter.field(np.zeros((1, 3)))[0] < 0


def test_dipole_tree_matches_the_direct_sum_away_from_the_scan():
    points = torus_points(30_000, 0.6, 0.25, seed=6)
    ring = np.stack([points[:, 0], points[:, 1], np.zeros(len(points))], axis=1)
    ring = 0.6 * ring / np.linalg.norm(ring, axis=1, keepdims=True)
    normals = (points - ring) / np.linalg.norm(points - ring, axis=1, keepdims=True)
    dipoles = normals * point_areas(points)[:, None]
    cell = np.ptp(points, axis=0).max() / 96
    queries = np.random.default_rng(1).uniform(-1.0, 1.0, size=(4000, 3))
    queries = queries[cKDTree(points).query(queries)[0] >= 2 * cell]
    fast = DipoleTree.build(points, dipoles, cell).winding_numbers(queries)
    exact = winding_numbers(queries, points, dipoles)
    assert np.abs(fast - exact).max() < 0.02
    # The tree's answer depends on the points only: the same for the same scan, whatever the caller's seed.
    again = DipoleTree.build(points, dipoles, cell).winding_numbers(queries)
    assert np.array_equal(fast, again)


def test_signed_distance_estimate_is_continuous_across_the_cap_of_an_open_cylinder():
    # A tube open at both ends: along its axis beyond an opening the estimate must cross zero once, just
    # past the rim, and not jump from -radius to +radius (a jump lets a smooth network put the cap anywhere).
    rng = np.random.default_rng(3)
    angle, height = rng.uniform(0, 2 * np.pi, 20_000), rng.uniform(-0.6, 0.6, 20_000)
    points = np.stack([0.3 * np.cos(angle), 0.3 * np.sin(angle), height], axis=1)
    normals = np.stack([np.cos(angle), np.sin(angle), np.zeros_like(angle)], axis=1)
    z = np.linspace(0.3, 1.0, 71)
    axis = np.stack([np.zeros_like(z), np.zeros_like(z), z], axis=1)
    estimate = signed_distance_estimate(axis, points, normals, cKDTree(points), InitialFieldConfig())
    crossing = z[np.argmax(estimate > 0)]
    assert np.all(np.diff(np.sign(estimate)) >= 0) and abs(crossing - 0.6) < 0.05
    assert np.abs(np.diff(estimate)).max() < 0.05


def test_closure_ramp_is_continuous_and_reduces_to_one_minus_two_w():
    w = np.linspace(-0.2, 1.2, 141)
    np.testing.assert_allclose(closure_ramp(w, 0.5), np.clip(1 - 2 * w, -1, 1), atol=1e-12)
    for closure in (0.2, 0.35, 0.7):
        ramp = closure_ramp(w, closure)
        assert ramp[w <= 0].min() == 1 and ramp[w >= 1].max() == -1
        assert (
            np.all(np.diff(ramp) <= 0)
            and np.abs(np.diff(ramp)).max() < 0.01 / min(closure, 1 - closure) + 1e-9
        )
        assert abs(closure_ramp(np.array([closure]), closure)[0]) < 1e-12


def test_closure_winding_moves_the_cap_of_an_open_cylinder_to_the_analytic_level():
    # Tube of radius r over z in [-0.6, 0.6]; on its axis a distance t beyond the rim the lateral surface
    # subtends w(t) = ½ (cos α_far − cos α_near), cos α = t / √(t² + r²). The estimate's zero crossing
    # on the axis must sit where w equals the closure winding.
    rng = np.random.default_rng(3)
    r = 0.3
    angle, height = rng.uniform(0, 2 * np.pi, 20_000), rng.uniform(-0.6, 0.6, 20_000)
    points = np.stack([r * np.cos(angle), r * np.sin(angle), height], axis=1)
    normals = np.stack([np.cos(angle), np.sin(angle), np.zeros_like(angle)], axis=1)
    z = np.linspace(0.3, 1.2, 181)
    axis = np.stack([np.zeros_like(z), np.zeros_like(z), z], axis=1)
    t = np.linspace(0.0, 0.6, 6001)
    analytic_w = 0.5 * ((t + 1.2) / np.hypot(t + 1.2, r) - t / np.hypot(t, r))
    crossings = []
    for closure in (0.5, 0.35, 0.25):
        config = InitialFieldConfig(closure_winding=closure)
        estimate = signed_distance_estimate(axis, points, normals, cKDTree(points), config)
        crossing = z[np.argmax(estimate > 0)]
        expected = 0.6 + t[np.argmax(analytic_w < closure)]
        assert abs(crossing - expected) < 0.03, (closure, crossing, expected)
        crossings.append(crossing)
    assert crossings[0] < crossings[1] < crossings[2]
