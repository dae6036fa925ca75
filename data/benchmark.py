"""The default benchmark: real meshes turned into FAUST-like raw scans by the virtual scanner.

``build_benchmark(out_dir)`` writes::

    out_dir/scans/<name>_<variant>.ply    points + scanner-oriented normals
    out_dir/gt/<name>.ply                 the ground-truth mesh, in the same frame as its scans
    out_dir/labels/<name>_<variant>.npz   view id and outlier flag per point, camera positions
    out_dir/manifest.csv, manifest.json   the rows, scanner settings and seeds

Every mesh is brought into one frame before scanning: its up axis is rotated onto +y (like FAUST), its
bounding-box centre moved to the origin and its bounding-box diagonal scaled to 1, so lengths are
comparable across meshes (units ``bbox-diagonal``). The transform from the source file is recorded.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from recon.atomic import atomic_path
from recon.errors import ReconError, RunDirError
from recon.io import load_mesh, load_scan, save_mesh, save_point_cloud

from .manifest import write_manifest
from .scanner import PRESETS, ScannerConfig, scan_mesh, scanner_preset
from .sources import DEFAULT_BENCHMARK, MeshSource, load_source_mesh, mesh_source

UNITS = "bbox-diagonal"
FRAME = "source up axis rotated onto +y, bounding-box centre at the origin, bounding-box diagonal 1"
_UP_AXES = {
    "+x": (1, 0, 0),
    "-x": (-1, 0, 0),
    "+y": (0, 1, 0),
    "-y": (0, -1, 0),
    "+z": (0, 0, 1),
    "-z": (0, 0, -1),
}


def build_benchmark(
    out_dir: str | os.PathLike,
    meshes: Sequence[str] = DEFAULT_BENCHMARK,
    variants: Sequence[str] = ("clean", "noisy", "partial"),
    seed: int = 0,
    n_points: int = 100_000,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    nonormals: bool = False,
) -> list[dict]:
    """Scan ``meshes`` with each scanner preset in ``variants`` and write the benchmark to ``out_dir``.

    Raw scans of the catalog (kind 'scan') are written once, as variant 'real', without ground truth.
    ``nonormals`` adds, for every scan, a copy as x y z only (id ``<id>-nonormals``, variant
    ``<variant>-nonormals``): the same points, the normals stripped, as a scan without normals arrives.

    Returns
    -------
    list of dict
        The manifest rows (absolute paths), with timing and per-scan statistics.
    """
    out = Path(out_dir)
    sources = [mesh_source(name) for name in dict.fromkeys(meshes)]
    unknown = [v for v in variants if v not in PRESETS]
    if unknown or not variants:
        raise ReconError(
            f"unknown scanner variant(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PRESETS)}"
        )
    if not sources:
        raise ReconError("no meshes to scan")
    _refuse_overwrite(out, sources, variants, force, nonormals)
    report = progress or (lambda _msg: None)

    entries, scanned = [], {}
    for source in sources:
        started = time.perf_counter()
        mesh, transform = normalized_mesh(load_source_mesh(source), source.up)
        if source.kind == "scan":
            entries.append(_write_real_scan(out, source, mesh, transform))
        else:
            entries.extend(_write_scans(out, source, mesh, transform, variants, seed, n_points))
        if nonormals:
            entries.extend(
                _without_normals(out, e) for e in list(entries) if e["details"]["mesh"] == source.name
            )
        scanned[source.name] = round(time.perf_counter() - started, 3)
        report(f"{source.name}: {len(mesh.vertices)} vertices, {scanned[source.name]:.1f} s")

    configs = {v: scanner_preset(v, n_points=n_points).to_dict() for v in variants}
    for config in configs.values():
        del config["seed"]  # each scan has its own seed, recorded with it
    extra = {"seed": seed, "units": UNITS, "frame": FRAME, "scanner": configs}
    write_manifest(
        out, [_json_safe(e) for e in entries], extra=_extra_with_details(extra, entries), force=True
    )
    return entries


def normalized_mesh(mesh, up: str):
    """``mesh`` rotated so that ``up`` becomes +y, centred on its box and scaled to a unit box diagonal.

    Returns
    -------
    mesh : trimesh.Trimesh
        A transformed copy.
    transform : (4, 4) float
        Homogeneous matrix from the source frame to the benchmark frame.
    """
    import trimesh

    if up not in _UP_AXES:
        raise ReconError(f"bad up axis {up!r}; choose from {', '.join(_UP_AXES)}")
    rotation = np.eye(4)
    rotation[:3, :3] = _rotation_onto_y(np.asarray(_UP_AXES[up], dtype=float))
    rotated = mesh.vertices @ rotation[:3, :3].T
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    scale = 1.0 / float(np.linalg.norm(hi - lo))
    fit = np.eye(4) * scale
    fit[3, 3] = 1.0
    fit[:3, 3] = -(lo + hi) / 2.0 * scale
    transform = fit @ rotation
    out = trimesh.Trimesh(vertices=rotated * scale + fit[:3, 3], faces=mesh.faces.copy(), process=False)
    return out, transform


def scan_file(
    mesh_path: str | os.PathLike, out_path: str | os.PathLike, config: ScannerConfig, force: bool = False
):
    """Scan the mesh file ``mesh_path`` (in its own frame) and write the points and normals to ``out_path``.

    Returns
    -------
    VirtualScan
    """
    if Path(out_path).exists() and not force:
        raise RunDirError(f"{out_path} exists; pass --force to overwrite it")
    scan = scan_mesh(load_mesh(mesh_path), config)
    _save_scan(out_path, scan.points, scan.normals)
    return scan


def scan_seed(seed: int, name: str, variant: str) -> int:
    """Seed of one scan: depends on the benchmark seed, the mesh and the variant only."""
    return int(np.random.SeedSequence([seed, zlib.crc32(f"{name}/{variant}".encode())]).generate_state(1)[0])


def _write_scans(out, source: MeshSource, mesh, transform, variants, seed, n_points) -> list[dict]:
    gt_path = out / "gt" / f"{source.name}.ply"
    save_mesh(gt_path, mesh.vertices, mesh.faces, force=True)
    entries = []
    for variant in variants:
        config = scanner_preset(variant, n_points=n_points, seed=scan_seed(seed, source.name, variant))
        started = time.perf_counter()
        scan = scan_mesh(mesh, config)
        seconds = time.perf_counter() - started
        scan_id = f"{source.name}_{variant}"
        scan_path = out / "scans" / f"{scan_id}.ply"
        _save_scan(scan_path, scan.points, scan.normals)
        with atomic_path(out / "labels" / f"{scan_id}.npz") as tmp:
            np.savez_compressed(tmp, view_ids=scan.view_ids, outlier=scan.outlier, eyes=scan.eyes)
        entries.append(
            {
                "id": scan_id,
                "scan": scan_path,
                "gt": gt_path,
                "variant": variant,
                "source": f"{source.origin}:{source.member}",
                "n_points": len(scan.points),
                "units": UNITS,
                "details": {
                    "mesh": source.name,
                    "seed": config.seed,
                    "gt_vertices": len(mesh.vertices),
                    "gt_faces": len(mesh.faces),
                    "resolution": scan.resolution,
                    "hits_per_view": scan.hits_per_view,
                    "n_outliers": int(scan.outlier.sum()),
                    "scan_seconds": round(seconds, 3),
                    "labels": f"labels/{scan_id}.npz",
                    "source_to_benchmark": transform.tolist(),
                },
            }
        )
    return entries


def _write_real_scan(out, source: MeshSource, mesh, transform) -> dict:
    """A real range scan: its vertices, with normals facing the scanner (at the origin of its file)."""
    scanner = transform[:3, 3]  # where the origin of the source frame lands
    normals = np.array(mesh.vertex_normals, dtype=float)
    flip = np.einsum("ij,ij->i", normals, scanner - mesh.vertices) < 0
    normals[flip] *= -1.0
    scan_id = f"{source.name}_real"
    scan_path = out / "scans" / f"{scan_id}.ply"
    _save_scan(scan_path, mesh.vertices, normals)
    return {
        "id": scan_id,
        "scan": scan_path,
        "gt": None,
        "variant": "real",
        "source": f"{source.origin}:{source.member}",
        "n_points": len(mesh.vertices),
        "units": UNITS,
        "details": {"mesh": source.name, "source_to_benchmark": transform.tolist()},
    }


def _without_normals(out: Path, entry: dict) -> dict:
    """A copy of a written scan as x y z only, and its manifest entry."""
    scan_id = f"{entry['id']}-nonormals"
    scan_path = out / "scans" / f"{scan_id}.ply"
    points = load_scan(entry["scan"]).points
    save_point_cloud(scan_path, points.astype(np.float32), force=True)
    details = {**entry["details"], "normals": "stripped", "same_points_as": entry["id"]}
    return {
        **entry,
        "id": scan_id,
        "scan": scan_path,
        "variant": f"{entry['variant']}-nonormals",
        "details": details,
    }


def _refuse_overwrite(out: Path, sources, variants, force: bool, nonormals: bool = False) -> None:
    if force:
        return
    targets = [out / "manifest.csv", out / "manifest.json"]
    for s in sources:
        if s.kind == "scan":
            targets.append(out / "scans" / f"{s.name}_real.ply")
            continue
        targets.append(out / "gt" / f"{s.name}.ply")
        targets.extend(out / "scans" / f"{s.name}_{v}.ply" for v in variants)
    if nonormals:
        targets.extend(t.with_name(f"{t.stem}-nonormals.ply") for t in list(targets) if "scans" in t.parts)
    existing = [t for t in targets if t.exists()]
    if existing:
        raise RunDirError(
            f"{existing[0]} exists ({len(existing)} benchmark file(s) would be overwritten); pass --force"
        )


def _json_safe(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "details"}


def _extra_with_details(extra: dict, entries: list[dict]) -> dict:
    return {**extra, "details": {e["id"]: e.get("details", {}) for e in entries}}


def _rotation_onto_y(up: np.ndarray) -> np.ndarray:
    """(3, 3) proper rotation taking the axis-aligned unit vector ``up`` onto +y."""
    y = np.array([0.0, 1.0, 0.0])
    if np.allclose(up, y):
        return np.eye(3)
    if np.allclose(up, -y):
        return np.diag([1.0, -1.0, -1.0])
    axis = np.cross(up, y)  # a quarter turn about up × y
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + k + k @ k


def _save_scan(path, points: np.ndarray, normals: np.ndarray) -> None:
    """Binary PLY of float32 points and normals, as scanners write them (callers checked overwriting)."""
    save_point_cloud(path, points.astype(np.float32), normals.astype(np.float32), force=True)
