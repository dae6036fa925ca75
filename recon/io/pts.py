"""``.pts`` point sets: Expe's binary/ascii point-set format (MeshLab, e.g. pymeshlab's chameleon.pts),
or plain text columns (see :mod:`recon.io.xyz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail
from recon.io.xyz import read_xyz

_MAGIC = b"[Expe/PointSet/"
_TYPE_SIZE = {"r32": 4, "i32": 4, "ui32": 4, "r16": 2, "i16": 2, "ui16": 2, "i8": 1, "ui8": 1}


def read_pts(path: Path) -> RawGeometry:
    """Points and normals of an Expe point set, or of a text ``.pts`` file."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        return read_xyz(path)
    header, n_points, properties, body = _expe_header(data, path)
    if header.startswith(b"[Expe/PointSet/Binary/"):
        return _expe_binary(body, n_points, properties, path)
    return _expe_ascii(body, n_points, properties, path)


def _expe_header(data: bytes, path: Path) -> tuple[bytes, int, list[tuple[str, int, int]], bytes]:
    """Header line, point count, properties as (name, byte size, component count), and the data bytes."""
    end = data.find(b"\ndata\n")
    if end < 0:
        raise fail(path, "Expe point set has no 'data' line")
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    version = lines[0].strip().rstrip("]").rsplit("/", 1)[-1]
    properties, n_points = [], None
    for line in lines[1:]:
        words = line.split()
        try:
            if words[0] == "property" and version == "0.1":
                size = int(words[2])
                properties.append((words[1], size, size if words[1] == "color" else size // 4))
            elif words[0] == "property":
                count = int(words[2])
                properties.append((words[1], count * _TYPE_SIZE[words[3]], count))
            elif words[0] == "nofpoints":
                n_points = int(words[1])
        except (IndexError, KeyError, ValueError):
            raise fail(path, f"bad Expe point-set header line {line!r}") from None
    if n_points is None or not any(name == "position" for name, _, _ in properties):
        raise fail(path, "Expe point set header lacks 'nofpoints' or a position property")
    return lines[0].encode(), n_points, properties, data[end + len(b"\ndata\n") :]


def _expe_binary(body: bytes, n_points: int, properties: list, path: Path) -> RawGeometry:
    fields = [(name, f"V{size}") for name, size, _ in properties]
    dtype = np.dtype(fields)
    if len(body) < n_points * dtype.itemsize:
        raise fail(
            path,
            f"Expe point set is truncated: {n_points} points need {n_points * dtype.itemsize} "
            f"bytes, {len(body)} remain",
        )
    records = np.frombuffer(body, dtype=dtype, count=n_points)
    sizes = {name: size for name, size, _ in properties}

    def vectors(name: str) -> np.ndarray | None:
        if sizes.get(name) != 12:
            return None
        return np.frombuffer(records[name].tobytes(), dtype="<f4").reshape(-1, 3)

    if vectors("position") is None:
        raise fail(path, "Expe point set positions are not three 32-bit floats")
    return RawGeometry(vectors("position"), vectors("normal"), None)


def _expe_ascii(body: bytes, n_points: int, properties: list, path: Path) -> RawGeometry:
    rows = [line.replace(b";", b" ").replace(b",", b" ") for line in body.split(b"\n") if line.strip()]
    try:
        table = np.loadtxt(rows[:n_points], dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise fail(path, f"bad Expe point row: {error}") from None
    if len(table) != n_points:
        raise fail(path, f"Expe point set declares {n_points} points, the file has {len(table)}")
    starts = np.cumsum([0] + [count for _, _, count in properties])
    columns = {name: table[:, s : s + count] for (name, _, count), s in zip(properties, starts, strict=False)}
    normals = columns.get("normal")
    return RawGeometry(
        columns["position"], normals if normals is not None and normals.shape[1] == 3 else None, None
    )
