"""Shape classifiers trained on renders from random viewpoints, and the score f(θ) they define.

A run folder (:class:`recon.run.RunFolder`) holds config.json (training config, render config, model spec,
class names), meta.json, log, metrics.jsonl (one record per epoch), checkpoints/latest.pt (loaded with
``weights_only=True``) and DONE. Training renders every batch afresh: random instances of the training base
meshes (augmented), random viewpoints from the run's prior (:mod:`.views`: canonical photographer's views, or
uniform over the semantic domain), so no two epochs see the same images.

Accuracy is logged on two fixed validation sets, with viewpoints from the same prior: new augmentations of the
*training* base meshes (new instances and viewpoints) and the unaugmented *held-out* base meshes (shapes never
seen in training).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from recon.errors import InputError, RunDirError
from recon.robust.semantic.networks import ARCHITECTURES, RENAMED, build_model
from recon.robust.semantic.render import IMAGE_MODES, RenderConfig, render_views
from recon.robust.semantic.shapes import (
    AugmentConfig,
    ShapeInstance,
    class_names,
    make_instance,
    make_instances,
    split_bases,
)
from recon.robust.semantic.views import PRIORS, prior_record, sample_viewpoints
from recon.run import RunFolder, environment_metadata


@dataclass(frozen=True)
class SemanticTrainConfig:
    """Everything a shape-classifier training depends on (written to config.json)."""

    arch: str = "cnn"
    """Network family (recon.robust.semantic.networks)."""
    prior: str = "canonical"
    """Viewpoints of training and validation renders: canonical (side and three-quarter views, elevation
    0–30°, recon.robust.semantic.views) or uniform over the domain."""
    size: int = 64
    """Render side (pixels)."""
    mode: str = "shaded"
    """shaded | silhouette | depth: what a pixel of a render shows."""
    points: int = 4000
    """Samples per shape."""
    per_class: int = 40
    """Augmented instances."""
    epochs: int = 8
    """Training epochs, each on fresh renders."""
    images_per_epoch: int = 2400
    """Renders per epoch (random instances and viewpoints)."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay)."""
    val_views: int = 8
    """Random viewpoints per validation instance."""
    val_per_class: int = 8
    """Validation instances per class (new augmentations of the training base meshes)."""
    seed: int = 0
    """Seed of the instances, the viewpoints and the initialization."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Augmentation of the training instances."""

    def validate(self) -> None:
        """Raise InputError for settings no training can use."""
        if self.arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.prior not in PRIORS:
            raise InputError(f"unknown viewpoint prior {self.prior!r}; choose one of {', '.join(PRIORS)}")
        if self.mode not in IMAGE_MODES:
            raise InputError(f"unknown image mode {self.mode!r}; choose one of {', '.join(IMAGE_MODES)}")
        counts = (self.per_class, self.epochs, self.images_per_epoch, self.batch_size, self.val_views)
        if min(counts) < 1 or self.val_per_class < 1:
            raise InputError(
                "per-class, epochs, images per epoch, batch size and validation sizes must be positive"
            )
        if self.size < 8:
            raise InputError(f"--size must be at least 8, got {self.size}")
        if self.points < 100:
            raise InputError(f"--points must be at least 100, got {self.points}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr must be positive, got {self.lr}")

    def render_config(self) -> RenderConfig:
        return RenderConfig(size=self.size, mode=self.mode, splat_px=max(1.0, self.size / 64.0))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SemanticTrainConfig:
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in d.items() if k in names}
        kept.setdefault("prior", "uniform")  # runs written before the prior existed drew uniform views
        if "arch" in kept:
            kept["arch"] = RENAMED.get(kept["arch"], kept["arch"])
        if isinstance(kept.get("augment"), dict):
            aug = kept["augment"]
            kept["augment"] = AugmentConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
            )
        return cls(**kept)


def render_instances(
    instances: list[ShapeInstance], index: torch.Tensor, angles: torch.Tensor, config: RenderConfig
) -> torch.Tensor:
    """(B, 1, S, S) renders of ``instances[index[k]]`` seen from ``angles[k]``."""
    points = torch.from_numpy(np.stack([instances[i].points for i in index.tolist()]))
    normals = torch.from_numpy(np.stack([instances[i].normals for i in index.tolist()]))
    return render_views(points, normals, angles, config)


@dataclass
class EpochLog:
    epoch: int
    loss: float
    train_acc: float
    val_acc: float
    """Accuracy on new augmentations of the training base meshes, random viewpoints."""
    heldout_acc: float | None
    """Accuracy on the held-out base meshes (never trained on), random viewpoints."""
    seconds: float


class _ValidationSet:
    """Fixed renders of a list of instances from seeded random viewpoints of a prior."""

    def __init__(
        self, instances: list[ShapeInstance], views: int, render: RenderConfig, seed: int, prior: str
    ):
        generator = torch.Generator().manual_seed(seed)
        index = torch.arange(len(instances)).repeat_interleave(views)
        angles = sample_viewpoints(len(index), generator, prior)
        with torch.no_grad():
            self.images = torch.cat(
                [
                    render_instances(instances, i, a, render)
                    for i, a in zip(index.split(256), angles.split(256), strict=True)
                ]
            )
        self.labels = torch.tensor([instances[i].label for i in index.tolist()])

    def accuracy(self, model: nn.Module) -> float | None:
        if len(self.labels) == 0:
            return None
        with torch.no_grad():
            logits = torch.cat([model(x) for x in self.images.split(256)])
        return float((logits.argmax(1) == self.labels).float().mean())


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, int]:
    """One cross-entropy step on (B, 1, S, S) images and (B,) labels → the batch's loss and number of correct
    predictions, both before the step."""
    logits = model(images)
    loss = functional.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach()), int((logits.argmax(1) == labels).sum())


def train_classifier(
    config: SemanticTrainConfig,
    run_dir: str | Path,
    *,
    force: bool = False,
    progress: Callable[[EpochLog], None] | None = None,
) -> Path:
    """Train a shape classifier into a new run folder (refusing a non-empty one unless ``force``)."""
    config.validate()
    run = RunFolder.create(run_dir, force=force)
    torch.manual_seed(config.seed)
    classes = class_names()
    train_bases, heldout_bases = split_bases(classes)
    render = config.render_config()
    instances = make_instances(train_bases, config.per_class, config.points, config.seed, config.augment)
    val = make_instances(train_bases, config.val_per_class, config.points, config.seed + 1, config.augment)
    heldout = [
        make_instance(name, label, 0, config.points, config.seed, None) for name, label in heldout_bases
    ]
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        probe = render_instances(
            instances,
            torch.randint(len(instances), (256,), generator=generator),
            sample_viewpoints(256, generator, config.prior),
            render,
        )
    mean, std = float(probe.mean()), max(float(probe.std()), 1e-3)
    model = build_model(config.arch, config.size, len(classes), mean, std)
    spec = {"arch": config.arch, "size": config.size, "classes": classes, "mean": mean, "std": std}

    run.write_json(
        "config.json",
        {"config": config.to_dict(), "render": render.to_dict(), "model": spec, "train_bases": train_bases,
         "heldout_bases": heldout_bases, "view_prior": prior_record(config.prior)},
    )  # fmt: skip
    run.write_json("meta.json", environment_metadata("cpu", config.seed))
    run.log(
        f"semantic train {config.arch}: {len(instances)} instances of {len(classes)} classes, "
        f"{config.prior} viewpoints"
    )
    val_set = _ValidationSet(val, config.val_views, render, config.seed + 2, config.prior)
    heldout_set = _ValidationSet(heldout, config.val_views, render, config.seed + 3, config.prior)

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps_per_epoch = max(1, config.images_per_epoch // config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    labels = torch.tensor([inst.label for inst in instances])
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        tic = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        model.train()
        for _ in range(steps_per_epoch):
            index = torch.randint(len(instances), (config.batch_size,), generator=generator)
            angles = sample_viewpoints(len(index), generator, config.prior)
            with torch.no_grad():
                images = render_instances(instances, index, angles, render)
            loss, hits = train_step(model, optimizer, images, labels[index])
            scheduler.step()
            total_loss += loss * len(index)
            correct += hits
            seen += len(index)
        model.eval()
        log = EpochLog(
            epoch=epoch,
            loss=total_loss / seen,
            train_acc=correct / seen,
            val_acc=val_set.accuracy(model),
            heldout_acc=heldout_set.accuracy(model),
            seconds=time.perf_counter() - tic,
        )
        run.save_checkpoint(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
        )
        run.append_metrics(asdict(log))
        run.log(f"epoch {epoch} loss {log.loss:.4f} train {log.train_acc:.3f} val {log.val_acc:.3f}")
        if progress is not None:
            progress(log)
    run.mark_done(
        {"epochs": config.epochs, "seconds": round(time.perf_counter() - started, 2), "val_acc": log.val_acc,
         "heldout_acc": log.heldout_acc}
    )  # fmt: skip
    return run.path


@dataclass
class LoadedClassifier:
    """A trained classifier (eval mode) with what is needed to render for it."""

    model: nn.Module
    classes: list[str]
    render: RenderConfig
    config: SemanticTrainConfig
    run_dir: Path

    @property
    def arch(self) -> str:
        return self.config.arch


def load_classifier(run_dir: str | Path) -> LoadedClassifier:
    """The classifier of a ``recon robust semantic train`` run folder, on CPU, in eval mode."""
    run = RunFolder.open(run_dir)
    spec = run.read_json("config.json")
    if "model" not in spec or "render" not in spec or "classes" not in spec.get("model", {}):
        raise RunDirError(f"{run.path} is not a semantic classifier run (config.json has no model spec)")
    if not run.is_done():
        raise RunDirError(f"{run.path} has not finished training (no DONE)")
    model_spec = spec["model"]
    model = build_model(
        RENAMED.get(model_spec["arch"], model_spec["arch"]),
        model_spec["size"],
        len(model_spec["classes"]),
        model_spec["mean"],
        model_spec["std"],
    )
    try:
        model.load_state_dict(run.load_checkpoint(map_location="cpu")["model"])
    except (KeyError, RuntimeError) as exc:
        raise RunDirError(f"{run.checkpoint_path} does not match the model in config.json") from exc
    return LoadedClassifier(
        model=model.eval(),
        classes=list(model_spec["classes"]),
        render=RenderConfig(**spec["render"]),
        config=SemanticTrainConfig.from_dict(spec["config"]),
        run_dir=run.path,
    )


class ViewScore:
    """f(θ): the softmax probability of a shape's true class, rendered from viewpoint θ = (az, el).

    The gradient is that of f itself, through the classifier and the renderer (the reference code
    differentiates a cross-entropy of the probabilities instead; f is what the region finders integrate).

    Parameters
    ----------
    classifier : LoadedClassifier
    shapes : list of ShapeInstance
        One per problem group; problem p of a batched call uses ``shapes[p]``.
    chunk : int
        Views rendered per forward pass.
    """

    def __init__(self, classifier: LoadedClassifier, shapes: list[ShapeInstance], chunk: int = 256):
        self.classifier = classifier
        self.points = torch.from_numpy(np.stack([s.points for s in shapes]))
        self.normals = torch.from_numpy(np.stack([s.normals for s in shapes]))
        self.labels = torch.tensor([s.label for s in shapes])
        self.chunk = chunk
        for p in classifier.model.parameters():
            p.requires_grad_(False)

    def _probabilities(self, shape_index: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        images = render_views(
            self.points[shape_index], self.normals[shape_index], angles.float(), self.classifier.render
        )
        probs = functional.softmax(self.classifier.model(images), dim=1)
        return probs.gather(1, self.labels[shape_index, None])[:, 0]

    def __call__(self, angles: torch.Tensor) -> torch.Tensor:
        """(P, m, 2) (azimuth, elevation) in degrees, P = number of shapes → (P, m) scores."""
        shape_index, flat = self._flatten(angles)
        with torch.no_grad():
            values = torch.cat(
                [
                    self._probabilities(s, a)
                    for s, a in zip(shape_index.split(self.chunk), flat.split(self.chunk), strict=True)
                ]
            )
        return values.reshape(angles.shape[:2]).to(angles.dtype)

    def with_grad(self, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, m, 2) angles → (P, m) scores and (P, m, 2) gradients per degree."""
        shape_index, flat = self._flatten(angles)
        values, grads = [], []
        for s, a in zip(shape_index.split(self.chunk), flat.split(self.chunk), strict=True):
            a = a.detach().float().requires_grad_(True)
            f = self._probabilities(s, a)
            (g,) = torch.autograd.grad(f.sum(), a)
            values.append(f.detach())
            grads.append(g)
        shape = angles.shape
        return (
            torch.cat(values).reshape(shape[:2]).to(angles.dtype),
            torch.cat(grads).reshape(shape).to(angles.dtype),
        )

    def _flatten(self, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        groups, per_group, dims = angles.shape
        if groups != len(self.labels):
            raise ValueError(f"{groups} problem groups for {len(self.labels)} shapes")
        if dims != 2:
            raise ValueError(f"angles must be (azimuth, elevation) pairs, got {dims} values")
        return torch.arange(groups).repeat_interleave(per_group), angles.reshape(-1, 2)
