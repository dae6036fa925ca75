"""Classifier architectures (shapes, one training step) and the viewpoint priors training renders come from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon.robust.semantic.classifier import SemanticTrainConfig, train_step
from recon.robust.semantic.networks import ARCHITECTURES, build_model
from recon.robust.semantic.views import (
    CANONICAL_AZIMUTH_STD,
    CANONICAL_AZIMUTHS,
    CANONICAL_FLOOR,
    CANONICAL_WEIGHTS,
    canonical_azimuth_density,
    sample_viewpoints,
)


def test_at_least_four_architecture_families():
    assert {"mlp", "cnn", "vgg", "resnet", "inception", "alexnet"} <= set(ARCHITECTURES)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("size", [8, 32, 64])
def test_forward_shape(arch, size):
    torch.manual_seed(0)
    model = build_model(arch, size, 6, mean=0.2, std=0.3).eval()
    with torch.no_grad():
        logits = model(torch.rand(3, 1, size, size))
    assert logits.shape == (3, 6) and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(arch):
    torch.manual_seed(0)
    model = build_model(arch, 32, 6, mean=0.2, std=0.3).train()
    images = torch.rand(12, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(12) % 6
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(2)  # the same dropout masks in both forward passes
    loss, _ = train_step(model, optimizer, images, labels)
    torch.manual_seed(2)
    with torch.no_grad():
        after = float(torch.nn.functional.cross_entropy(model(images), labels))
    assert after < loss
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_unknown_architecture_and_prior_are_refused():
    from recon.errors import InputError

    with pytest.raises(InputError, match="architecture"):
        SemanticTrainConfig(arch="wide-cnn").validate()
    with pytest.raises(InputError, match="prior"):
        SemanticTrainConfig(prior="frontal").validate()


def test_runs_without_a_recorded_prior_load_as_uniform():
    stored = SemanticTrainConfig().to_dict()
    del stored["prior"]
    assert SemanticTrainConfig.from_dict(stored).prior == "uniform"
    assert SemanticTrainConfig.from_dict(SemanticTrainConfig().to_dict()).prior == "canonical"


def test_runs_of_the_renamed_wide_cnn_load_as_vgg():
    stored = SemanticTrainConfig(arch="vgg").to_dict() | {"arch": "wide-cnn"}
    assert SemanticTrainConfig.from_dict(stored).arch == "vgg"


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_canonical_prior_matches_its_stated_density():
    views = sample_viewpoints(200_000, torch.Generator().manual_seed(0), "canonical").numpy()
    azimuth, elevation = views[:, 0], views[:, 1]
    assert (
        (azimuth >= 0).all()
        and (azimuth < 360).all()
        and (elevation >= -10).all()
        and (elevation <= 90).all()
    )

    # share within ±20° of the modes, from the stated parameters (normal CDFs, not the library's density)
    windows = [(m - 20.0, m + 20.0) for m in CANONICAL_AZIMUTHS]
    mixture = sum(
        w * (_normal_cdf((hi - mu) / CANONICAL_AZIMUTH_STD) - _normal_cdf((lo - mu) / CANONICAL_AZIMUTH_STD))
        for mu, w in zip(CANONICAL_AZIMUTHS, CANONICAL_WEIGHTS, strict=True)
        for lo, hi in windows
    )
    expected = (1 - CANONICAL_FLOOR) * mixture + CANONICAL_FLOOR * 40.0 * len(windows) / 360.0
    near = np.zeros(len(azimuth), dtype=bool)
    for lo, hi in windows:
        near |= (azimuth >= lo) & (azimuth <= hi)
    assert expected > 0.85
    assert near.mean() == pytest.approx(expected, abs=0.005)

    # elevation: 0–30° except for the uniform floor
    in_band = ((elevation >= 0) & (elevation <= 30)).mean()
    assert in_band == pytest.approx(1 - CANONICAL_FLOOR + CANONICAL_FLOOR * 30 / 100, abs=0.005)

    # the azimuth histogram against the documented density, bin by bin
    edges = np.arange(0.0, 361.0, 10.0)
    counts, _ = np.histogram(azimuth, edges)
    fine = np.linspace(0.0, 360.0, 36_001)
    density = canonical_azimuth_density(fine)
    assert np.trapezoid(density, fine) == pytest.approx(1.0, abs=1e-6)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(fine))])
    expected_bins = np.diff(np.interp(edges, fine, cumulative))
    np.testing.assert_allclose(counts / len(azimuth), expected_bins, atol=0.003)


def test_uniform_prior_is_flat():
    views = sample_viewpoints(100_000, torch.Generator().manual_seed(0), "uniform").numpy()
    counts, _ = np.histogram(views[:, 0], np.arange(0.0, 361.0, 30.0))
    np.testing.assert_allclose(counts / len(views), 1 / 12, atol=0.005)
    assert ((views[:, 1] >= 0) & (views[:, 1] <= 30)).mean() == pytest.approx(0.3, abs=0.01)
