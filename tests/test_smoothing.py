"""Noise thicker than the point spacing: measured, smoothed away, and the winding number's jump restored."""

import numpy as np
import pytest

from recon.core.normals import estimate_normals
from recon.core.smoothing import UNRESOLVED_NOISE, smoothed_points, unresolved_noise, winding_jump
from recon.core.winding import DipoleTree, point_areas


def hemisphere(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) points of the upper unit hemisphere with Gaussian noise, and their (n, 3) true normals."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions[:, 2] = np.abs(directions[:, 2])
    return directions + rng.normal(scale=noise, size=(n, 3)), directions


def spacing(n: int) -> float:
    """Mean point spacing of n points spread over the hemisphere's area 2π."""
    return float(np.sqrt(2 * np.pi / n))


@pytest.mark.parametrize("noise_spacings, low, high", [(0.0, 0.8, 1.15), (0.3, 0.8, 1.15), (1.2, 1.4, 2.5)])
def test_winding_jump_measures_inflated_point_areas(noise_spacings, low, high):
    """Thin noise leaves the jump near 1, below the default limit (1.25); noise of a spacing raises it by half."""
    n = 30_000
    scan, truth = hemisphere(n, noise_spacings * spacing(n))
    jump = _jump(scan, truth)
    assert low < jump < high
    assert _jump(scan, -truth) == pytest.approx(jump)  # the global sign does not matter


def _jump(points: np.ndarray, normals: np.ndarray) -> float:
    return winding_jump(
        DipoleTree.build(points, normals * point_areas(points)[:, None], 2.0 / 96), points, normals
    )


def test_noise_measure_separates_a_sheet_from_a_slab():
    n = 30_000
    assert unresolved_noise(hemisphere(n, 0.0)[0]) < 0.1
    assert unresolved_noise(hemisphere(n, 0.5 * spacing(n))[0]) < UNRESOLVED_NOISE
    assert unresolved_noise(hemisphere(n, 3.0 * spacing(n))[0]) > UNRESOLVED_NOISE


def test_smoothing_brings_thick_noise_back_onto_the_surface():
    n = 30_000
    noisy, _ = hemisphere(n, 3.0 * spacing(n))
    inner = np.linalg.norm(noisy[:, :2], axis=1) < 0.8  # away from the open rim, where planes tilt

    def radial_rms(points):
        return float(np.sqrt(np.mean((np.linalg.norm(points[inner], axis=1) - 1.0) ** 2)))

    smoothed = smoothed_points(noisy)
    assert smoothed.shape == noisy.shape
    assert radial_rms(smoothed) < radial_rms(noisy) / 3
    # A pass moves each point along one direction only: its tangent position stays.
    tangent = np.linalg.norm(np.cross(smoothed[inner], noisy[inner]), axis=1) / np.linalg.norm(
        noisy[inner], axis=1
    )
    assert np.median(tangent) < 0.5 * spacing(n)


def test_smoothing_keeps_a_clean_sphere_and_tiny_inputs():
    sphere, _ = hemisphere(20_000, 0.0)
    sphere[::2, 2] *= -1
    radius = np.linalg.norm(smoothed_points(sphere), axis=1)
    assert np.abs(radius - 1.0).max() < 0.02
    few = np.eye(3)
    np.testing.assert_array_equal(smoothed_points(few), few)


@pytest.mark.parametrize("smooth, low, high", [(False, 1.6, 3.0), (True, 0.8, 1.3)])
def test_winding_number_jump_across_a_thickly_noisy_scan(smooth, low, high):
    """Inflated point areas double the jump; smoothing restores about 1 (the module's reason to exist)."""
    n = 30_000
    noisy, truth = hemisphere(n, 3.0 * spacing(n))
    points = smoothed_points(noisy) if smooth else noisy
    normals = estimate_normals(points)
    cell = 2.0 / 96
    tree = DipoleTree.build(points, normals * point_areas(points)[:, None], cell)
    probes = truth[np.linalg.norm(truth[:, :2], axis=1) < 0.7][:500]
    jump = tree.winding_numbers(probes * (1 - 4 * cell)) - tree.winding_numbers(probes * (1 + 4 * cell))
    assert low < float(np.median(np.abs(jump))) < high


@pytest.mark.parametrize("noise_spacings, smoothed", [(0.3, False), (4.0, True)])
def test_a_fit_smooths_its_start_only_for_thick_noise_and_says_so(noise_spacings, smoothed, tmp_path):
    from recon.core.config import tiny_preset
    from recon.core.reconstruct import fit_scan
    from recon.io import save_point_cloud

    n = 30_000
    scan, _ = hemisphere(n, noise_spacings * spacing(n))
    path = tmp_path / "scan.ply"
    save_point_cloud(path, scan)
    result = fit_scan(path, tmp_path / "run", tiny_preset().with_(steps=20, resolution=32), thumbnail=False)
    check = result.surface_check
    assert check["start_smoothed"] is smoothed
    limit = tiny_preset().start.smooth_jump_estimated  # the scan has no normals
    said = check["start_jump"] > limit or check["start_noise"] > UNRESOLVED_NOISE
    assert said is smoothed
