"""Orientation of given normals: the consistency measure, the flipped-patch share and the re-orientation of
normals of arbitrary sign."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sphere_points, torus_points

from recon.core.normals import (
    MAX_FLIPPED_SHARE,
    MIN_CONSISTENCY,
    flipped_share,
    orient_normals,
    orientation_consistency,
    voxel_subsample,
)


def _torus_normals(points: np.ndarray, major: float = 0.6) -> np.ndarray:
    ring = np.stack([points[:, 0], points[:, 1], np.zeros(len(points))], axis=1)
    ring = major * ring / np.linalg.norm(ring, axis=1, keepdims=True)
    return (points - ring) / np.linalg.norm(points - ring, axis=1, keepdims=True)


def _random_signs(normals: np.ndarray, seed: int = 0) -> np.ndarray:
    return normals * np.where(np.random.default_rng(seed).random(len(normals)) < 0.5, -1.0, 1.0)[:, None]


def test_consistency_is_one_for_oriented_normals_and_a_half_for_random_signs():
    points, normals = sphere_points(8000, 0.6, seed=2)
    assert orientation_consistency(points, normals) > 0.99
    assert orientation_consistency(points, -normals) > 0.99  # the global sign is not its business
    assert orientation_consistency(points, _random_signs(normals)) == pytest.approx(0.5, abs=0.02)
    assert 0.5 < MIN_CONSISTENCY < 0.95


@pytest.mark.parametrize("shape", ["sphere", "torus"])
def test_normals_of_random_sign_come_back_outward(shape):
    if shape == "sphere":
        points, normals = sphere_points(6000, 0.6, seed=4)
    else:
        points = torus_points(6000, 0.6, 0.25, seed=4)
        normals = _torus_normals(points)
    oriented = orient_normals(points, _random_signs(normals, seed=1))
    agree = np.einsum("ij,ij->i", oriented, normals)
    np.testing.assert_allclose(np.abs(agree), 1.0, atol=1e-9)  # directions untouched
    assert np.mean(agree > 0) > 0.995


def _flipped_in_cells(points: np.ndarray, normals: np.ndarray, cells: int, seed: int) -> np.ndarray:
    """The normals flipped in a random half of the cells of a cells³ grid over the points' box."""
    low, high = points.min(axis=0), points.max(axis=0)
    cell = np.clip(((points - low) / (high - low) * cells).astype(int), 0, cells - 1)
    cell_id = (cell[:, 0] * cells + cell[:, 1]) * cells + cell[:, 2]
    flipped = np.random.default_rng(seed).permutation(np.unique(cell_id))[: len(np.unique(cell_id)) // 2]
    return np.where(np.isin(cell_id, flipped)[:, None], -normals, normals)


def test_flipped_share_is_zero_for_oriented_normals_whatever_their_global_sign():
    points = torus_points(12_000, 0.6, 0.25, seed=3)
    normals = _torus_normals(points)
    assert flipped_share(points, normals) < 0.005
    assert flipped_share(points, -normals) < 0.005
    # Noisy directions and a few single wrong signs (a scanner's normals) are not patches.
    rng = np.random.default_rng(5)
    noisy = normals + rng.normal(scale=0.3, size=normals.shape)
    noisy[rng.random(len(noisy)) < 0.03] *= -1
    assert flipped_share(points, noisy) < 0.02


def test_flipped_share_measures_the_flipped_part_of_the_surface():
    points, normals = sphere_points(12_000, 0.6, seed=8)
    # One cap of the sphere flipped: the share is the cap's share of the surface, from either side.
    for height, cap in [(0.3, 0.25), (0.0, 0.5)]:
        capped = np.where(points[:, 2:] > height, -normals, normals)
        assert flipped_share(points, capped) == pytest.approx(min(cap, 1 - cap), abs=0.03)
    patched = _flipped_in_cells(points, normals, cells=3, seed=1)
    wrong = np.mean(np.einsum("ij,ij->i", patched, normals) < 0)
    assert flipped_share(points, patched) == pytest.approx(min(wrong, 1 - wrong), abs=0.05)
    assert flipped_share(points, patched) > MAX_FLIPPED_SHARE


def test_flipped_share_keeps_the_two_sides_of_a_thin_plate_apart():
    """A plate thinner than its point spacing along the surface: neighbours across it point opposite ways
    but are offset along their normals, so they are not a wall between flipped patches."""
    rng = np.random.default_rng(2)
    top = np.c_[rng.uniform(-1, 1, size=(5000, 2)), np.full(5000, 0.01)]
    bottom = np.c_[rng.uniform(-1, 1, size=(5000, 2)), np.full(5000, -0.01)]
    points = np.r_[top, bottom]
    normals = np.r_[np.tile([0.0, 0.0, 1.0], (5000, 1)), np.tile([0.0, 0.0, -1.0], (5000, 1))]
    assert flipped_share(points, normals) < 0.2 * MAX_FLIPPED_SHARE


def test_the_fit_drops_normals_of_random_sign_or_flipped_patches_and_says_why():
    from recon.core.reconstruct import _usable_scan_normals

    points, normals = sphere_points(8000, 0.6, seed=9)
    cases = {
        "oriented": (normals, False),
        "all inward": (-normals, False),  # the global sign is the start's business
        "random signs": (_random_signs(normals), "arbitrary signs"),
        "flipped cells": (_flipped_in_cells(points, normals, cells=3, seed=2), "flipped patches"),
    }
    for name, (given, dropped) in cases.items():
        kept, report = _usable_scan_normals(points, given)
        assert report["scan_normals"]["dropped"] == dropped, name
        assert (kept is None) == bool(dropped), name


def _voxel_subsample_level_by_level(points: np.ndarray, max_points: int) -> np.ndarray:
    """Reference: coarsen the grid by 1.2 per level, trying every level, until the cells fit."""
    if len(points) <= max_points:
        return np.arange(len(points))
    cell = float(np.ptp(points, axis=0).max()) / 256
    while True:
        keys = np.floor((points - points.min(axis=0)) / cell).astype(np.int64)
        _, first = np.unique(keys, axis=0, return_index=True)
        if len(first) <= max_points:
            return np.sort(first)
        cell *= 1.2


@pytest.mark.parametrize("seed", range(6))
def test_voxel_subsample_equals_the_level_by_level_search(seed):
    rng = np.random.default_rng(seed)
    if seed % 2:
        points, _ = sphere_points(int(rng.integers(2_000, 30_000)), seed=seed)
    else:  # a flat, elongated cloud: cell counts fall unlike a closed surface's
        points = rng.normal(size=(int(rng.integers(500, 30_000)), 3)) * [3.0, 1.0, 0.01]
    for max_points in (50, 700, 5_000, 40_000):
        chosen = voxel_subsample(points, max_points)
        assert len(chosen) <= max_points and np.all(np.diff(chosen) > 0)
        np.testing.assert_array_equal(chosen, _voxel_subsample_level_by_level(points, max_points))
