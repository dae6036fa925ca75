"""What ``recon view`` shows: files and run folders turned into coloured geometries.

Every input becomes a :class:`ViewItem` whose role is ``"reconstruction"`` (a file with triangles, or a
run folder's ``mesh.ply``) or ``"scan"`` (a point set, or the scan a run folder was fitted to). Error
colouring paints each side by its distance to the other, so spurious sheets light up on the
reconstruction and holes light up on the scan.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from recon.errors import InputError, RunDirError
from recon.viewer.colors import ColorLegend, error_colors, normal_colors
from recon.viewer.distance import distance_to_geometries
from recon.viewer.geometry import OVERLAY_COLOR, PALETTE, SCAN_COLOR, Geometry, make_geometry, union_bounds

RECONSTRUCTION, SCAN = "reconstruction", "scan"
DEFAULT_VMAX_FRACTION = 0.01
"""Default end of the error scale as a fraction of the bounding-box diagonal (the F-score threshold)."""


@dataclass(frozen=True)
class ViewItem:
    """One thing to show.

    Attributes
    ----------
    geometry : Geometry
    role : str
        ``"reconstruction"`` or ``"scan"``.
    label : str
        Short name for row labels and messages.
    """

    geometry: Geometry
    role: str
    label: str


@dataclass(frozen=True)
class ErrorSummary:
    """Distances of one item's vertices to its reference, in the data's units."""

    label: str
    reference: str
    mean: float
    p95: float
    max: float
    above_scale: float
    """Fraction of vertices beyond the end of the colour scale."""


def load_items(paths: Sequence[str | os.PathLike]) -> tuple[list[ViewItem], list[str]]:
    """Items for files and run folders, in order, and notes about anything skipped.

    A run folder (a directory holding ``mesh.ply``) gives its mesh and, when ``config.json`` names a
    scan that still exists, that scan.
    """
    items: list[ViewItem] = []
    notes: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            run_items, run_notes = _load_run_folder(path)
            items += run_items
            notes += run_notes
        else:
            items.append(load_item(path))
    return items, notes


def load_item(path: str | os.PathLike) -> ViewItem:
    """A file as a reconstruction (it has triangles) or a scan (points only)."""
    path = Path(path)
    geometry = _read_geometry(path)
    return ViewItem(geometry, RECONSTRUCTION if geometry.is_mesh else SCAN, path.name)


def load_points(path: str | os.PathLike) -> Geometry:
    """A point set to overlay: ``.npz`` (key ``points``), ``.npy`` (n, 3), or any scan or mesh file."""
    path = Path(path)
    if path.suffix.lower() in (".npz", ".npy"):
        points = _read_numpy_points(path)
    else:
        points = _read_geometry(path).vertices
    return make_geometry(points, colors=OVERLAY_COLOR, name=path.name)


def color_default(items: Sequence[ViewItem]) -> list[ViewItem]:
    """Reconstructions in successive palette colours, scans in orange."""
    out, k = [], 0
    for item in items:
        if item.role == RECONSTRUCTION:
            out.append(replace(item, geometry=item.geometry.with_colors(PALETTE[k % len(PALETTE)])))
            k += 1
        else:
            out.append(replace(item, geometry=item.geometry.with_colors(SCAN_COLOR)))
    return out


def color_normals(items: Sequence[ViewItem]) -> list[ViewItem]:
    """Items coloured by their normals; point sets without normals keep the scan colour."""
    return [
        replace(item, geometry=item.geometry.with_colors(normal_colors(item.geometry.normals)))
        if item.geometry.normals is not None
        else replace(item, geometry=item.geometry.with_colors(SCAN_COLOR))
        for item in items
    ]


def color_errors(
    items: Sequence[ViewItem],
    against: ViewItem | None = None,
    *,
    vmax: float | None = None,
    cmap: str = "viridis",
) -> tuple[list[ViewItem], ColorLegend, list[ErrorSummary]]:
    """Colour reconstructions by their distance to ``against`` (else to the scans), the rest by the reverse.

    Parameters
    ----------
    items : sequence of ViewItem
    against : ViewItem or None
        Ground truth or scan to compare reconstructions with; it is returned as the last item, coloured
        by its distance to the reconstructions.
    vmax : float or None
        Distance at the end of the colour scale; None takes 1% of the bounding-box diagonal.

    Returns
    -------
    items : list of ViewItem
        The inputs (then ``against``), recoloured.
    legend : ColorLegend
    summaries : list of ErrorSummary
        One per returned item.
    """
    recons = [i for i in items if i.role == RECONSTRUCTION]
    scans = [i for i in items if i.role == SCAN]
    refs = [against] if against is not None else scans
    if not recons and against is not None:
        recons, refs = [against], scans
    if not recons or not refs:
        raise InputError(
            "--color error needs a reconstruction and something to compare it with: "
            "give a mesh and a scan, a run folder, or --against GT_OR_SCAN"
        )
    everything = list(items) + ([against] if against is not None else [])
    if vmax is None:
        lo, hi = union_bounds([i.geometry for i in everything])
        vmax = DEFAULT_VMAX_FRACTION * float(np.linalg.norm(hi - lo))
    elif vmax <= 0:
        raise InputError(f"--vmax must be positive, got {vmax}")
    label = _error_label(vmax, everything)
    out, summaries = [], []
    for item in everything:
        others = refs if any(item is r for r in recons) else recons
        d = distance_to_geometries(item.geometry.vertices, [o.geometry for o in others])
        colors, legend = error_colors(d, vmax=vmax, cmap=cmap, label=label)
        out.append(replace(item, geometry=item.geometry.with_colors(colors)))
        summaries.append(_summarize(item.label, ", ".join(o.label for o in others), d, vmax))
    return out, legend, summaries


def _error_label(vmax: float, items: Sequence[ViewItem]) -> str:
    lo, hi = union_bounds([i.geometry for i in items])
    percent = 100.0 * vmax / max(float(np.linalg.norm(hi - lo)), 1e-300)
    return (
        "distance between reconstruction and scan/GT, in scene units "
        f"(the scale ends at {percent:.3g}% of the bounding-box diagonal)"
    )


def _summarize(label: str, reference: str, d: np.ndarray, vmax: float) -> ErrorSummary:
    return ErrorSummary(
        label=label,
        reference=reference,
        mean=float(d.mean()),
        p95=float(np.percentile(d, 95)),
        max=float(d.max()),
        above_scale=float((d > vmax).mean()),
    )


def _load_run_folder(path: Path) -> tuple[list[ViewItem], list[str]]:
    mesh_path = path / "mesh.ply"
    if not mesh_path.is_file():
        raise RunDirError(f"{path} is a folder without mesh.ply; give a finished run folder or files")
    mesh = _read_geometry(mesh_path)
    items = [ViewItem(mesh, RECONSTRUCTION, f"{path.name}/mesh.ply")]
    scan = _run_scan_path(path)
    if scan is None:
        return items, [f"{path}: config.json names no input scan; showing the mesh only"]
    if not scan.is_file():
        return items, [f"{path}: its input scan {scan} no longer exists; showing the mesh only"]
    scan_item = load_item(scan)
    return items + [replace(scan_item, role=SCAN)], []


def _run_scan_path(run: Path) -> Path | None:
    config = run / "config.json"
    if not config.is_file():
        return None
    try:
        scan = json.loads(config.read_text()).get("scan")
    except (OSError, ValueError, AttributeError) as exc:
        raise RunDirError(f"cannot read {config}: {exc}") from exc
    if not scan:
        return None
    scan = Path(scan)
    return scan if scan.is_absolute() else run / scan


def _read_geometry(path: Path) -> Geometry:
    """Read a scan or mesh with ``recon.io`` (every format the fit reads)."""
    from recon.io import load_scan

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    cloud = load_scan(path)
    points, normals, faces = cloud.points, cloud.normals, cloud.faces
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        raise InputError(f"{path} holds no points")
    if not np.isfinite(points).all():
        raise InputError(f"{path} has NaN or infinite coordinates")
    return make_geometry(points, faces, normals=normals, name=path.name)


def _read_numpy_points(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            arrays = {k: data[k] for k in data.files}
        if "points" in arrays:
            points = arrays["points"]
        else:
            candidates = [a for a in arrays.values() if a.ndim == 2 and a.shape[1] == 3]
            if not candidates:
                raise InputError(f"{path} has no 'points' array (and no other (n, 3) array)")
            points = candidates[0]
    else:
        points = data
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise InputError(f"{path}: expected an (n, 3) array of points, got shape {points.shape}")
    return points[:, :3].astype(np.float64)
