"""The ``recon lipschitz`` experiments as library functions: each returns a JSON-ready dict.

abs          approximate |x| (1-D) and the cone ‖x‖ (2-D) with norm-constrained ReLU vs GroupSort networks,
             by regression and by the Kantorovich–Rubinstein dual (δ₀ vs the unit sphere, W1 = 1).
wasserstein  KR estimate of W1 between two point sets vs the exact W1 by assignment on subsets.
train        a certified-robust Lipschitz classifier (multi-class hinge loss).
certify      clean / certified / empirically robust accuracy of such a classifier at several ε.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recon.atomic import atomic_path
from recon.errors import ConfigError, InputError
from recon.lipschitz.certify import certified_radius, logit_margins, multiclass_hinge
from recon.lipschitz.layers import NORMS
from recon.lipschitz.network import (
    LipschitzMLP,
    MLPConfig,
    empirical_lipschitz,
    frozen,
    gradient_norms_through_layers,
    module_lipschitz_bound,
)
from recon.lipschitz.wasserstein import (
    CriticConfig,
    critic_gap,
    exact_w1,
    exact_w1_1d,
    fit_critic,
    gaussian_w1,
)

# ----------------------------------------------------------------------------------------------- abs / cone


def _check_widths(widths: tuple[int, ...]) -> None:
    if not widths or any(w < 2 for w in widths):
        raise ConfigError(f"--widths must be whole numbers >= 2, got {','.join(map(str, widths))}")


def _check_seed(seed: int) -> None:
    from recon.robust.data import check_seed

    check_seed(seed)


@dataclass(frozen=True)
class AbsConfig:
    """Settings of the |x| / cone experiment (``recon lipschitz abs``)."""

    widths: tuple[int, ...] = (64, 64, 64)
    """Hidden widths, comma-separated."""
    steps: int = 600
    """Adam steps per network."""
    batch: int = 256
    """Points per step."""
    lr: float = 5e-3
    """Adam learning rate."""
    seed: int = 0
    """Seed of the initialization and the samples."""

    def validate(self) -> None:
        """Raise ConfigError for settings no network can be trained with."""
        _check_widths(self.widths)
        if min(self.steps, self.batch) < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(
                f"steps, batch and lr must be positive, got {self.steps}, {self.batch}, {self.lr}"
            )
        _check_seed(self.seed)


def _unit_sphere(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    if dim == 1:
        return torch.randint(0, 2, (n, 1), generator=generator).float() * 2 - 1
    g = torch.randn(n, dim, generator=generator)
    return g / g.norm(dim=1, keepdim=True)


def _ball(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    direction = _unit_sphere(n, dim, generator) if dim > 1 else torch.ones(n, 1)
    radius = torch.rand(n, 1, generator=generator) ** (1.0 / dim)
    sign = torch.randint(0, 2, (n, 1), generator=generator).float() * 2 - 1 if dim == 1 else 1.0
    return direction * radius * sign


def _grid(dim: int, n: int = 201) -> torch.Tensor:
    axis = torch.linspace(-1, 1, n)
    if dim == 1:
        return axis[:, None]
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([xx.ravel(), yy.ravel()], dim=1)
    return pts[pts.norm(dim=1) <= 1]


def _train_abs_network(dim: int, activation: str, objective: str, config: AbsConfig) -> LipschitzMLP:
    """Fit f ≈ ‖x‖ on the unit ball ('regression') or maximize E_sphere f − f(0) ('dual')."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = LipschitzMLP(
        MLPConfig(in_dim=dim, widths=config.widths, out_dim=1, layer="bjorck", activation=activation)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    origin = torch.zeros(1, dim)
    for _ in range(config.steps):
        if objective == "regression":
            x = _ball(config.batch, dim, generator)
            loss = ((net(x).squeeze(1) - x.norm(dim=1)) ** 2).mean()
        else:
            loss = -(net(_unit_sphere(config.batch, dim, generator)).mean() - net(origin).mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def _abs_case(dim: int, activation: str, config: AbsConfig) -> dict:
    regression = _train_abs_network(dim, activation, "regression", config)
    dual = _train_abs_network(dim, activation, "dual", config)
    grid = _grid(dim)
    with torch.no_grad():
        error = (regression(grid).squeeze(1) - grid.norm(dim=1)).abs()
        sphere = _unit_sphere(4096, dim, torch.Generator().manual_seed(config.seed + 1))
        raw_w1 = float(dual(sphere).mean() - dual(torch.zeros(1, dim)).mean())
    dual_bound = module_lipschitz_bound(dual)
    away = grid[grid.norm(dim=1) > 0.05]
    return {
        "regression_max_error": float(error.max()),
        "regression_mean_error": float(error.mean()),
        "regression_lipschitz_bound": module_lipschitz_bound(regression),
        "regression_input_grad_norm_mean": gradient_norms_through_layers(regression, away)[0],
        "regression_grad_norms_through_layers": gradient_norms_through_layers(regression, away),
        "w1_estimate": raw_w1 / dual_bound,
        "w1_true": 1.0,
        "dual_lipschitz_bound": dual_bound,
        "dual_grad_norms_through_layers": gradient_norms_through_layers(dual, away),
        "curves": _curves(regression, dual, dim),
    }


def _curves(regression: nn.Module, dual: nn.Module, dim: int) -> dict:
    """Values along the first axis (1-D) or the x-axis slice of the cone (2-D), for the plot."""
    t = torch.linspace(-1.2, 1.2, 241)
    x = torch.zeros(len(t), dim)
    x[:, 0] = t
    with torch.no_grad():
        reg = regression(x).squeeze(1)
        potential = dual(x).squeeze(1) - dual(torch.zeros(1, dim)).squeeze(1)
    return {"t": t.tolist(), "regression": reg.tolist(), "dual": potential.tolist()}


def run_abs(config: AbsConfig | None = None) -> dict:
    """|x| and cone with Björck layers + ReLU vs + GroupSort(2): errors, W1 estimates, gradient norms."""
    config = config or AbsConfig()
    config.validate()
    started = time.perf_counter()
    cases = {}
    for dim, name in ((1, "abs"), (2, "cone")):
        for activation in ("relu", "groupsort"):
            cases[f"{name}/{activation}"] = _abs_case(dim, activation, config)
    return {
        "experiment": "abs",
        "config": asdict(config),
        "definitions": {
            "regression": "least squares fit of f(x) = ||x|| on the unit ball (1-D: |x| on [-1, 1])",
            "regression_max_error": "max |f(x) - ||x||| over a grid of the unit ball",
            "w1_estimate": "(E_sphere f - f(0)) / L for the KR critic: W1(delta_0, uniform unit sphere) = 1",
            "grad_norms_through_layers": "mean ||df/dh_l||_2 over grid points with ||x|| > 0.05, l = input of "
            "each linear layer (first = network input); all 1 is needed to represent ||x||",
        },
        "cases": cases,
        "seconds": round(time.perf_counter() - started, 1),
    }


# ----------------------------------------------------------------------------------------------- Wasserstein


def load_point_set(spec: str, seed: int = 0) -> tuple[np.ndarray, dict]:
    """(n, d) points from a spec, and what is known about it.

    ``gauss:dim=2,shift=1,std=1,n=2000`` samples N(shift·e₁, std² I); ``example:NAME`` is an embedded
    scan (see ``recon fit --example``); anything else is a point-cloud or mesh file read by recon.io.
    """
    if spec.startswith("gauss:") or spec == "gauss":
        params = {"dim": 2, "shift": 0.0, "std": 1.0, "n": 2000}
        body = spec.partition(":")[2]
        for item in filter(None, body.split(",")):
            key, _, value = item.partition("=")
            if key not in params or not value:
                raise InputError(f"bad gauss spec {spec!r}: use gauss:dim=D,shift=S,std=T,n=N")
            try:
                params[key] = type(params[key])(value)
            except ValueError as exc:
                raise InputError(f"bad value {value!r} for {key} in {spec!r}") from exc
        if params["dim"] < 1 or params["n"] < 2 or params["std"] <= 0:
            raise InputError(f"bad gauss spec {spec!r}: dim >= 1, n >= 2, std > 0")
        rng = np.random.default_rng(seed)
        points = rng.normal(size=(params["n"], params["dim"])) * params["std"]
        points[:, 0] += params["shift"]
        return points, {"kind": "gauss", **params}
    from recon.io import load_scan

    if spec.startswith("example:"):
        from recon.examples import example_path

        path: str | os.PathLike = example_path(spec.partition(":")[2])
    else:
        path = spec
    return load_scan(path).points, {"kind": "file", "path": str(path)}


def known_w1(info_a: dict, info_b: dict, shift_b: np.ndarray | None) -> float | None:
    """The exact W1 when it is known: Gaussians in closed form, or a point set vs a translated copy of it."""
    if (
        info_a["kind"] == "gauss"
        and info_b["kind"] == "gauss"
        and info_a["dim"] == info_b["dim"]
        and shift_b is None
    ):
        try:
            return gaussian_w1(info_a["dim"], info_b["shift"] - info_a["shift"], info_a["std"], info_b["std"])
        except ValueError:
            return None
    if info_a == info_b and shift_b is not None and info_a["kind"] == "file":
        return float(np.linalg.norm(shift_b))
    return None


@dataclass(frozen=True)
class WassersteinConfig:
    """Settings of ``recon lipschitz wasserstein``: the point sets, the exact subsets and the critic."""

    shift_b: tuple[float, ...] | None = None
    """Translate B by x,y,z (W1 to an untranslated copy is its length)."""
    max_points: int = 5000
    """Random subset of each set used to train the critic."""
    subset: int = 1000
    """Points per subset for the exact assignment."""
    n_subsets: int = 3
    """Random subsets whose exact W1 the estimate is compared with."""
    steps: int = 1500
    """Critic Adam steps."""
    seed: int = 0
    """Seed of the subsets and of the critic."""

    def validate(self) -> None:
        """Raise ConfigError for settings no estimate can use."""
        if min(self.max_points, self.subset) < 2 or min(self.n_subsets, self.steps) < 1:
            raise ConfigError(
                "--max-points and --subset must be at least 2, --n-subsets and --steps at least 1"
            )
        if self.shift_b is not None and not all(math.isfinite(v) for v in self.shift_b):
            raise ConfigError(f"--shift-b must be finite numbers, got {self.shift_b}")
        _check_seed(self.seed)

    def critic(self) -> CriticConfig:
        """The critic's training: these steps and seed, CriticConfig's defaults otherwise."""
        return CriticConfig(steps=self.steps, seed=self.seed)


def run_wasserstein(
    a: np.ndarray, b: np.ndarray, config: WassersteinConfig = WassersteinConfig(), known: float | None = None
) -> dict:
    """KR estimate on the full (n, d) and (m, d) sets ``a`` and ``b``, and on random equal-size subsets of
    ``config.subset`` points (exact assignment: O(subset³) time) next to their exact W1; ``known`` is the
    exact W1 of the full sets or of the distributions, when known."""
    config.validate()
    critic = config.critic()
    started = time.perf_counter()
    fn, full = fit_critic(a, b, critic)
    rng = np.random.default_rng(config.seed)
    m = min(config.subset, len(a), len(b))
    rows = []
    for _ in range(config.n_subsets):
        sa = a[rng.choice(len(a), m, replace=False)]
        sb = b[rng.choice(len(b), m, replace=False)]
        exact = exact_w1_1d(sa, sb) if a.shape[1] == 1 else exact_w1(sa, sb)
        kr = critic_gap(fn, sa, sb, full.lipschitz_bound)
        rows.append({"exact": exact, "kr": kr, "gap": exact - kr})
    exact_full_1d = exact_w1_1d(a, b) if a.shape[1] == 1 and len(a) == len(b) else None
    return {
        "experiment": "wasserstein",
        "definitions": {
            "kr_estimate": "(mean f(A) - mean f(B)) / L with f the trained GroupSort/Bjorck critic and L its "
            "certified l2 Lipschitz bound: a lower bound on W1 of the evaluated sets",
            "subset_exact": "exact W1 of two uniform equal-size random subsets by optimal assignment "
            "(scipy linear_sum_assignment; sorting in 1-D)",
            "gap": "subset exact minus KR estimate on the same subsets (never negative)",
        },
        "n_a": len(a),
        "n_b": len(b),
        "dim": int(a.shape[1]),
        "critic": asdict(critic),
        "kr_estimate": full.estimate,
        "lipschitz_bound": full.lipschitz_bound,
        "known_w1": known,
        "exact_full_1d": exact_full_1d,
        "subset_size": m,
        "subsets": rows,
        "subset_exact_mean": float(np.mean([r["exact"] for r in rows])),
        "subset_kr_mean": float(np.mean([r["kr"] for r in rows])),
        "subset_gap_mean": float(np.mean([r["gap"] for r in rows])),
        "history": full.history,
        "seconds": round(time.perf_counter() - started, 1),
    }


# ----------------------------------------------------------------------------------------------- classifiers


@dataclass
class ClassifierConfig:
    """A certified-robust Lipschitz classifier and its training."""

    dataset: str = "digits"
    """A dataset name of recon.robust.data.load_dataset."""
    widths: tuple[int, ...] = (256, 256)
    """Hidden widths, comma-separated."""
    layer: str = "bjorck"
    """'bjorck' (certify in ℓ2), 'linf' (certify in ℓ∞) or 'spectral' (baseline)."""
    activation: str = "groupsort"
    """'groupsort' (gradient-norm preserving, sorts groups of group_size) or 'relu'."""
    group_size: int = 2
    """GroupSort group size; every hidden width must be a multiple of it."""
    bjorck_iters: int = 15
    """Björck orthonormalization iterations per forward."""
    margin: float = 1.0
    """Hinge margin (certified ℓ2 radius of a margin-m point: m/√2 for L = 1)."""
    epochs: int = 30
    """Passes over the training images."""
    batch: int = 128
    """Images per step."""
    lr: float = 2e-3
    """Adam learning rate."""
    limit: int | None = None
    """Use at most this many training images."""
    seed: int = 0
    """Seed of the subset, the initialization and the batches."""

    def __post_init__(self) -> None:
        _check_widths(self.widths)
        if min(self.group_size, self.bjorck_iters, self.epochs, self.batch) < 1:
            raise ConfigError("group size, Björck iterations, epochs and batch must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be positive, got {self.limit}")
        _check_seed(self.seed)
        if self.activation == "groupsort" and any(w % self.group_size for w in self.widths):
            raise ConfigError(
                f"every hidden width must split into GroupSort groups of {self.group_size}, got widths "
                f"{', '.join(map(str, self.widths))}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.margin) and self.margin > 0):
            raise ConfigError(f"lr and margin must be finite and > 0, got {self.lr} and {self.margin}")


def load_images(
    dataset: str, split: str, limit: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C, H, W) float images in [0, 1] and (n,) labels from the robustness module's loader."""
    from recon.robust.data import load_dataset

    return load_dataset(dataset, split=split, limit=limit, seed=seed)


def make_classifier(config: ClassifierConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """Flatten followed by a Lipschitz MLP: (n, C, H, W) → (n, n_classes) logits."""
    mlp = LipschitzMLP(
        MLPConfig(
            in_dim=int(np.prod(input_shape)),
            widths=config.widths,
            out_dim=n_classes,
            layer=config.layer,
            activation=config.activation,
            group_size=config.group_size,
            bjorck_iters=config.bjorck_iters,
        )
    )
    return nn.Sequential(nn.Flatten(), mlp)


def train_classifier(config: ClassifierConfig) -> tuple[nn.Sequential, dict]:
    """Train with the multi-class hinge loss; returns the model (eval mode) and a training record."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x, y = load_images(config.dataset, "train", config.limit, config.seed)
    n_classes = int(y.max()) + 1
    model = make_classifier(config, tuple(x.shape[1:]), n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(x) / config.batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, config.epochs * steps_per_epoch, eta_min=0.02 * config.lr
    )
    history = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total, correct = 0.0, 0
        for i in range(0, len(x), config.batch):
            idx = order[i : i + config.batch]
            logits = model(x[idx])
            loss = multiclass_hinge(logits, y[idx], config.margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        history.append({"epoch": epoch + 1, "loss": total / len(x), "train_accuracy": correct / len(x)})
    model.eval()
    record = {
        "n_train": len(x),
        "n_classes": n_classes,
        "input_shape": list(x.shape[1:]),
        "history": history,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return model, record


def certified_radii(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str
) -> tuple[torch.Tensor, dict]:
    """Certified radii (n,) in ``norm`` and the bounds used.

    ℓ2: margin/(√2·L₂). ℓ∞: the larger of margin/(2·L∞) (ℓ∞ → ℓ∞ bound) and margin/(√2·L₂·√d)
    (since ‖δ‖₂ ≤ √d‖δ‖∞): both are valid, so their maximum is.
    """
    net = frozen(model)
    with torch.no_grad():
        logits = net(x)
    l2 = module_lipschitz_bound(net, "l2")
    bounds = {"l2": l2}
    radius = certified_radius(logits, y, l2, "l2")
    if norm == "linf":
        linf = module_lipschitz_bound(net, "linf")
        bounds["linf"] = linf
        dim = x[0].numel()
        radius = torch.maximum(certified_radius(logits, y, linf, "linf"), radius / math.sqrt(dim))
    return radius, bounds


def _robust_under_attacks(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, config: CertifyConfig
) -> torch.Tensor:
    """(n,) bool: still correct under PGD-margin, APGD (CE, DLR), APGD-T and targeted margin PGD (each
    towards ``config.attack_targets`` runner-up classes) and Square, per-example worst case; every attack
    stays in the ε-ball of ``config.norm`` and in the [0, 1] pixel box."""
    from recon.robust import attacks

    generator = torch.Generator().manual_seed(config.seed)
    robust = model(x).argmax(1) == y
    common = {"norm": config.norm, "steps": config.attack_steps, "generator": generator}
    targeted = {**common, "n_targets": config.attack_targets}
    runs = [
        attacks.pgd(model, x, y, eps, loss="margin", **common),
        attacks.apgd(model, x, y, eps, loss="xent", **common),
        attacks.apgd(model, x, y, eps, loss="dlr", **common),
        attacks.apgd_targeted(model, x, y, eps, **targeted),
        attacks.pgd_targeted(model, x, y, eps, **targeted),
        attacks.square(
            model, x, y, eps, norm=config.norm, queries=config.attack_queries, generator=generator
        ),
    ]
    with torch.no_grad():
        for adversarial in runs:
            robust &= model(adversarial).argmax(1) == y
    return robust


@dataclass(frozen=True)
class CertifyConfig:
    """Settings of ``recon lipschitz certify``."""

    eps: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    """Radii, comma-separated (pixel units, images in [0, 1])."""
    norm: str = "l2"
    """l2 | linf: the norm of the radii and of the attacks."""
    limit: int | None = None
    """At most this many test images."""
    attack_steps: int = 50
    """Iterations of each attack (PGD-margin, APGD-CE, APGD-DLR; APGD-T and targeted PGD per target)."""
    attack_targets: int = 9
    """Runner-up classes APGD-T and targeted margin PGD aim at in turn (AutoAttack: 9)."""
    attack_queries: int = 5_000
    """Model queries per image of the gradient-free Square attack (AutoAttack: 5,000)."""
    lipschitz_check_points: int = 200
    """Images the empirical ℓ2 Lipschitz constant is measured on."""
    seed: int = 0
    """Seed of the attacks and of the Lipschitz check."""

    def validate(self) -> None:
        """Raise ConfigError for settings no certification can use."""
        if not self.eps or not all(math.isfinite(e) and e >= 0 for e in self.eps):
            raise ConfigError(f"--eps values must be finite and >= 0, got {','.join(map(str, self.eps))}")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; use l2 or linf")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be positive, got {self.limit}")
        if min(self.attack_steps, self.attack_targets, self.attack_queries, self.lipschitz_check_points) < 1:
            raise ConfigError(
                "--attack-steps, --attack-targets, --attack-queries and the Lipschitz check points must be"
                " positive"
            )
        _check_seed(self.seed)


def certify_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: CertifyConfig = CertifyConfig()
) -> dict:
    """Clean, certified and empirically robust accuracy at each ε, plus a check of the Lipschitz bound.

    Certified at ε means radius > ε. Empirical robustness is the per-example worst case of PGD on the
    margin, APGD on cross-entropy and DLR, APGD-T, targeted margin PGD and Square (recon.robust.attacks). A
    certified example that an attack breaks would disprove the certificate: ``violations`` counts them
    (must be 0).
    """
    config.validate()
    net = frozen(model)
    started = time.perf_counter()
    radius, bounds = certified_radii(net, x, y, config.norm)
    with torch.no_grad():
        logits = net(x)
    clean = logits.argmax(1) == y
    check = empirical_lipschitz(net, x[: config.lipschitz_check_points], "l2", steps=30, seed=config.seed)
    rows = []
    for eps in config.eps:
        certified = radius > eps
        robust = _robust_under_attacks(net, x, y, eps, config)
        rows.append(
            {
                "eps": eps,
                "clean": float(clean.float().mean()),
                "certified": float(certified.float().mean()),
                "empirical": float(robust.float().mean()),
                "violations": int((certified & ~robust).sum()),
            }
        )
    return {
        "norm": config.norm,
        "n": len(y),
        "bounds": bounds,
        "empirical_lipschitz_l2": asdict(check) | {"value": check.value},
        "median_margin": float(logit_margins(logits, y).median()),
        "median_certified_radius": float(radius.median()),
        "results": rows,
        "definitions": {
            "certified": "fraction with radius > eps; l2 radius = margin/(sqrt(2) L2), linf radius = "
            "max(margin/(2 Linf), margin/(sqrt(2) L2 sqrt(d)))",
            "empirical": "fraction still correct under PGD-margin, APGD-CE, APGD-DLR, APGD-T and targeted "
            "margin PGD (per-example worst case; every attack inside the eps-ball and the [0, 1] box)",
            "violations": "certified examples an attack broke (a wrong certificate; must be 0)",
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


@dataclass
class SavedClassifier:
    """What ``train`` writes and ``certify`` reads."""

    config: ClassifierConfig
    model: nn.Sequential
    record: dict = field(default_factory=dict)


def save_classifier(run_dir: Path, model: nn.Module, config: ClassifierConfig, record: dict) -> None:
    """model.pt (state dict + config + shapes) written atomically."""
    payload = {
        "config": asdict(config),
        "n_classes": record["n_classes"],
        "input_shape": record["input_shape"],
        "state_dict": model.state_dict(),
    }
    with atomic_path(run_dir / "model.pt") as tmp:
        torch.save(payload, tmp)


def load_classifier(run_dir: Path) -> SavedClassifier:
    """The classifier saved by :func:`save_classifier` in ``run_dir``."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise InputError(f"{run_dir} has no model.pt; run `recon lipschitz train` first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict):
            raise TypeError(f"{type(payload).__name__}, not a dict")
        values = dict(payload["config"])
        values["widths"] = tuple(values["widths"])
        config = ClassifierConfig(**values)
        model = make_classifier(config, tuple(payload["input_shape"]), int(payload["n_classes"]))
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:  # noqa: BLE001 - empty, truncated or foreign files fail in many ways (EOFError...)
        raise InputError(
            f"{path} is not a Lipschitz classifier written by `recon lipschitz train` ({type(exc).__name__})"
        ) from exc
    return SavedClassifier(config=config, model=model.eval())
