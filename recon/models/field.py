"""A torch network F: (b, 3) → (b,) as a numpy field, for meshing and tracing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def numpy_field(
    model: Callable[[torch.Tensor], torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    chunk: int = 65_536,
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap ``model`` as (n, 3) float → (n,) float32: float32 inputs on ``device``, ``chunk`` points at a
    time, no gradients."""

    def field(points: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(points), chunk):
                x = torch.as_tensor(points[start : start + chunk], dtype=torch.float32, device=device)
                out.append(model(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    return field
