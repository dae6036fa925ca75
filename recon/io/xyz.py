"""Whitespace- or comma-separated point columns: ``.xyz``, ``.xyzn``, ``.xyzrgb`` and text ``.pts``.

Column rules: the first three columns are x y z. With exactly six columns the next three are normals,
unless they look like 8-bit colours (all non-negative integers, some above 1), as in ``x y z r g b``;
other column counts (intensity, colours) carry no normals. ``.xyzn`` always has normals and ``.xyzrgb``
never does. A text ``.pts`` may start with a line holding only the point count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail


def read_xyz(path: Path) -> RawGeometry:
    """Points and, where the columns say so, normals of a text point file."""
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    declared = None
    if path.suffix.lower() == ".pts" and lines and lines[0].strip().isdigit():
        declared = int(lines[0])
        lines = lines[1:]
    table = _table(lines, path)
    if declared is not None and declared != len(table):
        raise fail(path, f"PTS header declares {declared} points, the file has {len(table)}")
    return RawGeometry(table[:, :3], _normals(table, path.suffix.lower()), None)


def write_xyz(
    path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None = None
) -> None:
    """Write ``x y z [nx ny nz]`` rows; a ``.pts`` file starts with the point count."""
    digits = "%.17g"  # exact for float64, and for float32 values read back as float64
    columns = points if normals is None else np.hstack([points, normals])
    fmt = " ".join([digits] * 3 + ([] if normals is None else ["%.9g"] * 3))
    with open(path, "w") as f:
        if path.suffix.lower() == ".pts":
            f.write(f"{len(points)}\n")
        np.savetxt(f, columns, fmt=fmt)


def _table(lines: list[bytes], path: Path) -> np.ndarray:
    """(n, k) float64 table of the numeric rows, k >= 3."""
    rows = [line for line in lines if not line.lstrip().startswith((b"#", b"//"))]
    if not rows:
        raise fail(path, "file has no point rows")
    delimiter = "," if b"," in rows[0] else None
    try:
        table = np.loadtxt(rows, dtype=np.float64, ndmin=2, delimiter=delimiter)
    except ValueError as error:
        raise fail(path, f"bad point row: {error}") from None
    if table.shape[1] < 3:
        raise fail(path, f"point rows have {table.shape[1]} columns, at least 3 (x y z) are needed")
    return table


def _normals(table: np.ndarray, suffix: str) -> np.ndarray | None:
    if suffix == ".xyzrgb" or table.shape[1] < 6:
        return None
    extra = table[:, 3:6]
    if suffix == ".xyzn":
        return extra
    if table.shape[1] != 6:
        return None
    looks_like_colour = (extra >= 0).all() and (extra == np.round(extra)).all() and extra.max() > 1
    return None if looks_like_colour else extra
