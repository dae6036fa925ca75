"""Robustness certificates from a Lipschitz bound, and the multi-class hinge loss that trains for them.

If ‖f(x) − f(x')‖₂ ≤ L‖x − x'‖₂ then every logit difference f_y − f_j moves by at most √2·L‖x − x'‖₂
(|a_y − a_j| ≤ √2‖a‖₂), so the prediction cannot change within the ℓ2 radius margin/(√2·L). If instead
‖f(x) − f(x')‖_∞ ≤ L‖x − x'‖_∞ (ℓ∞-constrained layers), each logit moves by at most L·ε and the
radius is margin/(2·L) in the ℓ∞ norm.
"""

from __future__ import annotations

import math

import torch

from recon.lipschitz.layers import NORMS


def logit_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """f_y − max_{j≠y} f_j (n,) for (n, C) logits and (n,) labels; negative when misclassified."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.amax(dim=1)


def certified_radius(
    logits: torch.Tensor, labels: torch.Tensor, lipschitz: float, norm: str = "l2"
) -> torch.Tensor:
    """Radius (n,) in ``norm`` within which the prediction provably stays ``labels`` (0 if misclassified).

    Parameters
    ----------
    logits : (n, C) float
    labels : (n,) int
    lipschitz : float
        Upper bound L on the network's Lipschitz constant in ``norm`` (ℓ2 → ℓ2 or ℓ∞ → ℓ∞).
    norm : str
        'l2' (radius margin/(√2·L)) or 'linf' (radius margin/(2·L)).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} (use l2 or linf)")
    if not lipschitz > 0:
        raise ValueError("the Lipschitz bound must be positive")
    factor = math.sqrt(2.0) if norm == "l2" else 2.0
    return logit_margins(logits, labels).clamp_min(0.0) / (factor * lipschitz)


def multiclass_hinge(logits: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """mean_i (1/C) Σ_{j≠y_i} max(0, margin − (f_{y_i} − f_j)) for (n, C) logits (as ``multi_margin_loss``)."""
    true = logits.gather(1, labels[:, None])
    hinge = (margin - true + logits).clamp_min(0.0)
    hinge = hinge.scatter(1, labels[:, None], 0.0)
    return hinge.sum(dim=1).mean() / logits.shape[1]
