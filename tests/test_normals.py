"""Orientation of given normals: the consistency measure and the re-orientation of normals of arbitrary sign."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sphere_points, torus_points

from recon.normals import MIN_CONSISTENCY, orient_normals, orientation_consistency


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
