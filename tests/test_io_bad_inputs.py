"""recon.io on inputs a user can get wrong: every one gives an InputError with a one-line message that
names the file and the problem, and never any other exception."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import sphere_points

from recon.errors import InputError
from recon.io import POINT_FORMATS, load_mesh, load_scan, save_mesh, save_point_cloud


def assert_input_error(path, match: str, **kwargs) -> str:
    """Load ``path``, expect an InputError matching ``match``; return the message."""
    with pytest.raises(InputError, match=match) as caught:
        load_scan(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.fixture
def cloud():
    points, normals = sphere_points(200, radius=1.5, seed=21)
    return points, normals


@pytest.fixture
def octahedron():
    """A closed octahedron: 6 vertices, 8 outward-wound faces."""
    vertices = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
    faces = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return vertices, faces


# ------------------------------------------------------------------- the file itself


def test_missing_path(tmp_path):
    assert_input_error(tmp_path / "nope.ply", "no such file")


def test_directory(tmp_path):
    (tmp_path / "scan.ply").mkdir()
    assert_input_error(tmp_path / "scan.ply", "directory")


@pytest.mark.parametrize("suffix", POINT_FORMATS)
def test_empty_file(tmp_path, suffix):
    (tmp_path / f"e{suffix}").write_bytes(b"")
    assert_input_error(tmp_path / f"e{suffix}", "empty")


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    (tmp_path / "scan.las").write_bytes(b"LASF....")
    message = assert_input_error(tmp_path / "scan.las", "unsupported format '.las'")
    for suffix in (".ply", ".obj", ".xyz", ".pts", ".npz", ".pcd"):
        assert suffix in message


def test_load_mesh_of_a_point_cloud(tmp_path, cloud):
    path = save_point_cloud(tmp_path / "c.ply", cloud[0])
    with pytest.raises(InputError, match="has no faces"):
        load_mesh(path)


# ---------------------------------------------------------------------------- PLY


def _binary_ply(tmp_path, octahedron):
    return save_mesh(tmp_path / "m.ply", *octahedron)


def _ascii_ply_text(vertices, faces, declared_vertices=None) -> str:
    n = len(vertices) if declared_vertices is None else declared_vertices
    lines = [
        "ply",
        "format ascii 1.0",
        f"element vertex {n}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    lines += [" ".join(map(str, v)) for v in vertices] + ["3 " + " ".join(map(str, f)) for f in faces]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_truncated_binary_ply(tmp_path, octahedron, keep):
    path = _binary_ply(tmp_path, octahedron)
    data = path.read_bytes()
    header_end = data.index(b"end_header") + len("end_header\n")
    path.write_bytes(data[: header_end + int(keep * (len(data) - header_end))])
    assert_input_error(path, "truncated")


def test_binary_ply_cut_inside_the_header(tmp_path, octahedron):
    path = _binary_ply(tmp_path, octahedron)
    path.write_bytes(path.read_bytes()[:40])
    assert_input_error(path, "end_header")


def test_truncated_ascii_ply(tmp_path, octahedron):
    text = _ascii_ply_text(*octahedron)
    (tmp_path / "a.ply").write_text("\n".join(text.splitlines()[:-3]) + "\n")
    assert_input_error(tmp_path / "a.ply", "truncated")


def test_ascii_ply_with_a_bad_number(tmp_path, octahedron):
    text = _ascii_ply_text(*octahedron).replace("0.0 0.0 1.0", "0.0 zero 1.0")
    (tmp_path / "a.ply").write_text(text)
    assert_input_error(tmp_path / "a.ply", "bad vertex data")


def test_ascii_ply_declaring_more_vertices_than_it_has(tmp_path, octahedron):
    (tmp_path / "a.ply").write_text(_ascii_ply_text(*octahedron, declared_vertices=7))
    assert_input_error(tmp_path / "a.ply", "PLY")


def test_ascii_ply_declaring_fewer_vertices_than_it_has(tmp_path, octahedron):
    (tmp_path / "a.ply").write_text(_ascii_ply_text(*octahedron, declared_vertices=5))
    assert_input_error(tmp_path / "a.ply", "PLY")


def test_binary_point_cloud_declaring_fewer_vertices_than_it_has(tmp_path, cloud):
    path = save_point_cloud(tmp_path / "c.ply", cloud[0])
    path.write_bytes(path.read_bytes().replace(b"element vertex 200", b"element vertex 150", 1))
    assert_input_error(path, "counts do not match")


def test_binary_mesh_declaring_fewer_vertices_than_it_has(tmp_path, octahedron):
    path = _binary_ply(tmp_path, octahedron)
    path.write_bytes(path.read_bytes().replace(b"element vertex 6", b"element vertex 5", 1))
    assert_input_error(path, "PLY")


def test_face_index_beyond_the_vertices(tmp_path, octahedron):
    vertices, faces = octahedron
    faces = faces.copy()
    faces[3, 1] = 6
    (tmp_path / "a.ply").write_text(_ascii_ply_text(vertices, faces))
    assert_input_error(tmp_path / "a.ply", "reference vertex 6 but there are 6 vertices", min_points=3)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"plx\nformat ascii 1.0\nend_header\n", "not a PLY"),
        (b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n", "format"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n0\n", "property"),
        (b"ply\nformat ascii 1.0\nelement vertex x\nend_header\n", "header line"),
        (b"ply\nformat ascii 1.0\nelement point 3\nproperty float x\nend_header\n1\n2\n3\n", "no 'vertex'"),
        (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n2\n3\n", "no y/z"),
        (b"ply\nformat ascii 1.0\ncomment \xff\xfe\nend_header\n", "non-ASCII"),
    ],
)
def test_corrupt_ply_headers(tmp_path, header, match):
    (tmp_path / "h.ply").write_bytes(header)
    assert_input_error(tmp_path / "h.ply", match)


# ----------------------------------------------------------------- coordinates


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".ply", ".xyz", ".npy", ".pcd"])
def test_non_finite_coordinates(tmp_path, cloud, suffix, bad):
    points = cloud[0].copy()
    path = save_point_cloud(tmp_path / f"c{suffix}", points)
    points[17, 1] = bad
    # the writers refuse non-finite values, so put them in with numpy or by editing the text
    if suffix == ".npy":
        np.save(path, points)
    elif suffix == ".xyz":
        np.savetxt(path, points)
    else:
        _write_raw(path, points)
    message = assert_input_error(path, "NaN or infinite")
    assert "point 17" in message


def _write_raw(path, points):
    """Write ``points`` (possibly non-finite) in the file's format, bypassing the writers' checks."""
    from recon.io import pcd, ply

    writer = ply.write_ply if path.suffix == ".ply" else pcd.write_pcd
    writer(path, points, None, None)


def test_fewer_than_min_points(tmp_path, cloud):
    path = save_point_cloud(tmp_path / "c.xyz", cloud[0][:10])
    assert_input_error(path, "only 10 points; at least 16")
    assert len(load_scan(path, min_points=10).points) == 10
    path = save_point_cloud(tmp_path / "big.npy", cloud[0])
    assert_input_error(path, "at least 1000", min_points=1000)


def test_all_points_identical(tmp_path):
    path = save_point_cloud(tmp_path / "c.ply", np.tile([0.5, -1.0, 2.0], (50, 1)))
    assert_input_error(path, "all 50 points are identical")


def test_absurd_magnitudes(tmp_path, cloud):
    points = cloud[0].copy()
    points[3] *= 1e13
    path = save_point_cloud(tmp_path / "c.npy", points)
    assert_input_error(path, "beyond 1e")
    points = cloud[0] * 1e11  # large but plausible (e.g. astronomical units): accepted
    assert len(load_scan(save_point_cloud(tmp_path / "ok.npy", points)).points) == 200


def test_zero_length_normals_are_dropped_not_fatal(tmp_path, cloud, caplog):
    points, normals = cloud
    normals = normals.copy()
    normals[[4, 9]] = 0.0
    with caplog.at_level(logging.WARNING, logger="recon.io"):
        for suffix in (".ply", ".xyz", ".npz", ".pcd"):
            scan = load_scan(save_point_cloud(tmp_path / f"c{suffix}", points, normals))
            assert scan.normals is None
            np.testing.assert_allclose(scan.points, points, atol=1e-6)
    assert "2 of 200 normals" in caplog.text


def test_nan_normals_are_dropped_not_fatal(tmp_path, cloud):
    points, normals = cloud
    normals = normals.copy()
    normals[0] = np.nan
    np.save(tmp_path / "c.npy", np.hstack([points, normals]))
    assert load_scan(tmp_path / "c.npy").normals is None


# ----------------------------------------------------------------- other formats


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("c.xyz", b"1 2 3\n4 5\n", "bad point row"),
        ("c.xyz", b"1 2\n3 4\n", "at least 3"),
        ("c.xyz", b"# only a comment\n", "no point rows"),
        ("c.xyz", b"1 2 x\n", "bad point row"),
        ("c.pts", b"5\n1 2 3\n4 5 6\n", "declares 5 points, the file has 2"),
        ("c.obj", b"# nothing\n", "no vertices"),
        ("c.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", "index 0"),
        ("c.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "reference vertex 3"),
        ("c.obj", b"v 0 0 zero\n", "bad OBJ vertex"),
        ("c.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", "bad OBJ face"),
        ("c.off", b"OFF\n4 1 0\n0 0 0\n1 0 0\n", "truncated"),
        ("c.off", b"PLY\n", "not a 3D OFF"),
        ("c.off", b"OFF\n", "counts"),
        ("c.stl", b"\0" * 80 + np.uint32(3).tobytes() + b"\0" * 60, "not a valid STL"),
        (
            "c.stl",
            b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nendloop\n",
            "no complete triangles",
        ),
        (
            "c.pcd",
            b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nPOINTS 10\nDATA binary\n"
            + b"\0" * 50,
            "truncated",
        ),
        (
            "c.pcd",
            b"VERSION 0.7\nFIELDS x y\nSIZE 4 4\nTYPE F F\nCOUNT 1 1\nPOINTS 1\nDATA ascii\n1 2\n",
            "no z",
        ),
        ("c.pcd", b"hello\n", "not a PCD"),
        (
            "c.pcd",
            b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 2\nDATA ascii\n1 2 3\n",
            "declares 2 points",
        ),
        (
            "c.pts",
            b"[Expe/PointSet/Binary/0.1]\nproperty position 12\nnofpoints 10\ndata\n" + b"\0" * 20,
            "truncated",
        ),
        ("c.npz", b"PK\x03\x04 not really a zip", "NumPy"),
        ("c.npy", b"\x93NUMPY garbage", "NumPy"),
        ("c.glb", b"glTF garbage", "GLB"),
    ],
)
def test_malformed_files(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    assert_input_error(tmp_path / name, match, min_points=1)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"normals": np.zeros((20, 3))}, "no points array: expected one of the keys points, xyz, vertices"),
        ({"points": np.zeros((20, 2))}, "shape"),
        ({"points": np.ones((20, 3)), "normals": np.ones((19, 3))}, "'normals' has shape"),
        ({"points": np.array(["a"] * 60).reshape(20, 3)}, "non-numeric"),
        ({"points": np.ones((20, 3)), "faces": np.ones((4, 3))}, "integer"),
    ],
)
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "c.npz", **arrays)
    assert_input_error(tmp_path / "c.npz", match)


@pytest.mark.parametrize("array", [np.zeros((20, 4)), np.zeros(60), np.zeros((2, 10, 3))])
def test_npy_of_the_wrong_shape(tmp_path, array):
    np.save(tmp_path / "c.npy", array)
    assert_input_error(tmp_path / "c.npy", r"expected an \(n, 3\) or \(n, 6\) array")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "c.npy", np.array([{"points": 1}], dtype=object), allow_pickle=True)
    assert_input_error(tmp_path / "c.npy", "NumPy")


def test_organised_pcd_drops_its_missing_returns(tmp_path):
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0), indexing="ij"), -1).reshape(-1, 2)
    points = np.column_stack([grid, np.sin(grid[:, 0])])
    points[[2, 7]] = np.nan
    header = (
        "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 5\nHEIGHT 4\n"
        "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 20\nDATA binary\n"
    )
    (tmp_path / "o.pcd").write_bytes(header.encode() + points.astype("<f4").tobytes())
    scan = load_scan(tmp_path / "o.pcd")
    assert len(scan.points) == 18
    np.testing.assert_allclose(scan.points, np.delete(points, [2, 7], axis=0), atol=1e-6)


# ------------------------------------------------------------------------ fuzzing


def _valid_files(tmp_path, cloud, octahedron):
    points, normals = cloud
    paths = [save_point_cloud(tmp_path / f"c{s}", points, normals) for s in (".ply", ".pcd", ".pts", ".npy")]
    paths += [save_mesh(tmp_path / f"m{s}", *octahedron) for s in (".ply", ".obj", ".off", ".stl")]
    (tmp_path / "a.ply").write_text(_ascii_ply_text(*octahedron))
    return [*paths, tmp_path / "a.ply"]


def test_damaged_files_fail_only_with_input_errors(tmp_path, cloud, octahedron):
    """Truncate and overwrite bytes of valid files: loading must succeed or raise InputError, nothing else."""
    rng = np.random.default_rng(22)
    outcomes = {"loaded": 0, "refused": 0}
    for original in _valid_files(tmp_path, cloud, octahedron):
        data = original.read_bytes()
        for trial in range(12):
            damaged = np.frombuffer(data, dtype=np.uint8).copy()
            if trial % 2:
                damaged = damaged[: rng.integers(1, len(data))]
            else:
                at = rng.integers(0, len(data), size=rng.integers(1, 8))
                damaged[at] = rng.integers(0, 256, size=len(at))
            path = tmp_path / "fuzz" / f"{trial}{original.suffix}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(damaged.tobytes())
            try:
                load_scan(path, min_points=3)
                outcomes["loaded"] += 1
            except InputError as error:
                assert "\n" not in str(error) and str(path) in str(error)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 20  # the damage is real, and is caught
