"""One runner for a baseline: `recon baseline` and `recon batch` both write their run folders through it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recon.errors import InputError, ReconError
from recon.run import RunFolder, environment_metadata

MethodResult = tuple[np.ndarray, np.ndarray, dict]
"""(v, 3) vertices in the scan's frame, (f, 3) faces and the method's report."""


def run_baseline(
    method: str,
    scan: str | Path,
    run_dir: str | Path,
    config: dict,
    run_method: Callable[[], MethodResult],
    *,
    seed: int,
    device: str = "cpu",
    force: bool = False,
    thumbnail: bool = False,
    seconds: float | None = None,
) -> tuple[RunFolder, dict]:
    """Run ``run_method()`` and write its run folder: config.json, meta.json, then mesh.ply.

    Nothing is created before the method succeeds, so a failure leaves no half-written folder. A native
    solver may fail in any way on odd input; such failures become one ReconError naming the method and scan.
    An empty mesh is an InputError. ``DONE`` is left to the caller (the batch writes it after evaluating).

    ``seconds`` replaces the measured wall time when the method's cost has its own rule (poisson-best's
    sweep times the shared preparation and the chosen solve only).

    Returns
    -------
    run : RunFolder
    summary : dict
        ``seconds`` (the method alone), ``n_vertices`` and ``n_faces`` of the written mesh.
    """
    meta = environment_metadata(device=device, seed=seed)
    start = time.perf_counter()
    try:
        vertices, faces, info = run_method()
    except ReconError:
        raise
    except Exception as exc:  # noqa: BLE001 - a native solver may fail in any way on odd input
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ReconError(f"{method} failed on {scan} ({problem})") from exc
    seconds = time.perf_counter() - start if seconds is None else seconds
    if len(faces) == 0:
        raise InputError(f"{method} produced an empty mesh (no faces) for {scan}")
    run = RunFolder.create(run_dir, force=force)
    run.write_method_result(
        method=method,
        scan=str(scan),
        config=config,
        meta=meta | {"method": method, "seconds": seconds, "info": info},
        vertices=vertices,
        faces=faces,
    )
    if thumbnail:
        run.try_thumbnail(vertices, faces)
    return run, {"seconds": seconds, "n_vertices": len(vertices), "n_faces": len(faces)}
