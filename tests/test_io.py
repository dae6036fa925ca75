"""recon.io: round trips for every format, agreement with independent readers and writers (trimesh,
Open3D, pymeshlab), mesh clean-up and normals, the FAUST layout, and the sample scans shipped with
pymeshlab."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import trimesh
from conftest import sphere_points

from recon.errors import InputError, RunDirError
from recon.io import (
    MESH_FORMATS,
    POINT_FORMATS,
    POINT_WRITE_FORMATS,
    PointCloud,
    check_points,
    faust_registration_path,
    faust_scan_paths,
    is_planar,
    load_mesh,
    load_scan,
    save_mesh,
    save_point_cloud,
)


@pytest.fixture
def sphere_mesh() -> trimesh.Trimesh:
    """An outward-wound icosphere of radius 2 centred at (1, -2, 3): 162 vertices, 320 faces."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=2.0)
    mesh.apply_translation([1.0, -2.0, 3.0])
    return mesh


def random_unit(n: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).normal(size=(n, 3))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def same_triangles(a_points, a_faces, b_points, b_faces, atol) -> bool:
    """Whether two meshes have the same triangles with the same winding, whatever their vertex and face order."""
    a, b = _canonical_triangles(a_points, a_faces), _canonical_triangles(b_points, b_faces)
    return a.shape == b.shape and np.allclose(a, b, rtol=0, atol=atol)


def _canonical_triangles(points, faces) -> np.ndarray:
    """(m, 9) corners, each triangle rotated to start at its smallest corner, triangles sorted."""
    tri = np.asarray(points, dtype=np.float64)[faces]
    key = np.round(tri, 5).reshape(-1, 3)
    rank = np.empty(len(key), dtype=np.int64)
    rank[np.lexsort(key.T[::-1])] = np.arange(len(key))
    start = rank.reshape(-1, 3).argmin(axis=1)
    rolled = tri[np.arange(len(tri))[:, None], (start[:, None] + np.arange(3)) % 3].reshape(-1, 9)
    return rolled[np.lexsort(np.round(rolled, 5).T[::-1])]


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", POINT_WRITE_FORMATS)
@pytest.mark.parametrize("with_normals", [True, False])
def test_point_cloud_round_trip(tmp_path, suffix, with_normals):
    points, normals = sphere_points(500, radius=3.0, seed=1)
    points = points + [10.0, -5.0, 0.25]
    path = save_point_cloud(tmp_path / f"cloud{suffix}", points, normals if with_normals else None)
    scan = load_scan(path)
    assert isinstance(scan, PointCloud) and scan.source == str(path) and scan.faces is None
    assert scan.points.dtype == np.float64 and scan.points.shape == (500, 3)
    atol = 2e-6 if suffix == ".pcd" else 1e-12  # PCD is written with 32-bit floats for Open3D's sake
    np.testing.assert_allclose(scan.points, points, rtol=0, atol=atol)
    if with_normals:
        np.testing.assert_allclose(scan.normals, normals, atol=1e-6)
    else:
        assert scan.normals is None


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".xyz", ".npy"])
def test_float32_points_are_stored_exactly(tmp_path, suffix):
    points = (sphere_points(100, seed=2)[0] * 1000).astype(np.float32)
    scan = load_scan(save_point_cloud(tmp_path / f"f32{suffix}", points))
    assert np.array_equal(scan.points, points.astype(np.float64))


@pytest.mark.parametrize("suffix", MESH_FORMATS)
def test_mesh_round_trip(tmp_path, sphere_mesh, suffix):
    path = save_mesh(tmp_path / f"mesh{suffix}", sphere_mesh.vertices, sphere_mesh.faces)
    scan = load_scan(path)
    assert scan.faces is not None and scan.faces.dtype == np.int64
    assert len(scan.points) == 162 and len(scan.faces) == 320  # STL's corner soup is merged back
    atol = 1e-6 if suffix in (".stl", ".glb") else 1e-12  # STL and glTF store 32-bit floats
    assert same_triangles(scan.points, scan.faces, sphere_mesh.vertices, sphere_mesh.faces, atol)
    mesh = load_mesh(path)
    assert isinstance(mesh, trimesh.Trimesh) and mesh.is_watertight
    assert mesh.volume == pytest.approx(sphere_mesh.volume, rel=1e-6)


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_mesh_round_trip_keeps_the_files_normals(tmp_path, sphere_mesh, suffix):
    normals = random_unit(len(sphere_mesh.vertices), seed=3)  # deliberately not the faces' normals
    path = save_mesh(
        tmp_path / f"mesh{suffix}", sphere_mesh.vertices, sphere_mesh.faces, vertex_normals=normals
    )
    scan = load_scan(path)
    np.testing.assert_allclose(scan.points, sphere_mesh.vertices, atol=1e-12)
    np.testing.assert_array_equal(scan.faces, sphere_mesh.faces)
    np.testing.assert_allclose(scan.normals, normals, atol=1e-6)


def test_npz_with_faces_is_a_mesh(tmp_path, sphere_mesh):
    path = tmp_path / "mesh.npz"
    np.savez(path, vertices=sphere_mesh.vertices, faces=sphere_mesh.faces)
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.faces, sphere_mesh.faces)


@pytest.mark.parametrize("key", ["points", "xyz", "vertices"])
def test_npz_point_keys(tmp_path, key):
    points, normals = sphere_points(50, seed=4)
    np.savez(tmp_path / "c.npz", **{key: points.astype(np.float32), "normals": normals})
    scan = load_scan(tmp_path / "c.npz")
    np.testing.assert_allclose(scan.points, points, atol=1e-6)
    np.testing.assert_allclose(scan.normals, normals, atol=1e-12)


def test_unnormalised_file_normals_come_back_unit(tmp_path):
    points, normals = sphere_points(50, seed=5)
    scale = np.random.default_rng(5).uniform(0.1, 10.0, size=(50, 1))
    np.save(tmp_path / "c.npy", np.hstack([points, normals * scale]))
    np.testing.assert_allclose(load_scan(tmp_path / "c.npy").normals, normals, atol=1e-12)


# ------------------------------------------------- independent readers and writers


def test_our_ply_is_read_by_open3d_and_trimesh(tmp_path, sphere_mesh):
    import open3d as o3d

    normals = random_unit(len(sphere_mesh.vertices), seed=6)
    path = save_mesh(tmp_path / "m.ply", sphere_mesh.vertices, sphere_mesh.faces, vertex_normals=normals)
    theirs = o3d.io.read_triangle_mesh(str(path))
    np.testing.assert_allclose(np.asarray(theirs.vertices), sphere_mesh.vertices, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(theirs.triangles), sphere_mesh.faces)
    np.testing.assert_allclose(np.asarray(theirs.vertex_normals), normals, atol=1e-6)
    other = trimesh.load(path, process=False)
    np.testing.assert_allclose(other.vertices, sphere_mesh.vertices, atol=1e-12)
    np.testing.assert_array_equal(other.faces, sphere_mesh.faces)


@pytest.mark.parametrize("encoding", ["ascii", "binary"])
def test_trimesh_ply_is_read(tmp_path, sphere_mesh, encoding):
    path = tmp_path / f"{encoding}.ply"
    path.write_bytes(sphere_mesh.export(file_type="ply", encoding=encoding))
    scan = load_scan(path)
    np.testing.assert_allclose(scan.points, sphere_mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(scan.faces, sphere_mesh.faces)


@pytest.mark.parametrize("suffix", [".obj", ".off", ".stl", ".glb"])
def test_trimesh_meshes_are_read(tmp_path, sphere_mesh, suffix):
    path = tmp_path / f"m{suffix}"
    path.write_bytes(
        sphere_mesh.export(file_type=suffix[1:]).encode()
        if suffix in (".obj", ".off")
        else sphere_mesh.export(file_type=suffix[1:])
    )
    scan = load_scan(path)
    assert same_triangles(scan.points, scan.faces, sphere_mesh.vertices, sphere_mesh.faces, atol=1e-6)


@pytest.mark.parametrize("suffix", [".obj", ".off", ".stl"])
def test_our_meshes_are_read_by_trimesh(tmp_path, sphere_mesh, suffix):
    path = save_mesh(tmp_path / f"m{suffix}", sphere_mesh.vertices, sphere_mesh.faces)
    theirs = trimesh.load(path, process=True)
    assert len(theirs.vertices) == 162 and len(theirs.faces) == 320
    assert theirs.volume == pytest.approx(sphere_mesh.volume, rel=1e-6)


@pytest.mark.parametrize("kind", ["ascii", "binary", "compressed"])
def test_open3d_pcd_is_read(tmp_path, kind):
    import open3d as o3d

    points, normals = sphere_points(300, seed=7)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    path = tmp_path / f"{kind}.pcd"
    assert o3d.io.write_point_cloud(
        str(path), cloud, write_ascii=kind == "ascii", compressed=kind == "compressed"
    )
    scan = load_scan(path)
    atol = 1e-5 if kind == "ascii" else 1e-6  # Open3D writes 32-bit floats, ascii with few digits
    np.testing.assert_allclose(scan.points, points, atol=atol)
    np.testing.assert_allclose(scan.normals, normals, atol=atol)


@pytest.mark.parametrize("suffix", [".pcd", ".ply", ".xyz"])
def test_our_point_clouds_are_read_by_open3d(tmp_path, suffix):
    import open3d as o3d

    points, normals = sphere_points(300, seed=8)
    path = save_point_cloud(tmp_path / f"c{suffix}", points, None if suffix == ".xyz" else normals)
    theirs = o3d.io.read_point_cloud(str(path))
    np.testing.assert_allclose(np.asarray(theirs.points), points, atol=1e-6 if suffix == ".pcd" else 1e-12)
    if suffix != ".xyz":
        np.testing.assert_allclose(np.asarray(theirs.normals), normals, atol=1e-6)


def test_open3d_xyzn_is_read(tmp_path):
    import open3d as o3d

    points, normals = sphere_points(100, seed=9)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    assert o3d.io.write_point_cloud(str(tmp_path / "c.xyzn"), cloud)
    scan = load_scan(tmp_path / "c.xyzn")
    np.testing.assert_allclose(scan.points, points, atol=1e-6)
    np.testing.assert_allclose(scan.normals, normals, atol=1e-6)


# ------------------------------------------------------------ PLY variants


def _ply(header_lines: list[str], body: bytes, fmt: str = "ascii") -> bytes:
    return ("\n".join(["ply", f"format {fmt} 1.0", *header_lines, "end_header"]) + "\n").encode() + body


def _square_pyramid() -> tuple[np.ndarray, list[list[int]]]:
    """A pyramid with a quad base: 5 vertices, 1 quad + 4 triangles (6 triangles when split)."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1.0]])
    polygons = [[0, 3, 2, 1], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]
    return vertices, polygons


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_with_mixed_polygons_extra_properties_and_both_endians(tmp_path, fmt):
    vertices, polygons = _square_pyramid()
    header = [
        "comment mixed polygons",
        "element vertex 5",
        "property double x",
        "property double y",
        "property double z",
        "property uchar red",
        "element face 5",
        "property list uchar int vertex_indices",
        "property float quality",
    ]
    if fmt == "ascii":
        body = "".join(f"{x} {y} {z} 7\n" for x, y, z in vertices)
        body += "".join(f"{len(p)} {' '.join(map(str, p))} 0.5\n" for p in polygons)
        data = body.encode()
    else:
        e = "<" if fmt.endswith("little_endian") else ">"
        vertex = np.zeros(5, dtype=[("x", e + "f8"), ("y", e + "f8"), ("z", e + "f8"), ("r", "u1")])
        vertex["x"], vertex["y"], vertex["z"] = vertices.T
        data = vertex.tobytes()
        for p in polygons:
            data += (
                np.uint8(len(p)).tobytes()
                + np.array(p, dtype=e + "i4").tobytes()
                + np.array(0.5, e + "f4").tobytes()
            )
    (tmp_path / "p.ply").write_bytes(_ply(header, data, fmt))
    scan = load_scan(tmp_path / "p.ply", min_points=5)
    np.testing.assert_array_equal(scan.points, vertices)
    assert len(scan.faces) == 6
    mesh = trimesh.Trimesh(scan.points, scan.faces, process=False)
    assert mesh.is_watertight and mesh.volume == pytest.approx(1 / 3)  # outward winding kept


def test_ply_with_an_element_before_the_vertices(tmp_path):
    header = [
        "element camera 1",
        "property float focal",
        "property int viewport",
        "element vertex 4",
        "property float x",
        "property float y",
        "property float z",
        "element face 2",
        "property list uchar int vertex_indices",
    ]
    camera = np.zeros(1, dtype=[("f", "<f4"), ("v", "<i4")]).tobytes()
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.5]], dtype="<f4")
    faces = np.zeros(2, dtype=[("n", "u1"), ("v", "<i4", (3,))])
    faces["n"], faces["v"] = 3, [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "c.ply").write_bytes(
        _ply(header, camera + vertices.tobytes() + faces.tobytes(), "binary_little_endian")
    )
    scan = load_scan(tmp_path / "c.ply", min_points=4)
    np.testing.assert_array_equal(scan.points, vertices)
    np.testing.assert_array_equal(scan.faces, [[0, 1, 2], [0, 2, 3]])


# ------------------------------------------------------ mesh clean-up and normals


def test_area_weighted_normals_of_a_sphere_are_radial(tmp_path, sphere_mesh):
    scan = load_scan(save_mesh(tmp_path / "s.off", sphere_mesh.vertices, sphere_mesh.faces))
    radial = scan.points - [1.0, -2.0, 3.0]
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", scan.normals, radial).min() > 0.99
    np.testing.assert_allclose(np.linalg.norm(scan.normals, axis=1), 1.0, atol=1e-12)


def test_area_weighting_against_brute_force(tmp_path):
    rng = np.random.default_rng(10)
    vertices = rng.normal(size=(30, 3))
    faces = np.array([rng.choice(30, 3, replace=False) for _ in range(60)])
    used = np.unique(faces)
    save_mesh(tmp_path / "r.ply", vertices, faces)
    scan = load_scan(tmp_path / "r.ply", min_points=3)
    expected = np.zeros((30, 3))
    for f in faces:
        a, b, c = vertices[f]
        for v in f:
            expected[v] += np.cross(b - a, c - a)  # twice the area times the unit normal
    expected = expected[used] / np.linalg.norm(expected[used], axis=1, keepdims=True)
    np.testing.assert_allclose(scan.points, vertices[used])
    np.testing.assert_allclose(scan.normals, expected, atol=1e-12)


def test_reversed_winding_flips_the_normals(tmp_path, sphere_mesh):
    outward = load_scan(save_mesh(tmp_path / "a.ply", sphere_mesh.vertices, sphere_mesh.faces))
    inward = load_scan(save_mesh(tmp_path / "b.ply", sphere_mesh.vertices, sphere_mesh.faces[:, ::-1]))
    np.testing.assert_allclose(inward.normals, -outward.normals, atol=1e-12)


def test_duplicate_unreferenced_and_degenerate_are_cleaned(tmp_path, sphere_mesh):
    v, f = sphere_mesh.vertices, sphere_mesh.faces
    n = len(v)
    stray = np.array([[50.0, 50.0, 50.0]])
    # every face gets its own copy of its third vertex; a stray vertex; a face using one vertex twice
    vertices = np.vstack([v, stray, v[f[:, 2]]])
    faces = np.column_stack([f[:, 0], f[:, 1], n + 1 + np.arange(len(f))])
    faces = np.vstack([faces, [[0, 0, 1]]])
    path = tmp_path / "dirty.ply"
    save_mesh(path, vertices, faces)
    scan = load_scan(path)
    assert len(scan.points) == n and len(scan.faces) == len(f)
    assert same_triangles(scan.points, scan.faces, v, f, atol=0)
    assert not np.any(np.all(scan.points == stray, axis=1))
    assert load_mesh(path).is_watertight


def test_mesh_whose_faces_all_collapse_is_a_point_cloud(tmp_path):
    points = sphere_points(20, seed=11)[0]
    save_mesh(tmp_path / "c.ply", points, np.array([[0, 0, 1], [2, 3, 3]]))
    scan = load_scan(tmp_path / "c.ply")
    assert scan.faces is None and scan.normals is None and len(scan.points) == 20


def test_vertex_whose_faces_cancel_gets_a_neighbours_normal(tmp_path):
    # two triangles on the same three vertices with opposite winding: their normals cancel everywhere,
    # except that a third triangle gives vertices 0 and 1 a normal
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.0]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 2, 1], [1, 3, 2]])
    save_mesh(tmp_path / "c.ply", vertices, faces)
    scan = load_scan(tmp_path / "c.ply", min_points=4)
    np.testing.assert_allclose(scan.normals, np.tile([0, 0, 1.0], (4, 1)), atol=1e-12)


def test_zero_length_file_normals_are_replaced_by_face_normals(tmp_path, sphere_mesh, caplog):
    normals = -np.asarray(sphere_mesh.vertex_normals).copy()  # inward: distinguishable from recomputed
    normals[5] = 0.0
    path = save_mesh(tmp_path / "m.ply", sphere_mesh.vertices, sphere_mesh.faces, vertex_normals=normals)
    scan = load_scan(path)
    assert np.einsum("ij,ij->i", scan.normals, sphere_mesh.vertex_normals).min() > 0.99
    assert "normals" in caplog.text


# ------------------------------------------------------------ check_points / is_planar


def test_check_points_returns_float64():
    points = np.arange(60, dtype=np.int32).reshape(20, 3) % 7
    out = check_points(points)
    assert out.dtype == np.float64 and out.shape == (20, 3)
    np.testing.assert_array_equal(out, points)


def test_check_points_min_points_boundary():
    points = sphere_points(16)[0]
    assert len(check_points(points, min_points=16)) == 16
    with pytest.raises(InputError, match="at least 17"):
        check_points(points, min_points=17, name="mine")


def test_is_planar():
    rng = np.random.default_rng(12)
    plane = np.column_stack([rng.uniform(-1, 1, (500, 2)), np.zeros(500)])
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    tilted = plane @ rotation.T + [1e3, -2e3, 5.0]
    assert is_planar(tilted)
    assert is_planar(np.column_stack([np.linspace(0, 1, 50), np.zeros(50), np.zeros(50)]))
    thick = tilted + 1e-2 * rotation[:, 2] * rng.uniform(-1, 1, (500, 1))
    assert not is_planar(thick)
    assert is_planar(thick, rel_tol=0.1)
    assert not is_planar(sphere_points(200)[0])


# ----------------------------------------------------------------------- writing


def test_writing_refuses_to_overwrite_without_force(tmp_path, sphere_mesh):
    path = save_mesh(tmp_path / "m.ply", sphere_mesh.vertices, sphere_mesh.faces)
    before = path.read_bytes()
    with pytest.raises(RunDirError, match="force"):
        save_mesh(path, sphere_mesh.vertices[:, ::-1], sphere_mesh.faces)
    with pytest.raises(RunDirError):
        save_point_cloud(path, sphere_mesh.vertices)
    assert path.read_bytes() == before
    save_point_cloud(path, sphere_mesh.vertices, force=True)
    assert load_scan(path).faces is None


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import recon.io as rio

    def broken(path, points, normals, faces):
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setitem(rio._POINT_WRITERS, ".xyz", broken)
    with pytest.raises(RuntimeError):
        save_point_cloud(tmp_path / "sub" / "c.xyz", sphere_points(20)[0])
    assert os.listdir(tmp_path / "sub") == []


@pytest.mark.parametrize(
    ("writer", "name"), [(save_mesh, "m.xyz"), (save_point_cloud, "c.stl"), (save_point_cloud, "c.txt")]
)
def test_writing_an_unsupported_extension(tmp_path, writer, name):
    args = (sphere_points(20)[0], np.array([[0, 1, 2]])) if writer is save_mesh else (sphere_points(20)[0],)
    with pytest.raises(InputError, match="supported"):
        writer(tmp_path / name, *args)


def test_writing_bad_arrays_is_a_programming_error(tmp_path):
    points = sphere_points(20)[0]
    with pytest.raises(ValueError, match="reference vertex 20"):
        save_mesh(tmp_path / "m.ply", points, np.array([[0, 1, 20]]))
    with pytest.raises(ValueError, match="NaN"):
        save_point_cloud(tmp_path / "c.ply", np.vstack([points, [np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        save_point_cloud(tmp_path / "c.ply", points, normals=points[:5])
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------- FAUST


@pytest.fixture
def faust_root(tmp_path, sphere_mesh) -> Path:
    """A FAUST-shaped folder: 3 training scans (registrations for 2 of them) and 2 test scans."""
    base = tmp_path / "data" / "MPI-FAUST"
    for i in (2, 0, 1):
        mesh = sphere_mesh.copy()
        mesh.apply_scale(0.1 * (i + 1))
        save_mesh(
            base / "training" / "scans" / f"tr_scan_{i:03d}.ply",
            mesh.vertices,
            mesh.faces,
            vertex_normals=mesh.vertex_normals,
        )
        if i != 1:
            save_mesh(base / "training" / "registrations" / f"tr_reg_{i:03d}.ply", mesh.vertices, mesh.faces)
    for i in range(2):
        save_mesh(base / "test" / "scans" / f"test_scan_{i:03d}.ply", sphere_mesh.vertices, sphere_mesh.faces)
    (base / "training" / "scans" / "notes.txt").write_text("not a scan")
    return tmp_path / "data"


def test_faust_scan_paths_from_any_level(faust_root):
    expected = [faust_root / "MPI-FAUST" / "training" / "scans" / f"tr_scan_{i:03d}.ply" for i in range(3)]
    assert faust_scan_paths(faust_root) == expected
    assert faust_scan_paths(faust_root / "MPI-FAUST") == expected
    assert faust_scan_paths(str(faust_root / "MPI-FAUST" / "training")) == expected


def test_faust_splits(faust_root):
    test = faust_scan_paths(faust_root, split="test")
    assert [p.name for p in test] == ["test_scan_000.ply", "test_scan_001.ply"]
    everything = faust_scan_paths(faust_root, split="all")
    assert [p.name for p in everything] == [f"tr_scan_00{i}.ply" for i in range(3)] + [p.name for p in test]
    assert faust_scan_paths(faust_root / "MPI-FAUST" / "test") == test


def test_faust_registrations(faust_root):
    scans = faust_scan_paths(faust_root)
    registrations = [faust_registration_path(p) for p in scans]
    assert registrations[0] == faust_root / "MPI-FAUST" / "training" / "registrations" / "tr_reg_000.ply"
    assert registrations[1] is None
    assert registrations[2].name == "tr_reg_002.ply"
    assert faust_registration_path(faust_scan_paths(faust_root, split="test")[0]) is None


def test_faust_scans_load_with_their_normals(faust_root):
    scan = load_scan(faust_scan_paths(faust_root)[1])
    radial = scan.points - 0.2 * np.array([1.0, -2.0, 3.0])
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", scan.normals, radial).min() > 0.99
    registration = load_mesh(faust_registration_path(faust_scan_paths(faust_root)[0]))
    assert registration.is_watertight


def test_faust_errors(tmp_path, faust_root):
    with pytest.raises(InputError, match="does not exist"):
        faust_scan_paths(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no FAUST scans"):
        faust_scan_paths(tmp_path / "data" / "MPI-FAUST" / "training" / "registrations")
    (tmp_path / "empty" / "MPI-FAUST" / "training" / "scans").mkdir(parents=True)
    with pytest.raises(InputError, match="no FAUST scans"):
        faust_scan_paths(tmp_path / "empty")
    with pytest.raises(InputError, match="split"):
        faust_scan_paths(faust_root, split="validation")


# ---------------------------------------------------------- pymeshlab sample scans


def _sample(name: str) -> Path:
    import pymeshlab

    path = Path(pymeshlab.__file__).parent / "tests" / "sample_meshes" / name
    assert path.is_file(), f"pymeshlab's sample {name} is missing from its package data"
    return path


def _meshlab_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pymeshlab

    meshes = pymeshlab.MeshSet()
    meshes.load_new_mesh(str(path))
    mesh = meshes.current_mesh()
    return mesh.vertex_matrix(), mesh.face_matrix(), mesh.vertex_normal_matrix()


@pytest.mark.parametrize("name", ["rangemaps/face000.ply", "bone.ply", "bunny.obj"])
def test_sample_meshes_match_meshlab(name):
    path = _sample(name)
    vertices, faces, _ = _meshlab_arrays(path)
    scan = load_scan(path)
    assert scan.source == str(path) and scan.faces is not None
    # our loader drops vertices no face uses: the triangles themselves must be MeshLab's
    assert same_triangles(scan.points, scan.faces, vertices, faces, atol=0)
    used = np.unique(faces)
    assert len(scan.points) == len(used)
    np.testing.assert_allclose(np.linalg.norm(scan.normals, axis=1), 1.0, atol=1e-9)


def test_face_range_scan_normals_agree_with_trimesh():
    scan = load_scan(_sample("rangemaps/face000.ply"))
    assert len(scan.points) > 80_000
    theirs = trimesh.Trimesh(scan.points, scan.faces, process=False).vertex_normals
    assert np.median(np.einsum("ij,ij->i", scan.normals, theirs)) > 0.999


def test_bunny_obj_normals_are_the_files():
    path = _sample("bunny.obj")
    vertices, _, normals = _meshlab_arrays(path)
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.points, vertices)
    expected = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    np.testing.assert_allclose(scan.normals, expected, atol=1e-6)


def test_chameleon_expe_point_set_matches_meshlab():
    path = _sample("chameleon.pts")
    vertices, _, normals = _meshlab_arrays(path)
    scan = load_scan(path)
    assert scan.faces is None and len(scan.points) == 4594
    np.testing.assert_array_equal(scan.points, vertices)
    np.testing.assert_allclose(scan.normals, normals, atol=1e-6)


def test_point_formats_constant_lists_the_readers():
    for suffix in (".ply", ".obj", ".off", ".stl", ".xyz", ".pts", ".npy", ".npz", ".pcd"):
        assert suffix in POINT_FORMATS


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".ply", ".npy"])
def test_a_million_points_load_fast(tmp_path, suffix):
    import time

    points, normals = sphere_points(1_000_000, seed=13)
    path = save_point_cloud(tmp_path / f"big{suffix}", points, normals)
    start = time.perf_counter()
    scan = load_scan(path)
    assert time.perf_counter() - start < 5.0
    assert len(scan.points) == 1_000_000
