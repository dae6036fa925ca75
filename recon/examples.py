"""Real scans that ship inside installed dependencies, so the main job runs with nothing downloaded."""

from __future__ import annotations

from pathlib import Path

from recon.errors import InputError

EXAMPLES: dict[str, tuple[str, str]] = {
    "face": ("rangemaps/face000.ply", "a real single-view range scan of a face (86k points, partial)"),
    "bunny": ("bunny.obj", "the Stanford bunny mesh (28k vertices)"),
    "cow": ("cow.obj", "a cow mesh (2.9k vertices)"),
    "airplane": ("airplane.obj", "an airplane mesh (5.4k vertices)"),
}


def pymeshlab_sample_dir(required: bool = True) -> Path | None:
    """Folder of pymeshlab's bundled sample meshes, found without importing pymeshlab.

    Raises InputError when it is missing and ``required``; returns None otherwise.
    """
    import importlib.util

    spec = importlib.util.find_spec("pymeshlab")
    folder = Path(spec.origin).parent / "tests" / "sample_meshes" if spec and spec.origin else None
    if folder is None or not folder.is_dir():
        if required:
            raise InputError("pymeshlab's sample meshes are not installed (pip install pymeshlab)")
        return None
    return folder


def example_path(name: str) -> Path:
    """Path of the embedded example ``name`` (one of EXAMPLES)."""
    if name not in EXAMPLES:
        raise InputError(f"unknown example {name!r}; choose one of: {', '.join(EXAMPLES)}")
    path = pymeshlab_sample_dir() / EXAMPLES[name][0]
    if not path.exists():
        raise InputError(f"example {name!r} is missing from this pymeshlab install ({path})")
    return path
