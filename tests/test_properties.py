"""Property-based tests (hypothesis) of the readers and the metrics.

Readers: whatever bytes a file holds, loading it either succeeds or raises InputError with one line;
what the writers write reads back. Metrics: the definitions' invariants hold for arbitrary point sets,
and the values agree with brute-force nearest neighbours.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recon.core.metrics import evaluate_reconstruction
from recon.errors import InputError
from recon.io import POINT_WRITE_FORMATS, load_scan, save_point_cloud

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
READ_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".xyz", ".pts", ".npy", ".npz", ".pcd", ".glb")
HEADERS = {
    ".ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 20\nproperty float x\n"
    b"property float y\nproperty float z\nelement face 3\nproperty list uchar int vertex_indices\n"
    b"end_header\n",
    ".ply-ascii": b"ply\nformat ascii 1.0\nelement vertex 20\nproperty float x\nproperty float y\n"
    b"property float z\nend_header\n",
    ".pcd": b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nPOINTS 20\nDATA binary\n",
    ".off": b"OFF\n20 3 0\n",
    ".stl": b"\0" * 80 + np.uint32(7).tobytes(),
    ".npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (20, 3), }",
}


def coordinates(min_n: int = 16, max_n: int = 60, scale: float = 1e3):
    """(n, 3) float64 arrays of finite coordinates with at least two distinct points."""
    return (
        st.integers(min_n, max_n)
        .flatmap(
            lambda n: hnp.arrays(
                np.float64, (n, 3), elements=st.floats(-scale, scale, allow_nan=False, width=32)
            )
        )
        .filter(lambda a: np.ptp(a, axis=0).max() > 1e-3)
    )


def load_or_refuse(path, min_points: int = 1):
    """load_scan's result, or None when it refused with a one-line InputError naming the file."""
    try:
        return load_scan(path, min_points=min_points)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return None


# ------------------------------------------------------------------------------------------ readers


@SETTINGS
@given(suffix=st.sampled_from(READ_SUFFIXES), content=st.binary(min_size=1, max_size=600))
def test_arbitrary_bytes_load_or_raise_input_error(tmp_path_factory, suffix, content):
    path = tmp_path_factory.mktemp("bytes") / f"f{suffix}"
    path.write_bytes(content)
    scan = load_or_refuse(path)
    if scan is not None:
        assert scan.points.ndim == 2 and scan.points.shape[1] == 3
        assert np.isfinite(scan.points).all()


@SETTINGS
@given(kind=st.sampled_from(sorted(HEADERS)), body=st.binary(min_size=0, max_size=800))
def test_a_valid_header_over_an_arbitrary_body_loads_or_raises_input_error(tmp_path_factory, kind, body):
    suffix = kind.split("-")[0]
    path = tmp_path_factory.mktemp("body") / f"f{suffix}"
    path.write_bytes(HEADERS[kind] + body)
    scan = load_or_refuse(path)
    if scan is not None:
        assert np.isfinite(scan.points).all()
        if scan.faces is not None:
            assert scan.faces.min() >= 0 and scan.faces.max() < len(scan.points)


@SETTINGS
@given(points=coordinates(), suffix=st.sampled_from(POINT_WRITE_FORMATS), with_normals=st.booleans())
def test_written_point_clouds_read_back(tmp_path_factory, points, suffix, with_normals):
    normals = None
    if with_normals:
        normals = np.random.default_rng(len(points)).normal(size=points.shape)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    path = save_point_cloud(tmp_path_factory.mktemp("rt") / f"c{suffix}", points, normals)
    scan = load_scan(path, min_points=1)
    np.testing.assert_allclose(scan.points, points, rtol=1e-6, atol=1e-9)
    if with_normals and suffix != ".pts":  # PTS (Expe/libQGLViewer text) keeps positions only here
        np.testing.assert_allclose(scan.normals, normals, atol=1e-5)


@SETTINGS
@given(points=coordinates(), cut=st.floats(0.01, 0.99))
def test_truncated_binary_ply_is_refused(tmp_path_factory, points, cut):
    path = save_point_cloud(tmp_path_factory.mktemp("cut") / "c.ply", points)
    data = path.read_bytes()
    header = data.index(b"end_header\n") + len(b"end_header\n")
    keep = header + int(cut * (len(data) - header))
    if (keep - header) % 24 == 0:
        keep -= 1  # a cut on a record boundary would leave a valid-looking, shorter file
    path.write_bytes(data[:keep])
    with pytest.raises(InputError, match="truncated"):
        load_scan(path, min_points=1)


# ------------------------------------------------------------------------------------------ metrics


def brute_force_nearest(a: np.ndarray, b: np.ndarray, p: float = 2) -> np.ndarray:
    """Distance (len(a),) from each row of ``a`` to its nearest row of ``b``, by brute force."""
    diff = np.abs(a[:, None, :] - b[None, :, :])
    norms = diff.max(axis=2) if p == np.inf else (diff**p).sum(axis=2) ** (1 / p)
    return norms.min(axis=1)


@SETTINGS
@given(pred=coordinates(1, 40, 10.0), gt=coordinates(2, 40, 10.0), seed=st.integers(0, 2**16))
def test_metrics_agree_with_brute_force(pred, gt, seed):
    result = evaluate_reconstruction(pred, gt, n_samples=100, seed=seed)
    d_pred, d_gt = brute_force_nearest(pred, gt), brute_force_nearest(gt, pred)
    assert result["accuracy"] == pytest.approx(d_pred.mean(), rel=1e-9, abs=1e-12)
    assert result["completeness"] == pytest.approx(d_gt.mean(), rel=1e-9, abs=1e-12)
    assert result["chamfer_l2"] == pytest.approx(0.5 * ((d_pred**2).mean() + (d_gt**2).mean()), rel=1e-9)
    assert result["hausdorff"] == pytest.approx(max(d_pred.max(), d_gt.max()), rel=1e-9)
    l1 = 0.5 * (brute_force_nearest(pred, gt, 1).mean() + brute_force_nearest(gt, pred, 1).mean())
    assert result["chamfer_norm_l1"] == pytest.approx(l1, rel=1e-9, abs=1e-12)
    tau = result["tau"]
    assert result["precision"] == pytest.approx(np.mean(d_pred < tau))
    assert result["recall"] == pytest.approx(np.mean(d_gt < tau))


@SETTINGS
@given(pred=coordinates(2, 40, 10.0), gt=coordinates(2, 40, 10.0))
def test_metric_invariants(pred, gt):
    result = evaluate_reconstruction(pred, gt, n_samples=100)
    swapped = evaluate_reconstruction(gt, pred, n_samples=100)
    assert result["accuracy"] == pytest.approx(swapped["completeness"])
    assert result["chamfer_l1"] == pytest.approx(swapped["chamfer_l1"])
    assert 0 <= result["chamfer_l1"] <= result["hausdorff"]
    assert result["chamfer_l2"] <= result["hausdorff"] ** 2 * (1 + 1e-12)
    assert 0 <= result["fscore"] <= 1
    if result["norm_ratio"] is not None:
        assert 1 - 1e-9 <= result["norm_ratio"] <= np.sqrt(3) + 1e-9
    assert evaluate_reconstruction(gt, gt, n_samples=100)["chamfer_l1"] == 0


@SETTINGS
@given(
    pred=coordinates(2, 30, 10.0),
    gt=coordinates(2, 30, 10.0),
    shift=hnp.arrays(np.float64, 3, elements=st.floats(-100, 100)),
    scale=st.floats(0.01, 100),
)
def test_metrics_move_with_the_data(pred, gt, shift, scale):
    """Translation changes nothing; scaling multiplies lengths by s (s² for Chamfer-L2) and leaves the
    per-mille-of-diagonal values unchanged."""
    base = evaluate_reconstruction(pred, gt, n_samples=100)
    moved = evaluate_reconstruction(pred * scale + shift, gt * scale + shift, n_samples=100)
    for key in ("accuracy", "completeness", "chamfer_l1", "hausdorff"):
        assert moved[key] == pytest.approx(base[key] * scale, rel=1e-6, abs=1e-9 * scale)
        assert moved["x1000_diag"][key] == pytest.approx(base["x1000_diag"][key], rel=1e-6, abs=1e-6)
    assert moved["chamfer_l2"] == pytest.approx(base["chamfer_l2"] * scale**2, rel=1e-6, abs=1e-9)
    assert moved["fscore"] == pytest.approx(base["fscore"], abs=0.05)  # ties at tau may flip


@SETTINGS
@given(points=hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)), elements=st.floats()))
def test_metrics_refuse_non_finite_points_with_input_error(points):
    good = np.array([[0.0, 0, 0], [1, 1, 1]])
    if np.isfinite(points).all():
        evaluate_reconstruction(points, good, n_samples=50)
    else:
        with pytest.raises(InputError):
            evaluate_reconstruction(points, good, n_samples=50)
