"""Tests of recon.data: the virtual range scanner, manifests, FAUST layouts, benchmark building, fetching."""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest
import trimesh

from recon.data import manifest as man
from recon.data import sources
from recon.data.benchmark import build_benchmark, normalized_mesh, scan_file
from recon.data.scanner import ScannerConfig, depth_sigma, scan_mesh, scanner_preset, virtual_scan
from recon.errors import InputError, ReconError, RunDirError

NOISELESS = dict(noise_a=0.0, noise_b=0.0, incidence_falloff=0.0, outlier_fraction=0.0, hole_fraction=0.0)


def _front_camera(**overrides) -> ScannerConfig:
    """One camera on +z (the front for up = +y), looking at the box centre, no noise."""
    base = dict(n_views=1, azimuth_deg=(0.0, 0.0), elevation_deg=(0.0, 0.0), n_points=None, resolution=160)
    return ScannerConfig(**{**base, **NOISELESS, **overrides})


def _first_hits_brute_force(mesh: trimesh.Trimesh, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(k,) distance to the first hit of each ray, by trimesh's pure-python intersector (inf on a miss)."""
    intersector = trimesh.ray.ray_triangle.RayMeshIntersector(mesh)
    locations, ray_idx, _ = intersector.intersects_location(origins, dirs, multiple_hits=True)
    first = np.full(len(origins), np.inf)
    dist = np.einsum("ij,ij->i", locations - origins[ray_idx], dirs[ray_idx])
    np.minimum.at(first, ray_idx, dist)
    return first


def _ray_box_depth(origins: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(k,) analytic entry distance of rays into the box [lo, hi] (slab method)."""
    with np.errstate(divide="ignore"):
        inv = 1.0 / dirs
    t1, t2 = (lo - origins) * inv, (hi - origins) * inv
    return np.minimum(t1, t2).max(axis=1)


# --- scanner ----------------------------------------------------------------------------------------------


def test_occluded_object_is_never_scanned():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    plate = trimesh.creation.box(extents=(3.0, 3.0, 0.05))
    plate.apply_translation((0.0, 0.0, 0.6))
    config = _front_camera()
    both = scan_mesh(trimesh.util.concatenate([sphere, plate]), config)
    alone = scan_mesh(sphere, config)
    on_sphere = lambda p: np.abs(np.linalg.norm(p, axis=1) - 0.3) < 0.01  # noqa: E731
    assert on_sphere(alone.points).sum() > 1000  # the sphere alone is seen
    assert not on_sphere(both.points).any()  # behind the plate it is not
    assert np.all(both.points[:, 2] > 0.57)


def test_every_scanned_point_is_the_first_hit_along_its_ray():
    # The slot's floor is seen only from some views, and its walls hide each other.
    mesh = _slotted_box()
    config = scanner_preset("clean", n_views=4, n_points=3000, up=(0.0, 0.0, 1.0), **NOISELESS)
    scan = scan_mesh(mesh, config)
    sample = np.random.default_rng(0).choice(len(scan.points), 300, replace=False)
    eyes = scan.eyes[scan.view_ids[sample]]
    offsets = scan.points[sample] - eyes
    depth = np.linalg.norm(offsets, axis=1)
    first = _first_hits_brute_force(mesh, eyes, offsets / depth[:, None])
    np.testing.assert_allclose(depth, first, atol=1e-4)


def _slotted_box() -> trimesh.Trimesh:
    """A unit cube with a 0.2-wide slot cut from the top face down to z = -0.05, made of three blocks."""
    from trimesh.creation import box

    blocks = [
        box(bounds=[[-0.5, -0.5, -0.5], [-0.1, 0.5, 0.5]]),
        box(bounds=[[0.1, -0.5, -0.5], [0.5, 0.5, 0.5]]),
        box(bounds=[[-0.1, -0.5, -0.5], [0.1, 0.5, -0.05]]),
    ]
    return trimesh.util.concatenate(blocks)


def test_bottom_is_unseen_without_cameras_below():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    above = dict(n_views=8, up=(0.0, 0.0, 1.0), n_points=20_000, **NOISELESS)
    from_above = scan_mesh(sphere, ScannerConfig(elevation_deg=(15.0, 60.0), **above))
    all_round = scan_mesh(sphere, ScannerConfig(elevation_deg=(-60.0, 60.0), **above))
    assert (from_above.points[:, 2] < -0.95).sum() == 0
    assert (all_round.points[:, 2] < -0.95).sum() > 50
    assert np.all(from_above.eyes[:, 2] > 0)


def test_depth_noise_matches_the_configured_sigma():
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    config = ScannerConfig(
        n_views=6,
        distance=1.0,  # close cameras: depths differ by a factor > 2, so sigma varies a lot
        fov_deg=90.0,
        noise_a=1e-3,
        noise_b=4e-3,
        incidence_falloff=0.0,
        grazing_cos=0.2,
        n_points=40_000,
        seed=3,
    )
    scan = scan_mesh(cube, config)
    eyes = scan.eyes[scan.view_ids]
    offsets = scan.points - eyes
    observed = np.linalg.norm(offsets, axis=1)
    true = _ray_box_depth(eyes, offsets / observed[:, None], *cube.bounds)
    z = (observed - true) / depth_sigma(true, config, float(np.linalg.norm(cube.extents)))
    assert abs(z.mean()) < 0.03
    assert abs(z.std() - 1.0) < 0.03
    near, far = true < np.median(true), true >= np.median(true)
    predicted = (
        depth_sigma(true[far], config, np.sqrt(3)).mean() / depth_sigma(true[near], config, np.sqrt(3)).mean()
    )
    measured = (observed - true)[far].std() / (observed - true)[near].std()
    assert predicted > 1.3
    assert measured == pytest.approx(predicted, rel=0.06)


@pytest.mark.parametrize(("normal_noise_deg", "inward_faces"), [(0.0, False), (0.0, True), (20.0, True)])
def test_normals_face_the_scanning_camera(normal_noise_deg, inward_faces):
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    if inward_faces:  # the scanner does not know which side is out: normals must still face the camera
        sphere.invert()
    config = scanner_preset("noisy", n_points=5000, normal_noise_deg=normal_noise_deg, outlier_fraction=0.0)
    scan = scan_mesh(sphere, config)
    to_camera = scan.eyes[scan.view_ids] - scan.points
    assert np.all(np.einsum("ij,ij->i", scan.normals, to_camera) > 0)
    np.testing.assert_allclose(np.linalg.norm(scan.normals, axis=1), 1.0, atol=1e-9)
    outward = scan.points / np.linalg.norm(scan.points, axis=1, keepdims=True)
    agreement = np.einsum("ij,ij->i", scan.normals, outward)
    if normal_noise_deg == 0:
        assert agreement.min() > 0.99  # the facet normals of a fine icosphere
    else:
        assert 0.8 < agreement.mean() < 0.99


def test_same_seed_same_scan_other_seed_other_scan():
    mesh = trimesh.creation.torus(0.6, 0.25)
    config = scanner_preset("noisy", n_points=4000)
    a, b = virtual_scan(mesh, config), virtual_scan(mesh, config)
    c = virtual_scan(mesh, dataclasses.replace(config, seed=1))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_point_budget_and_outliers():
    mesh = trimesh.creation.icosphere(subdivisions=3)
    config = scanner_preset("noisy", n_points=10_000, outlier_fraction=0.05, outlier_near_share=0.4)
    scan = scan_mesh(mesh, config)
    assert len(scan.points) == 10_000 and scan.outlier.sum() == 500
    diag = np.linalg.norm(mesh.extents)
    lo, hi = mesh.bounds[0] - 0.2 * diag, mesh.bounds[1] + 0.2 * diag
    assert np.all((scan.points >= lo) & (scan.points <= hi))
    far_off = np.abs(np.linalg.norm(scan.points[scan.outlier], axis=1) - 1.0) > 0.2
    assert 0.3 * 300 < far_off.sum() <= 300  # most uniform outliers are far from the surface


def test_holes_remove_about_the_requested_fraction():
    mesh = trimesh.creation.icosphere(subdivisions=3)
    base = scanner_preset("clean", n_points=None, resolution=200, incidence_falloff=0.0)
    full = scan_mesh(mesh, base).hits_per_view
    holed = scan_mesh(mesh, dataclasses.replace(base, hole_fraction=0.3)).hits_per_view
    np.testing.assert_allclose(np.array(holed) / np.array(full), 0.7, atol=0.03)


def test_partial_preset_never_sees_the_back():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    scan = scan_mesh(sphere, scanner_preset("partial", n_points=5000, outlier_fraction=0.0))
    inliers = scan.points[~scan.outlier]
    assert (inliers[:, 2] < -0.8).sum() == 0  # front is +z for up = +y
    assert (inliers[:, 2] > 0.9).sum() > 0


def test_handheld_preset_sees_all_around_from_low_with_depth_independent_noise():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    config = scanner_preset("handheld", n_points=20_000, outlier_fraction=0.0, hole_fraction=0.0)
    scan = scan_mesh(sphere, config)
    assert len(scan.eyes) == 4
    elevation = np.degrees(np.arcsin(scan.eyes[:, 1] / np.linalg.norm(scan.eyes, axis=1)))
    assert elevation.min() >= -1e-6 and elevation.max() <= 25.0 + 1e-6
    assert (scan.points[:, 1] < -0.9).sum() == 0  # the underside stays unseen
    assert depth_sigma(0.5, config, 1.0) == pytest.approx(depth_sigma(2.0, config, 1.0))


def test_bad_configs_are_refused():
    with pytest.raises(ReconError, match="n_views"):
        ScannerConfig(n_views=0)
    with pytest.raises(ReconError, match="unknown scanner preset"):
        scanner_preset("dirty")
    with pytest.raises(ReconError, match="unknown field"):
        ScannerConfig.from_dict({"views": 3})
    config = scanner_preset("partial")
    assert ScannerConfig.from_dict(config.to_dict()) == config


# --- manifests -------------------------------------------------------------------------------------------


def _touch_ply(path, n=5):
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.PointCloud(np.random.default_rng(n).random((n, 3))).export(path)
    return path


def test_manifest_round_trip(tmp_path):
    scan_a = _touch_ply(tmp_path / "scans" / "a_clean.ply")
    scan_b = _touch_ply(tmp_path / "scans" / "b_real.ply", n=7)
    gt_a = _touch_ply(tmp_path / "gt" / "a.ply")
    entries = [
        dict(id="a_clean", scan=scan_a, gt=gt_a, variant="clean", source="x", n_points=5, units="m"),
        dict(id="b_real", scan=scan_b, gt=None, variant="real", source="y", n_points=None, units=""),
    ]
    csv_path, json_path = man.write_manifest(tmp_path, entries, extra={"seed": 4})
    assert csv_path.read_text().splitlines()[0] == ",".join(man.COLUMNS)
    for path in (csv_path, json_path, tmp_path):
        loaded = man.load_manifest(path)
        assert [e["id"] for e in loaded] == ["a_clean", "b_real"]
        assert loaded[0]["scan"] == scan_a.resolve() and loaded[0]["gt"] == gt_a.resolve()
        assert loaded[1]["gt"] is None and loaded[1]["n_points"] is None and loaded[0]["n_points"] == 5
    with pytest.raises(RunDirError):
        man.write_manifest(tmp_path, entries)


@pytest.mark.parametrize("bad", ["../outside.ply", "/etc/passwd", "scans/../../outside.ply", "C:/x.ply"])
def test_manifest_paths_may_not_leave_its_folder(tmp_path, bad):
    folder = tmp_path / "set"
    folder.mkdir()
    _touch_ply(tmp_path / "outside.ply")
    (folder / "manifest.csv").write_text(",".join(man.COLUMNS) + f"\nx,{bad},,clean,s,5,m\n")
    with pytest.raises(InputError, match="leaves the manifest's folder"):
        man.load_manifest(folder / "manifest.csv", check_files=False)


def test_manifest_refuses_writing_outside_paths_and_bad_rows(tmp_path):
    outside = _touch_ply(tmp_path / "outside.ply")
    with pytest.raises(InputError, match="outside the manifest folder"):
        man.write_manifest(tmp_path / "set", [dict(id="x", scan=outside)])
    (tmp_path / "manifest.csv").write_text("id,scan\nx,outside.ply\n")
    with pytest.raises(InputError, match="missing column"):
        man.load_manifest(tmp_path / "manifest.csv")
    (tmp_path / "manifest.csv").write_text(",".join(man.COLUMNS) + "\nx,missing.ply,,,,,\n")
    with pytest.raises(InputError, match="not found"):
        man.load_manifest(tmp_path / "manifest.csv")


def test_faust_layout_is_listed_and_indexed(tmp_path):
    base = tmp_path / "MPI-FAUST"
    _touch_ply(base / "training" / "scans" / "tr_scan_000.ply", n=11)
    _touch_ply(base / "training" / "scans" / "tr_scan_001.ply", n=12)
    _touch_ply(base / "training" / "registrations" / "tr_reg_000.ply")
    _touch_ply(base / "test" / "scans" / "test_scan_000.ply", n=13)
    _touch_ply(base / "training" / "scans" / "notes.ply")
    entries = man.faust_entries(tmp_path)
    assert [(e["id"], e["variant"], e["n_points"]) for e in entries] == [
        ("tr_scan_000", "training", 11),
        ("tr_scan_001", "training", 12),
        ("test_scan_000", "test", 13),
    ]
    assert entries[0]["gt"].name == "tr_reg_000.ply" and entries[1]["gt"] is None and entries[2]["gt"] is None
    csv_path, _ = man.write_faust_manifest(tmp_path)
    assert csv_path == base / "manifest.csv"
    assert [e["id"] for e in man.load_manifest(base)] == ["tr_scan_000", "tr_scan_001", "test_scan_000"]
    assert [e["id"] for e in man.faust_entries(base / "test")] == ["test_scan_000"]
    with pytest.raises(InputError, match="no FAUST scans"):
        man.faust_entries(base / "training" / "registrations")


def test_folder_of_scans_pairs_ground_truth_by_name(tmp_path):
    _touch_ply(tmp_path / "scans" / "bunny_noisy.ply")
    _touch_ply(tmp_path / "scans" / "bunny2_clean.ply")
    _touch_ply(tmp_path / "scans" / "lonely.ply")
    _touch_ply(tmp_path / "gt" / "bunny.ply")
    _touch_ply(tmp_path / "gt" / "bunny2.ply")
    got = {
        e["id"]: (e["gt"].name if e["gt"] else None, e["variant"])
        for e in man.folder_entries(tmp_path / "scans", tmp_path / "gt")
    }
    assert got == {
        "bunny_noisy": ("bunny.ply", "noisy"),
        "bunny2_clean": ("bunny2.ply", "clean"),
        "lonely": (None, ""),
    }


# --- benchmark -------------------------------------------------------------------------------------------


def test_normalized_mesh_puts_up_on_y_with_unit_diagonal():
    tall = trimesh.creation.box(extents=(0.3, 0.2, 2.0))
    tall.apply_translation((5.0, -3.0, 1.0))
    out, transform = normalized_mesh(tall, "+z")
    assert np.argmax(out.extents) == 1
    assert np.linalg.norm(out.extents) == pytest.approx(1.0)
    np.testing.assert_allclose(out.bounds.mean(axis=0), 0.0, atol=1e-12)
    homogeneous = np.c_[tall.vertices, np.ones(len(tall.vertices))]
    np.testing.assert_allclose((homogeneous @ transform.T)[:, :3], out.vertices, atol=1e-12)
    assert np.linalg.det(transform[:3, :3]) > 0


def test_build_benchmark_writes_scans_gt_and_manifest_in_one_frame(tmp_path):
    out = tmp_path / "bench"
    entries = build_benchmark(out, meshes=["cow"], variants=["clean", "partial"], n_points=3000, seed=1)
    assert [e["id"] for e in entries] == ["cow_clean", "cow_partial"]
    loaded = man.load_manifest(out / "manifest.csv")
    assert [(e["variant"], e["n_points"], e["units"]) for e in loaded] == [
        ("clean", 3000, "bbox-diagonal"),
        ("partial", 3000, "bbox-diagonal"),
    ]
    gt = trimesh.load(loaded[0]["gt"])
    assert np.linalg.norm(gt.extents) == pytest.approx(1.0, rel=1e-5)
    points = np.asarray(trimesh.load(loaded[0]["scan"]).vertices)
    _, distance, _ = trimesh.proximity.closest_point(gt, points[:500])
    assert np.median(distance) < 2e-3  # the scan lies on its ground truth: same frame
    first = (out / "scans" / "cow_partial.ply").read_bytes()
    with pytest.raises(RunDirError, match="--force"):
        build_benchmark(out, meshes=["cow"], variants=["clean", "partial"], n_points=3000, seed=1)
    build_benchmark(out, meshes=["cow"], variants=["clean", "partial"], n_points=3000, seed=1, force=True)
    assert (out / "scans" / "cow_partial.ply").read_bytes() == first


def test_build_benchmark_nonormals_copies_hold_the_same_points_without_normals(tmp_path):
    from recon.io import load_scan

    out = tmp_path / "bench"
    entries = build_benchmark(
        out, meshes=["cow"], variants=["partial"], n_points=2000, seed=1, nonormals=True
    )
    assert [(e["id"], e["variant"]) for e in entries] == [
        ("cow_partial", "partial"),
        ("cow_partial-nonormals", "partial-nonormals"),
    ]
    with_normals, stripped = (load_scan(e["scan"]) for e in entries)
    assert with_normals.normals is not None and stripped.normals is None
    np.testing.assert_array_equal(stripped.points, with_normals.points)
    assert entries[1]["gt"] == entries[0]["gt"]
    with pytest.raises(RunDirError, match="--force"):
        build_benchmark(out, meshes=["cow"], variants=["partial"], n_points=2000, seed=1, nonormals=True)


def test_build_benchmark_refuses_unknown_names(tmp_path):
    with pytest.raises(ReconError, match="unknown mesh"):
        build_benchmark(tmp_path, meshes=["unicorn"])
    with pytest.raises(ReconError, match="unknown scanner variant"):
        build_benchmark(tmp_path, meshes=["cow"], variants=["blurry"])


def test_scan_file_and_cli(tmp_path, capsys):
    from recon.cli.main import main

    mesh_path = tmp_path / "ball.ply"
    trimesh.creation.icosphere(subdivisions=3).export(mesh_path)
    scan = scan_file(mesh_path, tmp_path / "ball_scan.ply", scanner_preset("clean", n_points=2000))
    assert len(scan.points) == 2000 and len(trimesh.load(tmp_path / "ball_scan.ply").vertices) == 2000
    main(
        [
            "data",
            "scan",
            str(mesh_path),
            "-o",
            str(tmp_path / "cli.ply"),
            "--n-points",
            "1000",
            "--preset",
            "noisy",
        ]
    )
    assert "1000 points" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "scan", str(mesh_path), "-o", str(tmp_path / "cli.ply")])
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err


def test_cli_sources_and_index(tmp_path, capsys, monkeypatch):
    from recon.cli.main import main

    monkeypatch.setenv("RECON_CACHE", str(tmp_path / "cache"))
    main(["data", "sources"])
    listing = capsys.readouterr().out
    assert "man" in listing and str(tmp_path / "cache") in listing
    _touch_ply(tmp_path / "set" / "scans" / "a_noisy.ply")
    _touch_ply(tmp_path / "set" / "gt" / "a.ply")
    main(["data", "index", str(tmp_path / "set")])
    assert man.load_manifest(tmp_path / "set")[0]["gt"].name == "a.ply"


# --- sources ---------------------------------------------------------------------------------------------


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_CACHE", str(tmp_path))
    assert sources.cache_dir() == tmp_path
    assert sources.origin_dir("cgal") == tmp_path / "cgal"
    assert not sources.is_fetched("cgal")
    with pytest.raises(InputError, match="recon data fetch"):
        sources.source_path(sources.mesh_source("man"), fetch=False)
    bull = sources.mesh_source("cgal:bull")
    assert (bull.name, bull.origin, bull.member) == ("cgal-bull", "cgal", "bull.off")
    with pytest.raises(ReconError, match="bad CGAL mesh name"):
        sources.mesh_source("cgal:../../etc/passwd")


def test_failed_download_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_CACHE", str(tmp_path))

    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package libcgal-demo\n")

    monkeypatch.setattr(sources.subprocess, "run", failing_run)
    monkeypatch.setattr(sources.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(ReconError, match=r"apt-get update.*Unable to locate package") as info:
        sources.fetch_origin("cgal")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cgal").exists()  # nothing half-fetched is left behind


def test_pymeshlab_meshes_load_offline():
    mesh = sources.load_source_mesh(sources.mesh_source("cow"))
    assert len(mesh.faces) > 1000 and mesh.is_watertight


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bunny", "man"])
def test_fetch_real_sources(tmp_path, monkeypatch, name):
    monkeypatch.setenv("RECON_CACHE", str(tmp_path))
    source = sources.mesh_source(name)
    folder = sources.fetch_origin(source.origin)
    marker = folder / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert sources.fetch_origin(source.origin) == folder and marker.stat().st_mtime_ns == stamp  # idempotent
    mesh = sources.load_source_mesh(source, fetch=False)
    assert len(mesh.vertices) > 10_000 and len(mesh.split(only_watertight=False)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sources.OPEN_BENCHMARK)
def test_open_set_meshes_are_open_at_their_bottom(name):
    """The `open` set's ground truth has a border, and its up axis puts the neck or base at the bottom."""
    source = sources.mesh_source(name)
    sources.fetch_origin(source.origin)
    mesh, _ = normalized_mesh(sources.load_source_mesh(source, fetch=False), source.up)
    edges, counts = np.unique(mesh.edges_sorted, axis=0, return_counts=True)
    border = np.unique(edges[counts == 1])
    assert len(border) >= 6
    low, high = mesh.bounds[:, 1]
    assert np.median(mesh.vertices[border, 1]) < low + 0.5 * (high - low)


def test_mesh_sets_name_catalog_meshes():
    assert set(sources.MESH_SETS) == {"default", "open"}
    for members in sources.MESH_SETS.values():
        for name in members:
            assert sources.mesh_source(name).name == name
