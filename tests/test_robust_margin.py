"""The large-margin (geometric SVM) method: boundary distances, the hinge, the 2-D toy, few-shot subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from recon.cli.robust import robust
from recon.errors import InputError
from recon.robust.boundary import (
    BoundarySearch,
    MarginFunction,
    find_correct_boundary_points,
    large_margin_loss,
    sample_distances,
)
from recon.robust.toy2d import ToyConfig, boundary_distances_2d, run_toy, two_moons
from recon.robust.train import TrainConfig, Trainer, auto_margin, margin_boundary_search, per_class_rows


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    yield


def _small_model(seed: int = 0, classes: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, classes)).double()


def _predicted_batch(model: nn.Module, n: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 4, 4) float64 images in [0.2, 0.8] labelled with the model's own prediction (all correct)."""
    generator = torch.Generator().manual_seed(seed)
    images = (0.2 + 0.6 * torch.rand(n, 1, 4, 4, generator=generator)).double()
    with torch.no_grad():
        return images, model(images).argmax(dim=1)


def _line_search_distance(model, x, label, direction, norm, samples=2001, bisections=60) -> float:
    """Distance from x to the first point along x + t·direction (t ∈ [0, 1.5]) whose prediction is not label.

    Dense sampling finds the first change of the argmax, then bisection on the argmax itself refines it.
    """

    def wrong(t: float) -> bool:
        with torch.no_grad():
            return int(model((x + t * direction)[None]).argmax()) != label

    ts = np.linspace(0.0, 1.5, samples)
    with torch.no_grad():
        predictions = model(x[None] + torch.tensor(ts)[:, None, None, None] * direction[None]).argmax(dim=1)
    first = int(torch.nonzero(predictions != label)[0])
    lo, hi = ts[first - 1], ts[first]
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if wrong(mid) else (mid, hi)
    step = hi * direction.reshape(-1)
    return float(step.norm() if norm == "l2" else step.abs().max())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_sample_network_distances_match_a_plain_line_search(norm):
    model = _small_model()
    images, labels = _predicted_batch(model)
    reach = 1.5 if norm == "l2" else 0.4
    search = BoundarySearch(
        eps_correct=reach, eps_wrong=reach, eps_base=reach, step=2.5 * reach / 20, iters=20, norm=norm
    )
    samples = find_correct_boundary_points(model, images, labels, search, torch.Generator().manual_seed(0))
    assert len(samples.index) >= 20 and bool(samples.correct.all())
    distances = sample_distances(model, images, labels, samples, norm).detach()
    offsets = samples.points - images.reshape(len(images), -1)[samples.index]
    inside = offsets.norm(dim=1) if norm == "l2" else offsets.abs().amax(dim=1)
    assert bool((inside <= reach + 1e-9).all())  # the search stayed in its ball / box
    for i, row in enumerate(samples.index.tolist()):
        direction = offsets[i].reshape(1, 4, 4)
        expected = _line_search_distance(model, images[row], int(labels[row]), direction, norm)
        assert float(distances[i]) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_sample_network_points_follow_the_boundary_to_first_order():
    """After a parameter step of size δ, |F(p(θ); θ)| = O(δ²) while |F(p; θ)| = O(δ)."""
    model = _small_model(seed=2)
    images, labels = _predicted_batch(model, seed=3)
    search = margin_boundary_search(0.8, "l2", iters=20)
    samples = find_correct_boundary_points(model, images, labels, search, torch.Generator().manual_seed(0))
    fn = MarginFunction(model, labels[samples.index], (1, 4, 4))
    from recon.core.levelset import sample_network

    torch.manual_seed(5)
    direction = [torch.randn_like(p) for p in model.parameters()]
    residual_fixed, residual_moved = [], []
    for delta in (1e-2, 5e-3):
        with torch.no_grad():
            for p, d in zip(model.parameters(), direction, strict=True):
                p.add_(delta * d)
            moved = sample_network(fn, samples.points, samples.levels, samples.grads)
            residual_moved.append(float((fn(moved) - samples.levels).abs().max()))
            residual_fixed.append(float((fn(samples.points) - samples.levels).abs().max()))
            for p, d in zip(model.parameters(), direction, strict=True):
                p.sub_(delta * d)
    assert residual_moved[0] < 0.05 * residual_fixed[0]
    assert residual_moved[1] < 0.35 * residual_moved[0]  # quadratic: halving δ quarters it


def test_large_margin_loss_is_the_hinge_of_the_distances_of_correct_points():
    model = _small_model(seed=4)
    images, labels = _predicted_batch(model, seed=5)
    labels[:5] = (labels[:5] + 1) % 3  # five misclassified examples: no push for them
    samples = find_correct_boundary_points(
        model, images, labels, margin_boundary_search(0.5, "l2", iters=20), torch.Generator().manual_seed(0)
    )
    assert bool((samples.index >= 5).all())
    distances = sample_distances(model, images, labels, samples, "l2").detach()
    for margin in (0.05, float(distances.median()), 10.0):
        loss = large_margin_loss(model, images, labels, samples, margin=margin, norm="l2")
        expected = torch.clamp(margin - distances, min=0).sum() / len(images)
        assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-9)
    far = large_margin_loss(model, images, labels, samples, margin=1e-6, norm="l2")
    assert float(far.detach()) == 0.0 and far.requires_grad


def test_margin_training_decreases_the_measured_margin_gap():
    """Two moons, 8 points per class: the grid-measured shortfall below the margin shrinks with the margin loss."""
    result = run_toy(ToyConfig(steps=400, seed=0))
    assert result.test_accuracy["standard"] > 0.75 and result.test_accuracy["margin"] > 0.75
    assert result.margin_gap["margin"] < 0.7 * result.margin_gap["standard"]


def test_grid_boundary_distance_matches_a_line_analytically():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        model.bias.copy_(torch.tensor([0.0, -3.0]))  # boundary 3x + 4y = 3
    points = torch.tensor([[0.1, 0.1], [0.9, 0.8], [0.5, 0.2]])
    expected = np.abs(points.numpy() @ np.array([3.0, 4.0]) - 3.0) / 5.0
    np.testing.assert_allclose(boundary_distances_2d(model, points), expected, atol=1.5 / 400)


def test_two_moons_is_seeded_and_in_the_unit_square():
    a, la = two_moons(20, seed=3)
    b, lb = two_moons(20, seed=3)
    assert torch.equal(a, b) and torch.equal(la, lb) and a.shape == (40, 2)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and la.tolist() == [0] * 20 + [1] * 20


def test_per_class_rows_pick_k_of_every_class_by_seed():
    labels = torch.tensor([0, 1, 2] * 10 + [2, 2])
    rows = per_class_rows(labels, 4, seed=0)
    assert torch.bincount(labels[rows]).tolist() == [4, 4, 4]
    assert torch.equal(rows, per_class_rows(labels, 4, seed=0))
    assert not torch.equal(rows, per_class_rows(labels, 4, seed=1))
    assert len(set(rows.tolist())) == 12
    with pytest.raises(InputError, match="fewer than 11"):
        per_class_rows(labels, 11, seed=0)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_auto_margin_is_half_the_median_nearest_other_class_distance(norm):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(300, 1, 2, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=300)
    flat = x.reshape(300, -1).astype(np.float64)
    nearest = []
    for i in range(300):
        diff = flat[y != y[i]] - flat[i]
        d = np.sqrt((diff**2).sum(1)) if norm == "l2" else np.abs(diff).max(1)
        nearest.append(d.min())
    # torch's median of an even count is the lower middle value
    expected = 0.5 * np.sort(nearest)[(300 - 1) // 2]
    assert auto_margin(torch.from_numpy(x), torch.from_numpy(y), norm, chunk=64) == pytest.approx(
        expected, rel=1e-5
    )


def test_margin_method_trains_on_k_per_class_and_records_its_margin(tmp_path):
    from click.testing import CliRunner

    run = tmp_path / "run"
    out = CliRunner().invoke(
        robust,
        [
            "train",
            "--method",
            "margin",
            "--margin-norm",
            "linf",
            "--per-class",
            "3",
            "--arch",
            "mlp",
            "--epochs",
            "2",
            "--levelset-iters",
            "3",
            "--device",
            "cpu",
            "--quiet",
            "-o",
            str(run),
        ],
    )
    assert out.exit_code == 0, out.output
    spec = json.loads((run / "config.json").read_text())
    assert spec["config"]["method"] == "margin" and spec["config"]["per_class"] == 3
    trainer = Trainer(TrainConfig.from_dict(spec["config"]))
    assert len(trainer.labels) == 30 and torch.bincount(trainer.labels).tolist() == [3] * 10
    expected = auto_margin(trainer.images, trainer.labels, "linf")
    assert spec["resolved"]["margin"] == pytest.approx(expected)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["boundary_fraction"] <= 1.0


def test_margin_options_are_validated():
    with pytest.raises(InputError, match="margin norm"):
        Trainer(TrainConfig(method="margin", margin_norm="l1", limit=20, test_limit=5, device="cpu"))
    with pytest.raises(InputError, match="--margin must be positive"):
        Trainer(TrainConfig(method="margin", margin=-1.0, limit=20, test_limit=5, device="cpu"))
