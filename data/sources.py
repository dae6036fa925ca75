"""Real meshes and scans available offline, fetched by code into a cache folder (never into the repository).

Three origins:

- ``pymeshlab``: the sample meshes shipped inside the installed pymeshlab package (nothing to download).
- ``pymeshfix``: ``examples/StanfordBunny.ply`` (the Stanford bunny with its holes and debris) from the
  pymeshfix wheel on PyPI, fetched with ``pip download`` and unzipped; pymeshfix is not installed.
- ``cgal``: about 140 meshes of Debian's ``libcgal-demo`` package (a standing human, armadillo, heads,
  animals, CAD parts), fetched with ``apt-get download`` and unpacked with ``dpkg-deb``.

The cache is ``$RECON_CACHE`` or ``~/.cache/recon``. Every fetch is idempotent (a completed fetch leaves a
marker and is not repeated), checks what it got, and fails with one clear line when a source is
unreachable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recon.errors import InputError, ReconError
from recon.examples import pymeshlab_sample_dir

PYMESHFIX_VERSION = "0.18.1"
CGAL_DEB = "libcgal-demo"
_CGAL_DATA_TAR = "usr/share/doc/libcgal-dev/data.tar.gz"
_CGAL_MESH_DIR = "data/meshes"
_DONE = ".complete"
_SUBPROCESS_TIMEOUT_S = 600

ORIGINS = ("pymeshlab", "pymeshfix", "cgal")


@dataclass(frozen=True)
class MeshSource:
    """One mesh (or raw scan) of the catalog.

    Attributes
    ----------
    name : str
        Name used in benchmarks and on the command line.
    origin : str
        'pymeshlab', 'pymeshfix' or 'cgal'.
    member : str
        Path of the file inside its origin.
    up : str
        Up axis of the file ('+x', '+y', '+z', '-x', ...); benchmarks rotate it onto +y.
    kind : str
        'mesh' (a ground-truth surface to scan) or 'scan' (a real raw scan, no ground truth).
    description : str
        What it is.
    largest_component : bool
        Keep only the largest connected component (drops loose debris triangles).
    """

    name: str
    origin: str
    member: str
    up: str
    kind: str = "mesh"
    description: str = ""
    largest_component: bool = False


CATALOG: tuple[MeshSource, ...] = (
    MeshSource("man", "cgal", "man.off", "+z", description="standing human, 17k vertices"),
    MeshSource("head", "cgal", "head.off", "+y", description="human head with open neck"),
    MeshSource("armadillo", "cgal", "armadillo.off", "+y", description="Stanford armadillo"),
    MeshSource("camel", "cgal", "camel.off", "+y", description="camel, thin legs"),
    MeshSource("fandisk", "cgal", "fandisk.off", "+y", description="CAD part with sharp edges"),
    MeshSource("bull", "cgal", "bull.off", "+y", description="bull with horns"),
    MeshSource("elephant", "cgal", "elephant.off", "+y", description="elephant, coarse"),
    MeshSource("lion-head", "cgal", "lion-head.off", "+z", description="lion head, open at the neck"),
    MeshSource("mannequin", "cgal", "mannequin-devil.off", "+z", description="bust, open at its base"),
    MeshSource("rotor", "cgal", "rotor.off", "+y", description="CAD rotor, coarse"),
    MeshSource("dragon", "cgal", "ChineseDragon-10kv.off", "+y", description="Chinese dragon, open"),
    MeshSource("cow", "pymeshlab", "cow.obj", "+y", description="cow"),
    MeshSource("airplane", "pymeshlab", "airplane.obj", "+y", description="airplane, thin wings"),
    MeshSource("bunny-closed", "pymeshlab", "bunny.obj", "+y", description="watertight Stanford bunny"),
    MeshSource("bone", "pymeshlab", "bone.ply", "+y", description="bone"),
    MeshSource(
        "bunny",
        "pymeshfix",
        "pymeshfix/examples/StanfordBunny.ply",
        "+z",
        description="Stanford bunny as scanned: holes in the base, debris dropped",
        largest_component=True,
    ),
    MeshSource(
        "face000",
        "pymeshlab",
        "rangemaps/face000.ply",
        "+y",
        kind="scan",
        description="real raw range scan of a face (no ground truth)",
    ),
)

DEFAULT_BENCHMARK = ("man", "head", "armadillo", "camel", "cow", "bunny", "fandisk", "airplane")
OPEN_BENCHMARK = ("head", "lion-head", "mannequin", "bunny")
"""Meshes whose ground truth is open (a neck, a base, holes in the base), where a watertight fit must cap what
the object itself does not close; with the default set's thin airplane and camel they extend the benchmark."""
MESH_SETS = {"default": DEFAULT_BENCHMARK, "open": OPEN_BENCHMARK}


def cache_dir() -> Path:
    """Folder that holds fetched data: ``$RECON_CACHE`` or ``~/.cache/recon``."""
    env = os.environ.get("RECON_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recon"


def mesh_source(name: str) -> MeshSource:
    """The catalog entry called ``name``, or ``cgal:<file>`` for any mesh of the CGAL data set.

    ``cgal:bull.off`` (or ``cgal:bull``) is named ``cgal-bull`` in file names and manifests; its up axis is
    assumed to be +y.
    """
    for source in CATALOG:
        if source.name == name:
            return source
    if name.startswith("cgal:") and len(name) > 5:
        member = name[5:] if Path(name[5:]).suffix else name[5:] + ".off"
        if "/" in member or "\\" in member or member.startswith("."):
            raise ReconError(f"bad CGAL mesh name {name!r}")
        return MeshSource(f"cgal-{Path(member).stem}", "cgal", member, "+y", description="CGAL data set mesh")
    names = ", ".join(s.name for s in CATALOG)
    raise ReconError(f"unknown mesh {name!r}; choose from {names}, or cgal:<file> (e.g. cgal:bull.off)")


def origin_dir(origin: str) -> Path:
    """Folder that holds the files of ``origin`` once it is fetched."""
    if origin == "pymeshlab":
        return pymeshlab_sample_dir()
    if origin in ORIGINS:
        return cache_dir() / origin
    raise ReconError(f"unknown source {origin!r}; choose from {', '.join(ORIGINS)}")


def is_fetched(origin: str) -> bool:
    """Whether the files of ``origin`` are available without a download."""
    if origin == "pymeshlab":
        return pymeshlab_sample_dir(required=False) is not None
    return (origin_dir(origin) / _DONE).exists()


def source_path(source: MeshSource, fetch: bool = True) -> Path:
    """Path of the file of ``source``, fetching its origin first when needed and ``fetch`` is True."""
    if not is_fetched(source.origin):
        if not fetch:
            raise InputError(f"{source.name}: source {source.origin} is not fetched; run `recon data fetch`")
        fetch_origin(source.origin)
    path = origin_dir(source.origin) / source.member
    if not path.is_file():
        raise InputError(f"{source.name}: {source.member} is missing from source {source.origin} ({path})")
    return path


def fetch_origin(origin: str) -> Path:
    """Fetch ``origin`` into the cache (nothing if already there) and return its folder."""
    if origin == "pymeshlab":
        return pymeshlab_sample_dir()
    target = origin_dir(origin)
    if (target / _DONE).exists():
        return target
    fetchers = {"pymeshfix": _fetch_pymeshfix, "cgal": _fetch_cgal}
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{origin}.", dir=cache_dir()) as tmp:
        staged = Path(tmp) / "files"
        staged.mkdir()
        fetchers[origin](Path(tmp), staged)
        (staged / _DONE).write_text(f"{origin}\n")
        if target.exists():  # left over from an interrupted fetch: no marker, so not trusted
            shutil.rmtree(target)
        os.replace(staged, target)
    return target


def load_source_mesh(source: MeshSource, fetch: bool = True):
    """The mesh of ``source`` as a ``trimesh.Trimesh`` in its file's frame, cleaned as the catalog says."""
    from recon.io import load_mesh

    mesh = load_mesh(source_path(source, fetch=fetch))
    if source.largest_component:
        mesh = max(mesh.split(only_watertight=False), key=lambda m: len(m.faces))
    return mesh


def _fetch_pymeshfix(tmp: Path, staged: Path) -> None:
    """Download the pymeshfix wheel (any platform's: the example file is the same) and unzip the bunny."""
    member = "pymeshfix/examples/StanfordBunny.ply"
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
        f"pymeshfix=={PYMESHFIX_VERSION}", "-d", str(tmp), "--quiet", "--disable-pip-version-check",
    ]  # fmt: skip
    _run(cmd, f"pip download pymeshfix=={PYMESHFIX_VERSION} failed (is PyPI reachable?)")
    wheels = sorted(tmp.glob("pymeshfix-*.whl"))
    if not wheels:
        raise ReconError("pip download pymeshfix produced no wheel")
    with zipfile.ZipFile(wheels[0]) as wheel:
        if member not in wheel.namelist():
            raise ReconError(f"the pymeshfix wheel has no {member}")
        out = staged / member
        out.parent.mkdir(parents=True)
        out.write_bytes(wheel.read(member))
    _check_ply(out)


def _fetch_cgal(tmp: Path, staged: Path) -> None:
    """Download the libcgal-demo .deb, unpack it, and extract its mesh data set."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise ReconError(f"fetching {CGAL_DEB} needs apt-get and dpkg-deb (a Debian/Ubuntu system)")
    _run(
        ["apt-get", "download", CGAL_DEB],
        f"apt-get download {CGAL_DEB} failed: the package lists may be missing (run `apt-get update`) "
        "or the mirror is unreachable",
        cwd=tmp,
    )
    debs = sorted(tmp.glob(f"{CGAL_DEB}_*.deb"))
    if not debs:
        raise ReconError(f"apt-get download {CGAL_DEB} produced no .deb")
    unpacked = tmp / "deb"
    _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], f"dpkg-deb could not unpack {debs[0].name}")
    data_tar = unpacked / _CGAL_DATA_TAR
    if not data_tar.is_file():
        raise ReconError(f"{debs[0].name} has no {_CGAL_DATA_TAR}")
    with tarfile.open(data_tar) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile()
            and m.name.startswith(_CGAL_MESH_DIR + "/")
            and "/" not in m.name[len(_CGAL_MESH_DIR) + 1 :]
        ]
        if not members:
            raise ReconError(f"{_CGAL_DATA_TAR} holds no {_CGAL_MESH_DIR}/ files")
        for m in members:
            m.name = m.name[len(_CGAL_MESH_DIR) + 1 :]
        tar.extractall(staged, members=members, filter="data")
    for required in ("man.off", "armadillo.off"):
        if not (staged / required).is_file() or (staged / required).stat().st_size == 0:
            raise ReconError(f"{CGAL_DEB}: {required} is missing after extraction")


def _check_ply(path: Path) -> None:
    with open(path, "rb") as f:
        if f.read(3) != b"ply":
            raise ReconError(f"{path.name} is not a PLY file")


def _run(cmd: list[str], message: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReconError(f"{message}: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ReconError(f"{message}: {detail[-1] if detail else f'exit code {proc.returncode}'}")
