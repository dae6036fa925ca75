import numpy as np
import pytest
from conftest import sphere_points

from recon.core.outliers import isolated_point_mask


def test_uniform_outliers_around_a_sphere_are_found():
    rng = np.random.default_rng(3)
    surface, _ = sphere_points(20_000, 1.0, seed=1)
    strays = rng.uniform(-1.5, 1.5, size=(200, 3))
    strays = strays[np.abs(np.linalg.norm(strays, axis=1) - 1.0) > 0.2]
    points = np.concatenate([surface, strays])
    mask = isolated_point_mask(points)
    assert mask[len(surface) :].mean() > 0.95
    assert mask[: len(surface)].sum() == 0


def test_smoothly_uneven_density_is_kept():
    # A scanner's density falls off with depth and incidence: 9× sparser (3× the spacing) on one side is still surface.
    rng = np.random.default_rng(0)
    dense, _ = sphere_points(16_000, 1.0, seed=2)
    keep = (dense[:, 0] < 0) | (rng.random(len(dense)) < 1 / 9)
    mask = isolated_point_mask(dense[keep])
    assert mask.sum() == 0


def test_degenerate_inputs():
    assert not isolated_point_mask(np.zeros((10, 3))).any()
    assert not isolated_point_mask(np.zeros((100, 3))).any()
    with pytest.raises(ValueError):
        isolated_point_mask(np.zeros((100, 3)), ratio=1.0)
