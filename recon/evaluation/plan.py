"""Planning a batch: the method table, the settings every task of a batch folder shares (``batch.json``),
the scans of a dataset and one :class:`Task` per (scan, method)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from recon.core.metrics import DEFAULT_SAMPLES
from recon.errors import InputError

METHODS: dict[str, str] = {
    "levelset": "level-set loss (ours)",
    "levelset-trimmed": "level-set loss (ours), trimmed to the scan",
    "atlasnet-sphere": "AtlasNet-1 sphere",
    "atlasnet-patch": "AtlasNet-1 patch",
    "atlasnet-25": "AtlasNet-25 patches",
    "poisson": "screened Poisson",
    "poisson-best": "screened Poisson, best configuration (GT oracle)",
}
"""Methods a batch can run, with the names tables give them."""

DERIVED: dict[str, str] = {"levelset-trimmed": "levelset"}
"""Methods that evaluate another method's run folder instead of fitting, and that method."""
DEFAULT_METHODS = ("levelset", "atlasnet-25", "poisson")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class BatchSettings:
    """What every task of a batch folder shares (saved as batch.json)."""

    preset: str = "fast"
    """Levelset preset: fast, paper or tiny."""
    steps: int | None = None
    """Override the optimizer steps of the levelset preset."""
    atlasnet_steps: int | None = None
    """Override the optimizer steps of the AtlasNet baselines."""
    poisson_depth: int | None = None
    """Override the octree depth of screened Poisson."""
    poisson_trim: float | None = None
    """Override the density trim quantile of screened Poisson."""
    poisson_best_depths: tuple[int, ...] = (8, 9, 10)
    """Octree depths poisson-best tries with each backend and density trim."""
    seed: int = 0
    """Seed of fits and of the evaluation samples."""
    device: str = "auto"
    """Torch device of the learned methods: auto, cpu or cuda."""
    eval_samples: int = DEFAULT_SAMPLES
    """Points sampled on each surface for the metrics."""
    thumbnails: bool = True
    """Render a thumbnail.png into each run folder (skipped when no renderer is available)."""

    def fit_config(self):
        """The levelset FitConfig these settings describe."""
        from recon.core.config import PRESETS

        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        config = PRESETS[self.preset]().with_(device=self.device, seed=self.seed)
        return config if self.steps is None else config.with_(steps=self.steps)


@dataclass(frozen=True)
class Task:
    """One (scan, method) pair and where its run folder goes. Plain data: it travels to other processes."""

    scan_id: str
    method: str
    scan: str
    gt: str | None
    variant: str
    units: str
    run_dir: str
    settings: BatchSettings
    threads: int | None = None
    """Torch / solver threads for this task (None: the library's default)."""
    force: bool = False
    """Redo the task even when it finished before."""


@dataclass(frozen=True)
class TaskResult:
    """What happened to one task."""

    scan_id: str
    method: str
    status: str
    """'done' (ran now), 'skipped' (finished before), 'failed', 'busy' (another process holds it)."""
    seconds: float
    message: str
    run_dir: str


def dataset_entries(dataset: str | os.PathLike) -> list[dict]:
    """The scans of DATASET: a manifest (.csv/.json), a folder holding manifest.csv, a FAUST root, or a
    folder of scans (with ground truth matched by name in its ``gt/`` subfolder when there is one).

    Listed files are not checked here: a missing scan or ground truth is a per-task error.
    """
    from recon.data.manifest import faust_entries, folder_entries, load_manifest

    path = Path(dataset)
    if path.is_file() or (path.is_dir() and (path / "manifest.csv").is_file()):
        return load_manifest(path, check_files=False)
    if not path.is_dir():
        raise InputError(f"dataset not found: {path} (give a manifest, a benchmark folder or a FAUST root)")
    with contextlib.suppress(InputError):
        return faust_entries(path)
    scans = path / "scans" if (path / "scans").is_dir() else path
    gt = path / "gt" if (path / "gt").is_dir() else None
    return folder_entries(scans, gt)


def plan_tasks(
    entries: list[dict],
    methods: list[str] | tuple[str, ...],
    bench_dir: str | os.PathLike,
    settings: BatchSettings,
    *,
    threads: int | None = None,
    force: bool = False,
) -> list[Task]:
    """One Task per (entry, method), scan-major.

    A derived method's task comes after the task of the method it evaluates.

    Raises
    ------
    InputError
        An unknown method, or a scan id that is not a plain name (its run folder would leave BENCH_DIR).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(
            f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}"
        )
    runs = Path(bench_dir).resolve() / "runs"
    tasks = []
    for entry in entries:
        scan_id = str(entry["id"])
        if not _SAFE_ID.match(scan_id):
            raise InputError(
                f"scan id {scan_id!r} is not a plain name (letters, digits, . _ + -); its run folder would "
                "leave BENCH_DIR"
            )
        for method in sorted(dict.fromkeys(methods), key=lambda m: m in DERIVED):
            tasks.append(
                Task(
                    scan_id=scan_id,
                    method=method,
                    scan=str(entry["scan"]),
                    gt=None if entry.get("gt") is None else str(entry["gt"]),
                    variant=str(entry.get("variant") or ""),
                    units=str(entry.get("units") or ""),
                    run_dir=str(runs / scan_id / method),
                    settings=settings,
                    threads=threads,
                    force=force,
                )
            )
    return tasks
