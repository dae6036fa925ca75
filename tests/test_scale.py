"""Large scans: fits use a seeded random subset and say so; memory stays within stated bounds.

The bounds (bench/robustness_io/README.md) are measured as the peak RSS of a `recon` process. The slow
tests build the large inputs themselves (5M and 2 x 1M points, 120 MB and 2 x 24 MB of binary PLY).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import sphere_points

from recon.core.config import tiny_preset
from recon.core.reconstruct import fit_scan, prepare_points
from recon.io import save_point_cloud

FIT_5M_BOUND_MB = 1200
"""Peak RSS of `recon fit` (tiny preset) on a 5M-point scan with normals; measured 803 MB."""
EVAL_1M_BOUND_MB = 600
"""Peak RSS of `recon eval` of two 1M-point clouds with --n-samples 1000000; measured 378 MB."""


def test_a_scan_larger_than_max_points_is_subsampled_and_the_run_says_so(tmp_path):
    points, normals = sphere_points(3000, radius=1.0, seed=5)
    scan = save_point_cloud(tmp_path / "big.ply", points, normals)
    config = tiny_preset().with_(steps=2, resolution=16, device="cpu", max_points=500)
    fit_scan(scan, tmp_path / "run", config, thumbnail=False)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert (meta["scan_points"], meta["points_used"], meta["subsampled"]) == (3000, 500, True)
    assert "3000 points (500 used, a random subset" in (tmp_path / "run" / "log").read_text()
    with np.load(tmp_path / "run" / "scan_points.npz") as saved:
        assert saved["points"].shape == (500, 3)


def test_subsampling_is_seeded_and_draws_distinct_points():
    points, normals = sphere_points(5000, seed=6)
    config = tiny_preset().with_(max_points=1000, seed=3)
    first, first_normals, _ = prepare_points(points, normals, config)
    again, _, _ = prepare_points(points, normals, config)
    other, _, _ = prepare_points(points, normals, replace(config, seed=4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert len(np.unique(first, axis=0)) == 1000
    # each kept normal still belongs to its point (the unit sphere: normal = direction of the point)
    directions = first / np.linalg.norm(first, axis=1, keepdims=True)
    assert np.abs(np.sum(directions * first_normals, axis=1)).min() > 0.99


def peak_rss_mb(args: list[str], cwd) -> tuple[float, str]:
    """Run `recon ARGS`; its own peak resident set size in MB (from wait4) and its stdout."""
    with open(cwd / "stdout.txt", "w+") as out, open(cwd / "stderr.txt", "w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "recon.cli.main", *args], cwd=cwd, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        assert process.returncode == 0, err.read()
        return usage.ru_maxrss / 1024, out.read()


def write_noisy_sphere(path, n: int, seed: int) -> None:
    """A binary PLY of ``n`` float32 points (with normals) near the unit sphere, written by a child process:
    Linux counts the RSS a process had before exec into its peak, so the test process must stay small."""
    script = (
        "import sys, numpy as np; from recon.io import save_point_cloud\n"
        "n, seed = int(sys.argv[2]), int(sys.argv[3])\n"
        "g = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)\n"
        "g /= np.linalg.norm(g, axis=1, keepdims=True)\n"
        "r = 1 + 0.002 * np.random.default_rng(seed + 1).normal(size=(n, 1)).astype(np.float32)\n"
        "save_point_cloud(sys.argv[1], g * r, g)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path), str(n), str(seed)], check=True)


@pytest.mark.slow
def test_a_5m_point_scan_fits_and_evaluates_within_bounded_memory(tmp_path):
    write_noisy_sphere(tmp_path / "scan.ply", 5_000_000, 1)
    args = ["fit", "scan.ply", "-o", "run", "--preset", "tiny", "--steps", "20", "--device", "cpu", "--quiet"]
    peak, _ = peak_rss_mb(args, tmp_path)
    assert peak < FIT_5M_BOUND_MB
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["scan_points"] == 5_000_000 and meta["subsampled"]
    peak, out = peak_rss_mb(["eval", "run", "scan.ply"], tmp_path)
    assert "ground truth: a random subset of 100000 of its 5000000 points was used" in out
    assert peak < FIT_5M_BOUND_MB


@pytest.mark.slow
def test_eval_of_two_1m_point_clouds_stays_within_its_memory_bound(tmp_path):
    for i in (1, 2):
        write_noisy_sphere(tmp_path / f"c{i}.ply", 1_000_000, 10 + i)
    peak, out = peak_rss_mb(["eval", "c1.ply", "c2.ply", "--n-samples", "1000000"], tmp_path)
    assert "samples pred/GT 1000000/1000000" in out
    assert peak < EVAL_1M_BOUND_MB
