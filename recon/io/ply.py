"""PLY (Stanford polygon file): ascii, binary little- and big-endian.

Reading is vectorised: elements with fixed-size records (all vertices, and faces whose polygons all have
the same corner count) become one numpy structured array. Only elements whose list lengths vary are
walked record by record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail, fan_triangulate, triangles_from_ragged

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_ENDIAN = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "<"}
_FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass
class _Property:
    name: str
    code: str
    count_code: str | None = None  # set for list properties: the type of the length prefix


@dataclass
class _Element:
    name: str
    count: int
    properties: list[_Property]

    @property
    def has_lists(self) -> bool:
        return any(p.count_code is not None for p in self.properties)


def read_ply(path: Path) -> RawGeometry:
    """Points, vertex normals (``nx ny nz``) and triangulated faces of a PLY file."""
    data = path.read_bytes()
    fmt, elements, body_start = _parse_header(data, path)
    values = _read_body(data[body_start:], fmt, elements, path)
    if "vertex" not in values:
        raise fail(path, "PLY file has no 'vertex' element")
    vertex = values["vertex"]
    missing = [axis for axis in "xyz" if axis not in vertex]
    if missing:
        raise fail(path, f"PLY vertex element has no {'/'.join(missing)} property")
    points = np.column_stack([vertex["x"], vertex["y"], vertex["z"]])
    normals = None
    if all(k in vertex for k in ("nx", "ny", "nz")):
        normals = np.column_stack([vertex["nx"], vertex["ny"], vertex["nz"]])
    return RawGeometry(points, normals, _faces(values.get("face"), path))


def write_ply(path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None) -> None:
    """Write a binary little-endian PLY; coordinates keep their precision (float32 stays float)."""
    coord = "f4" if points.dtype == np.float32 else "f8"
    fields = [(axis, "<" + coord) for axis in "xyz"]
    if normals is not None:
        fields += [(name, "<f4") for name in ("nx", "ny", "nz")]
    vertex = np.empty(len(points), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = points[:, i]
    if normals is not None:
        for i, name in enumerate(("nx", "ny", "nz")):
            vertex[name] = normals[:, i]
    type_name = {"f4": "float", "f8": "double"}
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by recon",
        f"element vertex {len(points)}",
    ]
    header += [f"property {type_name[coord]} {axis}" for axis in "xyz"]
    if normals is not None:
        header += [f"property float {name}" for name in ("nx", "ny", "nz")]
    body = [vertex.tobytes()]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        records = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
        records["n"] = 3
        records["v"] = faces
        body.append(records.tobytes())
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        for chunk in body:
            f.write(chunk)


def _parse_header(data: bytes, path: Path) -> tuple[str, list[_Element], int]:
    """The format, the declared elements and the byte offset where the body starts."""
    if not data.startswith(b"ply"):
        raise fail(path, "not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise fail(path, "PLY header has no 'end_header' line (file truncated or not a PLY file)")
    newline = data.find(b"\n", end)
    body_start = len(data) if newline < 0 else newline + 1
    try:
        lines = data[:end].decode("ascii").splitlines()[1:]
    except UnicodeDecodeError:
        raise fail(path, "PLY header contains non-ASCII bytes") from None
    fmt, elements = None, []
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append(_Element(words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            elements[-1].properties.append(_property(words, path))
        else:
            raise fail(path, f"bad PLY header line {line.strip()!r}")
    if fmt not in _ENDIAN:
        raise fail(path, f"unknown PLY format {fmt!r} (expected ascii or binary_little/big_endian)")
    return fmt, elements, body_start


def _property(words: list[str], path: Path) -> _Property:
    if len(words) == 5 and words[1] == "list" and words[2] in _TYPES and words[3] in _TYPES:
        return _Property(words[4], _TYPES[words[3]], _TYPES[words[2]])
    if len(words) == 3 and words[1] in _TYPES:
        return _Property(words[2], _TYPES[words[1]])
    raise fail(path, f"bad PLY property line {' '.join(words)!r}")


def _read_body(body: bytes, fmt: str, elements: list[_Element], path: Path) -> dict[str, dict]:
    """Each element's values by property name: arrays, or lists of arrays for ragged list properties."""
    if fmt == "ascii":
        return _read_ascii(body, elements, path)
    endian = _ENDIAN[fmt]
    values, pos = {}, 0
    for element in elements:
        values[element.name], pos = _read_binary_element(body, pos, element, endian, path)
    leftover = body[pos:]
    if leftover.strip(b" \t\r\n\0"):
        raise fail(
            path, f"{len(leftover)} bytes after the last PLY element: the header's counts do not match"
        )
    return values


def _read_binary_element(body: bytes, pos: int, element: _Element, endian: str, path: Path):
    """(values, end offset) of one binary element."""
    lengths = _first_list_lengths(body, pos, element, endian, path) if element.has_lists else {}
    fields = []
    for p in element.properties:
        if p.count_code is None:
            fields.append((p.name, endian + p.code))
        else:
            fields += [
                (p.name + "\0count", endian + p.count_code),
                (p.name, endian + p.code, (lengths[p.name],)),
            ]
    dtype = np.dtype(fields)
    end = pos + element.count * dtype.itemsize
    if end <= len(body):
        records = np.frombuffer(body, dtype=dtype, count=element.count, offset=pos)
        uniform = all(
            (records[p.name + "\0count"] == lengths[p.name]).all()
            for p in element.properties
            if p.count_code is not None
        )
        if uniform:
            return {p.name: records[p.name] for p in element.properties}, end
    smallest = sum(np.dtype(p.count_code or p.code).itemsize for p in element.properties)
    need = element.count * (smallest if element.has_lists else dtype.itemsize)
    if pos + need > len(body):
        raise fail(
            path,
            f"PLY file is truncated: {element.count} {element.name} records need "
            f"{'at least ' if element.has_lists else ''}{need} bytes, "
            f"{max(len(body) - pos, 0)} remain",
        )
    return _walk_binary_element(body, pos, element, endian, path)


def _first_list_lengths(body: bytes, pos: int, element: _Element, endian: str, path: Path) -> dict[str, int]:
    """Lengths of the list properties in the element's first record (0 for an empty element)."""
    lengths = {}
    for p in element.properties:
        if p.count_code is None:
            pos += np.dtype(p.code).itemsize
            continue
        n = 0
        if element.count:
            n = int(_unpack(body, pos, endian + _STRUCT[p.count_code], path, element.name)[0])
        lengths[p.name] = n
        pos += np.dtype(p.count_code).itemsize + n * np.dtype(p.code).itemsize
    return lengths


def _walk_binary_element(body: bytes, pos: int, element: _Element, endian: str, path: Path):
    """(values, end offset) of a binary element whose list lengths vary, read record by record."""
    columns: dict[str, list] = {p.name: [] for p in element.properties}
    for _ in range(element.count):
        for p in element.properties:
            if p.count_code is None:
                value = _unpack(body, pos, endian + _STRUCT[p.code], path, element.name)[0]
                pos += np.dtype(p.code).itemsize
            else:
                n = int(_unpack(body, pos, endian + _STRUCT[p.count_code], path, element.name)[0])
                pos += np.dtype(p.count_code).itemsize
                value = np.array(_unpack(body, pos, f"{endian}{n}{_STRUCT[p.code]}", path, element.name))
                pos += n * np.dtype(p.code).itemsize
            columns[p.name].append(value)
    values = {
        p.name: columns[p.name] if p.count_code else np.array(columns[p.name]) for p in element.properties
    }
    return values, pos


_STRUCT = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}


def _unpack(body: bytes, pos: int, fmt: str, path: Path, element: str) -> tuple:
    try:
        return struct.unpack_from(fmt, body, pos)
    except struct.error:
        raise fail(path, f"PLY file is truncated inside the {element} element") from None


def _read_ascii(body: bytes, elements: list[_Element], path: Path) -> dict[str, dict]:
    lines = [line for line in body.split(b"\n") if line.strip()]
    values, pos = {}, 0
    for element in elements:
        block = lines[pos : pos + element.count]
        if len(block) < element.count:
            raise fail(
                path,
                f"PLY file is truncated: header declares {element.count} {element.name} records, "
                f"{len(block)} found",
            )
        values[element.name] = _ascii_element(block, element, path)
        pos += element.count
    if pos < len(lines):
        raise fail(
            path, f"{len(lines) - pos} lines after the last PLY element: the header's counts do not match"
        )
    return values


def _ascii_element(block: list[bytes], element: _Element, path: Path) -> dict:
    if not block:
        return {p.name: np.empty((0,)) for p in element.properties}
    try:
        table = np.loadtxt(block, dtype=np.float64, ndmin=2)
    except ValueError as error:
        if not element.has_lists:
            raise fail(path, f"bad {element.name} data in PLY: {error}") from None
        return _ascii_ragged(block, element, path)
    width = table.shape[1]
    mismatch = fail(path, f"PLY {element.name} lines have {width} values, which does not match the header")
    columns, col = {}, 0
    for p in element.properties:
        if col >= width:
            raise mismatch
        if p.count_code is None:
            columns[p.name] = table[:, col]
            col += 1
            continue
        lengths = table[:, col]
        if not (lengths == lengths[0]).all():
            return _ascii_ragged(block, element, path)
        n = int(lengths[0])
        columns[p.name] = table[:, col + 1 : col + 1 + n]
        col += 1 + n
    if col != width:
        raise mismatch
    return columns


def _ascii_ragged(block: list[bytes], element: _Element, path: Path) -> dict:
    """Values of an ascii element whose list lengths vary, parsed line by line."""
    columns: dict[str, list] = {p.name: [] for p in element.properties}
    for line in block:
        words, col = line.split(), 0
        try:
            for p in element.properties:
                if p.count_code is None:
                    columns[p.name].append(float(words[col]))
                    col += 1
                else:
                    n = int(words[col])
                    columns[p.name].append(np.array(words[col + 1 : col + 1 + n], dtype=np.float64))
                    if len(columns[p.name][-1]) != n:
                        raise IndexError
                    col += 1 + n
        except (ValueError, IndexError):
            raise fail(
                path, f"bad {element.name} line in PLY: {line.decode(errors='replace').strip()!r}"
            ) from None
        if col != len(words):
            raise fail(path, f"bad {element.name} line in PLY: {line.decode(errors='replace').strip()!r}")
    return {
        p.name: columns[p.name] if p.count_code else np.array(columns[p.name]) for p in element.properties
    }


def _faces(face: dict | None, path: Path) -> np.ndarray | None:
    """Triangles (m, 3) int64 from the face element's index list, or None when there are no faces."""
    if not face:
        return None
    name = next((n for n in _FACE_LISTS if n in face), None)
    if name is None:
        raise fail(path, f"PLY face element has no {' or '.join(_FACE_LISTS)} list")
    polygons = face[name]
    if isinstance(polygons, list):
        return _integral(triangles_from_ragged(polygons), path) if polygons else None
    if len(polygons) == 0:
        return None
    if polygons.ndim != 2 or polygons.shape[1] < 3:
        raise fail(path, "PLY faces have fewer than 3 corners")
    return _integral(fan_triangulate(_integral(polygons, path)), path)


def _integral(indices: np.ndarray, path: Path) -> np.ndarray:
    """``indices`` as int64, refusing non-integer values (an ascii file with a float where an index goes)."""
    as_int = np.asarray(indices).astype(np.int64)
    if np.issubdtype(np.asarray(indices).dtype, np.floating) and not np.array_equal(as_int, indices):
        raise fail(path, "PLY face indices are not integers")
    return as_int
