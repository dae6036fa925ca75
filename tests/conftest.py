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
