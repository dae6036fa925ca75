"""PGD against a second, deliberately plain implementation; normal cross-sections of the boundary.

torchattacks and foolbox need torchvision, which does not install with this torch, so the reference PGD is
written here: one example at a time, float64, its own loss, sign, projection and best-iterate bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_png_shows_something, train_digits_mlp
from torch import nn

from recon.robust import attacks as atk
from recon.robust.evaluate import AttackConfig, evaluate_robustness
from recon.robust.geometry import GeometryConfig, normal_cross_sections
from recon.robust.plots import plot_cross_sections


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def fixed_model():
    """A float64 MLP trained for a few seeded epochs on digits, and 60 test images."""
    model, xt, yt = train_digits_mlp(seed=1, epochs=6, test_limit=60)
    return model.double(), xt.double(), yt


def plain_pgd(model, images, labels, eps, step, steps, norm, starts):
    """Reference PGD, one image at a time: ascend the cross-entropy, keep the iterate of largest margin.

    ``starts`` are the (n, C, H, W) first iterates. Margins of the iterates 0..steps are compared; the first
    largest one wins.
    """
    results = []
    for x0, y0, start in zip(images, labels, starts, strict=True):
        x0, target = x0.numpy(), int(y0)
        current = start.numpy().copy()
        best, best_margin = None, -np.inf
        for k in range(steps + 1):
            point = torch.tensor(current[None], requires_grad=True)
            logits = model(point)[0]
            others = torch.cat([logits[:target], logits[target + 1 :]])
            value = float((others.max() - logits[target]).detach())
            if value > best_margin:
                best, best_margin = current.copy(), value
            if k == steps:
                break
            loss = -torch.log_softmax(logits, dim=0)[target]
            loss.backward()
            grad = point.grad[0].numpy()
            if norm == "linf":
                current = current + step * np.sign(grad)
                current = np.minimum(np.maximum(current, x0 - eps), x0 + eps)
            else:
                current = current + step * grad / max(np.sqrt((grad**2).sum()), 1e-12)
                delta = current - x0
                length = np.sqrt((delta**2).sum())
                if length > eps:
                    delta = delta * (eps / length)
                current = x0 + delta
            current = np.clip(current, 0.0, 1.0)
        results.append(torch.from_numpy(best))
    return torch.stack(results)


def _uniform_linf_start(x, eps, seed):
    """The random start recon's PGD draws from Generator(seed): uniform in the box, clipped to [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return (x + (2.0 * torch.rand(x.shape, generator=generator) - 1.0) * eps).clamp(0.0, 1.0)


def _robust_accuracy(model, x_adv, labels) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(dim=1) == labels).double().mean().item()


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.6)])
def test_pgd_matches_a_plain_implementation_from_zero_start(fixed_model, norm, eps):
    model, x, y = fixed_model
    steps, step = 12, 2.5 * eps / 12
    ours = atk.pgd(model, x, y, eps, norm=norm, steps=steps, step_size=step, random_start=False)
    reference = plain_pgd(model, x, y, eps, step, steps, norm, starts=x)
    torch.testing.assert_close(ours, reference, atol=1e-9, rtol=0)
    robust = _robust_accuracy(model, ours, y)
    assert robust == _robust_accuracy(model, reference, y)
    # a meaningful comparison: the attack moved points across the boundary but not all of them
    assert 0.0 < robust < _robust_accuracy(model, x, y)


def test_pgd_matches_a_plain_implementation_from_the_same_random_start(fixed_model):
    model, x, y = fixed_model
    eps, steps = 0.1, 10
    ours = atk.pgd(model, x, y, eps, steps=steps, generator=torch.Generator().manual_seed(5))
    start = _uniform_linf_start(x, eps, seed=5)
    reference = plain_pgd(model, x, y, eps, 2.5 * eps / steps, steps, "linf", starts=start)
    torch.testing.assert_close(ours, reference, atol=1e-9, rtol=0)
    # the reported robust accuracy of the evaluation (one batch, same seed) is the reference's; it is stored
    # as float32, far finer than the 1/60 between two counts
    report = evaluate_robustness(
        model, x, y, AttackConfig(eps=eps, attacks=("pgd",), steps=steps, seed=5, batch_size=len(x))
    )
    assert report.per_attack["pgd"] == pytest.approx(_robust_accuracy(model, reference, y), abs=1e-6)


class _Affine(nn.Module):
    """Two-class affine classifier on 1×4×4 images: logits (0, w·x + c)."""

    def __init__(self, w: torch.Tensor, c: float):
        super().__init__()
        self.w, self.c = w, c

    def forward(self, x):
        score = x.reshape(len(x), -1) @ self.w + self.c
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_cross_sections_of_an_affine_classifier_are_the_analytic_planes(tmp_path):
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=generator, dtype=torch.float64)
    model = _Affine(w, c=-3.0)
    images = 0.2 * torch.rand(3, 1, 4, 4, generator=generator, dtype=torch.float64)
    scores = images.reshape(3, -1) @ w - 3.0
    assert bool((scores < 0).all())  # all predicted class 0, F = w·x + c
    sections = normal_cross_sections(model, images, GeometryConfig(extent=2.0, resolution=9))
    assert len(sections) == 3
    for section, score in zip(sections, scores, strict=True):
        # DeepFool reaches the plane in one step of length (|F| + 1e-4)/‖w‖ and overshoots it by 2%
        distance = 1.02 * (-float(score) + 1e-4) / float(w.norm())
        assert section.label == 0
        assert section.distance == pytest.approx(distance, rel=1e-9)
        # along the normal F grows at rate ‖w‖ and does not change along the orthogonal random direction
        expected = float(score) + float(w.norm()) * section.grid[None, :] + 0.0 * section.grid[:, None]
        np.testing.assert_allclose(section.adversarial, expected, atol=1e-6 * float(w.norm()))
        assert section.grid[-1] == pytest.approx(2.0 * section.distance)
        # in the random plane F is affine as well: equal second differences vanish
        assert np.abs(np.diff(section.random, n=2, axis=1)).max() < 1e-9
    target = tmp_path / "sections.png"
    plot_cross_sections(sections, target)
    assert_png_shows_something(target.read_bytes())


def test_geometry_plot_cli_writes_and_refuses_to_overwrite(tmp_path):
    from recon.cli.robust import robust

    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(
        robust,
        ["train", "--method", "standard", "--dataset", "digits", "--arch", "mlp", "--epochs", "2", "--limit",
         "300", "--device", "cpu", "--quiet", "-o", str(run)],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    plot = tmp_path / "sections.png"
    args = ["geometry", str(run), "--plot", str(plot), "--points", "2", "--n", "20"]
    first = runner.invoke(robust, args)
    assert first.exit_code == 0, first.output
    assert_png_shows_something(plot.read_bytes())
    assert first.output.count("DeepFool distance") == 2
    again = runner.invoke(robust, args)
    assert again.exit_code != 0 and "exists" in str(again.exception or again.output)


def plain_targeted_pgd_fools(model, images, labels, eps, steps, norm, random_starts, seed):
    """Reference targeted margin PGD, one image at a time: for every t ≠ y, ascend f_t − f_y from x and from
    ``random_starts`` uniform points of the box or sphere (numpy's own generator), all runs of the image as
    one batch; (n,) bool, whether any iterate of any run is misclassified."""
    rng = np.random.default_rng(seed)
    step, classes = 2.5 * eps / steps, model(images[:1]).shape[1]
    fooled = []
    for x0, y0 in zip(images.numpy(), labels.tolist(), strict=True):
        targets = np.repeat([t for t in range(classes) if t != y0], 1 + random_starts)
        noise = rng.uniform(-1.0, 1.0, size=(len(targets), *x0.shape))
        if norm == "l2":
            noise /= np.sqrt((noise**2).sum(axis=(1, 2, 3), keepdims=True))
        noise[:: 1 + random_starts] = 0.0  # the first run of every target starts at x
        current = np.clip(x0 + eps * noise, 0.0, 1.0)
        found = False
        for k in range(steps + 1):
            points = torch.tensor(current, requires_grad=True)
            logits = model(points)
            found |= bool((logits.argmax(dim=1) != y0).any())
            if k == steps:
                break
            (logits[np.arange(len(targets)), targets] - logits[:, y0]).sum().backward()
            grad = points.grad.numpy()
            if norm == "linf":
                current = np.clip(current + step * np.sign(grad), x0 - eps, x0 + eps)
            else:
                length = np.sqrt((grad**2).sum(axis=(1, 2, 3), keepdims=True))
                delta = current + step * grad / np.maximum(length, 1e-12) - x0
                size = np.sqrt((delta**2).sum(axis=(1, 2, 3), keepdims=True))
                current = x0 + delta * np.minimum(1.0, eps / np.maximum(size, 1e-12))
            current = np.clip(current, 0.0, 1.0)
        fooled.append(found)
    return torch.tensor(fooled)


class _TinyMLP(nn.Module):
    """A float64 softplus MLP from (n, 1, 2, 4) images to 5 classes, its input spread over the units."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(8, 32), nn.Softplus(), nn.Linear(32, 5)).double()

    def forward(self, x):
        return self.net(6.0 * (x - 0.5))


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.05), ("l2", 0.1)])
def test_attack_all_is_at_least_as_strong_as_a_plain_targeted_pgd(norm, eps):
    """Every image the reference targeted PGD fools is also lost in the per-example worst case of all attacks
    at their default (AutoAttack-sized) strength."""
    model = _TinyMLP()
    x = torch.rand(40, 1, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    assert len(torch.unique(y)) >= 3
    reference = plain_targeted_pgd_fools(model, x, y, eps, steps=50, norm=norm, random_starts=2, seed=0)
    assert 0 < int(reference.sum()) < len(y)  # a comparison that can go either way
    report = evaluate_robustness(model, x, y, AttackConfig(eps=eps, norm=norm))
    assert report.clean == 1.0 and set(report.per_attack) == set(atk.ATTACKS)
    assert not bool((reference & report.survived).any())
    for name in ("apgd-t", "pgd-t"):  # and each targeted attack alone fools as many images
        assert round(report.per_attack[name] * len(y)) <= len(y) - int(reference.sum()), name
