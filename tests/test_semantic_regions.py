"""Robust-region finders on analytic scores whose robust interval / box is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon.errors import ConfigError
from recon.robust.semantic.regions import (
    METHODS,
    RegionConfig,
    box_corners,
    box_grid,
    box_iou,
    check_boxes,
    clip_boxes,
    corner_bits,
    domain_volume,
    find_all_regions,
    find_regions,
    shrink_on_grid,
    trapezoid_integral,
)


def smooth_box_score(lower, upper, softness: float):
    """f(θ) = Π_i σ((θ_i − lo_i)/s) σ((hi_i − θ_i)/s): ≈1 inside [lo, hi], ≈0 outside; and (f, ∇f)."""
    lo, hi = torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64)

    def value_grad(theta: torch.Tensor):
        theta = theta.detach().requires_grad_(True)
        f = (torch.sigmoid((theta - lo) / softness) * torch.sigmoid((hi - theta) / softness)).prod(-1)
        (g,) = torch.autograd.grad(f.sum(), theta)
        return f.detach(), g

    return (lambda theta: value_grad(theta)[0]), value_grad


def test_corner_bits_enumerate_the_box_corners():
    bits = corner_bits(3)
    assert bits.shape == (3, 8)
    corners = box_corners(
        torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64), bits
    )[0]
    assert {tuple(c) for c in corners.int().tolist()} == {
        (i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)
    }


def test_trapezoid_rule_is_exact_for_multilinear_functions():
    lower = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    upper = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    corners = box_corners(lower, upper, corner_bits(3))
    f = corners.prod(-1) + 2.0 * corners[..., 0]  # x·y·z + 2x: multilinear
    # ∫ xyz = Π (b_i² − a_i²)/2, ∫ 2x = (b_0² − a_0²)·(b_1 − a_1)(b_2 − a_2)
    exact = np.prod([(b**2 - a**2) / 2 for a, b in zip(lower[0].tolist(), upper[0].tolist(), strict=True)])
    exact += (3.0**2 - 1.0**2) * 3.0 * 1.5
    assert float(trapezoid_integral(f, lower, upper)[0]) == pytest.approx(exact)


@pytest.mark.parametrize("method", METHODS)
def test_finders_converge_to_the_robust_interval_1d(method):
    score, score_grad = smooth_box_score([-3.0], [3.0], softness=0.1)
    initial = torch.tensor([[0.5], [-2.0], [2.5]])
    result = find_regions(method, initial, [-20.0], [20.0], score, score_grad, RegionConfig(steps=400))
    # naive stops where f(edge) = reg·width (inside the edge); the outer-inner finders stop in f's tail
    np.testing.assert_allclose(result.lower[:, 0], -3.0, atol=0.8)
    np.testing.assert_allclose(result.upper[:, 0], 3.0, atol=0.8)
    assert result.trace_lower.shape == (401, 3, 1) and result.loss.shape == (400, 3)


@pytest.mark.parametrize("method", METHODS)
def test_finders_converge_to_the_robust_box_2d(method):
    lower, upper = [40.0, 10.0], [100.0, 70.0]
    score, score_grad = smooth_box_score(lower, upper, softness=1.0)
    initial = torch.tensor([[70.0, 40.0], [72.0, 38.0]])
    result = find_regions(
        method, initial, [0.0, -10.0], [360.0, 90.0], score, score_grad, RegionConfig(steps=400)
    )
    tolerance = 0.1 * (np.array(upper) - np.array(lower))  # 10% of each side
    assert (np.abs(result.lower - lower) < tolerance).all(), result.lower
    assert (np.abs(result.upper - upper) < tolerance).all(), result.upper
    iou = box_iou(result.lower, result.upper, np.array([lower] * 2), np.array([upper] * 2))
    assert (iou > 0.7).all()  # what 10% per side allows


@pytest.mark.parametrize("method", METHODS)
def test_corner_objective_stops_when_the_first_faces_reach_the_boundary(method):
    """The trapezoidal estimate only sees corners: once the box leaves the robust set in its narrow dimension
    every corner scores ≈0 and growth stops in all dimensions, so a wide robust box is found only partly."""
    lower, upper = np.array([20.0, 5.0]), np.array([140.0, 60.0])
    score, score_grad = smooth_box_score(lower.tolist(), upper.tolist(), softness=1.0)
    initial = torch.tensor([[80.0, 32.5], [50.0, 20.0]])
    result = find_regions(
        method, initial, [0.0, -10.0], [360.0, 90.0], score, score_grad, RegionConfig(steps=400)
    )
    np.testing.assert_array_less(np.abs(result.lower[:, 1] - lower[1]), 10.0)  # reaches the elevation faces
    np.testing.assert_array_less(np.abs(result.upper[:, 1] - upper[1]), 10.0)
    np.testing.assert_array_less(lower[0] - 5.0, result.lower[:, 0])  # stays inside in azimuth ...
    np.testing.assert_array_less(result.upper[:, 0], upper[0] + 5.0)
    assert (
        result.upper[:, 0] - result.lower[:, 0] < 0.8 * (upper[0] - lower[0])
    ).all()  # ... and short of it


def test_boxes_are_clipped_to_the_domain():
    def constant(theta):
        return torch.ones(theta.shape[:2], dtype=torch.float64)

    result = find_regions("oir_b", torch.tensor([[300.0, 80.0]]), [0.0, -10.0], [360.0, 90.0], constant,
                          config=RegionConfig(steps=200))  # fmt: skip
    np.testing.assert_allclose(result.lower[0], [0.0, -10.0], atol=1e-6)
    np.testing.assert_allclose(result.upper[0], [360.0, 90.0], atol=1e-6)
    assert (result.trace_lower >= [0.0, -10.0]).all() and (result.trace_upper <= [360.0, 90.0]).all()
    assert result.volumes()[0] == pytest.approx(domain_volume([0.0, -10.0], [360.0, 90.0])) == 36_000.0


def test_clip_keeps_a_minimum_width_at_the_domain_edge():
    lower, upper = clip_boxes(
        torch.tensor([[359.0, 95.0]], dtype=torch.float64), torch.tensor([[400.0, 96.0]], dtype=torch.float64),
        torch.tensor([0.0, -10.0], dtype=torch.float64), torch.tensor([360.0, 90.0], dtype=torch.float64), 1e-5,
    )  # fmt: skip
    assert (upper - lower >= 1e-5 - 1e-9).all() and (upper <= torch.tensor([360.0, 90.0])).all()


def test_white_box_finder_needs_the_gradient():
    score, _ = smooth_box_score([0.0], [1.0], 0.1)
    with pytest.raises(ValueError, match="gradient"):
        find_regions("oir_w", torch.zeros(1, 1), [-1.0], [2.0], score)


def test_iou_of_identical_and_disjoint_boxes():
    a = np.array([[0.0, 0.0], [0.0, 0.0]])
    b = np.array([[1.0, 1.0], [1.0, 1.0]])
    other_lo, other_hi = np.array([[0.0, 0.0], [2.0, 2.0]]), np.array([[1.0, 1.0], [3.0, 3.0]])
    np.testing.assert_allclose(box_iou(a, b, other_lo, other_hi), [1.0, 0.0])


def valley_score(centre: float, width: float):
    """f = 1 − exp(−((az − centre)/width)²): 1 away from a valley across all elevations, below 0.5 within
    ±0.83·width of its centre; and (f, ∇f)."""

    def value_grad(theta: torch.Tensor):
        theta = theta.detach().requires_grad_(True)
        f = 1.0 - torch.exp(-(((theta[..., 0] - centre) / width) ** 2))
        (g,) = torch.autograd.grad(f.sum(), theta)
        return f.detach(), g

    return (lambda theta: value_grad(theta)[0]), value_grad


def test_found_boxes_jump_a_narrow_valley_and_verified_boxes_do_not():
    score, score_grad = valley_score(180.0, 2.0)
    failing = (180.0 - 2.0 * math.sqrt(math.log(2.0)), 180.0 + 2.0 * math.sqrt(math.log(2.0)))  # f < 0.5
    initial = torch.tensor([[130.0, 30.0], [200.0, 15.0]])
    config = RegionConfig(steps=150, check_step=1.0)
    results = find_all_regions(METHODS, initial, [0.0, -10.0], [360.0, 90.0], score, score_grad, config)
    for method, result in results.items():
        assert (result.lower[:, 0] < failing[0]).all() and (result.upper[:, 0] > failing[1]).all(), method
        check = result.check
        assert not check.passed.any() and (check.min_score < 0.1).all()
        assert (check.low_share > 0).all() and (check.low_share < 0.05).all()
        # the verified box keeps its initial point's side of the valley, whole
        np.testing.assert_allclose(check.upper[0], [failing[0] - failing[0] % 1.0, 90.0])
        np.testing.assert_allclose(check.lower[1], [math.ceil(failing[1]), -10.0])
        np.testing.assert_allclose([check.lower[0], check.upper[1]], [[0.0, -10.0], [360.0, 90.0]])
        assert ((check.lower <= initial.numpy()) & (initial.numpy() <= check.upper)).all()
        # and scores at least 0.5 everywhere, sampled ten times finer than the check
        for lower, upper in zip(check.lower, check.upper, strict=True):
            dense = np.stack(np.meshgrid(*box_grid(lower, upper, 0.1), indexing="ij"), axis=-1).reshape(
                1, -1, 2
            )
            assert float(score(torch.from_numpy(dense)).min()) >= 0.5


def test_a_box_that_passes_is_kept_and_its_grid_is_at_the_stated_step():
    score, _ = valley_score(180.0, 2.0)
    lower = torch.tensor([[10.0, 0.0], [300.0, -10.0]], dtype=torch.float64)
    upper = torch.tensor([[100.0, 20.0], [360.0, 90.0]], dtype=torch.float64)
    (check,) = check_boxes(score, [(lower, upper)], lower, step=3.0, threshold=0.5)
    assert check.passed.all()
    np.testing.assert_array_equal(check.lower, lower.numpy())
    np.testing.assert_array_equal(check.upper, upper.numpy())
    # faces and the multiples of 3 between them: 10, 12..99, 100 × 0, 3..18, 20; 300..360 × -10, -9..87, 90
    np.testing.assert_array_equal(check.views, [32 * 8, 21 * 35])
    for lo, hi in zip(lower.numpy(), upper.numpy(), strict=True):
        for axis, a, b in zip(box_grid(lo, hi, 3.0), lo, hi, strict=True):
            assert axis[0] == a and axis[-1] == b and np.diff(axis).min() > 0 and np.diff(axis).max() <= 3.0


def test_nested_boxes_are_checked_at_the_cost_of_the_largest():
    scored = []

    def counting(theta):
        scored.append(theta.shape[1])
        return torch.ones(theta.shape[:2], dtype=torch.float64)

    outer = (torch.tensor([[0.0, 0.0]]), torch.tensor([[30.0, 30.0]]))
    inner = (torch.tensor([[6.0, 9.0]]), torch.tensor([[12.0, 21.0]]))
    checks = check_boxes(counting, [outer, inner], outer[0], step=3.0, threshold=0.5)
    assert scored == [11 * 11] and [c.views[0] for c in checks] == [121, 3 * 5]


def test_shrink_cuts_the_failing_points_nearest_the_anchor_first():
    axes = [np.arange(10.0), np.arange(5.0)]
    failing = np.zeros((10, 5), dtype=bool)
    failing[6, :] = True  # a wall at x = 6
    failing[2, 4] = True  # one point in a corner
    lower, upper = shrink_on_grid(axes, failing, np.array([3.0, 2.0]))
    # the corner point is cut off in y (keeps 9 × 3 of area) rather than in x (6 × 4); the wall then in x
    np.testing.assert_array_equal(lower, [0.0, 0.0])
    np.testing.assert_array_equal(upper, [5.0, 3.0])
    failing[3, 2] = True  # the anchor's own grid point
    lower, upper = shrink_on_grid(axes, failing, np.array([3.2, 1.9]))
    np.testing.assert_array_equal(lower, [3.0, 2.0])
    np.testing.assert_array_equal(upper, lower)


def test_finders_in_lockstep_find_what_each_finds_alone():
    score, score_grad = smooth_box_score([40.0, 10.0], [100.0, 70.0], softness=1.0)
    initial = torch.tensor([[70.0, 40.0], [60.0, 20.0]])
    config = RegionConfig(steps=60)
    together = find_all_regions(METHODS, initial, [0.0, -10.0], [360.0, 90.0], score, score_grad, config)
    for method in METHODS:
        alone = find_regions(method, initial, [0.0, -10.0], [360.0, 90.0], score, score_grad, config)
        np.testing.assert_array_equal(together[method].trace_lower, alone.trace_lower)
        np.testing.assert_array_equal(together[method].upper, alone.upper)
        np.testing.assert_array_equal(together[method].check.lower, alone.check.lower)


@pytest.mark.parametrize(
    ("config", "message"),
    [(RegionConfig(check_step=0.0), "--check-step"), (RegionConfig(check_threshold=1.5), "--check-threshold"),
     (RegionConfig(check_step=float("nan")), "--check-step")],
)  # fmt: skip
def test_check_settings_are_validated(config, message):
    with pytest.raises(ConfigError, match=message):
        config.validate()
