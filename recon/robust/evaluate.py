"""Robust accuracy under a set of attacks, per example worst case (the AutoAttack reporting convention)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from recon.robust import attacks as atk

ATTACK_DESCRIPTIONS = {
    "fgsm": "FGSM (L∞) / FGM (L2): one ε step of the cross-entropy gradient",
    "pgd": "PGD on the cross-entropy, random start, best iterate kept",
    "pgd-margin": "PGD on the margin f_r − f_y, random start, best iterate kept",
    "apgd": "APGD-CE and APGD-DLR (Croce & Hein 2020), step-size adaptation and momentum",
    "deepfool": "DeepFool minimal perturbation projected onto the ε-ball",
    "universal": "one universal perturbation (DeepFool increments) for all evaluated images",
}


@dataclass(frozen=True)
class AttackConfig:
    """Budget and settings of an evaluation.

    eps : radius of the threat model in pixel units ([0, 1] images)
    norm : 'linf' or 'l2'
    attacks : names among fgsm, pgd, pgd-margin, apgd, deepfool, universal
    steps : PGD iterations (the paper's MNIST evaluation uses 40 with step 0.01 at ε = 0.3)
    step_size : PGD step; None means 2.5·ε/steps
    restarts : random restarts of PGD
    apgd_steps : iterations of each APGD run
    universal_images : images the universal perturbation is fitted on (it is then applied to all)
    seed : seed of every random start
    batch_size : images attacked at once
    """

    eps: float
    norm: str = "linf"
    attacks: tuple[str, ...] = atk.ATTACKS
    steps: int = 40
    step_size: float | None = None
    restarts: int = 1
    apgd_steps: int = 100
    universal_images: int = 100
    seed: int = 0
    batch_size: int = 256


@dataclass
class AttackReport:
    """Accuracies (fractions in [0, 1]) of one evaluation.

    clean : accuracy on the unperturbed images
    per_attack : attack name → robust accuracy under that attack alone
    worst_case : accuracy when each example counts as robust only if it survives every attack
    max_perturbation : attack name → the largest ‖x_adv − x‖ measured in the threat model's norm
    seconds : attack name → wall time
    """

    clean: float
    per_attack: dict[str, float]
    worst_case: float
    n: int
    max_perturbation: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_robustness(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: AttackConfig
) -> AttackReport:
    """Attack (n, C, H, W) images with every configured attack; per-example worst case over them.

    The universal perturbation is fitted on the first ``universal_images`` of them (its per-image DeepFool
    loop is sequential) and applied to all n.
    """
    unknown = set(config.attacks) - set(atk.ATTACKS)
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; choose from {', '.join(atk.ATTACKS)}")
    if config.norm not in atk.NORMS:
        raise ValueError(f"unknown norm {config.norm!r}; use linf or l2")
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
    if name == "apgd":
        runs = [
            atk.apgd(model, x, y, eps, norm=norm, loss=loss, steps=config.apgd_steps, generator=generator)
            for loss in ("xent", "dlr")
        ]
        with torch.no_grad():
            margins = [atk.margin(model(r), y) for r in runs]
        return torch.where((margins[1] > margins[0]).reshape(-1, 1, 1, 1), runs[1], runs[0])
    return atk.deepfool_attack(model, x, eps, norm=norm)
