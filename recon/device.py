"""The one place a device name ('auto', 'cpu', 'cuda') becomes a torch device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from recon.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; ConfigError for 'cuda' without a CUDA device or another name."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICE_NAMES:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu or cuda)")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available")
    return torch.device(name)
