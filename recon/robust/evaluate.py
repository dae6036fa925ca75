"""Robust accuracy under a set of attacks, per example worst case (the AutoAttack reporting convention)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from recon.device import DEVICE_NAMES
from recon.errors import ConfigError
from recon.robust import attacks as atk
from recon.robust.data import check_seed

ATTACK_DESCRIPTIONS = {
    "fgsm": "FGSM (L∞) / FGM (L2): one ε step of the cross-entropy gradient",
    "pgd": "PGD on the cross-entropy, random start, best iterate kept",
    "pgd-margin": "PGD on the margin f_r − f_y, random start, best iterate kept",
    "apgd": "APGD-CE and APGD-DLR (Croce & Hein 2020), step-size adaptation and momentum",
    "apgd-t": "APGD-T (AutoAttack): APGD on the targeted DLR loss towards each top runner-up class in turn",
    "pgd-t": "targeted margin PGD: f_t − f_y maximized from x and random starts for each top runner-up class",
    "square": "Square (Andriushchenko et al. 2020): gradient-free random search over square patches",
    "deepfool": "DeepFool minimal perturbation projected onto the ε-ball",
    "universal": "one universal perturbation (DeepFool increments) for all evaluated images",
}


@dataclass(frozen=True)
class AttackConfig:
    """Budget and settings of an evaluation (``recon robust attack``); the paper's MNIST evaluation runs 40
    PGD steps of 0.01 at ε = 0.3."""

    eps: float
    """Budget in pixel units ([0, 1] images)."""
    norm: str = "linf"
    """linf | l2: the norm of the threat model."""
    attacks: tuple[str, ...] = atk.ATTACKS
    """fgsm | pgd | pgd-margin | apgd | apgd-t | pgd-t | square | deepfool | universal | all (comma-separated
    list accepted)."""
    steps: int = 40
    """PGD iterations."""
    step_size: float | None = None
    """Step of pgd, pgd-margin and pgd-t (default 2.5·ε/steps of each)."""
    restarts: int = 1
    """Random restarts of PGD."""
    apgd_steps: int = 100
    """Iterations of each APGD run: APGD-CE, APGD-DLR, and APGD-T per target (AutoAttack: 100)."""
    targets: int = 9
    """Runner-up classes the targeted attacks aim at in turn, highest logit first (AutoAttack: 9)."""
    targeted_steps: int = 100
    """Iterations of targeted margin PGD (pgd-t) per target and restart."""
    targeted_restarts: int = 2
    """Starts of targeted margin PGD per target: x itself, then random points of the ball."""
    square_queries: int = 5_000
    """Model queries of the Square attack per image (AutoAttack: 5,000)."""
    square_p_init: float = 0.8
    """Share of the image Square's first updates change, halved on its schedule (AutoAttack: 0.8)."""
    universal_images: int = 100
    """Images the universal perturbation is fitted on (it is then applied to all)."""
    seed: int = 0
    """Seed of every random start."""
    batch_size: int = 256
    """Images attacked at once."""
    n_images: int = 1000
    """Test images attacked."""
    device: str = "cpu"
    """auto (CUDA when present) | cpu | cuda"""

    def validate(self) -> None:
        """Raise ConfigError for settings no evaluation can use."""
        unknown = [a for a in self.attacks if a not in atk.ATTACKS]
        if unknown:
            raise ConfigError(f"unknown attack {unknown[0]!r}; choose from {', '.join(atk.ATTACKS)} or all")
        if not self.attacks:
            raise ConfigError("no attack given")
        if self.norm not in atk.NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; use linf or l2")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ConfigError(f"--eps must be positive, got {self.eps}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ConfigError(f"--step-size must be positive, got {self.step_size}")
        counts = (self.steps, self.restarts, self.apgd_steps, self.targets, self.targeted_steps,
                  self.targeted_restarts, self.square_queries, self.universal_images, self.batch_size,
                  self.n_images)  # fmt: skip
        if min(counts) < 1:
            raise ConfigError(
                "steps, restarts, APGD steps, targets, queries, image counts and the batch size must be positive"
            )
        if not (math.isfinite(self.square_p_init) and 0 < self.square_p_init <= 1):
            raise ConfigError(f"--square-p-init must be in (0, 1], got {self.square_p_init}")
        check_seed(self.seed)
        if self.device not in DEVICE_NAMES:
            raise ConfigError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICE_NAMES)}")


@dataclass
class AttackReport:
    """Accuracies (fractions in [0, 1]) of one evaluation.

    clean : accuracy on the unperturbed images
    per_attack : attack name → robust accuracy under that attack alone
    worst_case : accuracy when each example counts as robust only if it survives every attack
    max_perturbation : attack name → the largest ‖x_adv − x‖ measured in the threat model's norm
    seconds : attack name → wall time
    survived : (n,) bool, the images correct under every attack (the per-example worst case; not written
        by ``to_dict``)
    """

    clean: float
    per_attack: dict[str, float]
    worst_case: float
    n: int
    max_perturbation: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    survived: torch.Tensor | None = None

    def to_dict(self) -> dict:
        return {name: value for name, value in asdict(self).items() if name != "survived"}


def evaluate_robustness(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig
) -> AttackReport:
    """Attack (n, C, H, W) images with every configured attack; per-example worst case over them.

    The universal perturbation is fitted on the first ``universal_images`` of them (its per-image DeepFool
    loop is sequential) and applied to all n.
    """
    config.validate()
    model.eval()
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        clean = _predict(model, images, config.batch_size) == labels
    survived = clean.clone()
    per_attack, max_perturbation, seconds = {}, {}, {}
    for name in config.attacks:
        started = time.perf_counter()
        robust, largest = _robust_under(model, images, labels, name, config, generator)
        seconds[name] = round(time.perf_counter() - started, 2)
        robust &= clean
        per_attack[name] = robust.float().mean().item()
        max_perturbation[name] = largest
        survived &= robust
    return AttackReport(
        clean=clean.float().mean().item(),
        per_attack=per_attack,
        worst_case=survived.float().mean().item(),
        n=len(labels),
        max_perturbation=max_perturbation,
        seconds=seconds,
        survived=survived,
    )


def _predict(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat(
        [model(images[i : i + batch_size]).argmax(dim=1) for i in range(0, len(images), batch_size)]
    )


def _robust_under(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    name: str,
    config: AttackConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """(n,) bool: still correct on the adversarial images of one attack; and the largest perturbation."""
    if name == "universal":
        fit = images[: config.universal_images]
        v = atk.universal_perturbation(model, fit, config.eps, norm=config.norm, generator=generator)
        adversarial = [(images + v).clamp(0.0, 1.0)]
    else:
        adversarial = [
            _attack_batch(
                model,
                images[i : i + config.batch_size],
                labels[i : i + config.batch_size],
                name,
                config,
                generator,
            )
            for i in range(0, len(images), config.batch_size)
        ]
    adversarial = torch.cat(adversarial)
    with torch.no_grad():
        robust = _predict(model, adversarial, config.batch_size) == labels
    delta = (adversarial - images).reshape(len(images), -1)
    largest = (delta.abs().amax(dim=1) if config.norm == "linf" else delta.norm(dim=1)).max().item()
    return robust, largest


def _attack_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    name: str,
    config: AttackConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Adversarial images of one batch; APGD keeps the worse of its CE and DLR runs per example."""
    eps, norm = config.eps, config.norm
    if name == "fgsm":
        return atk.fgsm(model, x, y, eps, norm)
    if name in ("pgd", "pgd-margin"):
        loss = "xent" if name == "pgd" else "margin"
        return atk.pgd(
            model,
            x,
            y,
            eps,
            norm=norm,
            loss=loss,
            steps=config.steps,
            step_size=config.step_size,
            restarts=config.restarts,
            generator=generator,
        )
    if name == "apgd-t":
        return atk.apgd_targeted(
            model,
            x,
            y,
            eps,
            norm=norm,
            n_targets=config.targets,
            steps=config.apgd_steps,
            generator=generator,
        )
    if name == "square":
        return atk.square(
            model,
            x,
            y,
            eps,
            norm=norm,
            queries=config.square_queries,
            p_init=config.square_p_init,
            generator=generator,
        )
    if name == "pgd-t":
        return atk.pgd_targeted(
            model,
            x,
            y,
            eps,
            norm=norm,
            n_targets=config.targets,
            steps=config.targeted_steps,
            step_size=config.step_size,
            restarts=config.targeted_restarts,
            generator=generator,
        )
    if name == "apgd":
        runs = [
            atk.apgd(model, x, y, eps, norm=norm, loss=loss, steps=config.apgd_steps, generator=generator)
            for loss in ("xent", "dlr")
        ]
        with torch.no_grad():
            margins = [atk.margin(model(r), y) for r in runs]
        return torch.where(atk._per_row(margins[1] > margins[0], x), runs[1], runs[0])
    return atk.deepfool_attack(model, x, eps, norm=norm)
