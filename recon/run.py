"""The run folder: the handle every later command takes (extract, view, evaluate, resume).

Layout::

    config.json           fully resolved FitConfig (+ the scan path and the levers used)
    meta.json             command, versions, device, seed, git revision, timings
    normalization.json    scan frame → working frame
    scan_points.npz       the (subsampled) scan points and normals in the working frame
    log                   human-readable log lines
    metrics.jsonl         loss terms every few steps
    checkpoints/latest.pt model, optimizer, step, RNG and sample pool (loaded with weights_only=True)
    mesh.ply              the reconstruction in the scan's own frame
    DONE                  written last
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from recon.atomic import atomic_path, read_json, write_json, write_text
from recon.errors import RunDirError

RUN_FILES = (
    "config.json",
    "meta.json",
    "normalization.json",
    "scan_points.npz",
    "log",
    "metrics.jsonl",
    "checkpoints",
    "mesh.ply",
    "mesh_trimmed.ply",
    "mesh_suspect.ply",
    "thumbnail.png",
    "eval.json",
    "sdf.json",
    "DONE",
)


CHECKPOINT_KEYS = ("model",)
"""Keys every recon checkpoint holds; a loader names the others its own checkpoints hold."""


class RunFolder:
    """Paths and atomic writers of one run folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | os.PathLike, *, force: bool = False) -> RunFolder:
        """A new, empty run folder; refuses a non-empty existing one unless ``force``.

        With ``force`` only the files a run writes are removed; anything else the user put there stays.
        """
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunDirError(f"{run.path} exists and is not a folder")
        if run.path.exists() and any(run.path.iterdir()):
            if not force:
                raise RunDirError(
                    f"{run.path} is not empty; pass --force to overwrite it or choose another -o"
                )
            for name in RUN_FILES:
                target = run.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        run.path.mkdir(parents=True, exist_ok=True)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunFolder:
        """An existing run folder (must hold config.json, which a fit writes last when it sets a run up)."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"{run.path} is not a run folder (no such directory)")
        if not run.config_path.exists():
            if any((run.path / name).exists() for name in RUN_FILES):
                raise RunDirError(
                    f"{run.path} holds a run that was stopped while being set up (no config.json); "
                    "start it again with --force"
                )
            raise RunDirError(f"{run.path} is not a run folder (no config.json)")
        return run

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "latest.pt"

    @property
    def mesh_path(self) -> Path:
        return self.path / "mesh.ply"

    @property
    def done_path(self) -> Path:
        return self.path / "DONE"

    def is_done(self) -> bool:
        return self.done_path.exists()

    # ------------------------------------------------------------------ writers
    def write_json(self, name: str, obj) -> None:
        write_json(self.path / name, obj)

    def read_json(self, name: str):
        try:
            return read_json(self.path / name)
        except FileNotFoundError as exc:
            raise RunDirError(f"{self.path} has no {name}") from exc
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{self.path / name} is corrupt: {exc}") from exc
        except UnicodeDecodeError:
            raise RunDirError(f"{self.path / name} is not JSON text; refused") from None

    def append_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> int:
        """Keep the metrics.jsonl records of steps up to ``step`` (the checkpoint a resume starts from).

        A run killed after its last checkpoint logged steps it will redo, possibly ending in a half-written
        line; dropping them keeps one record per step. Returns the number of records dropped.
        """
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return 0
        kept, dropped = [], 0
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                keep = int(record["step"]) <= step
            except (ValueError, KeyError, TypeError):
                keep = False
            if keep:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            write_text(path, "".join(f"{line}\n" for line in kept))
        return dropped

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files of atomic writes that a killed process left behind; return them.

        Call only while no other process writes into this run folder.
        """
        stale = [
            p for p in (*self.path.glob(".*.tmp*"), *self.path.glob("checkpoints/.*.tmp*")) if p.is_file()
        ]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        # A file name that is not UTF-8 (Latin-1 bytes) must not stop a fit: its bytes are logged as \xNN.
        text = f"{stamp} {line}\n".encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        with open(self.path / "log", "a", encoding="utf-8") as f:
            f.write(text)

    def save_checkpoint(self, state: dict) -> None:
        import torch

        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self, map_location=None, required: tuple[str, ...] = CHECKPOINT_KEYS) -> dict:
        """The latest checkpoint, loaded with ``weights_only=True`` (no code is ever unpickled).

        Raises
        ------
        RunDirError
            No checkpoint; a file torch cannot load as plain tensors and containers (tampered, truncated,
            or holding pickled objects); or a dict without the ``required`` keys (someone else's file).
        """
        import torch

        if not self.checkpoint_path.exists():
            raise RunDirError(f"{self.path} has no checkpoint to resume from")
        try:
            state = torch.load(self.checkpoint_path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is not ours
            raise RunDirError(
                f"{self.checkpoint_path} is not a valid recon checkpoint ({type(exc).__name__}); "
                "it was damaged or replaced and is refused"
            ) from exc
        missing = [key for key in required if not isinstance(state, dict) or key not in state]
        if missing:
            raise RunDirError(
                f"{self.checkpoint_path} is not a recon checkpoint (missing {', '.join(missing)}); refused"
            )
        return state

    def write_method_result(
        self, *, method: str, scan: str, config: dict, meta: dict, vertices: np.ndarray, faces: np.ndarray
    ) -> None:
        """config.json, meta.json, then mesh.ply (scan frame) of a baseline; the mesh is written last."""
        from recon.io import save_mesh

        self.write_json("config.json", {"method": method, "scan": scan, method: config})
        self.write_json("meta.json", meta)
        save_mesh(self.mesh_path, vertices, faces, force=True)

    def try_thumbnail(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        """Render thumbnail.png of a (v, 3) / (f, 3) mesh; a convenience, so a failure is logged, never fatal."""
        try:
            from recon.viewer import save_thumbnail

            written = save_thumbnail(vertices, faces, self.path / "thumbnail.png")
        except Exception as exc:  # noqa: BLE001
            written = None
            self.log(f"thumbnail skipped: {type(exc).__name__}: {exc}")
        if written is None:
            self.log("thumbnail could not be rendered")

    def mark_done(self, summary: dict) -> None:
        write_text(self.done_path, json.dumps(summary) + "\n")

    def clear_done(self) -> None:
        if self.done_path.exists():
            self.done_path.unlink()


def environment_metadata(device: str, seed: int) -> dict:
    """Versions, host and git revision a result depends on."""
    versions = {}
    for package in (
        "torch",
        "numpy",
        "scipy",
        "trimesh",
        "scikit-image",
        "open3d-cpu",
        "open3d",
        "pymeshlab",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        versions["recon"] = metadata.version("recon")
    except metadata.PackageNotFoundError:
        versions["recon"] = "source"
    return {
        "command": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "device": device,
        "seed": seed,
        "git_revision": _git_revision(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _git_revision() -> str | None:
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
