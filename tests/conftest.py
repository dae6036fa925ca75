"""Shared fixtures: fixed seeds, analytic shapes, a CPU-only torch with few threads."""

from __future__ import annotations

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def sphere_points(n: int, radius: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) points uniformly on a sphere and their outward unit normals."""
    g = np.random.default_rng(seed).normal(size=(n, 3))
    normals = g / np.linalg.norm(g, axis=1, keepdims=True)
    return radius * normals, normals


def torus_points(n: int, major: float = 0.6, minor: float = 0.25, seed: int = 0) -> np.ndarray:
    """(n, 3) points on a torus around the z axis (area-uniform by rejection)."""
    r = np.random.default_rng(seed)
    out = []
    while sum(len(o) for o in out) < n:
        u, v = r.uniform(0, 2 * np.pi, (2, 4 * n))
        keep = r.uniform(0, 1, 4 * n) < (major + minor * np.cos(v)) / (major + minor)
        u, v = u[keep], v[keep]
        ring = major + minor * np.cos(v)
        out.append(np.stack([ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)], axis=1))
    return np.concatenate(out)[:n]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models run faster on one thread than on two contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_digits_mlp(seed: int, epochs: int, test_limit: int):
    """A standard MLP classifier trained for a few seeded epochs on 8×8 digits, and test images.

    Returns (model in eval mode, x_test (m, 1, 8, 8), y_test (m,)).
    """
    import torch
    from torch.nn import functional

    from recon.robust.data import load_dataset
    from recon.robust.models import build_classifier, channel_statistics

    x, y = load_dataset("digits", "train")
    xt, yt = load_dataset("digits", "test", limit=test_limit)
    mean, std = channel_statistics(x)
    torch.manual_seed(seed)
    model = build_classifier("mlp", (1, 8, 8), 10, mean, std)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            loss = functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), xt, yt


def assert_png_shows_something(data: bytes, *, min_share: float = 0.01) -> np.ndarray:
    """Decode PNG ``data`` and fail unless at least ``min_share`` of its pixels differ from its corner colour.

    A blank or single-colour image (a renderer that drew nothing) fails; returns the (h, w, c) pixels.
    """
    import io

    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    assert pixels.shape[0] > 8 and pixels.shape[1] > 8, f"image too small: {pixels.shape}"
    background = pixels[0, 0]
    drawn = np.abs(pixels - background).max(axis=2) > 16
    assert drawn.mean() >= min_share, f"only {drawn.mean():.4f} of the pixels differ from the background"
    return pixels
