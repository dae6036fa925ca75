"""Measures and clean-up of triangle meshes: areas, enclosed volume, components, topology report.

Meshes are ``vertices`` (v, 3) float and ``faces`` (f, 3) int arrays, as
:func:`recon.core.extract.extract_mesh` returns them.
"""

from __future__ import annotations

import numpy as np

from recon.io.cleanup import drop_unreferenced


def empty_mesh() -> tuple[np.ndarray, np.ndarray]:
    """(0, 3) float64 vertices and (0, 3) int64 faces."""
    return np.zeros((0, 3), dtype=np.float64), np.zeros((0, 3), dtype=np.int64)


def vertex_components(n_vertices: int, faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of vertex-connected components and the (n_vertices,) label of each vertex."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n_vertices,) * 2)
    return connected_components(graph, directed=False)


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(f,) float64 triangle areas."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def keep_largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The connected piece with the largest area (pieces share vertices); unused vertices dropped.

    Parameters
    ----------
    vertices : (v, 3) float
    faces : (f, 3) int

    Returns
    -------
    vertices : (v', 3) float64
    faces : (f', 3) int64
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if not len(faces):
        return empty_mesh()
    _, labels = vertex_components(len(vertices), faces)
    face_label = labels[faces[:, 0]]
    area = np.bincount(face_label, weights=face_areas(vertices, faces))
    return drop_unreferenced(vertices, faces[face_label == np.argmax(area)])


def edge_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges (e, 2), faces per edge (e,), and net direction count per edge (e,)."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    forward = directed[:, 0] < directed[:, 1]
    undirected = np.sort(directed, axis=1)
    edges, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    net = np.bincount(inverse.reshape(-1), weights=np.where(forward, 1.0, -1.0), minlength=len(edges))
    return edges, counts, net


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume of a closed, consistently oriented mesh (positive for outward normals)."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def mesh_report(vertices: np.ndarray, faces: np.ndarray) -> dict:
    """Topology and size of a triangle mesh, as plain Python values.

    Returns
    -------
    report : dict
        ``n_vertices``, ``n_faces`` (referenced vertices only); ``watertight`` (every edge has
        exactly two faces); ``is_manifold`` (edge-manifold: no edge has more than two faces);
        ``winding_consistent`` (every edge with two faces is traversed once in each direction);
        ``n_boundary_edges``; ``euler_characteristic`` (V - E + F); ``n_components``
        (vertex-connected); ``area``; ``volume`` (signed, positive for outward normals; None unless
        watertight and consistently wound).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if not len(faces):
        return {
            "n_vertices": 0,
            "n_faces": 0,
            "watertight": False,
            "is_manifold": True,
            "winding_consistent": True,
            "n_boundary_edges": 0,
            "euler_characteristic": 0,
            "n_components": 0,
            "area": 0.0,
            "volume": None,
        }
    vertices, faces = drop_unreferenced(vertices, faces)
    edges, counts, net = edge_counts(faces)
    watertight = bool((counts == 2).all())
    winding = bool((net[counts == 2] == 0).all())
    n_components, _ = vertex_components(len(vertices), faces)
    return {
        "n_vertices": len(vertices),
        "n_faces": len(faces),
        "watertight": watertight,
        "is_manifold": bool((counts <= 2).all()),
        "winding_consistent": winding,
        "n_boundary_edges": int((counts == 1).sum()),
        "euler_characteristic": int(len(vertices) - len(edges) + len(faces)),
        "n_components": int(n_components),
        "area": float(face_areas(vertices, faces).sum()),
        "volume": signed_volume(vertices, faces) if watertight and winding else None,
    }
