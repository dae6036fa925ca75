"""Nearest-scan-point distances and the loss terms against brute force and analytic values."""

import numpy as np
import pytest
import torch

from recon.core.losses import (
    NearestScanPoint,
    data_term,
    levelset_sample_term,
    normal_term,
    unsigned_normal_term,
)


@pytest.fixture
def cloud():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3000, 3, generator=g, dtype=torch.float64), torch.randn(
        500, 3, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize("method", ["kdtree", "brute"])
def test_nearest_distances_match_brute_force(cloud, method):
    points, queries = cloud
    nearest = NearestScanPoint(points, method=method, chunk=128)
    expected = torch.cdist(queries, points).min(dim=1).values
    got = nearest.distances(queries)
    assert torch.allclose(got, torch.sqrt(expected**2 + 1e-7), atol=1e-9)


def test_brute_force_path_agrees_with_kdtree_indices(cloud):
    points, queries = cloud
    a = NearestScanPoint(points, method="kdtree").indices(queries)
    b = NearestScanPoint(points, method="brute", chunk=64).indices(queries)
    assert torch.equal(a, b)


def test_bounded_lookup_is_exact_within_and_never_pulls_far_queries_inside(cloud):
    points, queries = cloud
    points, queries = points.float(), (queries * 0.3 + 0.5).float()  # float32, as in a fit
    nearest = NearestScanPoint(points)
    true_distance = torch.cdist(queries.double(), points.double()).min(dim=1).values
    within = float(true_distance.median())
    exact, bounded = nearest.indices(queries), nearest.indices(queries, within=within)
    inside = true_distance <= within
    assert 0 < int(inside.sum()) < len(queries)
    assert torch.equal(bounded[inside], exact[inside])
    # A far query's stand-in point is farther than its nearest, so the level-set term's reach still drops it.
    far_distance = nearest.distances(queries[~inside], bounded[~inside])
    assert bool((far_distance > within).all())
    reach_masked = levelset_sample_term(queries, torch.zeros(len(queries)), nearest, "2020", bounded, within)
    reach_exact = levelset_sample_term(queries, torch.zeros(len(queries)), nearest, "2020", exact, within)
    assert float(reach_masked) == float(reach_exact)


def test_distance_gradient_points_away_from_nearest_point(cloud):
    points, queries = cloud
    q = queries.clone().requires_grad_(True)
    nearest = NearestScanPoint(points)
    nearest.distances(q).sum().backward()
    idx = nearest.indices(queries)
    direction = queries - points[idx]
    expected = direction / torch.sqrt((direction**2).sum(dim=1, keepdim=True) + 1e-7)
    assert torch.allclose(q.grad, expected, atol=1e-9)


def test_levelset_term_forms():
    points = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    nearest = NearestScanPoint(points)
    samples = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=torch.float64)
    levels = torch.tensor([-0.1, 0.5], dtype=torch.float64)
    d = np.sqrt(np.array([0.09, 0.25]) + 1e-7)
    assert float(levelset_sample_term(samples, levels, nearest, "2020")) == pytest.approx(
        np.mean(np.abs(d - [0.1, 0.5]))
    )
    assert float(levelset_sample_term(samples, levels, nearest, "2019")) == pytest.approx(
        np.mean(np.abs(d**2 - [0.01, 0.25]))
    )
    with pytest.raises(ValueError):
        levelset_sample_term(samples, levels, nearest, "2021")


def test_data_and_normal_terms():
    values = torch.tensor([0.5, -0.5, 0.0])
    assert float(data_term(values, "2020")) == pytest.approx(1 / 3)
    assert float(data_term(values, "2019")) == pytest.approx(0.5 / 3)
    n = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert float(normal_term(2 * n, n)) == pytest.approx(0.0, abs=1e-7)
    assert float(normal_term(-n, n)) == pytest.approx(2.0)


def test_unsigned_normal_term_ignores_the_normals_sign_and_nothing_else():
    generator = torch.Generator().manual_seed(0)
    grads = torch.randn(200, 3, generator=generator)
    normals = torch.nn.functional.normalize(torch.randn(200, 3, generator=generator), dim=1)
    signs = torch.where(torch.rand(200, generator=generator) < 0.3, -1.0, 1.0)[:, None]
    flipped = normals * signs
    assert torch.allclose(unsigned_normal_term(grads, normals), unsigned_normal_term(grads, flipped))
    # where the gradient already agrees with the normal's sign it is the signed term
    agreeing = normals * torch.sign((grads * normals).sum(dim=1, keepdim=True))
    assert torch.allclose(unsigned_normal_term(grads, agreeing), normal_term(grads, agreeing))
    assert unsigned_normal_term(-3.0 * normals, normals).abs() < 1e-6  # anti-parallel costs nothing
    assert normal_term(-3.0 * normals, normals) > 1.99  # ... which the signed term charges 2
    perpendicular = torch.nn.functional.normalize(torch.cross(normals, grads, dim=1), dim=1)
    assert torch.allclose(unsigned_normal_term(perpendicular, normals), torch.tensor(1.0), atol=1e-5)
