"""Scan file → run folder → mesh in the scan's frame: the pipeline ``recon fit`` / ``recon extract`` call."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import InputError, RunDirError
from recon.fit import FitConfig, LevelSetFitter, StepLog
from recon.normalize import Normalization
from recon.run import RunFolder, environment_metadata

ProgressFn = Callable[[StepLog], None]

MIN_FIT_POINTS = 32
"""Fewer scan points than this cannot define a surface worth fitting."""


@dataclass
class FitResult:
    """What a finished (or interrupted) fit produced."""

    run_dir: Path
    mesh_path: Path | None
    steps: int
    train_seconds: float
    mesh_report: dict | None


def prepare_points(
    points: np.ndarray, normals: np.ndarray | None, config: FitConfig
) -> tuple[np.ndarray, np.ndarray | None, Normalization]:
    """Subsample and normalize a scan.

    Parameters
    ----------
    points : (n, 3) float
        Scan points in the scan frame.
    normals : (n, 3) float or None

    Returns
    -------
    work_points : (m, 3) float32, m ≤ config.max_points
    work_normals : (m, 3) float32 or None
    normalization : Normalization
    """
    from recon.io import check_points, is_planar

    points = check_points(points, min_points=MIN_FIT_POINTS)
    if is_planar(points):
        raise InputError(
            "the scan is flat (all points lie on a plane): no closed surface can be fitted to it"
        )
    if len(points) > config.max_points:
        keep = np.sort(
            np.random.default_rng(config.seed).choice(len(points), config.max_points, replace=False)
        )
        points = points[keep]
        normals = normals[keep] if normals is not None else None
    normalization = Normalization.fit(points)
    work = normalization.to_work(points).astype(np.float32)
    return work, (normals.astype(np.float32) if normals is not None else None), normalization


def fit_scan(
    scan_path: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: FitConfig,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    thumbnail: bool = True,
) -> FitResult:
    """Fit ``config`` to the scan at ``scan_path`` and write everything into ``run_dir``."""
    from recon.io import load_scan

    config.validate()
    cloud = load_scan(scan_path)
    work_points, work_normals, normalization = prepare_points(cloud.points, cloud.normals, config)
    existed = Path(run_dir).exists()
    run = RunFolder.create(run_dir, force=force)
    try:
        resolved = config.to_dict() | {"scan": str(Path(scan_path).resolve()), "levers": config.levers()}
        run.write_json("config.json", resolved)
        fitter = LevelSetFitter(work_points, work_normals, config)
        run.write_json("meta.json", environment_metadata(str(fitter.device), config.seed))
        run.write_json("normalization.json", normalization.to_dict())
        _save_scan_points(run, work_points, work_normals)
        run.log(
            f"fit {scan_path}: {len(cloud.points)} points ({len(work_points)} used), "
            f"normals={'yes' if cloud.normals is not None else 'no'}, preset={config.preset}, "
            f"device={fitter.device}, seed={config.seed}"
        )
    except BaseException:
        if not existed:
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    return _train_and_mesh(run, fitter, normalization, progress, thumbnail)


def resume_run(
    run_dir: str | os.PathLike, *, progress: ProgressFn | None = None, thumbnail: bool = True
) -> FitResult:
    """Continue an interrupted fit from its latest checkpoint (same result as an uninterrupted run)."""
    run = RunFolder.open(run_dir)
    if run.is_done():
        raise RunDirError(f"{run.path} is already finished (DONE exists); use recon extract to re-mesh it")
    fitter, normalization = load_fitter(run)
    run.log(f"resume at step {fitter.step}")
    return _train_and_mesh(run, fitter, normalization, progress, thumbnail)


def extract_run(
    run_dir: str | os.PathLike,
    *,
    resolution: int | None = None,
    output: str | os.PathLike | None = None,
    force: bool = False,
) -> tuple[Path, dict]:
    """Re-mesh a fitted run at ``resolution``; writes ``output`` (default RUN/mesh_<res>.ply)."""
    run = RunFolder.open(run_dir)
    config = load_config(run)
    resolution = resolution or config.resolution
    output = Path(output) if output else run.path / f"mesh_{resolution}.ply"
    if output.exists() and not force:
        raise RunDirError(f"{output} exists; pass --force to overwrite it")
    fitter, normalization = load_fitter(run, config)
    report = write_mesh(fitter, normalization, output, resolution=resolution, force=force)
    run.log(f"extract {output} at {resolution}^3: {report}")
    return output, report


def load_fitter(run: RunFolder, config: FitConfig | None = None) -> tuple[LevelSetFitter, Normalization]:
    """The fitter of ``run`` restored from its latest checkpoint, and the run's normalization.

    ``config`` defaults to the run's own (pass a modified one, e.g. another device).
    """
    config = config or load_config(run)
    work_points, work_normals = _load_scan_points(run)
    fitter = LevelSetFitter(work_points, work_normals, config)
    fitter.load_state_dict(run.load_checkpoint(map_location=fitter.device))
    return fitter, Normalization.from_dict(run.read_json("normalization.json"))


def load_config(run: RunFolder) -> FitConfig:
    try:
        return FitConfig.from_dict(run.read_json("config.json"))
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{run.config_path} is not a valid fit config: {exc}") from exc


def closed_field(fitter: LevelSetFitter, bound: float, margin: float) -> Callable[[np.ndarray], np.ndarray]:
    """F intersected with the box [-(bound − margin), bound − margin]³ (max of the two fields).

    A zero set that leaves the meshing box would give an open mesh; the intersection closes it on the
    box faces, so the result is always watertight.
    """
    inner = bound - margin

    def field(points: np.ndarray) -> np.ndarray:
        box = np.abs(points).max(axis=1) - inner
        return np.maximum(fitter.field(points), box.astype(np.float32))

    return field


def write_mesh(
    fitter: LevelSetFitter,
    normalization: Normalization,
    path: Path,
    *,
    resolution: int,
    force: bool = True,
) -> dict:
    """Mesh the zero level set at ``resolution``³, map it to the scan frame, save it; return its report."""
    from recon.extract import extract_mesh, keep_largest_component, mesh_report
    from recon.io import save_mesh

    cfg = fitter.config
    voxel = 2 * cfg.extract_bound / (resolution - 1)
    start = time.perf_counter()
    vertices, faces = extract_mesh(
        closed_field(fitter, cfg.extract_bound, 2 * voxel), resolution=resolution, bound=cfg.extract_bound
    )
    if len(faces) == 0:
        raise InputError("the fitted level set has no surface inside the meshing box (the fit diverged)")
    if cfg.keep_largest_component:
        vertices, faces = keep_largest_component(vertices, faces)
    report = mesh_report(vertices, faces)
    report["resolution"] = resolution
    report["seconds"] = round(time.perf_counter() - start, 3)
    save_mesh(path, normalization.to_scan(vertices), faces, force=force)
    return report


def _train_and_mesh(
    run: RunFolder,
    fitter: LevelSetFitter,
    normalization: Normalization,
    progress: ProgressFn | None,
    thumbnail: bool,
) -> FitResult:
    cfg = fitter.config
    try:
        while fitter.step < cfg.steps:
            log = fitter.train_step()
            if log.step % cfg.log_every == 0 or log.step == cfg.steps:
                record = vars(log) | {"train_seconds": round(fitter.seconds, 3)}
                run.append_metrics(record)
                run.log(
                    f"step {log.step}/{cfg.steps} loss {log.loss:.5f} levelset {log.levelset:.5f} "
                    f"data {log.data:.5f} normal {log.normal:.4f} lr {log.lr:.2e}"
                )
            if log.step % cfg.checkpoint_every == 0:
                run.save_checkpoint(fitter.state_dict())
            if progress is not None:
                progress(log)
    except KeyboardInterrupt:
        run.save_checkpoint(fitter.state_dict())
        run.log(f"interrupted at step {fitter.step}; checkpoint saved")
        raise
    run.save_checkpoint(fitter.state_dict())
    report = write_mesh(fitter, normalization, run.mesh_path, resolution=cfg.resolution)
    run.log(f"mesh {run.mesh_path}: {report}")
    if cfg.model_type == "lipschitz":
        _check_lipschitz_guarantee(run, fitter)
    if thumbnail:
        _try_thumbnail(run)
    run.mark_done({"steps": fitter.step, "train_seconds": round(fitter.seconds, 3), "mesh": report})
    return FitResult(run.path, run.mesh_path, fitter.step, fitter.seconds, report)


def _check_lipschitz_guarantee(run: RunFolder, fitter: LevelSetFitter) -> None:
    """Test |F(x)| ≤ dist(x, zero set) on random points and record the result (working-frame units)."""
    from dataclasses import asdict

    from recon.lipschitz.implicit import check_distance_bound

    check = check_distance_bound(fitter.model, resolution=128, n_queries=20_000, seed=fitter.config.seed)
    run.write_json("lipschitz_check.json", asdict(check) | {"holds": check.holds})
    run.log(f"lipschitz guarantee holds={check.holds} max_violation={check.max_violation:.2e}")


def _try_thumbnail(run: RunFolder) -> None:
    from recon.io import load_mesh

    mesh = load_mesh(run.mesh_path)
    run.try_thumbnail(mesh.vertices, mesh.faces)


def _save_scan_points(run: RunFolder, points: np.ndarray, normals: np.ndarray | None) -> None:
    from recon.atomic import atomic_path

    with atomic_path(run.path / "scan_points.npz") as tmp, open(tmp, "wb") as f:
        arrays = {"points": points} | ({"normals": normals} if normals is not None else {})
        np.savez(f, **arrays)


def _load_scan_points(run: RunFolder) -> tuple[np.ndarray, np.ndarray | None]:
    path = run.path / "scan_points.npz"
    if not path.exists():
        raise RunDirError(f"{run.path} has no scan_points.npz")
    with np.load(path) as data:
        return data["points"], data.get("normals")
