"""`recon fit` / `recon extract` through the real entry point: outputs, resume, and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import sphere_points

from recon.cli.main import main
from recon.io import save_point_cloud


def run_cli(args, capsys):
    """Run `recon ARGS` in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture
def scan(tmp_path):
    points, normals = sphere_points(1500, radius=2.0, seed=4)
    path = tmp_path / "ball.ply"
    save_point_cloud(path, points + 5.0, normals)
    return path


def test_help_is_fast_and_lists_commands():
    code = "import time,sys; t=time.time(); from recon.cli.main import cli; print(time.time()-t); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert float(out[0]) < 1.0
    assert out[1] == "False"  # torch is imported lazily
    help_text = subprocess.run(
        [sys.executable, "-m", "recon.cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("fit", "extract", "eval", "baseline", "view"):
        assert command in help_text


def test_fit_extract_resume_through_cli(tmp_path, scan, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        [
            "fit",
            str(scan),
            "-o",
            str(run_dir),
            "--preset",
            "tiny",
            "--steps",
            "30",
            "--device",
            "cpu",
            "--closure-winding",
            "0.4",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert out.strip() == str(run_dir / "mesh.ply")
    assert json.loads((run_dir / "config.json").read_text())["start"]["closure_winding"] == 0.4
    assert (run_dir / "DONE").exists()
    code, out, err = run_cli(["extract", str(run_dir), "--resolution", "24"], capsys)
    assert code == 0, err
    assert (run_dir / "mesh_24.ply").exists()
    code, _, err = run_cli(["fit", "--resume", str(run_dir)], capsys)
    assert code == 2 and "already finished" in err
    code, _, err = run_cli(["fit", str(scan), "-o", str(run_dir), "--preset", "tiny"], capsys)
    assert code == 2 and "--force" in err


def write_bytes(path, data):
    path.write_bytes(data)
    return path


BAD_SCANS = {
    "missing": lambda d: d / "nope.ply",
    "empty": lambda d: write_bytes(d / "empty.ply", b""),
    "unknown_extension": lambda d: write_bytes(d / "scan.abc", b"1 2 3\n"),
    "corrupt_ply": lambda d: write_bytes(
        d / "bad.ply",
        b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\nend_header\n\x00\x01",
    ),
    "nan": lambda d: (np.save(d / "nan.npy", np.full((100, 3), np.nan)), d / "nan.npy")[1],
    "too_few": lambda d: (np.save(d / "few.npy", np.random.rand(5, 3)), d / "few.npy")[1],
    "identical": lambda d: (np.save(d / "same.npy", np.ones((200, 3))), d / "same.npy")[1],
    "flat": lambda d: (np.save(d / "flat.npy", np.c_[np.random.rand(300, 2), np.zeros(300)]), d / "flat.npy")[
        1
    ],
    "directory": lambda d: d,
}


@pytest.mark.parametrize("kind", sorted(BAD_SCANS))
def test_bad_scan_is_one_clear_line(tmp_path, kind, capsys):
    bad = BAD_SCANS[kind](tmp_path)
    run_dir = tmp_path / "out"
    code, out, err = run_cli(["fit", str(bad), "-o", str(run_dir), "--preset", "tiny", "--quiet"], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not run_dir.exists()  # nothing half-written


@pytest.mark.parametrize(
    "options",
    [
        ["--steps", "0"],
        ["--resolution", "4"],
        ["--preset", "huge"],
        ["--device", "tpu"],
        ["--seed", "x"],
        ["--closure-winding", "0"],
        ["--closure-winding", "1.5"],
        ["--closure-winding", "nan"],
        ["--preset", "paper", "--closure-winding", "0.4"],
    ],
)
def test_absurd_options_are_refused(tmp_path, scan, options, capsys):
    code, _, err = run_cli(["fit", str(scan), "-o", str(tmp_path / "out"), *options], capsys)
    assert code == 2
    assert "Traceback" not in err and err.strip()
    assert not (tmp_path / "out").exists()


def test_cuda_without_gpu_is_a_clear_error(tmp_path, scan, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = run_cli(["fit", str(scan), "-o", str(tmp_path / "out"), "--device", "cuda"], capsys)
    assert code == 2 and "CUDA" in err
    assert not (tmp_path / "out").exists()


def test_unknown_example_and_missing_run(tmp_path, capsys):
    code, _, err = run_cli(["fit", "--example", "dragon"], capsys)
    assert code == 2 and "unknown example" in err
    code, _, err = run_cli(["extract", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "not a run folder" in err
    code, _, err = run_cli(["fit", "--resume", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "not a run folder" in err


def test_faust_layout_scan_is_accepted(tmp_path, capsys):
    scans = tmp_path / "MPI-FAUST" / "training" / "scans"
    scans.mkdir(parents=True)
    points, normals = sphere_points(1200, radius=0.8, seed=5)
    save_point_cloud(scans / "tr_scan_000.ply", points, normals)
    from recon.io import faust_scan_paths

    (path,) = faust_scan_paths(tmp_path)
    code, out, err = run_cli(
        ["fit", str(path), "-o", str(tmp_path / "run"), "--preset", "tiny", "--steps", "10", "--quiet"],
        capsys,
    )
    assert code == 0, err
