"""One task run to completion: its claim, its method (the levelset fit, a baseline, or a method derived
from another's run), the evaluation against the ground truth, then ``eval.json`` and ``DONE``.

Two methods fit nothing of their own:

- ``poisson-best`` runs every configuration of :data:`POISSON_BEST_BACKENDS` × depths × density trims on
  the scan, evaluates each against the ground truth, keeps the best by Chamfer-L1 as its mesh, and writes
  every configuration's metrics and seconds to ``poisson_configs.json``. It is an oracle anchor: it looks at
  the ground truth to choose, by design, and refuses a scan without one.
- ``levelset-trimmed`` evaluates the ``mesh_trimmed.ply`` (recon.core.trim) the fit wrote beside ``mesh.ply``
  in the scan's ``levelset`` run folder, copied into its own folder as ``mesh.ply``; nothing is refitted. Its
  tasks run after the batch's levelset tasks, and run the levelset task themselves when it has not
  finished; its fit time is the levelset fit's.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from recon.atomic import atomic_path, read_json_object_or_empty, write_json
from recon.errors import InputError, ReconError, RunDirError
from recon.evaluation.claims import (
    check_inside_bench,
    clear_status,
    error_line,
    record_failure,
    task_claim,
    task_status,
)
from recon.evaluation.plan import DERIVED, METHODS, BatchSettings, Task, TaskResult
from recon.run import RunFolder

POISSON_BEST_BACKENDS = ("pymeshlab", "open3d")
POISSON_BEST_TRIMS = (0.0, 0.02)
"""Density trim quantiles poisson-best tries (with the backends and ``BatchSettings.poisson_best_depths``)."""


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
        check_inside_bench(run_dir)
    except RunDirError as exc:
        return result("failed", str(exc))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with task_claim(run_dir) as claimed:
            if not claimed:
                return result("busy", "another process is running this task")
            if not task.force and task_status(run_dir) == "finished":
                return result("skipped")
            clear_status(run_dir, everything=task.force)
            write_json(run_dir / "task.json", asdict(task))
            with _torch_threads(task.threads):
                summary = _fit_and_evaluate(task, RunFolder(run_dir))
            return result("done", summary)
    except Exception as exc:  # noqa: BLE001 - a failing task is recorded and the batch goes on
        message = record_failure(run_dir, exc)
        return result("failed", message)


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
    return float(read_json_object_or_empty(run.path / "meta.json").get("seconds", 0.0))


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
    source_meta = read_json_object_or_empty(source / "meta.json")
    fit_seconds = read_json_object_or_empty(source / "eval.json").get("seconds", {}).get("fit", 0.0)
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
        reason = error_line(source.run_dir) or "no result on disk"
        raise ReconError(
            f"{task.method} needs the {method} run of scan {task.scan_id}, which failed: {reason}"
        )
    return Path(source.run_dir)


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
