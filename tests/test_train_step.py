"""The gradient a real training step applies equals autograd through the paper's loss, written separately.

The step shares one forward pass among its terms and builds the sample network from it; the reference here
evaluates each term on its own, with the sample network p(θ) = p − (F(p; θ) − c)·g/‖g‖² of
recon.core.levelset (the function checked against finite differences in test_levelset.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import sphere_points

from recon.core.config import tiny_preset
from recon.core.fit import LevelSetFitter
from recon.core.levelset import sample_network, value_and_gradient
from recon.core.losses import NearestScanPoint, data_term, levelset_sample_term, normal_term


def _fitter(dtype: torch.dtype) -> LevelSetFitter:
    """A tiny fit of a noisy sphere with normals and an anchor, in ``dtype``, after two warm-up steps."""
    points, normals = sphere_points(1500, 0.6, seed=3)
    points = points + np.random.default_rng(3).normal(scale=0.003, size=points.shape)
    config = tiny_preset().with_(
        init_steps=5,
        init_samples=1000,
        batch_points=500,
        zero_samples=300,
        general_samples=300,
        general_pool=2000,
        normal_points=200,
    )
    assert (
        config.start.anchor_weight > 0 and config.loss.normal_weight > 0 and config.sampling.warm_start
    )  # every term runs
    fitter = LevelSetFitter(points, normals, config)
    fitter.model.to(dtype)
    fitter.points = fitter.points.to(dtype)
    fitter.normals = fitter.normals.to(dtype)
    fitter.nearest = NearestScanPoint(fitter.points)
    sampler = fitter.sampler
    sampler.points, sampler.nearest = fitter.points, fitter.nearest
    sampler.anchor = sampler.anchor.to(dtype)
    sampler.general_pools = [(pool.to(dtype), near) for pool, near in sampler.general_pools]
    fitter.optimizer = torch.optim.Adam(fitter.model.parameters(), lr=config.optimizer.lr)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the step's own random draws
    try:
        for _ in range(2):
            fitter.train_step()
    finally:
        torch.set_default_dtype(previous)
    return fitter


def _reference_loss(fitter: LevelSetFitter, model: torch.nn.Module, batch) -> torch.Tensor:
    """The fit's loss for ``batch`` with each term evaluated on its own pass of ``model``."""
    cfg = fitter.config
    samples = torch.cat([batch.zero, batch.general])
    levels, grads = value_and_gradient(model, samples)
    moved = sample_network(model, samples, levels, grads)
    nearest = torch.cat([fitter.nearest.indices(batch.zero), batch.general_nearest])
    loss = levelset_sample_term(
        moved,
        levels,
        fitter.nearest,
        cfg.loss.loss_form,
        nearest,
        max_distance=fitter.sampler.levelset_reach(),
    )
    loss = loss + cfg.loss.data_weight * data_term(
        model(fitter.points[batch.scan_indices]), cfg.loss.loss_form
    )
    loss = loss + cfg.start.anchor_weight * (model(batch.anchor[:, :3]) - batch.anchor[:, 3]).abs().mean()
    on_scan = batch.scan_indices[: cfg.loss.normal_points]
    x = fitter.points[on_scan].requires_grad_(True)
    (scan_grads,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    return loss + cfg.loss.normal_weight * normal_term(scan_grads, fitter.normals[on_scan])


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_train_step_gradient_equals_autograd_through_the_sample_network(dtype, rtol):
    fitter = _fitter(dtype)
    batch = fitter.draw_batch()
    fitter.draw_batch = lambda: batch  # the step below computes on exactly this batch
    before = copy.deepcopy(fitter.model)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        fitter.train_step()
        expected = torch.autograd.grad(_reference_loss(fitter, before, batch), list(before.parameters()))
    finally:
        torch.set_default_dtype(previous)
    # .grad holds the gradient at θ0: the optimizer moved the parameters after it was computed.
    got = [p.grad for p in fitter.model.parameters()]
    scale = max(float(e.abs().max()) for e in expected)
    assert scale > 0
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g, e, rtol=rtol, atol=rtol * scale)
