"""NumPy arrays: ``.npy`` holding (n, 3) points or (n, 6) points and normals; ``.npz`` with named arrays.

NPZ keys: ``points`` (or ``xyz`` / ``vertices``), optional ``normals``, optional ``faces`` (m, 3).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail

POINT_KEYS = ("points", "xyz", "vertices")


def read_npy(path: Path) -> RawGeometry:
    """Points and normals of an (n, 3) or (n, 6) array file."""
    array = _load(path)
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.shape[1] not in (3, 6):
        raise fail(path, f"expected an (n, 3) or (n, 6) array, got shape {getattr(array, 'shape', None)}")
    _numeric(array, path, "array")
    return RawGeometry(array[:, :3], array[:, 3:6] if array.shape[1] == 6 else None, None)


def read_npz(path: Path) -> RawGeometry:
    """Points, normals and faces stored under the keys named in the module docstring."""
    archive = _load(path)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise fail(path, "not an .npz archive")
    with archive:
        key = next((k for k in POINT_KEYS if k in archive.files), None)
        if key is None:
            raise fail(
                path,
                f"no points array: expected one of the keys {', '.join(POINT_KEYS)}, "
                f"found {', '.join(archive.files) or 'none'}",
            )
        points = _numeric(archive[key], path, key)
        normals = _numeric(archive["normals"], path, "normals") if "normals" in archive.files else None
        faces = _numeric(archive["faces"], path, "faces") if "faces" in archive.files else None
    if points.ndim != 2 or points.shape[1] != 3:
        raise fail(path, f"'{key}' must have shape (n, 3), got {points.shape}")
    if normals is not None and normals.shape != points.shape:
        raise fail(path, f"'normals' has shape {normals.shape}, '{key}' has {points.shape}")
    if faces is not None and (
        faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer)
    ):
        raise fail(path, f"'faces' must be an (m, 3) integer array, got {faces.dtype} {faces.shape}")
    return RawGeometry(points, normals, faces.astype(np.int64) if faces is not None and len(faces) else None)


def write_npy(
    path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None = None
) -> None:
    """Write (n, 3) points, or (n, 6) points and normals."""
    np.save(path, points if normals is None else np.hstack([points, normals.astype(points.dtype)]))


def write_npz(
    path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None = None
) -> None:
    """Write ``points`` and, when given, ``normals`` and ``faces`` (compressed)."""
    arrays = {"points": points}
    if normals is not None:
        arrays["normals"] = normals
    if faces is not None:
        arrays["faces"] = faces
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise fail(path, f"cannot read NumPy file: {error}") from None


def _numeric(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise fail(path, f"'{key}' has non-numeric dtype {array.dtype}")
    return array
