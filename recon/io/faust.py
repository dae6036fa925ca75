"""The MPI-FAUST folder layout: ``MPI-FAUST/{training,test}/scans/*_scan_NNN.ply`` and registrations.

``training/registrations/tr_reg_NNN.ply`` are the ground-truth meshes registered to the training scans;
test scans have none.
"""

from __future__ import annotations

import os
from pathlib import Path

from recon.errors import InputError

SPLITS = ("training", "test")
_PATTERN = {"training": "tr_scan_*.ply", "test": "test_scan_*.ply"}


def faust_scan_paths(root: str | os.PathLike, split: str = "training") -> list[Path]:
    """Sorted raw-scan paths of a FAUST copy.

    Parameters
    ----------
    root : path
        The folder containing ``MPI-FAUST``, ``MPI-FAUST`` itself, or one split folder
        (``MPI-FAUST/training``), in which case that folder's scans are returned whatever ``split`` says.
    split : {'training', 'test', 'all'}
        Which scans; 'all' lists training scans first.
    """
    if split not in (*SPLITS, "all"):
        raise InputError(f"unknown FAUST split {split!r}: use training, test or all")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"FAUST folder {root} does not exist")
    if (root / "MPI-FAUST").is_dir():
        root = root / "MPI-FAUST"
    if (root / "scans").is_dir() and root.name in SPLITS:
        splits, root = [root.name], root.parent
    else:
        splits = list(SPLITS) if split == "all" else [split]
    paths = [p for s in splits for p in sorted((root / s / "scans").glob(_PATTERN[s]))]
    if not paths:
        raise InputError(
            f"no FAUST scans under {root}: expected {'/'.join(splits)}/scans/{_PATTERN[splits[0]]}"
        )
    return paths


def faust_registration_path(scan_path: str | os.PathLike) -> Path | None:
    """``training/registrations/tr_reg_NNN.ply`` for ``training/scans/tr_scan_NNN.ply``, if that file exists."""
    scan_path = Path(scan_path)
    if not scan_path.name.startswith("tr_scan_"):
        return None
    registration = (
        scan_path.parent.parent / "registrations" / scan_path.name.replace("tr_scan_", "tr_reg_", 1)
    )
    return registration if registration.is_file() else None
