"""A shape-class data set from the real meshes available offline, with augmentation.

Classes group meshes of :mod:`recon.data.sources` (pymeshlab's sample meshes and Debian's libcgal-demo data
set). Every mesh is brought into one frame: its up axis onto +y, bounding-box centre at the origin, scaled
into the unit ball (the renderer's camera looks at the origin from outside it). A *shape instance* is an
area-uniform sample of surface points with their normals, which is what the splatting renderer draws.

Augmentation makes several instances of one base mesh: quadric decimation to a random fraction of the faces,
a random anisotropic scale, and a smooth random deformation (a few low-frequency sine displacements). Each
base mesh is loaded and decimated once per process (an in-memory cache).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from recon.errors import InputError

SHAPE_CLASSES: dict[str, tuple[str, ...]] = {
    "human": ("man", "cgal:homer", "armadillo"),
    "quadruped": ("cow", "camel", "bull", "cgal:pig", "cgal:triceratops", "cgal:diplodocus"),
    "head": ("head", "cgal:nefertiti", "cgal:mannequin-devil", "cgal:lion"),
    "cad-part": ("fandisk", "rotor", "cgal:pinion", "cgal:anchor", "cgal:couplingdown", "cgal:joint"),
    "bone": ("bone", "cgal:femur", "cgal:bones"),
    "aircraft": ("airplane",),
}
"""Class name → base meshes (names of :func:`recon.data.sources.mesh_source`). Classes with more than one base
mesh hold their last one out of training (see :func:`split_bases`); 'aircraft' has a single base mesh, so it is
learnt from augmentations of that one airplane."""

BASE_FACES = 6000
"""Base meshes are decimated to at most this many faces once, before augmentation."""


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation of one base mesh."""

    scale_range: tuple[float, float] = (0.75, 1.25)
    """Independent factor per axis, applied before refitting into the unit ball."""
    deform_amplitude: float = 0.04
    """Amplitude (object units) of each of the three sine displacement fields."""
    decimate_range: tuple[float, float] = (0.25, 1.0)
    """Fraction of the base mesh's faces kept by quadric decimation."""


@dataclass(frozen=True)
class ShapeInstance:
    """A point-sampled surface ready to render.

    Attributes
    ----------
    points : (n, 3) float32
        Area-uniform surface samples inside the unit ball.
    normals : (n, 3) float32
        Unit face normals at the samples.
    label : int
        Class index into the class list it was made with.
    name : str
        Base mesh name plus the augmentation index (``cow#3``; ``cow`` for the unaugmented mesh).
    """

    points: np.ndarray
    normals: np.ndarray
    label: int
    name: str


def class_names() -> list[str]:
    """The class names in label order."""
    return list(SHAPE_CLASSES)


def split_bases(classes: list[str]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, held-out) lists of (base mesh, label): the last base of every multi-mesh class is held out."""
    train, held_out = [], []
    for label, name in enumerate(classes):
        bases = SHAPE_CLASSES[name]
        train += [(b, label) for b in (bases[:-1] if len(bases) > 1 else bases)]
        held_out += [(bases[-1], label)] if len(bases) > 1 else []
    return train, held_out


def class_of(base: str) -> str:
    """The class a base mesh belongs to."""
    for name, bases in SHAPE_CLASSES.items():
        if base in bases:
            return name
    known = ", ".join(b for bases in SHAPE_CLASSES.values() for b in bases)
    raise InputError(f"unknown shape {base!r}; choose from {known}")


@functools.lru_cache(maxsize=64)
def base_mesh(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The base mesh ``name`` in the unit-ball frame, decimated to at most :data:`BASE_FACES` faces.

    Returns
    -------
    vertices : (v, 3) float64
    faces : (f, 3) int64
    """
    from recon.data.benchmark import normalized_mesh
    from recon.data.sources import load_source_mesh, mesh_source

    source = mesh_source(name)
    mesh, _ = normalized_mesh(load_source_mesh(source), source.up)
    vertices, faces = _decimated(np.asarray(mesh.vertices), np.asarray(mesh.faces), BASE_FACES)
    return fit_unit_ball(vertices), faces


def fit_unit_ball(vertices: np.ndarray, radius: float = 0.95) -> np.ndarray:
    """(v, 3) vertices centred on their bounding box and scaled so the farthest one lies at ``radius``."""
    centred = vertices - (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    return centred * (radius / np.linalg.norm(centred, axis=1).max())


def _decimated(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation (pymeshlab) down to ``target`` faces; unchanged if already fewer."""
    if len(faces) <= target:
        return vertices, faces
    import pymeshlab

    meshset = pymeshlab.MeshSet()
    meshset.add_mesh(pymeshlab.Mesh(vertex_matrix=vertices, face_matrix=faces))
    meshset.meshing_decimation_quadric_edge_collapse(targetfacenum=int(target), preservenormal=True)
    out = meshset.current_mesh()
    return np.asarray(out.vertex_matrix()), np.asarray(out.face_matrix())


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, n_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform surface samples and their unit face normals.

    Parameters
    ----------
    vertices : (v, 3) float
    faces : (f, 3) int
    n_points : int
    rng : numpy Generator

    Returns
    -------
    points, normals : (n_points, 3) float32
    """
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise InputError("mesh has no surface area to sample")
    chosen = rng.choice(len(faces), size=n_points, p=area / area.sum())
    u, v = rng.random(n_points), rng.random(n_points)
    flip = u + v > 1.0
    u, v = np.where(flip, 1.0 - u, u), np.where(flip, 1.0 - v, v)
    t = tri[chosen]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    normals = cross[chosen] / np.maximum(area[chosen, None], 1e-12)
    return points.astype(np.float32), normals.astype(np.float32)


def augmented_mesh(
    name: str, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """A random variant of base mesh ``name``: decimated, anisotropically scaled, smoothly deformed.

    Returns
    -------
    vertices : (v, 3) float64, inside the unit ball
    faces : (f, 3) int64
    """
    vertices, faces = base_mesh(name)
    keep = rng.uniform(*config.decimate_range)
    vertices, faces = _decimated(vertices, faces, max(int(keep * len(faces)), 200))
    vertices = vertices * rng.uniform(*config.scale_range, size=3)
    frequencies = rng.normal(0.0, 2.0, size=(3, 3))
    phases = rng.uniform(0.0, 2.0 * np.pi, size=3)
    directions = rng.normal(size=(3, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    waves = np.sin(vertices @ frequencies.T + phases)  # (v, 3): one smooth field per direction
    vertices = vertices + config.deform_amplitude * waves @ directions
    return fit_unit_ball(vertices), faces


def make_instance(
    name: str,
    label: int,
    index: int,
    n_points: int,
    seed: int,
    augment: AugmentConfig | None = AugmentConfig(),
) -> ShapeInstance:
    """Instance ``index`` of base mesh ``name`` (deterministic in (seed, name, index)); no augmentation if None."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), index])
    if augment is None:
        vertices, faces = base_mesh(name)
        tag = name
    else:
        vertices, faces = augmented_mesh(name, rng, augment)
        tag = f"{name}#{index}"
    points, normals = sample_surface(vertices, faces, n_points, rng)
    return ShapeInstance(points=points, normals=normals, label=label, name=tag)


def make_instances(
    bases: list[tuple[str, int]],
    per_class: int,
    n_points: int,
    seed: int,
    augment: AugmentConfig = AugmentConfig(),
) -> list[ShapeInstance]:
    """``per_class`` augmented instances of every class, spread round-robin over the class's base meshes."""
    by_label: dict[int, list[str]] = {}
    for name, label in bases:
        by_label.setdefault(label, []).append(name)
    instances = []
    for label, names in by_label.items():
        for i in range(per_class):
            instances.append(make_instance(names[i % len(names)], label, i, n_points, seed, augment))
    return instances
