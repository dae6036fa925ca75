"""Dataset runs: one idempotent task per (scan, method), on local processes or a Dask cluster.

A benchmark folder (BENCH_DIR) holds::

    batch.json                     the settings every task of this folder was run with
    runs/<scan id>/<method>/       one run folder per task (RunFolder conventions)
        config.json meta.json mesh.ply [thumbnail.png] eval.json DONE     finished
        ERROR error.txt                                                   failed: one line + traceback
        task.json                                                         the task (scan, GT, variant)
        .lock                                                             claim, locked while a task runs
        poisson_configs.json                                              poisson-best: every config tried

A task fits (or runs a baseline), evaluates against the ground truth, writes ``eval.json`` and then
``DONE``. Every step is skipped when its output is already on disk, so a rerun does only what is missing:
a killed batch restarted on the same folder finishes the missing tasks, and a levelset fit that was cut
short resumes from its checkpoint. A task holds an exclusive ``flock`` on its ``.lock`` file while it runs;
the kernel drops the lock when the process dies, so a crashed batch never leaves a claim that blocks the
next one, and two batches on one folder never run the same task twice at the same time.

Two methods fit nothing of their own:

- ``poisson-best`` runs every configuration of :data:`POISSON_BEST_BACKENDS` × depths × density trims on
  the scan, evaluates each against the ground truth, keeps the best by Chamfer-L1 as its mesh, and writes
  every configuration's metrics and seconds to ``poisson_configs.json``. It is an oracle anchor: it looks at
  the ground truth to choose, by design, and refuses a scan without one.
- ``levelset-trimmed`` evaluates the ``mesh_trimmed.ply`` (recon.core.trim) the fit wrote beside ``mesh.ply`` in
  the scan's ``levelset`` run folder, copied into its own folder as ``mesh.ply``; nothing is refitted. Its
  tasks run after the batch's levelset tasks, and run the levelset task themselves when it has not
  finished; its fit time is the levelset fit's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from recon.atomic import atomic_path, read_json, write_json, write_text
from recon.core.metrics import DEFAULT_SAMPLES
from recon.errors import InputError, ReconError, RunDirError
from recon.run import RunFolder

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
POISSON_BEST_BACKENDS = ("pymeshlab", "open3d")
POISSON_BEST_TRIMS = (0.0, 0.02)
"""Density trim quantiles poisson-best tries (with the backends and ``BatchSettings.poisson_best_depths``)."""
STATUS_FILES = ("eval.json", "DONE", "ERROR", "error.txt")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_COMPARED_SETTINGS = (
    "preset",
    "steps",
    "atlasnet_steps",
    "poisson_depth",
    "poisson_trim",
    "poisson_best_depths",
    "seed",
    "eval_samples",
)


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


# ---------------------------------------------------------------------------------------------- planning
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


def task_status(run_dir: str | os.PathLike) -> str:
    """'finished' (eval.json and DONE), 'failed' (ERROR) or 'pending', read from the folder."""
    run_dir = Path(run_dir)
    if (run_dir / "eval.json").is_file() and (run_dir / "DONE").is_file():
        return "finished"
    return "failed" if (run_dir / "ERROR").is_file() else "pending"


# ---------------------------------------------------------------------------------------------- one task
def run_task(task: Task) -> TaskResult:
    """Run one task to completion, or record why it failed; never raises (except KeyboardInterrupt).

    The steps already on disk are skipped: a finished task is not touched, a fitted one is only evaluated.
    """
    start = time.perf_counter()
    run_dir = Path(task.run_dir)

    def result(status: str, message: str = "") -> TaskResult:
        seconds = round(time.perf_counter() - start, 3)
        return TaskResult(task.scan_id, task.method, status, seconds, message, str(run_dir))

    if not task.force and task_status(run_dir) == "finished":
        return result("skipped")
    try:
        _check_inside_bench(run_dir)
    except RunDirError as exc:
        return result("failed", str(exc))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with task_claim(run_dir) as claimed:
            if not claimed:
                return result("busy", "another process is running this task")
            if not task.force and task_status(run_dir) == "finished":
                return result("skipped")
            _clear_status(run_dir, everything=task.force)
            write_json(run_dir / "task.json", asdict(task))
            with _torch_threads(task.threads):
                summary = _fit_and_evaluate(task, RunFolder(run_dir))
            return result("done", summary)
    except Exception as exc:  # noqa: BLE001 - a failing task is recorded and the batch goes on
        message = record_failure(run_dir, exc)
        return result("failed", message)


@contextlib.contextmanager
def task_claim(run_dir: str | os.PathLike, *, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on ``run_dir/.lock`` for the block; yields False when another process has it
    (with ``wait``, waits for it instead and yields True).

    ``flock`` locks belong to the open file and vanish with the process, so a claim can never go stale.
    """
    import fcntl

    lock_path = Path(run_dir) / ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode())
        yield True
    finally:
        os.close(fd)


def record_failure(run_dir: str | os.PathLike, exc: BaseException) -> str:
    """Write ``ERROR`` (one line) and ``error.txt`` (the traceback) into ``run_dir``; return the line."""
    if isinstance(exc, ReconError):
        line = str(exc)
    else:
        line = f"{type(exc).__name__}: {exc}"
    line = _utf8(" ".join(line.split()) or type(exc).__name__)
    with contextlib.suppress(OSError):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        write_text(Path(run_dir) / "error.txt", _utf8(details))
        write_text(Path(run_dir) / "ERROR", line + "\n")
    return line


def _utf8(text: str) -> str:
    """``text`` with the undecodable bytes of non-UTF-8 file names written as \\xNN, so it can be saved."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _check_inside_bench(run_dir: Path) -> None:
    """A run folder must stay inside BENCH_DIR/runs even when a part of the path is a symlink."""
    runs = run_dir.parent.parent
    if not run_dir.resolve().is_relative_to(runs.resolve()) or runs.name != "runs":
        raise RunDirError(f"{run_dir} leaves the benchmark folder (a symlink?); refusing to write there")


def _clear_status(run_dir: Path, everything: bool) -> None:
    """Forget an earlier failure; with ``everything`` also the earlier results (a forced redo)."""
    names = (*STATUS_FILES, "mesh.ply", "poisson_configs.json") if everything else ("ERROR", "error.txt")
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit_and_evaluate(task: Task, run: RunFolder) -> str:
    gt_mesh = _ground_truth(task)
    if task.method == "poisson-best" and gt_mesh is None:
        raise InputError(
            f"poisson-best chooses its configuration by the ground truth and scan {task.scan_id} has none; "
            "use poisson for scans without ground truth"
        )
    if not _has_mesh(task, run):
        if task.method == "levelset":
            _fit_levelset(task, run)
        elif task.method in DERIVED:
            _derive_trimmed(task, run)
        else:
            _run_baseline(task, run, gt_mesh)
    fit_seconds = _recorded_seconds(run)
    eval_seconds, metrics = _evaluate(task, run, gt_mesh)
    record = {
        "scan_id": task.scan_id,
        "variant": task.variant,
        "method": task.method,
        "method_name": METHODS[task.method],
        "scan": task.scan,
        "gt": task.gt,
        "units": task.units,
        "mesh": "mesh.ply",
        "settings": asdict(task.settings),
        "seconds": {"fit": round(fit_seconds, 3), "eval": round(eval_seconds, 3)},
    }
    if task.method in DERIVED:
        record["derived_from"] = run.read_json("meta.json").get("derived_from")
    if metrics is None:
        record |= {"metrics": None, "note": "no ground truth in the dataset: nothing to compare with"}
    else:
        record |= {"definitions": metrics.pop("definitions"), "metrics": metrics}
    run.write_json("eval.json", record)
    run.mark_done({"task": f"{task.scan_id}/{task.method}", "seconds": record["seconds"]})
    if metrics is None:
        return "no ground truth"
    scaled = metrics["x1000_diag"]
    return f"Chamfer-L1 {scaled['chamfer_l1']:.3f}, Chamfer-L2 {scaled['chamfer_l2']:.3f} (x1000 diag)"


def _ground_truth(task: Task):
    """The GT mesh (checked before any fitting, so a bad GT costs no fit), or None when there is none."""
    from recon.io import load_mesh

    if task.gt is None:
        return None
    if not Path(task.gt).is_file():
        raise InputError(f"ground truth not found: {task.gt}")
    return load_mesh(task.gt)


def _has_mesh(task: Task, run: RunFolder) -> bool:
    """The folder already holds the finished mesh of this task (only its evaluation is missing)."""
    if task.force or not run.mesh_path.is_file():
        return False
    # A levelset fit writes mesh.ply before its thumbnail and DONE; the other methods write mesh.ply last.
    return task.method != "levelset" or run.is_done()


def _recorded_seconds(run: RunFolder) -> float:
    """The fit's wall time in seconds, as its meta.json records it (0 when unreadable)."""
    return float(_read_json_or_empty(run.path / "meta.json").get("seconds", 0.0))


def _fit_levelset(task: Task, run: RunFolder) -> None:
    """Fit (or resume) the level set. A fit refused by its surface check is still evaluated, from its
    mesh_suspect.ply, and stays marked suspect: a benchmark that dropped its failures would flatter itself."""
    from recon.core.reconstruct import fit_scan, load_config, resume_run
    from recon.errors import FitRefusedError

    config = task.settings.fit_config()
    thumbnail = task.settings.thumbnails
    start = time.perf_counter()
    refused = False
    try:
        if not task.force and _resumable(run, config, load_config):
            resume_run(run.path, thumbnail=thumbnail)
        else:
            fit_scan(task.scan, run.path, config, force=True, thumbnail=thumbnail)
    except FitRefusedError:
        shutil.copyfile(run.path / "mesh_suspect.ply", run.mesh_path)
        refused = True
    meta = run.read_json("meta.json")
    extra = {"method": "levelset", "seconds": time.perf_counter() - start, "refused": refused}
    run.write_json("meta.json", meta | extra)


def _resumable(run: RunFolder, config, load_config: Callable) -> bool:
    """An interrupted fit of the same configuration can continue from its checkpoint."""
    if run.is_done() or not run.checkpoint_path.is_file() or not run.config_path.is_file():
        return False
    try:
        return load_config(run).to_dict() == config.to_dict()
    except ReconError:
        return False


def _run_baseline(task: Task, run: RunFolder, gt_mesh) -> None:
    """Run a baseline and write its folder; ``mesh.ply`` comes last and marks the fit as finished."""
    from recon.io import is_colinear, load_scan

    cloud = load_scan(task.scan)  # a triangulated scan comes with its area-weighted vertex normals
    if is_colinear(cloud.points):
        raise InputError(f"{task.scan}: all points lie on a line; no surface can be fitted to them")
    from recon.baselines.runner import run_baseline

    if task.method == "poisson-best":
        # The sweep is timed by its own rule (shared preparation + the chosen solve).
        config, result, seconds = _poisson_best(task, run, cloud, gt_mesh)
        method_result = lambda: result  # noqa: E731
    else:
        config, method_result = (_poisson if task.method == "poisson" else _atlasnet)(task, cloud)
        seconds = None
    run_baseline(
        task.method,
        task.scan,
        run.path,
        config,
        method_result,
        seed=task.settings.seed,
        device=task.settings.device,
        force=True,
        thumbnail=task.settings.thumbnails,
        seconds=seconds,
    )


def _poisson(task: Task, cloud) -> tuple[dict, Callable[[], tuple]]:
    """The ``poisson`` method's config (as a dict) and the call that runs it."""
    from recon.baselines.poisson import PoissonConfig, screened_poisson

    config = PoissonConfig(seed=task.settings.seed, threads=task.threads or 0)
    if task.settings.poisson_depth is not None:
        config = replace(config, depth=task.settings.poisson_depth)
    if task.settings.poisson_trim is not None:
        config = replace(config, density_trim_quantile=task.settings.poisson_trim)
    config.validate()
    return asdict(config), lambda: screened_poisson(cloud.points, cloud.normals, config)


def poisson_best_grid(settings: BatchSettings, threads: int = 0) -> list:
    """The PoissonConfigs poisson-best tries: backends × ``settings.poisson_best_depths`` × density trims.

    The isolated-point filter and the normals are the ``poisson`` method's defaults.
    """
    from recon.baselines.poisson import PoissonConfig

    return [
        PoissonConfig(
            backend=backend, depth=depth, density_trim_quantile=trim, seed=settings.seed, threads=threads
        )
        for backend in POISSON_BEST_BACKENDS
        for depth in settings.poisson_best_depths
        for trim in POISSON_BEST_TRIMS
    ]


def _poisson_best(task: Task, run: RunFolder, cloud, gt_mesh) -> tuple[dict, tuple, float]:
    """Run every configuration of :func:`poisson_best_grid` and record each in ``poisson_configs.json``.

    Returns the config, (vertices, faces, info) and seconds (shared preparation + its solve) of the best
    by Chamfer-L1 against the ground truth.
    """
    from recon.baselines.poisson import prepare_scan, solve

    started = time.perf_counter()
    grid = poisson_best_grid(task.settings, threads=task.threads or 0)
    prepared = prepare_scan(cloud.points, cloud.normals, grid[0])
    rows, best = [], None
    for config in grid:
        row = {"backend": config.backend, "depth": config.depth, "trim": config.density_trim_quantile}
        try:
            start = time.perf_counter()
            vertices, faces, info = solve(prepared, config)
            row["seconds"] = time.perf_counter() - start
            metrics = _metrics(task, _as_saved(vertices, faces, run.path), gt_mesh, cloud.points)
        except Exception as exc:  # noqa: BLE001 - a configuration failing (a native solver) is recorded
            rows.append(row | {"error": " ".join(f"{type(exc).__name__}: {exc}".split())[:300]})
            continue
        del metrics["definitions"]
        rows.append(row | {"n_faces": len(faces), "metrics": metrics})
        if best is None or metrics["chamfer_l1"] < best[0]["metrics"]["chamfer_l1"]:
            best = (rows[-1], config, (vertices, faces, info))
    if best is None:
        raise ReconError(f"every poisson-best configuration failed; the first: {rows[0]['error']}")
    chosen, config, (vertices, faces, info) = best
    sweep_seconds = time.perf_counter() - started
    run.write_json(
        "poisson_configs.json",
        {
            "format": "recon-poisson-configs/1",
            "selection": "lowest Chamfer-L1 against the ground truth: an oracle anchor, which looks at the "
            "ground truth to choose (a user without one cannot)",
            "evaluation": {"n_samples": task.settings.eval_samples, "seed": task.settings.seed},
            "seconds": "per configuration the solve with its density trim; the shared preparation (isolated "
            "points, normals) is prepared.seconds_prepare",
            "prepared": prepared.info,
            "chosen": rows.index(chosen),
            "seconds_sweep": sweep_seconds,
            "configs": rows,
        },
    )
    oracle = {key: chosen[key] for key in ("backend", "depth", "trim", "seconds")}
    info |= {"poisson_best": {"chosen": oracle, "n_configs": len(rows), "seconds_sweep": sweep_seconds}}
    return asdict(config), (vertices, faces, info), info["seconds_prepare"] + chosen["seconds"]


def _as_saved(vertices, faces, folder: Path):
    """The mesh as the evaluation reads it back from mesh.ply (load_mesh tidies it): equal metrics."""
    from recon.io import load_mesh, save_mesh

    with tempfile.TemporaryDirectory(dir=folder, prefix=".candidate") as tmp:
        return load_mesh(save_mesh(Path(tmp) / "candidate.ply", vertices, faces))


def _derive_trimmed(task: Task, run: RunFolder) -> None:
    """Fill the folder of a derived method from its source's finished run: config.json, meta.json (the
    source's, with its fit seconds), then a copy of the source's ``mesh_trimmed.ply`` as mesh.ply, and its
    thumbnail."""
    from recon.io import load_mesh

    source = _finished_source(task)
    trimmed = source / "mesh_trimmed.ply"
    if not trimmed.is_file():
        raise RunDirError(
            f"{source} has no mesh_trimmed.ply (a fit from before trimming?); refit it with "
            f"`recon batch ... --methods {DERIVED[task.method]} --force`"
        )
    source_meta = _read_json_or_empty(source / "meta.json")
    fit_seconds = _read_json_or_empty(source / "eval.json").get("seconds", {}).get("fit", 0.0)
    derived_from = {"method": DERIVED[task.method], "run_dir": str(source), "mesh": trimmed.name}
    run = RunFolder.create(run.path, force=True)
    run.write_json("config.json", {"method": task.method, "scan": task.scan, "derived_from": derived_from})
    meta = source_meta | {"method": task.method, "seconds": fit_seconds, "derived_from": derived_from}
    run.write_json("meta.json", meta)
    with atomic_path(run.mesh_path) as tmp:
        shutil.copyfile(trimmed, tmp)
    if task.settings.thumbnails:
        mesh = load_mesh(run.mesh_path)
        run.try_thumbnail(mesh.vertices, mesh.faces)


def _finished_source(task: Task) -> Path:
    """The finished run folder of the method ``task`` derives from; runs (or awaits) it when it is pending.

    A source that failed is not retried here: the batch's own task for it just did, or was told not to.
    """
    method = DERIVED[task.method]
    source = replace(task, method=method, run_dir=str(Path(task.run_dir).parent / method), force=False)
    if task_status(source.run_dir) == "pending" and run_task(source).status == "busy":
        with task_claim(source.run_dir, wait=True):
            pass
    if task_status(source.run_dir) != "finished":
        reason = _error_line(source.run_dir) or "no result on disk"
        raise ReconError(
            f"{task.method} needs the {method} run of scan {task.scan_id}, which failed: {reason}"
        )
    return Path(source.run_dir)


def _read_json_or_empty(path: Path) -> dict:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _atlasnet(task: Task, cloud) -> tuple[dict, Callable[[], tuple]]:
    """An AtlasNet-style method's config (as a dict) and the call that runs it."""
    try:
        from recon.baselines import atlasnet
    except ImportError as exc:
        raise ReconError(
            f"{task.method} is not available: recon.baselines.atlasnet cannot be imported ({exc})"
        ) from exc
    config = atlasnet_config(atlasnet, task.method, task.settings)
    return asdict(config), lambda: atlasnet.fit_atlasnet(cloud.points, config)


def atlasnet_config(atlasnet, method: str, settings: BatchSettings):
    """The AtlasNetConfig of ``method`` ('atlasnet-sphere', 'atlasnet-patch', 'atlasnet-25')."""
    overrides = {"seed": settings.seed, "device": settings.device}
    if settings.atlasnet_steps is not None:
        overrides["steps"] = settings.atlasnet_steps
    return atlasnet.method_config(method, **overrides)


def _evaluate(task: Task, run: RunFolder, gt_mesh) -> tuple[float, dict | None]:
    from recon.io import load_mesh, load_scan

    start = time.perf_counter()
    if gt_mesh is None:
        return 0.0, None
    try:
        pred = load_mesh(run.mesh_path)
    except InputError as exc:
        raise InputError(f"the {task.method} prediction is unusable: {exc}") from exc
    metrics = _metrics(task, pred, gt_mesh, load_scan(task.scan).points)
    return time.perf_counter() - start, metrics


def _metrics(task: Task, pred, gt_mesh, scan_points) -> dict:
    """The batch's evaluation of one prediction: its samples and seed, with the scan→prediction distance."""
    from recon.core.metrics import evaluate_reconstruction

    return evaluate_reconstruction(
        pred, gt_mesh, scan_points=scan_points, n_samples=task.settings.eval_samples, seed=task.settings.seed
    )


# ---------------------------------------------------------------------------------------------- a batch
def run_batch(
    dataset: str | os.PathLike,
    bench_dir: str | os.PathLike,
    methods: list[str] | tuple[str, ...] = DEFAULT_METHODS,
    settings: BatchSettings | None = None,
    *,
    executor: str = "local",
    jobs: int = 1,
    scheduler: str | None = None,
    threads: int | None = None,
    retry_failed: bool = True,
    force: bool = False,
    progress: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Run every (scan, method) task of ``dataset`` into ``bench_dir``; finished tasks are skipped.

    Parameters
    ----------
    executor : {'local', 'dask'}
        'local': each task in its own spawned process, ``jobs`` at a time. 'dask': tasks on the Dask
        cluster at ``scheduler`` (every worker must see ``dataset`` and ``bench_dir`` under the same
        paths), or on a local cluster of ``jobs`` worker processes when no address is given.
    threads : int, optional
        Torch and solver threads per task. Default: this machine's cores // ``jobs``, or the workers'
        own default on a remote Dask cluster. Results are reproducible for a fixed thread count.
    retry_failed : bool
        Run tasks that failed before again (else they keep their ERROR).
    force : bool
        Redo every task, and accept settings that differ from the folder's batch.json.
    progress : callable, optional
        Called with each TaskResult as it arrives.

    Returns
    -------
    list of TaskResult
        In the order tasks completed.
    """
    settings = settings or BatchSettings()
    settings.fit_config()
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    bench = Path(bench_dir)
    entries = dataset_entries(dataset)
    if threads is None and scheduler is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = plan_tasks(entries, methods, bench, settings, threads=threads, force=force)
    _record_settings(bench, settings, force)
    report = progress or (lambda _result: None)
    finished: list[TaskResult] = []
    pending: list[Task] = []
    for task in tasks:
        status = task_status(task.run_dir)
        if not force and (status == "finished" or (status == "failed" and not retry_failed)):
            skipped = "skipped" if status == "finished" else "failed"
            message = "" if status == "finished" else _error_line(task.run_dir)
            result = TaskResult(task.scan_id, task.method, skipped, 0.0, message, task.run_dir)
            report(result)
            finished.append(result)
        else:
            pending.append(task)
    if not pending:
        return finished
    if executor not in ("local", "dask"):
        raise InputError(f"unknown executor {executor!r}; choose local or dask")
    # A derived task evaluates its source's results, so the sources of this batch finish first.
    primary = [task for task in pending if task.method not in DERIVED]
    derived = [task for task in pending if task.method in DERIVED]
    for wave in (primary, derived):
        if not wave:
            continue
        if executor == "local":
            finished += run_local(wave, jobs, report)
        else:
            finished += run_dask(wave, scheduler, jobs, report)
    return finished


def _record_settings(bench: Path, settings: BatchSettings, force: bool) -> None:
    """Write batch.json; refuse settings that differ from those the folder's results were made with."""
    path = bench / "batch.json"
    mine = _as_json(asdict(settings))
    if path.is_file() and not force:
        try:
            theirs = read_json(path).get("settings", {})
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{path} is corrupt ({exc}); pass --force to start the folder afresh") from exc
        # A setting added after the folder was made was at its default there.
        defaults = _as_json(asdict(BatchSettings()))
        differ = [k for k in _COMPARED_SETTINGS if theirs.get(k, defaults[k]) != mine[k]]
        if differ:
            listed = ", ".join(f"{k} {theirs.get(k)!r} (now {mine[k]!r})" for k in differ)
            raise RunDirError(f"{bench} was run with {listed}; use another -o, or --force to redo every task")
    bench.mkdir(parents=True, exist_ok=True)
    write_json(
        path, {"format": "recon-batch/1", "settings": mine, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    )


def _as_json(settings: dict) -> dict:
    """``settings`` as read back from JSON (tuples become lists), for comparison with batch.json."""
    return json.loads(json.dumps(settings))


def _error_line(run_dir: str) -> str:
    with contextlib.suppress(OSError):
        return (Path(run_dir) / "ERROR").read_text().strip()
    return ""


# ---------------------------------------------------------------------------------------------- executors
def run_local(tasks: list[Task], jobs: int, progress: Callable[[TaskResult], None]) -> list[TaskResult]:
    """Each task in its own spawned process, ``jobs`` at a time.

    One process per task rather than a shared pool: a native crash (a segfault in a mesh library, the OOM
    killer) then fails that task only, where it would break every pending future of a process pool.
    """
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_in_child, context, task, stop) for task in tasks]
        try:
            for future in as_completed(futures):
                result = future.result()
                progress(result)
                results.append(result)
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise
    return results


def _run_in_child(context, task: Task, stop: threading.Event) -> TaskResult:
    if stop.is_set():
        return TaskResult(task.scan_id, task.method, "cancelled", 0.0, "batch interrupted", task.run_dir)
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(task, send, os.getpid()), daemon=True)
    start = time.perf_counter()
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        process.join()
        result = _died(task, f"worker process died (exit code {process.exitcode})", start)
    finally:
        receive.close()
    process.join()
    return result


def _child_main(task: Task, send, parent: int) -> None:
    _die_with_parent(parent)
    try:
        send.send(run_task(task))
    except KeyboardInterrupt:
        # Ctrl-C reaches every process of the terminal; an interrupted fit has saved its checkpoint.
        send.send(TaskResult(task.scan_id, task.method, "cancelled", 0.0, "interrupted", task.run_dir))
    finally:
        send.close()


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the batch process dies (Linux; elsewhere a no-op).

    A batch killed with SIGKILL cannot stop its workers; without this they would run on, holding their
    claims, and a restarted batch would find those tasks busy. Killed instead, they leave a resumable
    checkpoint and the restarted batch finishes their work.
    """
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the batch died before the request took effect
        os._exit(1)


def _died(task: Task, reason: str, start: float) -> TaskResult:
    """Record a task whose worker vanished without a word (only if the task itself left no outcome)."""
    if task_status(task.run_dir) != "finished":
        record_failure(task.run_dir, ReconError(reason))
    seconds = round(time.perf_counter() - start, 3)
    return TaskResult(task.scan_id, task.method, "failed", seconds, reason, task.run_dir)


def run_dask(
    tasks: list[Task], scheduler: str | None, jobs: int, progress: Callable[[TaskResult], None]
) -> list[TaskResult]:
    """Tasks on the Dask scheduler at ``scheduler``, or on a local cluster of ``jobs`` processes."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ReconError("the Dask executor needs dask.distributed: pip install 'dask[distributed]'") from exc

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    try:
        client = Client(cluster if cluster is not None else scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ReconError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    results = []
    try:
        start = time.perf_counter()
        futures = {
            client.submit(
                run_task, task, key=f"recon-{task.scan_id}-{task.method}-{os.getpid()}", pure=False
            ): task
            for task in tasks
        }
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker fails its task, not the batch
                result = _died(futures[future], f"Dask worker failed: {type(exc).__name__}: {exc}", start)
            progress(result)
            results.append(result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results
