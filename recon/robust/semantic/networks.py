"""Shape classifiers of grey renders, one per architecture family, at a size a CPU trains in minutes.

Every network maps (B, 1, S, S) images in [0, 1] to (B, classes) logits, with the pixel normalization inside
(so a saved state dict is the whole classifier), for any side S ≥ 8:

========== ======================================================================================= ==========
arch       layers                                                                                  params
========== ======================================================================================= ==========
mlp        FC 512-256 on the pixels                                                                2.23 M
cnn        conv 16-32-64 (3×3, each followed by 2×2 max-pool), FC 128                              0.55 M
vgg        VGG-style stacks of 3×3 convs: 32-32, pool, 64-64, pool, 128, pool, FC 256               2.24 M
resnet     ResNet-style: 3×3 stem 16, basic residual blocks 16, 32/2, 64/2 (BN), global avg pool   0.08 M
inception  Inception-style: 3×3 stem 32, pool, two 4-branch modules (1×1 | 1×1→3×3 |                0.03 M
           1×1→3×3→3×3 | pool→1×1) of 64 and 128 channels with a pool between (BN), avg pool
alexnet    AlexNet-style: 5×5/2 conv 32, pool, 5×5 conv 64, pool, 3×3 convs 96-96-64, pool,        0.38 M
           2×2 avg pool, dropout FC 256-256
========== ======================================================================================= ==========

Parameters at S = 64 with 6 classes. Forward cost at S = 32 on one CPU core: mlp 0.02, cnn 0.3, vgg 1.3,
resnet 0.5, inception 1.2, alexnet 0.3 ms per image.
"""

from __future__ import annotations

import torch
from torch import nn

from recon.errors import InputError
from recon.robust.models import Normalize

ARCHITECTURES = ("mlp", "cnn", "vgg", "resnet", "inception", "alexnet")
RENAMED = {"wide-cnn": "vgg"}
"""Names earlier run folders use for an architecture of the same layers."""


def _conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(outputs)]


class Residual(nn.Module):
    """A basic residual block: relu(x' + conv-BN-relu-conv-BN(x)), x' = x or a strided 1×1 projection.

    (B, inputs, H, W) → (B, outputs, ⌈H/stride⌉, ⌈W/stride⌉).
    """

    def __init__(self, inputs: int, outputs: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(inputs, outputs, 3, stride), nn.ReLU(), *_conv_bn(outputs, outputs, 3)
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and inputs == outputs
            else nn.Sequential(*_conv_bn(inputs, outputs, 1, stride))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: 1×1; 1×1→3×3; 1×1→3×3→3×3 (GoogLeNet's 5×5, factored
    as in Inception v3); 3×3 max-pool→1×1. (B, inputs, H, W) → (B, sum(widths), H, W).

    Parameters
    ----------
    widths : (4,) int
        Output channels of the branches; the reducing 1×1 convs have half their branch's width.
    """

    def __init__(self, inputs: int, widths: tuple[int, int, int, int]):
        super().__init__()
        one, three, five, pool = widths
        self.branches = nn.ModuleList(
            [
                nn.Sequential(*_conv_bn(inputs, one, 1), nn.ReLU()),
                nn.Sequential(
                    *_conv_bn(inputs, three // 2, 1), nn.ReLU(), *_conv_bn(three // 2, three, 3), nn.ReLU()
                ),
                nn.Sequential(
                    *_conv_bn(inputs, five // 2, 1),
                    nn.ReLU(),
                    *_conv_bn(five // 2, five, 3),
                    nn.ReLU(),
                    *_conv_bn(five, five, 3),
                    nn.ReLU(),
                ),  # fmt: skip
                nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_bn(inputs, pool, 1), nn.ReLU()),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def _pooled(size: int, times: int) -> int:
    for _ in range(times):
        size //= 2
    return size


def _body(arch: str, size: int, classes: int) -> list[nn.Module]:
    flat = _pooled(size, 3) ** 2
    if arch == "mlp":
        return [
            nn.Flatten(), nn.Linear(size * size, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, classes),
        ]  # fmt: skip
    if arch == "cnn":
        return [
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * flat, 128), nn.ReLU(), nn.Linear(128, classes),
        ]  # fmt: skip
    if arch == "vgg":
        return [
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(128 * flat, 256), nn.ReLU(), nn.Linear(256, classes),
        ]  # fmt: skip
    if arch == "resnet":
        return [
            *_conv_bn(1, 16, 3), nn.ReLU(),
            Residual(16, 16), Residual(16, 32, stride=2), Residual(32, 64, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes),
        ]  # fmt: skip
    if arch == "inception":
        return [
            *_conv_bn(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            InceptionModule(32, (16, 24, 12, 12)), nn.MaxPool2d(2),
            InceptionModule(64, (32, 48, 24, 24)),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, classes),
        ]  # fmt: skip
    if arch == "alexnet":
        # padded pools keep every stage at least 1×1 down to S = 8
        return [
            nn.Conv2d(1, 32, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(), nn.Conv2d(96, 96, 3, padding=1), nn.ReLU(),
            nn.Conv2d(96, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Dropout(0.5), nn.Linear(64 * 4, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, classes),
        ]  # fmt: skip
    raise InputError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def build_model(arch: str, size: int, classes: int, mean: float, std: float) -> nn.Sequential:
    """A classifier of (B, 1, size, size) images in [0, 1] → (B, classes) logits, normalization inside.

    Parameters
    ----------
    arch : one of ARCHITECTURES (module docstring)
    size : image side, at least 8
    classes : number of logits
    mean, std : pixel statistics of training renders
    """
    if size < 8:
        raise InputError(f"image size must be at least 8, got {size}")
    return nn.Sequential(Normalize(torch.tensor([mean]), torch.tensor([std])), *_body(arch, size, classes))
