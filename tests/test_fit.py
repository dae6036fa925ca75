"""End-to-end fits on analytic shapes: accuracy, the scan frame, determinism and resume."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from conftest import sphere_points, torus_points
from scipy.spatial import cKDTree

from recon.core.config import FitConfig, tiny_preset
from recon.core.reconstruct import extract_run, fit_scan, resume_run
from recon.errors import InputError, RunDirError
from recon.io import save_point_cloud

CENTER = np.array([10.0, -4.0, 2.5])
SCALE = 30.0  # scan units per working unit: checks that the mesh comes back in the scan's frame


def small_config(**overrides) -> FitConfig:
    return tiny_preset().with_(device="cpu", **overrides)


@pytest.fixture
def sphere_scan(tmp_path):
    points, normals = sphere_points(3000, radius=SCALE * 0.6, seed=1)
    path = tmp_path / "sphere.ply"
    save_point_cloud(path, points + CENTER, normals)
    return path


def load_mesh(path):
    return trimesh.load(path, process=False)


def test_sphere_fit_is_accurate_in_scan_frame(tmp_path, sphere_scan):
    result = fit_scan(sphere_scan, tmp_path / "run", small_config(), thumbnail=False)
    mesh = load_mesh(result.mesh_path)
    radii = np.linalg.norm(mesh.vertices - CENTER, axis=1)
    # mean radial error below 2% of the radius after 200 small steps at 48³
    assert np.abs(radii - SCALE * 0.6).mean() < 0.02 * SCALE * 0.6
    assert mesh.is_watertight
    assert result.mesh_report["euler_characteristic"] == 2
    run = tmp_path / "run"
    for name in ["config.json", "meta.json", "normalization.json", "metrics.jsonl", "log", "DONE"]:
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "latest.pt").exists()


def test_torus_fit_reaches_chamfer_threshold(tmp_path):
    points = torus_points(4000, major=0.6, minor=0.25, seed=2)
    path = tmp_path / "torus.npy"
    np.save(path, points)
    config = small_config(steps=400, resolution=64, normal_weight=0.0)
    result = fit_scan(path, tmp_path / "run", config, thumbnail=False)
    mesh = load_mesh(result.mesh_path)
    samples = mesh.sample(5000, return_index=False)
    gt = torus_points(20000, major=0.6, minor=0.25, seed=3)
    acc = cKDTree(gt).query(samples)[0].mean()
    comp = cKDTree(samples).query(gt)[0].mean()
    chamfer_l1 = 0.5 * (acc + comp)
    # torus bbox diagonal ≈ 2.4; 0.02 ≈ 0.8% of it, without normals, a few hundred CPU steps
    assert chamfer_l1 < 0.02, chamfer_l1
    assert result.mesh_report["euler_characteristic"] == 0
    assert mesh.is_watertight


def test_same_seed_same_mesh(tmp_path, sphere_scan):
    config = small_config(steps=25)
    a = fit_scan(sphere_scan, tmp_path / "a", config, thumbnail=False)
    b = fit_scan(sphere_scan, tmp_path / "b", config, thumbnail=False)
    c = fit_scan(sphere_scan, tmp_path / "c", replace(config, seed=1), thumbnail=False)
    va, vb, vc = (load_mesh(r.mesh_path).vertices for r in (a, b, c))
    assert np.array_equal(va, vb)
    assert va.shape != vc.shape or not np.array_equal(va, vc)


def test_resume_equals_uninterrupted(tmp_path, sphere_scan):
    config = small_config(steps=80, checkpoint_every=25)
    full = fit_scan(sphere_scan, tmp_path / "full", config, thumbnail=False)

    def interrupt_at_40(log):
        if log.step == 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_scan(sphere_scan, tmp_path / "cut", config, progress=interrupt_at_40, thumbnail=False)
    assert not (tmp_path / "cut" / "DONE").exists()
    assert not (tmp_path / "cut" / "mesh.ply").exists()
    resumed = resume_run(tmp_path / "cut", thumbnail=False)
    assert resumed.steps == 80
    assert np.array_equal(load_mesh(full.mesh_path).vertices, load_mesh(resumed.mesh_path).vertices)
    with pytest.raises(RunDirError):
        resume_run(tmp_path / "cut")  # finished runs are not resumed twice


def test_extract_other_resolution_and_no_overwrite(tmp_path, sphere_scan):
    fit_scan(sphere_scan, tmp_path / "run", small_config(steps=40), thumbnail=False)
    path, report = extract_run(tmp_path / "run", resolution=32)
    assert path.exists() and report["resolution"] == 32 and report["watertight"]
    with pytest.raises(RunDirError):
        extract_run(tmp_path / "run", resolution=32)
    extract_run(tmp_path / "run", resolution=32, force=True)


def test_existing_run_folder_needs_force(tmp_path, sphere_scan):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("keep me")
    with pytest.raises(RunDirError):
        fit_scan(sphere_scan, tmp_path / "run", small_config(steps=5), thumbnail=False)
    fit_scan(sphere_scan, tmp_path / "run", small_config(steps=5), force=True, thumbnail=False)
    assert (tmp_path / "run" / "mine.txt").read_text() == "keep me"


def test_flat_scan_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    flat = np.c_[rng.uniform(-1, 1, (500, 2)), np.zeros(500)]
    path = tmp_path / "flat.npy"
    np.save(path, flat)
    with pytest.raises(InputError, match="flat"):
        fit_scan(path, tmp_path / "run", small_config(), thumbnail=False)
    assert not (tmp_path / "run").exists()


def test_a_fit_checkpoint_holds_every_key_a_resume_requires():
    from recon.core.fit import LevelSetFitter

    points, normals = sphere_points(500, 0.5, seed=2)
    fitter = LevelSetFitter(points, normals, small_config(steps=2, resolution=24))
    assert set(LevelSetFitter.REQUIRED_STATE) <= set(fitter.state_dict())


def test_fit_config_sections_round_trip_and_a_flat_config_json_of_an_older_run_still_loads():
    config = tiny_preset().with_(steps=7, closure_winding=0.4, resolution=40, seed=3)
    assert (config.optimizer.steps, config.start.closure_winding, config.mesh.resolution, config.seed) == (
        7,
        0.4,
        40,
        3,
    )
    assert FitConfig.from_dict(config.to_dict()) == config
    # The shape of config.json before the sections: one flat object, model_type beside both model blocks.
    flat = config.flat() | {"lipschitz": {"depth": 4}, "scan": "/some/scan.ply", "levers": {}}
    assert FitConfig.from_dict(flat) == config
    assert config.with_(model_type="mlp").model == config.model  # the same network keeps its architecture
    assert config.with_(model_type="lipschitz").model_type == "lipschitz"
    with pytest.raises(Exception, match="unknown fit setting"):
        config.with_(stepz=3)
    with pytest.raises(Exception, match="steps must be >= 1"):
        config.with_(steps=0).validate()  # each section validates itself
    with pytest.raises(ValueError, match="unknown config keys in sampling"):
        FitConfig.from_dict(config.to_dict() | {"sampling": {"batch_pointz": 3}})


@pytest.fixture
def sphere_scan_without_normals(tmp_path):
    points, _ = sphere_points(3000, radius=SCALE * 0.6, seed=2)
    path = tmp_path / "sphere_xyz.ply"
    save_point_cloud(path, points + CENTER)
    return path


def test_estimated_normals_feed_the_normal_term_only_when_asked():
    from recon.core.fit import LevelSetFitter

    points, true_normals = sphere_points(2000, radius=0.6, seed=3)
    off = LevelSetFitter(points, None, small_config(estimated_normal_weight=0.0))
    assert off.normals is None and off.normal_weight == 0.0
    on = LevelSetFitter(points, None, small_config(estimated_normal_weight=0.2))
    assert on.normal_weight == 0.2
    agreement = (on.normals.numpy() * true_normals).sum(axis=1)
    assert np.median(agreement) > 0.99  # outward and accurate on a clean sphere
    batch = torch.arange(200)
    term = on._normal_term(batch)
    on.normals = -on.normals  # estimated normals enter unsigned: the field keeps the sign
    assert torch.equal(on._normal_term(batch), term)
    with_scan_normals = LevelSetFitter(points, true_normals, small_config(estimated_normal_weight=0.2))
    assert np.array_equal(with_scan_normals.normals.numpy(), true_normals.astype(np.float32))
    assert with_scan_normals.normal_weight == small_config().loss.normal_weight


def test_resume_with_estimated_normals_equals_uninterrupted(tmp_path, sphere_scan_without_normals):
    config = small_config(steps=60, checkpoint_every=20, estimated_normal_weight=0.3)
    full = fit_scan(sphere_scan_without_normals, tmp_path / "full", config, thumbnail=False)

    def interrupt_at_30(log):
        if log.step == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_scan(
            sphere_scan_without_normals, tmp_path / "cut", config, progress=interrupt_at_30, thumbnail=False
        )
    resumed = resume_run(tmp_path / "cut", thumbnail=False)
    assert np.array_equal(load_mesh(full.mesh_path).vertices, load_mesh(resumed.mesh_path).vertices)
