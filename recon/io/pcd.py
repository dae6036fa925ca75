"""Point Cloud Library PCD files (ascii, binary; binary_compressed through Open3D).

In an organised cloud (HEIGHT > 1) NaN coordinates mark pixels without a return; those points are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail

_NORMAL_FIELDS = ("normal_x", "normal_y", "normal_z")


def read_pcd(path: Path) -> RawGeometry:
    """Points and normals (``normal_x normal_y normal_z``) of a PCD file."""
    data = path.read_bytes()
    header, body = _header(data, path)
    fields = header["FIELDS"]
    missing = [axis for axis in "xyz" if axis not in fields]
    if missing:
        raise fail(path, f"PCD file has no {'/'.join(missing)} field")
    kind = header["DATA"][0].lower()
    n_points = int(header.get("POINTS", [_width_times_height(header)])[0])
    if kind == "binary_compressed":
        points, normals = _read_with_open3d(path)
    elif kind in ("ascii", "binary"):
        read_columns = _ascii_columns if kind == "ascii" else _binary_columns
        columns = read_columns(body, header, n_points, path)
        points = np.column_stack([columns["x"], columns["y"], columns["z"]])
        normals = None
        if all(name in columns for name in _NORMAL_FIELDS):
            normals = np.column_stack([columns[name] for name in _NORMAL_FIELDS])
    else:
        raise fail(path, f"unknown PCD DATA kind {kind!r}")
    if int(header.get("HEIGHT", ["1"])[0]) > 1:
        returned = np.isfinite(points).all(axis=1)
        points = points[returned]
        normals = None if normals is None else normals[returned]
    return RawGeometry(points, normals, None)


def write_pcd(
    path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None = None
) -> None:
    """Write a binary PCD of 32-bit floats (Open3D misreads 64-bit PCD fields; PCL expects float)."""
    names = ["x", "y", "z"] + ([] if normals is None else list(_NORMAL_FIELDS))
    record = np.empty(len(points), dtype=[(name, "<f4") for name in names])
    for i, axis in enumerate("xyz"):
        record[axis] = points[:, i]
    if normals is not None:
        for i, name in enumerate(_NORMAL_FIELDS):
            record[name] = normals[:, i]
    header = [
        "# .PCD v0.7 - Point Cloud Data file format (written by recon)",
        "VERSION 0.7",
        "FIELDS " + " ".join(names),
        "SIZE " + " ".join("4" * len(names)),
        "TYPE " + " ".join("F" * len(names)),
        "COUNT " + " ".join("1" * len(names)),
        f"WIDTH {len(points)}",
        "HEIGHT 1",
        "VIEWPOINT 0 0 0 1 0 0 0",
        f"POINTS {len(points)}",
        "DATA binary",
    ]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(record.tobytes())


def _header(data: bytes, path: Path) -> tuple[dict[str, list[str]], bytes]:
    """Header entries (keyword -> words) and the bytes after the DATA line."""
    header, pos = {}, 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        keyword, *words = line.split()
        header[keyword.upper()] = words
        if keyword.upper() == "DATA":
            break
    required = ("FIELDS", "SIZE", "TYPE", "DATA")
    if any(key not in header or not header[key] for key in required):
        raise fail(path, "not a PCD file (its header lacks FIELDS, SIZE, TYPE or DATA)")
    n = len(header["FIELDS"])
    header.setdefault("COUNT", ["1"] * n)
    if len(header["SIZE"]) != n or len(header["TYPE"]) != n or len(header["COUNT"]) != n:
        raise fail(path, "PCD header's FIELDS, SIZE, TYPE and COUNT have different lengths")
    return header, data[pos:]


def _width_times_height(header: dict) -> str:
    return str(int(header.get("WIDTH", ["0"])[0]) * int(header.get("HEIGHT", ["1"])[0]))


def _dtype(header: dict, path: Path) -> np.dtype:
    fields, seen = [], set()
    for name, size, kind, count in zip(
        *(header[k] for k in ("FIELDS", "SIZE", "TYPE", "COUNT")), strict=True
    ):
        code = {"F": "f", "I": "i", "U": "u"}.get(kind.upper())
        if code is None or size not in ("1", "2", "4", "8"):
            raise fail(path, f"PCD field {name!r} has unsupported TYPE {kind} / SIZE {size}")
        unique = name if name not in seen else f"{name}\0{len(fields)}"  # PCL repeats '_' for padding
        seen.add(name)
        shape = (int(count),) if int(count) > 1 else ()
        fields.append((unique, f"<{code}{size}", shape))
    return np.dtype(fields)


def _binary_columns(body: bytes, header: dict, n_points: int, path: Path) -> dict[str, np.ndarray]:
    dtype = _dtype(header, path)
    if len(body) < n_points * dtype.itemsize:
        raise fail(
            path,
            f"PCD file is truncated: {n_points} points need {n_points * dtype.itemsize} bytes, "
            f"{len(body)} remain",
        )
    records = np.frombuffer(body, dtype=dtype, count=n_points)
    return {name: records[name] for name in dtype.names}


def _ascii_columns(body: bytes, header: dict, n_points: int, path: Path) -> dict[str, np.ndarray]:
    rows = [line for line in body.split(b"\n") if line.strip()]
    if len(rows) != n_points:
        raise fail(path, f"PCD header declares {n_points} points, the file has {len(rows)} rows")
    counts = [int(c) for c in header["COUNT"]]
    table = np.empty((0, sum(counts)))
    if rows:
        try:
            table = np.loadtxt(rows, dtype=np.float64, ndmin=2)
        except ValueError as error:
            raise fail(path, f"bad PCD row: {error}") from None
    if table.shape[1] != sum(counts):
        raise fail(path, f"PCD rows have {table.shape[1]} values, the header describes {sum(counts)}")
    starts = np.cumsum([0] + counts)
    return {name: table[:, s] for name, s in zip(header["FIELDS"], starts, strict=False)}


def _read_with_open3d(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points and normals of a binary_compressed PCD (LZF), which Open3D decodes."""
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(path), format="pcd")
    if cloud.is_empty():
        raise fail(path, "Open3D could not read this compressed PCD file (it returned no points)")
    normals = np.asarray(cloud.normals) if cloud.has_normals() else None
    return np.asarray(cloud.points), normals
