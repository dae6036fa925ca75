"""Dataset manifests: which scans there are, with their optional ground truth.

A manifest is a CSV file (``manifest.csv``, columns :data:`COLUMNS`) with an optional JSON twin
(``manifest.json``: the same rows plus how they were made). Paths are relative to the manifest's folder
and may not leave it, so a dataset folder can be moved or shared as a whole, and a manifest cannot point
a batch run at arbitrary files.

Also here: manifests for a FAUST layout (``MPI-FAUST/training/scans/tr_scan_NNN.ply`` with registrations
``training/registrations/tr_reg_NNN.ply`` as ground truth, ``test/scans/test_scan_NNN.ply`` without) and for
a plain folder of scans.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path, PurePosixPath

from recon.atomic import read_json, write_json, write_text
from recon.errors import InputError, RunDirError

COLUMNS = ("id", "scan", "gt", "variant", "source", "n_points", "units")
MANIFEST_FORMAT = "recon-manifest/1"
SCAN_SUFFIXES = (".ply", ".obj", ".off", ".stl", ".xyz", ".pts", ".npy", ".npz", ".pcd")


def write_manifest(
    folder: str | os.PathLike, entries: list[dict], extra: dict | None = None, force: bool = False
) -> tuple[Path, Path]:
    """Write ``folder/manifest.csv`` and ``folder/manifest.json`` atomically.

    Parameters
    ----------
    folder : path
        Folder of the manifest; every scan and ground-truth path must lie inside it.
    entries : list of dict
        Rows with the keys of :data:`COLUMNS`; ``scan``/``gt`` are paths (absolute, or relative to the
        current directory), ``gt`` may be None.
    extra : dict, optional
        More information for the JSON file (scanner settings, seed, ...).
    force : bool
        Overwrite existing manifest files.

    Returns
    -------
    (csv_path, json_path)
    """
    folder = Path(folder)
    csv_path, json_path = folder / "manifest.csv", folder / "manifest.json"
    for path in (csv_path, json_path):
        if path.exists() and not force:
            raise RunDirError(f"{path} exists; pass --force to overwrite it")
    rows = [_manifest_row(folder, entry) for entry in entries]
    _check_unique_ids(rows, folder)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(csv_path, buffer.getvalue())
    write_json(
        json_path, {"format": MANIFEST_FORMAT, "columns": list(COLUMNS), **(extra or {}), "entries": rows}
    )
    return csv_path, json_path


def load_manifest(path: str | os.PathLike, check_files: bool = True) -> list[dict]:
    """Read a manifest (``.csv`` or ``.json``, or a folder holding ``manifest.csv``).

    Returns
    -------
    list of dict
        One per row, keys :data:`COLUMNS`: ``scan`` an absolute Path, ``gt`` an absolute Path or None,
        ``n_points`` an int or None, the others strings.

    Raises
    ------
    InputError
        The manifest is missing or malformed, a path is absolute or leaves the manifest's folder, an id
        repeats, or (with ``check_files``) a listed file does not exist.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    rows = _read_json_rows(path) if path.suffix.lower() == ".json" else _read_csv_rows(path)
    folder = path.parent.resolve()
    entries = [_resolved_entry(folder, row, i, path) for i, row in enumerate(rows, start=1)]
    _check_unique_ids(entries, path)
    if check_files:
        for entry in entries:
            for key in ("scan", "gt"):
                if entry[key] is not None and not entry[key].is_file():
                    raise InputError(f"{path}: {entry['id']}: {key} file not found: {entry[key]}")
    return entries


def faust_entries(root: str | os.PathLike) -> list[dict]:
    """Rows for the scans of a FAUST layout under ``root`` (MPI-FAUST, its parent, or one split folder).

    Training scans get their registration as ground truth when it is present (a registration is a
    template fitted to the scan, not the scanned surface itself); test scans have none. Units are metres.
    """
    from recon.io import faust_registration_path, faust_scan_paths

    return [
        {
            "id": scan.stem,
            "scan": scan,
            "gt": faust_registration_path(scan),
            "variant": scan.parent.parent.name,
            "source": "faust",
            "n_points": ply_vertex_count(scan),
            "units": "m",
        }
        for scan in faust_scan_paths(root, "all")
    ]


def write_faust_manifest(root: str | os.PathLike, force: bool = False) -> tuple[Path, list[dict]]:
    """Write the manifest of a FAUST layout into its MPI-FAUST folder; return its path and rows."""
    entries = faust_entries(root)
    folder = entries[0]["scan"].parents[2]
    csv_path, _ = write_manifest(folder, entries, extra={"layout": "MPI-FAUST", "units": "m"}, force=force)
    return csv_path, entries


def folder_entries(
    scan_dir: str | os.PathLike,
    gt_dir: str | os.PathLike | None = None,
    source: str = "folder",
    units: str = "",
) -> list[dict]:
    """Rows for every scan file in ``scan_dir``, with ground truth matched by name in ``gt_dir``.

    A scan ``<stem>.<ext>`` is paired with the ground truth whose stem equals ``<stem>`` or is the longest
    prefix ``<gt>_...`` of it (so ``bunny_noisy.ply`` pairs with ``bunny.ply``).
    """
    scan_dir = Path(scan_dir)
    if not scan_dir.is_dir():
        raise InputError(f"not a folder: {scan_dir}")
    scans = sorted(p for p in scan_dir.iterdir() if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES)
    if not scans:
        raise InputError(f"no scan files ({' '.join(SCAN_SUFFIXES)}) in {scan_dir}")
    gts = _files_by_stem(Path(gt_dir)) if gt_dir is not None else {}
    entries = []
    for scan in scans:
        gt_stem = _matching_gt_stem(scan.stem, gts)
        variant = scan.stem[len(gt_stem) + 1 :] if gt_stem and gt_stem != scan.stem else ""
        entries.append(
            {
                "id": scan.stem,
                "scan": scan,
                "gt": gts.get(gt_stem),
                "variant": variant,
                "source": source,
                "n_points": ply_vertex_count(scan) if scan.suffix.lower() == ".ply" else None,
                "units": units,
            }
        )
    return entries


def ply_vertex_count(path: str | os.PathLike) -> int | None:
    """Number of vertices declared in a PLY header, or None if the header cannot be read."""
    try:
        with open(path, "rb") as f:
            if f.readline().strip() != b"ply":
                return None
            for _ in range(200):
                line = f.readline()
                if not line or line.strip() == b"end_header":
                    return None
                match = re.match(rb"element\s+vertex\s+(\d+)", line.strip())
                if match:
                    return int(match.group(1))
    except OSError:
        return None
    return None


def _manifest_row(folder: Path, entry: dict) -> dict:
    missing = [k for k in ("id", "scan") if not entry.get(k)]
    if missing:
        raise InputError(f"manifest entry {entry!r} lacks {', '.join(missing)}")
    row = {k: entry.get(k) for k in COLUMNS}
    row["scan"] = _relative_to_folder(folder, entry["scan"])
    row["gt"] = _relative_to_folder(folder, entry["gt"]) if entry.get("gt") else ""
    row["n_points"] = "" if entry.get("n_points") is None else int(entry["n_points"])
    for key in ("variant", "source", "units"):
        row[key] = row[key] or ""
    row["id"] = str(row["id"])
    return row


def _relative_to_folder(folder: Path, path: str | os.PathLike) -> str:
    """``path`` relative to ``folder`` in POSIX form; refused if it lies outside the folder."""
    absolute = Path(os.path.abspath(path))
    base = Path(os.path.abspath(folder))
    if not absolute.is_relative_to(base):
        raise InputError(
            f"{path} is outside the manifest folder {folder}; write the manifest in a folder that contains it"
        )
    return absolute.relative_to(base).as_posix()


def _resolved_entry(folder: Path, row: dict, line: int, path: Path) -> dict:
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise InputError(f"{path}: row {line} lacks column(s) {', '.join(missing)}")
    if not str(row["id"]).strip() or not str(row["scan"]).strip():
        raise InputError(f"{path}: row {line} has an empty id or scan")
    n_points = str(row["n_points"]).strip()
    if n_points and not n_points.isdigit():
        raise InputError(f"{path}: row {line}: n_points {n_points!r} is not a count")
    gt = str(row["gt"] or "").strip()
    return {
        "id": str(row["id"]).strip(),
        "scan": _inside(folder, str(row["scan"]).strip(), path),
        "gt": _inside(folder, gt, path) if gt else None,
        "variant": str(row["variant"] or ""),
        "source": str(row["source"] or ""),
        "n_points": int(n_points) if n_points else None,
        "units": str(row["units"] or ""),
    }


def _inside(folder: Path, relative: str, manifest: Path) -> Path:
    """``folder / relative``, refused when ``relative`` is absolute or climbs out of ``folder``."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", relative) or ".." in pure.parts:
        raise InputError(f"{manifest}: path {relative!r} leaves the manifest's folder; use paths inside it")
    return folder.joinpath(*pure.parts)


def _read_csv_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read manifest {path}: {exc}") from exc
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})")
    if not rows:
        raise InputError(f"{path}: the manifest lists no scans")
    return rows


def _read_json_rows(path: Path) -> list[dict]:
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read manifest {path}: {exc}") from exc
    rows = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: expected an object with a non-empty 'entries' list")
    return rows


def _files_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES}


def _matching_gt_stem(stem: str, gts: dict[str, Path]) -> str | None:
    if stem in gts:
        return stem
    prefixes = [g for g in gts if stem.startswith(g + "_")]
    return max(prefixes, key=len) if prefixes else None


def _check_unique_ids(rows: list[dict], where) -> None:
    seen = set()
    for row in rows:
        if row["id"] in seen:
            raise InputError(f"{where}: id {row['id']!r} appears twice")
        seen.add(row["id"])
