"""recon.models.charts, recon.baselines.atlasnet and `recon baseline atlasnet-*`, with tiny charts."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import sphere_points

from recon.baselines.atlasnet import (
    AtlasNetConfig,
    AtlasNetFitter,
    fit_atlasnet,
    method_config,
    squared_chamfer,
    squared_chamfer_to_scan,
)
from recon.errors import InputError, RunDirError
from recon.models.charts import (
    ChartMLPs,
    grid_side,
    icosphere_subdivisions,
    sample_template,
    square_grid,
    template_mesh,
    unit_icosphere,
)

# Small widths and few steps keep a fit well under a second; the real decoder is (1026, 513, 256).
TINY = AtlasNetConfig(template="sphere", n_charts=1, n_points=400, steps=150, hidden=(64, 64), lr=3e-3)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Tiny charts gain nothing from a second thread, and spinning threads crawl on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _brute_squared_chamfer(a: np.ndarray, b: np.ndarray) -> float:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    return float(d2.min(axis=1).mean() + d2.min(axis=0).mean())


def _generated(fitter: AtlasNetFitter, n_per_chart: int = 300) -> np.ndarray:
    """Working-frame images of a fixed template sample (independent of the fitter's own stream)."""
    template = sample_template(fitter.config.template, fitter.config.n_charts, n_per_chart, _gen(123))
    with torch.no_grad():
        return fitter.charts(template).reshape(-1, 3).double().numpy()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- losses


def test_squared_chamfer_matches_brute_force_and_its_gradient():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.normal(size=(50, 3)), requires_grad=True)
    b = torch.tensor(rng.normal(size=(70, 3)))
    loss = squared_chamfer(a, b)
    assert loss.item() == pytest.approx(_brute_squared_chamfer(a.detach().numpy(), b.numpy()), rel=1e-12)

    loss.backward()
    reference = a.detach().clone().requires_grad_(True)
    dense = (reference[:, None, :] - b[None, :, :]).square().sum(dim=2)
    (dense.min(dim=1).values.mean() + dense.min(dim=0).values.mean()).backward()
    torch.testing.assert_close(a.grad, reference.grad)


def test_kd_tree_chamfer_equals_brute_force():
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(1)
    generated = torch.tensor(rng.normal(size=(80, 3)))
    scan = torch.tensor(rng.normal(size=(500, 3)))
    value = squared_chamfer_to_scan(generated, scan, cKDTree(scan.numpy()))
    assert value.item() == pytest.approx(_brute_squared_chamfer(generated.numpy(), scan.numpy()), rel=1e-12)


# ------------------------------------------------------------------------------------------- charts


def test_batched_charts_equal_separate_mlps():
    charts = ChartMLPs(3, 2, hidden=(8, 5), code_size=2, generator=_gen(0)).double()
    x = torch.rand(3, 7, 2, dtype=torch.float64, generator=_gen(1))
    out = charts(x)
    for k in range(3):
        h = torch.cat([x[k], charts.code[k].expand(7, 2)], dim=1)
        for i, (w, b) in enumerate(zip(charts.weights, charts.biases, strict=True)):
            h = h @ w[k] + b[k]
            h = torch.relu(h) if i < len(charts.weights) - 1 else h
        torch.testing.assert_close(out[k], h)


def test_template_samples_lie_on_their_templates():
    square = sample_template("square", 2, 500, _gen(0))
    sphere = sample_template("sphere", 1, 500, _gen(0))
    assert square.shape == (2, 500, 2) and square.min() >= 0 and square.max() <= 1
    torch.testing.assert_close(sphere.norm(dim=2), torch.ones(1, 500))
    with pytest.raises(ValueError, match="unknown template"):
        sample_template("torus", 1, 10)


def test_template_sizes_follow_the_target():
    assert grid_side(25, 2500) == 10 and grid_side(1, 2500) == 50 and grid_side(25, 10) == 2
    assert icosphere_subdivisions(2500) == 4 and icosphere_subdivisions(2562) == 4
    assert icosphere_subdivisions(10) == 0
    uv, faces = square_grid(4)
    assert uv.shape == (16, 2) and faces.shape == (18, 3)
    # Every cell is covered by two triangles of total area 1 / 9.
    corners = uv[faces]
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert np.all(area > 0) and area.sum() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------- fitting


def test_a_fitted_sphere_chart_approaches_a_sphere_scan():
    points, _ = sphere_points(2_000, seed=0)
    fitter = AtlasNetFitter(points, TINY)
    scan = fitter.scan.double().numpy()
    before = _brute_squared_chamfer(_generated(fitter), scan)
    fitter.fit()
    after = _brute_squared_chamfer(_generated(fitter), scan)
    assert after < 0.05 * before
    assert fitter.history[-1][1] < 0.05 * fitter.history[0][1]


def test_full_scan_comparison_also_fits():
    points, _ = sphere_points(2_000, seed=1)
    fitter = AtlasNetFitter(points, replace(TINY, scan_subset=False, steps=100))
    scan = fitter.scan.double().numpy()
    before = _brute_squared_chamfer(_generated(fitter), scan)
    fitter.fit()
    assert _brute_squared_chamfer(_generated(fitter), scan) < 0.1 * before


def test_sphere_mesh_has_the_icosphere_connectivity():
    points, _ = sphere_points(1_000, seed=2)
    vertices, faces, info = fit_atlasnet(points, replace(TINY, steps=3, mesh_vertices=2500))
    ico_vertices, ico_faces = unit_icosphere(4)
    assert vertices.shape == ico_vertices.shape == (2562, 3)
    np.testing.assert_array_equal(faces, ico_faces)
    assert info["mesh"]["icosphere_subdivisions"] == 4 and info["mesh"]["watertight"] is False
    assert "not watertight" in info["mesh"]["note"]


@pytest.mark.parametrize(("n_charts", "target", "side"), [(1, 2500, 50), (25, 2500, 10), (4, 100, 5)])
def test_patch_meshes_are_one_grid_per_chart(n_charts, target, side):
    points, _ = sphere_points(1_000, seed=3)
    config = replace(TINY, template="square", n_charts=n_charts, steps=2, mesh_vertices=target)
    vertices, faces, info = fit_atlasnet(points, config)
    _, grid_faces = square_grid(side)
    per_chart = side * side
    assert vertices.shape == (n_charts * per_chart, 3) and len(faces) == n_charts * len(grid_faces)
    blocks = faces.reshape(n_charts, len(grid_faces), 3)
    for k in range(n_charts):
        np.testing.assert_array_equal(blocks[k], grid_faces + k * per_chart)
    assert info["mesh"]["grid_side"] == side and info["mesh"]["vertices_per_chart"] == per_chart


def test_template_mesh_offsets_chart_copies():
    points, faces, layout = template_mesh("square", 3, 27)
    assert points.shape == (3, 9, 2) and layout == {"grid_side": 3}
    assert faces.min() == 0 and faces.max() == 26


def test_fits_are_deterministic_with_a_seed():
    points, _ = sphere_points(1_000, seed=4)
    config = replace(TINY, template="square", n_charts=4, steps=20)
    first, faces, _ = fit_atlasnet(points, config)
    second, same_faces, _ = fit_atlasnet(points, config)
    other, _, _ = fit_atlasnet(points, replace(config, seed=1))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(faces, same_faces)
    assert np.abs(first - other).max() > 1e-3


def test_the_mesh_comes_back_in_the_scan_frame():
    points, _ = sphere_points(1_500, seed=5)
    config = replace(TINY, steps=30)
    unit, _, unit_info = fit_atlasnet(points, config)
    scale, shift = 7.5, np.array([100.0, -20.0, 3.0])
    moved, _, info = fit_atlasnet(points * scale + shift, config)
    # The working frame is the same for both inputs, so the fits agree up to float32 rounding.
    np.testing.assert_allclose(moved, unit * scale + shift, atol=1e-3 * scale)
    radii = np.linalg.norm(moved - shift, axis=1)
    assert abs(np.median(radii) - scale) < 0.15 * scale
    assert info["normalization"]["scale"] == pytest.approx(unit_info["normalization"]["scale"] / scale)


def test_bad_configs_and_scans_are_input_errors():
    points, _ = sphere_points(200, seed=6)
    bad_configs = [
        replace(TINY, template="torus"),
        replace(TINY, n_charts=0),
        replace(TINY, n_points=3, n_charts=4),
        replace(TINY, lr=0.0),
        replace(TINY, decay_at=1.5),
        replace(TINY, hidden=()),
        replace(TINY, device="tpu"),
    ]
    for config in bad_configs:
        with pytest.raises(InputError):
            fit_atlasnet(points, config)
    nan_points = points.copy()
    nan_points[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fit_atlasnet(nan_points, TINY)
    with pytest.raises(InputError, match="unknown AtlasNet method"):
        method_config("atlasnet-7")


def test_learning_rate_decays_late():
    fitter = AtlasNetFitter(sphere_points(100)[0], replace(TINY, steps=10, decay_at=0.8, lr=1e-3))
    rates = [fitter.learning_rate(step) for step in range(10)]
    assert rates[:8] == [1e-3] * 8 and rates[8:] == pytest.approx([1e-4, 1e-4])


def test_method_configs_and_help_text():
    from recon.cli.options import field_help

    assert (method_config("atlasnet-sphere").template, method_config("atlasnet-sphere").n_charts) == (
        "sphere",
        1,
    )
    assert (method_config("atlasnet-patch").template, method_config("atlasnet-patch").n_charts) == (
        "square",
        1,
    )
    assert method_config("atlasnet-25", steps=5).n_charts == 25
    help_text = field_help(AtlasNetConfig)
    assert set(help_text) == {f.name for f in fields(AtlasNetConfig)}
    assert all(len(text) > 10 for text in help_text.values())


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def scan_file(tmp_path):
    from recon.io import save_point_cloud

    points, normals = sphere_points(1_000, seed=10)
    return save_point_cloud(tmp_path / "sphere.ply", points * 2.0 + [1.0, 2.0, 3.0], normals)


def test_baseline_atlasnet_writes_a_run_folder(scan_file, tmp_path):
    from recon.cli.main import cli
    from recon.io import load_mesh

    run = tmp_path / "run"
    args = ["baseline", "atlasnet-25", str(scan_file), "-o", str(run), "--steps", "2", "--n-points", "100"]
    args += ["--mesh-vertices", "100", "--device", "cpu", "--seed", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    names = {p.name for p in run.iterdir()}
    assert {"mesh.ply", "config.json", "meta.json", "DONE", "checkpoints"} <= names
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "atlasnet-25"
    assert config["atlasnet-25"]["n_charts"] == 25 and config["atlasnet-25"]["seed"] == 3
    meta = json.loads((run / "meta.json").read_text())
    assert meta["info"]["mesh"]["watertight"] is False and meta["info"]["device"] == "cpu"
    mesh = load_mesh(run / "mesh.ply")
    assert len(mesh.vertices) == 100 and len(mesh.faces) == 25 * 2
    # A barely trained chart stays near its initial output, but the frame is the scan's (centre (1, 2, 3)).
    assert np.linalg.norm(mesh.vertices.mean(axis=0) - [1.0, 2.0, 3.0]) < 2.0
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 2 and state["charts"]["weights.0"].shape == (25, 2, 1026)

    again = CliRunner().invoke(cli, args)
    assert again.exit_code != 0 and isinstance(again.exception, RunDirError)
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0


def test_baseline_lists_the_atlasnet_methods():
    from recon.cli.main import cli

    result = CliRunner().invoke(cli, ["baseline", "--help"])
    for method in ("atlasnet-sphere", "atlasnet-patch", "atlasnet-25"):
        assert method in result.output
    result = CliRunner().invoke(cli, ["baseline", "atlasnet-sphere", "--help"])
    assert result.exit_code == 0 and "--n-points" in result.output and "Optimization steps" in result.output
