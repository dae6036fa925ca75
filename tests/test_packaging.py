"""The installed distribution maps cli/, viewer/ and data/ to recon.cli, recon.viewer and recon.data."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_regular_install_has_no_generic_top_level_names(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    top_level = {p.name for p in target.iterdir() if not p.name.endswith((".dist-info", ".egg-info"))}
    assert top_level - {"bin", "__pycache__"} == {"recon"}, top_level
    for sub in ("cli", "viewer", "data", "io", "models", "baselines", "robust", "lipschitz"):
        assert (target / "recon" / sub / "__init__.py").exists(), sub
    code = "import recon.cli.main, recon.viewer, recon.data.scanner, recon.io; print(recon.cli.main.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target))


def test_editable_install_resolves_mapped_packages_from_anywhere(tmp_path):
    code = "import recon.cli.main, recon.viewer, recon.data; print(recon.cli.main.__file__, recon.viewer.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    cli_file, viewer_file = out.stdout.split()
    assert Path(cli_file) == ROOT / "cli" / "main.py"
    assert Path(viewer_file) == ROOT / "viewer" / "__init__.py"
