"""Scan file → run folder → mesh in the scan's frame: the pipeline ``recon fit`` / ``recon extract`` call."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.core.config import FitConfig
from recon.core.fit import LevelSetFitter, StepLog
from recon.core.normalize import Normalization
from recon.errors import FitRefusedError, InputError, ReconError, RunDirError
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
    surface_check: dict | None = None


def prepare_points(
    points: np.ndarray, normals: np.ndarray | None, config: FitConfig
) -> tuple[np.ndarray, np.ndarray | None, Normalization]:
    """Subsample a scan, drop its isolated points (when the config asks) and normalize it.

    Parameters
    ----------
    points : (n, 3) float
        Scan points in the scan frame.
    normals : (n, 3) float or None

    Returns
    -------
    work_points : (m, 3) float32, m ≤ config.data.max_points
    work_normals : (m, 3) float32 or None
    normalization : Normalization
    """
    from recon.core.outliers import isolated_point_mask
    from recon.io import check_points, is_planar

    points = check_points(points, min_points=MIN_FIT_POINTS)
    if len(points) > config.data.max_points:
        keep = np.sort(
            np.random.default_rng(config.seed).choice(len(points), config.data.max_points, replace=False)
        )
        points = points[keep]
        normals = normals[keep] if normals is not None else None
    # Checked on the subset the fit uses: the same answer for a real scan, without copying a huge one.
    if is_planar(points):
        raise InputError(
            "the scan is flat (all points lie on a plane): no closed surface can be fitted to it"
        )
    if config.data.outlier_ratio > 0:
        inliers = ~isolated_point_mask(
            points, neighbors=config.data.outlier_neighbors, ratio=config.data.outlier_ratio
        )
        if inliers.sum() < MIN_FIT_POINTS:
            raise InputError(
                f"only {int(inliers.sum())} of the scan's points are not isolated; at least "
                f"{MIN_FIT_POINTS} are needed"
            )
        points = points[inliers]
        normals = normals[inliers] if normals is not None else None
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
    work_normals, normals_report = _usable_scan_normals(work_points, work_normals)
    existed = Path(run_dir).exists()
    run = RunFolder.create(run_dir, force=force)
    try:
        fitter = LevelSetFitter(work_points, work_normals, config)
        used = _points_used(len(cloud.points), len(work_points), config.data.max_points)
        run.write_json(
            "meta.json", environment_metadata(str(fitter.device), config.seed) | used | normals_report
        )
        run.write_json("normalization.json", normalization.to_dict())
        _save_scan_points(run, work_points, work_normals)
        run.save_checkpoint(fitter.state_dict())
        run.log(
            f"fit {scan_path}: {len(cloud.points)} points ({len(work_points)} used"
            f"{', a random subset: the scan has more than max_points' if used['subsampled'] else ''}"
            f"{_dropped_text(used['isolated_dropped'])}), "
            f"normals={'yes' if cloud.normals is not None else 'no'}, preset={config.preset}, "
            f"device={fitter.device}, seed={config.seed}"
        )
        if normals_report.get("scan_normals", {}).get("dropped"):
            run.log(_dropped_normals_text(normals_report["scan_normals"]))
        # config.json comes last: a folder holding it holds everything a resume needs (kill-safety).
        resolved = config.to_dict() | {"scan": str(Path(scan_path).resolve()), "levers": config.levers()}
        run.write_json("config.json", resolved)
    except BaseException:
        if not existed:
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    return _train_and_mesh(run, fitter, normalization, progress, thumbnail)


def _usable_scan_normals(points: np.ndarray, normals: np.ndarray | None) -> tuple[np.ndarray | None, dict]:
    """The scan's normals, or None when their signs are wrong, and a report for meta.json.

    Normals of arbitrary sign (a plane fit saved without orientation) or flipped patch by patch (views
    merged with opposite orientations) turn the start inside out where they are wrong and the normal term
    then holds a surface folded along their walls. They are dropped and the fit runs as for a scan without
    normals: orienting their exact directions by a spanning tree instead was measured worse, because at
    sharp edges the tree flips whole faces that the normal term then holds (fandisk, one-sided: CD-L1
    16.6 against 8.3 without normals).
    """
    if normals is None:
        return None, {}
    from scipy.spatial import cKDTree

    from recon.core.normals import (
        CONSISTENCY_PROBES,
        MAX_FLIPPED_SHARE,
        MIN_CONSISTENCY,
        flipped_share,
        orientation_consistency,
        voxel_subsample,
    )

    start = time.perf_counter()
    shared = {"probes": voxel_subsample(points, CONSISTENCY_PROBES), "tree": cKDTree(points)}
    report: dict = {"consistency": round(orientation_consistency(points, normals, **shared), 4)}
    if report["consistency"] < MIN_CONSISTENCY:
        report["dropped"] = "arbitrary signs"
    else:
        report["flipped_share"] = round(flipped_share(points, normals, **shared), 4)
        report["dropped"] = "flipped patches" if report["flipped_share"] > MAX_FLIPPED_SHARE else False
    report["seconds"] = round(time.perf_counter() - start, 3)
    return (None if report["dropped"] else normals), {"scan_normals": report}


def _dropped_normals_text(report: dict) -> str:
    if report["dropped"] == "flipped patches":
        why = (
            f"{100 * report['flipped_share']:.0f} % of the scan lies in patches whose normals point against "
            "the rest of their surface"
        )
    else:
        why = f"only {100 * report['consistency']:.0f} % of neighbouring normals agree in sign"
    return (
        f"the scan's normals are not consistently oriented ({why}): fitting without them, as for a scan "
        "without normals"
    )


def _dropped_text(count: int) -> str:
    return f", {count} isolated points dropped" if count else ""


def _points_used(n_scan: int, n_used: int, max_points: int) -> dict:
    """What meta.json says about the points a fit used: the scan's count, the count used, whether a random
    subset was taken (more than ``max_points``) and how many isolated points were dropped from it."""
    n_kept = min(n_scan, max_points)
    return {
        "scan_points": n_scan,
        "points_used": n_used,
        "subsampled": n_scan > max_points,
        "isolated_dropped": n_kept - n_used,
    }


def resume_run(
    run_dir: str | os.PathLike, *, progress: ProgressFn | None = None, thumbnail: bool = True
) -> FitResult:
    """Continue an interrupted fit from its latest checkpoint (same result as an uninterrupted run)."""
    run = RunFolder.open(run_dir)
    if run.is_done():
        raise RunDirError(f"{run.path} is already finished (DONE exists); use recon extract to re-mesh it")
    fitter, normalization = load_fitter(run)
    run.remove_stale_temporaries()
    dropped = run.truncate_metrics(fitter.step)
    run.log(f"resume at step {fitter.step} (dropped {dropped} metrics records logged after that checkpoint)")
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
    resolution = resolution or config.mesh.resolution
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
    normalization = _load_normalization(run)
    work_points, work_normals = _load_scan_points(run)
    fitter = LevelSetFitter(work_points, work_normals, config, initialize=False)
    state = run.load_checkpoint(map_location=fitter.device, required=LevelSetFitter.REQUIRED_STATE)
    try:
        fitter.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        problem = " ".join(str(exc).split())[:160]
        raise RunDirError(
            f"{run.checkpoint_path} does not fit this run's model and config ({type(exc).__name__}: "
            f"{problem}); it is refused"
        ) from exc
    return fitter, normalization


def load_config(run: RunFolder) -> FitConfig:
    """The run's FitConfig: plain JSON data, checked field by field (never code)."""
    config = run.read_json("config.json")
    if not isinstance(config, dict):
        raise RunDirError(f"{run.config_path} is not a valid fit config (not a JSON object)")
    try:
        return FitConfig.from_dict(config).validate()
    except (TypeError, ValueError, ReconError) as exc:
        raise RunDirError(f"{run.config_path} is not a valid fit config: {exc}") from exc


def _load_normalization(run: RunFolder) -> Normalization:
    path = run.path / "normalization.json"
    try:
        normalization = Normalization.from_dict(run.read_json("normalization.json"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RunDirError(f"{path} is corrupt ({type(exc).__name__}: {exc})") from exc
    if not (np.isfinite(normalization.center).all() and np.isfinite(normalization.scale)):
        raise RunDirError(f"{path} is corrupt (non-finite centre or scale)")
    if normalization.scale <= 0:
        raise RunDirError(f"{path} is corrupt (scale {normalization.scale} is not positive)")
    return normalization


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


def working_mesh(fitter: LevelSetFitter, resolution: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The zero level set meshed at ``resolution``³ in the working frame: (v, 3) vertices, (f, 3) faces,
    and its report (sizes, topology, seconds)."""
    from recon.core.extract import extract_mesh
    from recon.core.mesh_ops import keep_largest_component, mesh_report

    cfg = fitter.config
    voxel = 2 * cfg.mesh.extract_bound / (resolution - 1)
    start = time.perf_counter()
    vertices, faces = extract_mesh(
        closed_field(fitter, cfg.mesh.extract_bound, 2 * voxel),
        resolution=resolution,
        bound=cfg.mesh.extract_bound,
    )
    if len(faces) == 0:
        raise InputError("the fitted level set has no surface inside the meshing box (the fit diverged)")
    if cfg.mesh.keep_largest_component:
        vertices, faces = keep_largest_component(vertices, faces)
    refined = None
    if cfg.mesh.refine_neighbors:
        from recon.core.refine import refine_to_scan

        points = fitter.points.detach().cpu().numpy()
        vertices, refined = refine_to_scan(vertices, faces, points, cfg.mesh.refine_neighbors)
    report = mesh_report(vertices, faces)
    report["resolution"] = resolution
    if refined is not None:
        report["refined"] = refined
    report["seconds"] = round(time.perf_counter() - start, 3)
    return vertices, faces, report


def write_mesh(
    fitter: LevelSetFitter,
    normalization: Normalization,
    path: Path,
    *,
    resolution: int,
    force: bool = True,
) -> dict:
    """Mesh the zero level set at ``resolution``³, map it to the scan frame, save it; return its report."""
    from recon.io import save_mesh

    vertices, faces, report = working_mesh(fitter, resolution)
    save_mesh(path, normalization.to_scan(vertices), faces, force=force)
    return report


def _train_and_mesh(
    run: RunFolder,
    fitter: LevelSetFitter,
    normalization: Normalization,
    progress: ProgressFn | None,
    thumbnail: bool,
) -> FitResult:
    _train(run, fitter, progress)
    fitter, (vertices, faces, report), check = _checked_mesh(run, fitter, normalization, progress)
    from recon.io import save_mesh

    cfg = fitter.config
    scan_vertices = normalization.to_scan(vertices)
    save_mesh(run.mesh_path, scan_vertices, faces, force=True)
    run.log(f"mesh {run.mesh_path}: {report}")
    if cfg.mesh.trim:
        report["trimmed"] = _write_trimmed(run, fitter, normalization, vertices, faces)
    _record_model_report(run, fitter)
    if thumbnail:
        run.try_thumbnail(scan_vertices, faces)
    summary = {"steps": fitter.step, "train_seconds": round(fitter.seconds, 3), "mesh": report}
    run.mark_done(summary | {"surface_check": check})
    return FitResult(run.path, run.mesh_path, fitter.step, fitter.seconds, report, check)


def _train(run: RunFolder, fitter: LevelSetFitter, progress: ProgressFn | None) -> None:
    """Step ``fitter`` to its config's step count, logging and checkpointing on the way."""
    cfg = fitter.config
    with _sigint_between_steps() as interrupted:
        while fitter.step < cfg.optimizer.steps:
            log = fitter.train_step()
            if log.step % cfg.log_every == 0 or log.step == cfg.optimizer.steps:
                record = vars(log) | {"train_seconds": round(fitter.seconds, 3)}
                run.append_metrics(record)
                run.log(
                    f"step {log.step}/{cfg.optimizer.steps} loss {log.loss:.5f} levelset {log.levelset:.5f} "
                    f"data {log.data:.5f} normal {log.normal:.4f} lr {log.lr:.2e}"
                )
            if log.step % cfg.checkpoint_every == 0:
                run.save_checkpoint(fitter.state_dict())
            if progress is not None:
                progress(log)
            if interrupted():
                run.save_checkpoint(fitter.state_dict())
                run.log(f"interrupted at step {fitter.step}; checkpoint saved")
                raise KeyboardInterrupt
    run.save_checkpoint(fitter.state_dict())


def _checked_mesh(
    run: RunFolder, fitter: LevelSetFitter, normalization: Normalization, progress: ProgressFn | None
):
    """Mesh the fit and check it against the scan. A suspect mesh is handled as ``config.on_suspect`` says
    (refit from the other starts and keep the first attempt that passes, see :func:`_next_attempt`; refuse;
    or warn); with 'repair', a mesh with a lobe or a tear is also refitted with the next seeds, and when none
    is free of both, the attempt with the fewest flaws and the least surface beyond the closure is kept.

    Returns the fitter the mesh came from, (vertices, faces, report) in the working frame, and the check
    (a dict, also in meta.json). Raises FitRefusedError when the mesh stays suspect and the config does
    not say 'warn'; the mesh is then kept as mesh_suspect.ply only.
    """
    cfg = fitter.config
    attempts, results = [], []
    while True:
        mesh = working_mesh(fitter, cfg.mesh.resolution)
        check = _surface_check(fitter, mesh, _host_points(fitter))
        results.append((fitter, mesh, check))
        attempts.append(_attempt_record(fitter, check))
        run.log(
            f"surface check ({fitter.start_orientation} start, seed {fitter.config.seed}): {check_summary(check)}"
        )
        attempt = _next_attempt(fitter, attempts)
        if cfg.on_suspect != "repair" or attempt is None or not (check["suspect"] or _flaws(check)):
            break
        why = "failed its check" if check["suspect"] else " and ".join(_flaws(check))
        run.log(f"the surface {why}; refitting from the {attempt[0]} start, seed {attempt[1]}")
        fitter = fitter.restarted(start_orientation=attempt[0], seed=attempt[1])
        _train(run, fitter, progress)
    fitter, mesh, check = _kept_attempt(results)
    if fitter is not results[-1][0]:
        fitter.seconds = results[-1][0].seconds  # the clock counts every attempt
        run.save_checkpoint(fitter.state_dict())  # so that re-meshing the run meshes the kept attempt
        run.log(f"kept the attempt from the {fitter.start_orientation} start, seed {fitter.config.seed}")
    check = check | {
        "start_orientation": fitter.start_orientation,
        "seed": fitter.config.seed,
        "start_jump": fitter.start_jump,
        "start_noise": fitter.start_noise,
        "start_smoothed": fitter.start_smoothed,
        "attempts": attempts,
    }
    _record_check(run, check)
    if check["suspect"] and cfg.on_suspect != "warn":
        from recon.io import save_mesh

        suspect_path = run.path / "mesh_suspect.ply"
        save_mesh(suspect_path, normalization.to_scan(mesh[0]), mesh[1], force=True)
        tried = ", ".join(f"{a['start_orientation']} seed {a['seed']}" for a in attempts)
        raise FitRefusedError(
            f"the fitted surface failed its check against the scan ({'; '.join(check['reasons'])}) with every "
            f"start tried ({tried}); it is kept as {suspect_path} only. Supply oriented normals, crop the scan "
            f"to one object, or try --preset paper"
        )
    return fitter, mesh, check


def _attempt_record(fitter: LevelSetFitter, check: dict) -> dict:
    """What ``meta.json`` keeps of one attempt (``surface_check.attempts``)."""
    keys = (
        "suspect",
        "has_lobe",
        "invented_beyond_closure_share",
        "has_tear",
        "scan_torn_patches",
        "reasons",
    )
    return {"start_orientation": fitter.start_orientation, "seed": fitter.config.seed} | {
        key: check[key] for key in keys
    }


LOBE_RESEEDS = 2
"""Refits with the next seeds of a mesh that passes its check but has a lobe beyond the closure or a tear. A
lobe in unseen space is an accident of one optimization (on the bench it grew on one seed of three,
bench/surface_check/beyond_closure.md), and so is a tear (a foot's toes torn away on one arithmetic draw of
six, bench/surface_check/tears.md), not a wrong inside/outside, so the same start with another seed is the
repair; another orientation is not."""


def _flaws(check: dict) -> list[str]:
    """What a mesh that may pass its check still gets wrong: a lobe beyond the closure, a tear."""
    return [name for key, name in (("has_lobe", "has a lobe beyond the closure"),
                                   ("has_tear", "tore away from part of the scan")) if check.get(key)]  # fmt: skip


def _next_attempt(fitter: LevelSetFitter, attempts: list[dict]) -> tuple[str, int] | None:
    """(start orientation, seed) of the refit after ``attempts`` (None: nothing left to try).

    After a suspect mesh, the next untried orientation of recon.core.fit.START_ORIENTATIONS with the first
    attempt's seed; after a mesh with a lobe or a tear, the same start with the next seed, up to ``LOBE_RESEEDS``
    times. Only a signed-distance start has either.
    """
    if fitter.config.start.init != "signed-distance":
        return None
    last = attempts[-1]
    if not last["suspect"]:
        same_start = [a for a in attempts if a["start_orientation"] == last["start_orientation"]]
        if len(same_start) > LOBE_RESEEDS:
            return None
        return last["start_orientation"], same_start[0]["seed"] + len(same_start)
    tried = {a["start_orientation"] for a in attempts}
    remaining = [o for o in fitter.start_orientations() if o not in tried]
    return (remaining[0], attempts[0]["seed"]) if remaining else None


def _kept_attempt(results: list[tuple]) -> tuple:
    """The (fitter, mesh, check) to keep: of those that pass, one without a lobe or a tear, else the one with
    the fewest of them, then the least surface beyond the closure and the least scan torn away; the last when
    none passes."""
    passing = [r for r in results if not r[2]["suspect"]]
    if not passing:
        return results[-1]
    return min(
        passing,
        key=lambda r: (
            len(_flaws(r[2])),
            r[2]["invented_beyond_closure_share"] or 0.0,
            r[2].get("scan_torn_patches") or 0.0,
        ),
    )


def _host_points(fitter: LevelSetFitter) -> np.ndarray:
    """(n, 3) the fitter's scan points in the working frame, on the host."""
    return fitter.points.detach().cpu().numpy()


def _surface_check(fitter: LevelSetFitter, mesh, scan: np.ndarray) -> dict:
    from recon.core.surface_check import check_surface

    vertices, faces, _ = mesh
    cfg = fitter.config
    return check_surface(
        vertices,
        faces,
        scan,
        domain_bound=cfg.mesh.extract_bound,
        seed=cfg.seed,
        winding=fitter.scan_winding(),
    ).to_dict()


def check_summary(check: dict) -> str:
    """One line: the verdict and the numbers behind it (‰ of the scan's diagonal)."""
    verdict = "SUSPECT: " + "; ".join(check["reasons"]) if check["suspect"] else "ok"
    if _flaws(check) and not check["suspect"]:
        verdict = "ok, but it " + " and ".join(_flaws(check))
    share = check.get("invented_beyond_closure_share")
    beyond_closure = "" if share is None else f", beyond the closure {100 * share:.1f}%"
    return (
        f"{verdict} (scan→mesh median {1000 * check['scan_to_mesh_median']:.2f}‰, "
        f"95% {1000 * check['scan_to_mesh_p95']:.2f}‰, within 1%: {100 * check['scan_within_1pct']:.1f}%; "
        f"invented surface {100 * check['invented_area_share']:.1f}% "
        f"(outside the scan's hull {100 * check['invented_outside_share']:.1f}%{beyond_closure}); "
        f"volume {100 * check['volume_share']:.1f}% of the domain)"
    )


def _record_check(run: RunFolder, check: dict) -> None:
    meta = run.read_json("meta.json")
    run.write_json("meta.json", meta | {"surface_check": check})


def _write_trimmed(
    run: RunFolder, fitter: LevelSetFitter, normalization: Normalization, vertices, faces
) -> dict:
    """Write mesh_trimmed.ply: the mesh without the surface no scan point supports (recon.core.trim)."""
    from recon.core.trim import trim_unsupported
    from recon.io import save_mesh

    trimmed_vertices, trimmed_faces, info = trim_unsupported(vertices, faces, _host_points(fitter))
    if len(trimmed_faces):
        save_mesh(
            run.path / "mesh_trimmed.ply", normalization.to_scan(trimmed_vertices), trimmed_faces, force=True
        )
    run.log(f"trimmed mesh: {info}")
    return info


@contextlib.contextmanager
def _sigint_between_steps() -> Iterator[Callable[[], bool]]:
    """Turn the first Ctrl-C into a request that the loop honours after the current step.

    A KeyboardInterrupt raised inside a step would leave the model, optimizer and RNG out of step with
    each other, and a checkpoint of that state would not resume to the uninterrupted result. A second
    Ctrl-C interrupts at once (the last periodic checkpoint is then what a resume starts from). Outside
    the main thread signals cannot be caught and nothing changes.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def request(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _record_model_report(run: RunFolder, fitter: LevelSetFitter) -> None:
    """Run the network's own check of what it guarantees, when it has one (recon.models.registry)."""
    report = getattr(fitter.model, "fit_report", None)
    result = report(seed=fitter.config.seed) if report is not None else None
    if result is not None:
        name, values, summary = result
        run.write_json(f"{name}.json", values)
        run.log(summary)


def _save_scan_points(run: RunFolder, points: np.ndarray, normals: np.ndarray | None) -> None:
    from recon.atomic import atomic_path

    with atomic_path(run.path / "scan_points.npz") as tmp, open(tmp, "wb") as f:
        arrays = {"points": points} | ({"normals": normals} if normals is not None else {})
        np.savez(f, **arrays)


def _load_scan_points(run: RunFolder) -> tuple[np.ndarray, np.ndarray | None]:
    from recon.io import load_scan

    path = run.path / "scan_points.npz"
    if not path.exists():
        raise RunDirError(f"{run.path} has no scan_points.npz")
    try:
        cloud = load_scan(path, min_points=MIN_FIT_POINTS)
    except InputError as exc:
        raise RunDirError(f"the run's scan points are unusable: {exc}") from exc
    with np.load(path) as data:
        normals = data["normals"] if "normals" in data.files else None
    if normals is not None and normals.shape != cloud.points.shape:
        raise RunDirError(f"{path}: normals and points differ in shape")
    return cloud.points.astype(np.float32), None if normals is None else normals.astype(np.float32)
