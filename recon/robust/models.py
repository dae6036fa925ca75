"""Image classifiers of the robustness literature, with input normalization inside the model.

Every model takes images in pixel units, ``(n, C, H, W)`` in [0, 1], and returns logits ``(n, k)``; the
per-channel normalization is its first layer, so ε and every attack live in pixel units (the AutoAttack /
RobustBench convention). No model uses BatchNorm or dropout: train and eval mode compute the same function,
which the level-set loss relies on (boundary points found with θ0 are evaluated again with θ).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("small-cnn", "mlp", "convnet4")


class Normalize(nn.Module):
    """(x − mean)/std per channel, as buffers that travel with the state dict.

    Parameters
    ----------
    mean, std : (C,) float
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def small_cnn(channels: int, size: int, classes: int) -> nn.Sequential:
    """The MNIST SmallCNN of TRADES / Atzmon et al.: conv 32-32, pool, conv 64-64, pool, FC 200-200-k.

    Convolutions are 3×3 with padding 1 (the original has none) so that 8×8 digits fit as well as 28×28.
    """
    flat = 64 * (size // 4) ** 2
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, classes),
    )


def convnet4(channels: int, size: int, classes: int) -> nn.Sequential:
    """The CIFAR-style ConvNet4 of Atzmon et al.: conv 32, 32 (stride 2), 64, 64 (stride 2), FC 512-512-k."""
    after = (size + 1) // 2
    after = (after + 1) // 2
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * after * after, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, classes),
    )


def mlp(channels: int, size: int, classes: int, hidden: tuple[int, ...] = (256, 256)) -> nn.Sequential:
    """A fully connected ReLU network on the flattened image."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = channels * size * size
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def build_classifier(
    arch: str, image_shape: tuple[int, int, int], classes: int, mean: list[float], std: list[float]
) -> nn.Sequential:
    """A classifier ``Normalize → body`` for (C, H, W) images with square H = W.

    Parameters
    ----------
    arch : {'small-cnn', 'mlp', 'convnet4'}
    image_shape : (C, H, W)
    classes : number of logits k
    mean, std : (C,) per-channel statistics of the training images (pixel units)
    """
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"square images expected, got {height}×{width}")
    bodies = {"small-cnn": small_cnn, "mlp": mlp, "convnet4": convnet4}
    if arch not in bodies:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return nn.Sequential(
        Normalize(torch.tensor(mean), torch.tensor(std)), bodies[arch](channels, height, classes)
    )


def channel_statistics(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (floored at 1e-3) of (n, C, H, W) images, as plain lists for config.json."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.tolist(), std.tolist()
