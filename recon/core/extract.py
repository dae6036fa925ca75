"""Meshes of implicit fields by coarse-to-fine marching cubes (their measures: :mod:`recon.core.mesh_ops`).

A fitted network F: R³ → R (negative inside) is meshed by marching cubes at level 0 over the box
[-bound, bound]³ sampled with ``resolution`` points per axis, exactly like dense marching cubes on
``np.linspace(-bound, bound, resolution)`` — but without evaluating F on the dense grid:

1. F is evaluated at every corner of a coarse grid (about ``coarse_resolution`` points per axis; the
   stride is a power of two on the fine grid, and padding beyond the box repeats the boundary values).
2. A cell is *refined* when F changes sign among its corners or, while the stride is above two
   voxels, when min |F - level| over its corners is below ``refine_margin`` cell diagonals. Of its
   8 children, those are evaluated where the trilinear interpolation of the parent changes sign, or
   (band) whose one parent corner is within that margin; a sign-changing parent none of whose chosen
   children changes sign gets all 8. This repeats down to one voxel.
3. At every level the active set is *closed*: every cell sharing a sign-changing edge with a cell is
   evaluated too, until nothing new appears. A connected piece of the marching-cubes surface that is
   found anywhere is therefore traced completely, even where coarse levels missed it (a thin tube).
4. scikit-image's Lewiner marching cubes runs on 32³-cell blocks holding sign-changing cells, with a
   mask restricting it to those cells (all eight corners known), and vertices on block seams are
   welded (both sides compute them from the same two values and get identical positions).

Marching cubes decides each cell's triangles from its own eight corner values only, so the result has
the same triangles and vertices (up to float32 rounding of vertex coordinates) as dense marching cubes
whenever every cell with a sign change is reached; each grid point is evaluated at most once. A
512³-equivalent sphere costs about 1.2 M evaluations instead of 134 M.

Guarantee and limitation. An L-Lipschitz field can only vanish in a child cell if the child's parent
corner is within L child diagonals of the level, so with ``refine_margin >= L / 2`` (0.5 for a true
signed distance) no surface visible on the 2-voxel lattice is missed. The last step (2 voxels to 1),
which dominates the cost, refines sign changes only: a surface component that is thinner than about
two voxels everywhere *and* not connected to found surface (a tiny floating blob, a thin sheet on its
own) can be missed. Fitted networks carry no Lipschitz bound, so larger isolated pieces can be missed
too when F is steep; raise ``refine_margin`` or ``coarse_resolution`` when that matters. Pieces
connected to found surface are always traced by the closure. Vertices that coincide exactly on a
block seam (F equal to the level at a grid point) are merged, and faces that become degenerate are
dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recon.core.mesh_ops import empty_mesh
from recon.errors import ReconError
from recon.io.cleanup import drop_degenerate_faces, drop_unreferenced

FieldFn = Callable[[np.ndarray], np.ndarray]
"""(n, 3) float32 working-frame points -> (n,) float32 field values (negative inside)."""

# Corner c of a cell sits at offset (c & 1, c >> 1 & 1, c >> 2 & 1) on the (i, j, k) grid axes.
_CORNERS = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=np.int64)
# Lewiner's tables are right-handed in skimage's (z, y, x) order; on our (x, y, z)-indexed grid
# 'descent' is the direction that gives outward normals for F < 0 inside (checked in the tests).
_GRADIENT_DIRECTION = "descent"


@dataclass
class ExtractStats:
    """What one coarse-to-fine extraction cost.

    Attributes
    ----------
    resolution : int
        Fine grid points per axis.
    n_field_evaluations : int
        Points at which the field was evaluated (each at most once).
    dense_evaluations : int
        ``resolution ** 3``, what dense marching cubes would evaluate.
    level_strides : list of int
        Stride (in fine voxels) of each level, coarse to fine.
    level_active_cells : list of int
        Cells kept active at each level (refined, or meshed at the finest level).
    level_evaluations : list of int
        Field evaluations made at each level.
    n_closure_cells : int
        Cells added by the closure step over all levels (surface the refinement test missed).
    n_blocks : int
        Marching-cubes blocks run at the finest level.
    seconds : float
        Wall time of the whole extraction.
    seconds_field : float
        Part of ``seconds`` spent inside the field function.
    """

    resolution: int
    n_field_evaluations: int = 0
    dense_evaluations: int = 0
    level_strides: list[int] = dataclasses.field(default_factory=list)
    level_active_cells: list[int] = dataclasses.field(default_factory=list)
    level_evaluations: list[int] = dataclasses.field(default_factory=list)
    n_closure_cells: int = 0
    n_blocks: int = 0
    seconds: float = 0.0
    seconds_field: float = 0.0

    @property
    def evaluation_fraction(self) -> float:
        """Evaluations as a fraction of the dense grid."""
        return self.n_field_evaluations / max(self.dense_evaluations, 1)


def evaluate_field(field: FieldFn, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Field values at ``points``, evaluated ``chunk`` points at a time.

    Parameters
    ----------
    field : FieldFn
        (m, 3) float32 -> (m,) values.
    points : (n, 3) float
        Working-frame points.
    chunk : int
        Largest number of points passed to ``field`` at once.

    Returns
    -------
    values : (n,) float32

    Raises
    ------
    ReconError
        If the field returns the wrong number of values or non-finite values.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    values = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), chunk):
        part = points[start : start + chunk]
        out = np.asarray(field(part), dtype=np.float32).reshape(-1)
        if out.shape != (len(part),):
            raise ReconError(f"the field returned {out.size} values for {len(part)} points")
        values[start : start + chunk] = out
    bad = ~np.isfinite(values)
    if bad.any():
        raise ReconError(
            f"the field is not finite at {int(bad.sum())} of {len(values)} grid points "
            "(the model may have diverged)"
        )
    return values


def grid_axis(resolution: int, bound: float) -> np.ndarray:
    """(resolution,) float64 sample positions per axis, ``np.linspace(-bound, bound, resolution)``."""
    return np.linspace(-bound, bound, resolution)


def dense_grid_values(field: FieldFn, resolution: int, bound: float = 1.2, chunk: int = 65536) -> np.ndarray:
    """Field on the full grid, for tests and small grids.

    Returns
    -------
    values : (r, r, r) float32
        ``values[i, j, k] = field(axis[i], axis[j], axis[k])`` with ``axis = grid_axis(r, bound)``.
    """
    axis = grid_axis(resolution, bound).astype(np.float32)
    jj, kk = np.meshgrid(axis, axis, indexing="ij")
    plane = np.stack([np.zeros_like(jj), jj, kk], axis=-1).reshape(-1, 3)
    values = np.empty((resolution,) * 3, dtype=np.float32)
    for i, x in enumerate(axis):
        plane[:, 0] = x
        values[i] = evaluate_field(field, plane, chunk).reshape(resolution, resolution)
    return values


def _check_options(resolution: int, bound: float, coarse_resolution: int, chunk: int, margin: float):
    if resolution < 2:
        raise ReconError(f"the mesh resolution must be at least 2, got {resolution}")
    if not bound > 0:
        raise ReconError(f"the meshing box half-width must be positive, got {bound}")
    if coarse_resolution < 2:
        raise ReconError(f"the coarse resolution must be at least 2, got {coarse_resolution}")
    if chunk < 1:
        raise ReconError(f"the evaluation chunk must be at least 1, got {chunk}")
    if not margin >= 0:
        raise ReconError(f"the refine margin must be non-negative, got {margin}")


def _coarse_stride(n_cells: int, coarse_resolution: int) -> int:
    """Power-of-two stride (in fine voxels) of the coarsest level."""
    ratio = n_cells / max(coarse_resolution - 1, 1)
    return 1 << max(0, int(round(np.log2(ratio)))) if ratio > 1 else 1


def _edge_neighbour_shifts() -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """For each cell offset sharing an edge or face with a cell: the corner pairs of those shared edges.

    A cell at ``c + shift`` must be meshed whenever one of the listed edges (corner index pairs of the
    cell at ``c``) changes sign, because marching cubes puts a vertex on it that both cells use.
    """
    by_shift: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for axis in range(3):
        bit = 1 << axis
        for a in range(8):
            if a & bit:
                continue
            for other in range(8):
                if other & bit or other == a:
                    continue
                shift = tuple(int(s) for s in _CORNERS[a] - _CORNERS[other])
                by_shift.setdefault(shift, []).append((a, a | bit))
    return [(np.array(s, dtype=np.int64), edges) for s, edges in sorted(by_shift.items())]


_NEIGHBOUR_SHIFTS = _edge_neighbour_shifts()


def _child_weights() -> np.ndarray:
    """(8, 64) trilinear weights: parent corner values @ W = values at corner j of child i (i * 8 + j)."""
    weights = np.zeros((8, 8, 8))
    for child in range(8):
        for corner in range(8):
            t = (_CORNERS[child] + _CORNERS[corner]) / 2.0
            for parent_corner in range(8):
                weights[parent_corner, child, corner] = np.prod(
                    np.where(_CORNERS[parent_corner] == 1, t, 1 - t)
                )
    return weights.reshape(8, 64)


_CHILD_WEIGHTS = _child_weights()
_BRICK_BITS = 3


class _Lattice:
    """Per-point arrays over one level's lattice, stored sparsely in 8³-point bricks.

    A brick is allocated the first time one of its points is addressed, so memory follows the
    surface rather than the box. Flat indices are sums of per-axis tables, which makes the eight
    corners of many cells cheap to address. A cell is addressed by its lowest corner.
    """

    def __init__(self, n_points: int):
        b, low = _BRICK_BITS, (1 << _BRICK_BITS) - 1
        n_bricks = -(-n_points >> b)
        q = np.arange(n_points + 1, dtype=np.int64)
        self._brick_tables = [(q >> b) * n_bricks * n_bricks, (q >> b) * n_bricks, q >> b]
        self._offset_tables = [(q & low) << (2 * b), (q & low) << b, q & low]
        self._slot = np.full(n_bricks**3, -1, dtype=np.int64)
        self._mark = np.zeros(n_bricks**3, dtype=bool)
        self._n_slots = 0
        self.values = np.zeros(0, dtype=np.float32)
        self.known = np.zeros(0, dtype=bool)
        self.candidate = np.zeros(0, dtype=bool)
        self._claim = np.zeros(0, dtype=np.int32)

    def flat(self, q: np.ndarray) -> np.ndarray:
        """(m,) flat indices of (m, 3) integer lattice coordinates."""
        bricks = sum(t[q[:, a]] for a, t in enumerate(self._brick_tables))
        offsets = sum(t[q[:, a]] for a, t in enumerate(self._offset_tables))
        return self._address(bricks, offsets)

    def corner_flat(self, cells: np.ndarray) -> np.ndarray:
        """(n, 8) flat indices of the corners of (n, 3) cells, in ``_CORNERS`` order."""

        def corners(tables: list[np.ndarray]) -> np.ndarray:
            parts = [np.stack([t[cells[:, a]], t[cells[:, a] + 1]], axis=1) for a, t in enumerate(tables)]
            return parts[0][:, _CORNERS[:, 0]] + parts[1][:, _CORNERS[:, 1]] + parts[2][:, _CORNERS[:, 2]]

        return self._address(corners(self._brick_tables), corners(self._offset_tables))

    def _address(self, bricks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        missing = self._slot[bricks] < 0
        if missing.any():
            self._mark[bricks[missing]] = True
            new = np.flatnonzero(self._mark)
            self._mark[new] = False
            self._grow(len(new))
            self._slot[new] = np.arange(self._n_slots, self._n_slots + len(new))
            self._n_slots += len(new)
        return (self._slot[bricks] << (3 * _BRICK_BITS)) + offsets

    def _grow(self, n_new: int) -> None:
        size = (self._n_slots + n_new) << (3 * _BRICK_BITS)
        if size <= len(self.values):
            return
        size = max(size, 2 * len(self.values))
        for name in ("values", "known", "candidate", "_claim"):
            old = getattr(self, name)
            grown = np.zeros(size, dtype=old.dtype)
            grown[: len(old)] = old
            setattr(self, name, grown)

    def first_occurrences(self, flat: np.ndarray) -> np.ndarray:
        """(m,) bool: one True per distinct value of ``flat`` (m,), without sorting."""
        order = np.arange(len(flat), dtype=np.int32)
        self._claim[flat] = order
        return self._claim[flat] == order


class _Level:
    """Candidate cells of one level (all corners evaluated), their corner values, and the closure."""

    def __init__(self, extractor: _Extractor, stride: int):
        self.ex = extractor
        self.stride = stride
        self.n_valid = -(-extractor.n_cells // stride)
        self.lattice = _Lattice(extractor.n_pad // stride + 1)
        self.cells = np.empty((0, 3), dtype=np.int64)
        self.values = np.empty((0, 8), dtype=np.float32)
        self.n_closure = 0

    def add(self, cells: np.ndarray) -> np.ndarray:
        """Append the cells not yet candidates, evaluating their unseen corners.

        Returns
        -------
        above : (m, 8) bool
            Which corners of the appended cells lie above the level.
        """
        flat = self.lattice.flat(cells)
        fresh = ~self.lattice.candidate[flat]
        cells = cells[fresh]
        self.lattice.candidate[flat[fresh]] = True
        values = self.ex.corner_values(self.lattice, self.stride, cells)
        self.cells = np.concatenate([self.cells, cells])
        self.values = np.concatenate([self.values, values])
        return values.astype(np.float64) > self.ex.level

    def close(self) -> None:
        """Add every valid cell that shares a sign-changing edge with a candidate, until none is left."""
        frontier, above = self.cells, self.values.astype(np.float64) > self.ex.level
        while len(frontier):
            new = self._unseen_neighbours(frontier, above)
            self.n_closure += len(new)
            frontier, above = new, self.add(new)

    def _unseen_neighbours(self, cells: np.ndarray, above: np.ndarray) -> np.ndarray:
        mixed = above.any(axis=1) & ~above.all(axis=1)
        cells, above = cells[mixed], above[mixed]
        found = []
        for shift, edges in _NEIGHBOUR_SHIFTS:
            needed = np.zeros(len(cells), dtype=bool)
            for a, b in edges:
                needed |= above[:, a] != above[:, b]
            nb = cells[needed] + shift
            found.append(nb[((nb >= 0) & (nb < self.n_valid)).all(axis=1)])
        candidates = np.concatenate(found)
        flat = self.lattice.flat(candidates)
        fresh = ~self.lattice.candidate[flat]
        candidates, flat = candidates[fresh], flat[fresh]
        return candidates[self.lattice.first_occurrences(flat)]

    def sign_changes(self) -> np.ndarray:
        """(n,) bool: the cell's corners lie on both sides of the level (marching cubes meshes it)."""
        above = self.values.astype(np.float64) > self.ex.level
        return above.any(axis=1) & ~above.all(axis=1)

    @property
    def diagonal(self) -> float:
        return float(np.sqrt(3.0) * self.stride * self.ex.voxel)

    def near_level(self, margin: float) -> np.ndarray:
        """(n,) bool: some corner is within ``margin`` cell diagonals of the level."""
        return np.abs(self.values.astype(np.float64) - self.ex.level).min(axis=1) < margin * self.diagonal

    def children(self, keep: np.ndarray, margin: float) -> np.ndarray:
        """(m, 3) next-level cells inside the ``keep`` (n,) cells that may hold surface.

        A child is taken when the trilinear interpolation of its parent's corners changes sign in it,
        or when the one parent corner it touches is within ``margin`` parent diagonals of the level:
        an L-Lipschitz field can only vanish in the child if that corner is within L child diagonals
        of the level, so ``margin >= L / 2`` loses no child with surface in it.
        """
        parents = self.cells[keep]
        values = self.values[keep].astype(np.float64) - self.ex.level
        predicted = (values @ _CHILD_WEIGHTS).reshape(-1, 8, 8) > 0
        which = predicted.any(axis=2) & ~predicted.all(axis=2)
        if margin > 0:
            which |= np.abs(values) < margin * self.diagonal
        return self._kids(parents, which)

    def all_children(self, keep: np.ndarray) -> np.ndarray:
        """(m, 3) next-level cells inside the ``keep`` cells (mask or indices), those in the box."""
        parents = self.cells[keep]
        return self._kids(parents, np.ones((len(parents), 8), dtype=bool))

    def _kids(self, parents: np.ndarray, which: np.ndarray) -> np.ndarray:
        kids = (2 * parents[:, None, :] + _CORNERS[None])[which]
        n_valid_next = -(-self.ex.n_cells // (self.stride // 2))
        return kids[(kids < n_valid_next).all(axis=1)]


class _Extractor:
    """The padded fine lattice, the field, and every value evaluated so far (each point once)."""

    def __init__(self, field: FieldFn, resolution: int, bound: float, level: float, stride0: int, chunk: int):
        self.field = field
        self.level = level
        self.chunk = chunk
        self.n_cells = resolution - 1
        self.n_pad = -(-self.n_cells // stride0) * stride0
        self.voxel = 2.0 * bound / self.n_cells
        self.axis = grid_axis(resolution, bound).astype(np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._values = np.zeros(0, dtype=np.float32)
        self.seconds_field = 0.0

    @property
    def n_evaluations(self) -> int:
        return len(self._ids)

    def corner_values(self, lattice: _Lattice, stride: int, cells: np.ndarray) -> np.ndarray:
        """(n, 8) field values at the corners of (n, 3) cells, evaluating the corners never seen."""
        flat = lattice.corner_flat(cells)
        cell_index, corner = np.nonzero(~lattice.known[flat])
        if len(cell_index):
            new_flat = flat[cell_index, corner]
            first = lattice.first_occurrences(new_flat)
            points = (cells[cell_index[first]] + _CORNERS[corner[first]]) * stride
            lattice.values[new_flat[first]] = self._values_at(points)
            lattice.known[new_flat[first]] = True
        return lattice.values[flat]

    def _values_at(self, points: np.ndarray) -> np.ndarray:
        """(m,) values at distinct (m, 3) fine-lattice points: from earlier levels or evaluated now.

        Padding points beyond the box take the value of the nearest grid point inside it, so the field
        is only ever evaluated inside the box.
        """
        points = np.minimum(points, self.n_cells)
        side = self.n_cells + 1
        ids = (points[:, 0] * side + points[:, 1]) * side + points[:, 2]
        pos = np.searchsorted(self._ids, ids)
        seen = pos < len(self._ids)
        seen[seen] = self._ids[pos[seen]] == ids[seen]
        values = np.empty(len(ids), dtype=np.float32)
        values[seen] = self._values[pos[seen]]
        if not seen.all():
            new_ids, first, inverse = np.unique(ids[~seen], return_index=True, return_inverse=True)
            new_values = self._evaluate(points[~seen][first])
            values[~seen] = new_values[inverse]
            at = np.searchsorted(self._ids, new_ids)
            self._ids = np.insert(self._ids, at, new_ids)
            self._values = np.insert(self._values, at, new_values)
        return values

    def _evaluate(self, points: np.ndarray) -> np.ndarray:
        xyz = np.stack([self.axis[points[:, 0]], self.axis[points[:, 1]], self.axis[points[:, 2]]], axis=1)
        start = time.perf_counter()
        values = evaluate_field(self.field, xyz, self.chunk)
        self.seconds_field += time.perf_counter() - start
        return values


@functools.cache
def _mask_shift() -> int:
    """Offset between a cell's lowest corner and the mask entry that enables it in skimage.

    scikit-image documents the mask per volume element without saying which corner of a cube counts,
    and its implementation has used the upper corner; a 2³ probe settles it for the installed version.
    """
    from skimage.measure import marching_cubes

    volume = np.ones((3, 3, 3), dtype=np.float32)
    volume[0, 0, 0] = -1.0
    for shift in (0, 1):
        mask = np.zeros(volume.shape, dtype=bool)
        mask[shift, shift, shift] = True
        try:
            _, faces, _, _ = marching_cubes(volume, 0.0, mask=mask)
        except RuntimeError:
            continue
        if len(faces):
            return shift
    raise RuntimeError("cannot tell how skimage.measure.marching_cubes applies its mask")


def _mesh_blocks(
    cells: np.ndarray, values: np.ndarray, n_cells: int, level: float, block: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Marching cubes on the blocks of the fine grid that hold active cells.

    Parameters
    ----------
    cells : (n, 3) int
        Active fine cells (all 8 corners known).
    values : (n, 8) float32
        Their corner values.

    Returns
    -------
    vertices, faces, seams : lists with one entry per block
        (v, 3) float64 vertices in fine index units, (f, 3) int faces indexing that block's vertices,
        (v,) bool flags of vertices on a block face (candidates for welding).
    """
    from skimage.measure import marching_cubes

    shift = _mask_shift()
    owner = cells // block
    n_blocks = -(-n_cells // block)
    block_id = (owner[:, 0] * n_blocks + owner[:, 1]) * n_blocks + owner[:, 2]
    order = np.argsort(block_id, kind="stable")
    bounds = np.flatnonzero(np.diff(block_id[order])) + 1
    fill = np.float32(level + 1.0)
    out_v, out_f, out_s = [], [], []
    for members in np.split(order, bounds):
        origin = owner[members[0]] * block
        extent = np.minimum(block, n_cells - origin)
        local = cells[members] - origin
        volume = np.full(tuple(extent + 1), fill, dtype=np.float32)
        for c, offset in enumerate(_CORNERS):
            at = local + offset
            volume[at[:, 0], at[:, 1], at[:, 2]] = values[members, c]
        mask = np.zeros(volume.shape, dtype=bool)
        mask[local[:, 0] + shift, local[:, 1] + shift, local[:, 2] + shift] = True
        verts, faces, _, _ = marching_cubes(volume, level, mask=mask, gradient_direction=_GRADIENT_DIRECTION)
        out_v.append(verts.astype(np.float64) + origin)
        out_f.append(faces)
        out_s.append(((verts == 0) | (verts == extent)).any(axis=1))
    return out_v, out_f, out_s


def _weld(
    vertices: list[np.ndarray], faces: list[np.ndarray], seams: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One mesh from per-block meshes: seam vertices at identical positions merged, degenerate faces
    dropped."""
    offsets = np.cumsum([0] + [len(v) for v in vertices])
    all_v = np.concatenate(vertices)
    all_f = np.concatenate([f.astype(np.int64) + o for f, o in zip(faces, offsets[:-1], strict=True)])
    seam = np.concatenate(seams)
    inner = np.flatnonzero(~seam)
    welded, inverse = np.unique(all_v[seam], axis=0, return_inverse=True)
    remap = np.empty(len(all_v), dtype=np.int64)
    remap[inner] = np.arange(len(inner))
    remap[seam] = len(inner) + inverse.reshape(-1)
    out_v = np.concatenate([all_v[inner], welded])
    return drop_unreferenced(out_v, drop_degenerate_faces(remap[all_f]))


def _level(ex: _Extractor, stride: int, cells: np.ndarray) -> _Level:
    """A level with ``cells`` evaluated and closed."""
    level = _Level(ex, stride)
    level.add(cells)
    level.close()
    return level


def _record(stats: ExtractStats, ex: _Extractor, level: _Level, n_active: int) -> None:
    stats.level_strides.append(level.stride)
    stats.level_active_cells.append(n_active)
    stats.level_evaluations.append(ex.n_evaluations - sum(stats.level_evaluations))
    stats.n_closure_cells += level.n_closure


def _refine(ex: _Extractor, stride: int, margin: float, stats: ExtractStats) -> _Level | None:
    """The finest level holding every cell that marching cubes meshes; None when no surface is found.

    Every cell of the coarsest level is evaluated. A level's cells with a sign change, or (above
    stride 2) within ``margin`` diagonals of the level, are refined into the children that
    :meth:`_Level.children` selects; the band is left out of the last step, which dominates the cost.
    A sign-changing parent none of whose selected children changes sign gets all its children, so
    every sign change seen on a coarse level reaches the fine one, and the closure of each level
    traces the rest of that surface.
    """
    side = np.arange(ex.n_pad // stride)
    cells = np.stack(np.meshgrid(side, side, side, indexing="ij"), axis=-1).reshape(-1, 3)
    current = _level(ex, stride, cells)
    while True:
        changes = current.sign_changes()
        keep = changes | current.near_level(margin) if stride > 2 else changes
        _record(stats, ex, current, int(keep.sum()))
        if stride == 1:
            return current
        if not keep.any():
            return None
        child = _level(ex, stride // 2, current.children(keep, margin if stride > 2 else 0.0))
        found = _row_keys(child.cells[child.sign_changes()] // 2, ex.n_pad)
        empty = changes & ~np.isin(_row_keys(current.cells, ex.n_pad), found)
        if empty.any():
            child.add(current.all_children(empty))
            child.close()
        current, stride = child, stride // 2


def _row_keys(cells: np.ndarray, n: int) -> np.ndarray:
    """(m,) int64 keys of (m, 3) non-negative integer rows below ``n + 1``."""
    return (cells[:, 0] * (n + 1) + cells[:, 1]) * (n + 1) + cells[:, 2]


def extract_mesh(
    field: FieldFn,
    *,
    resolution: int = 256,
    bound: float = 1.2,
    level: float = 0.0,
    coarse_resolution: int = 32,
    chunk: int = 65536,
    refine_margin: float = 0.5,
    block_size: int = 32,
    return_stats: bool = False,
):
    """Marching-cubes mesh of ``field == level`` on a coarse-to-fine grid (see the module docstring).

    Parameters
    ----------
    field : FieldFn
        (n, 3) float32 working-frame points -> (n,) float32 values, negative inside.
    resolution : int
        Fine grid points per axis over [-bound, bound]; the voxel is ``2 * bound / (resolution - 1)``.
    bound : float
        Half-width of the meshing box.
    level : float
        Iso-level.
    coarse_resolution : int
        About this many points per axis on the coarsest level.
    chunk : int
        Largest number of points passed to ``field`` at once.
    refine_margin : float
        Width of the safety band, in cell diagonals: above a 2-voxel stride a cell is also refined when
        min |F - level| over its corners is below it. ``L / 2`` misses nothing for an L-Lipschitz
        field; 0 refines sign changes only (fastest, relies on the closure).
    block_size : int
        Cells per axis of a marching-cubes block.
    return_stats : bool
        Also return an :class:`ExtractStats`.

    Returns
    -------
    vertices : (v, 3) float64
        Working-frame positions; empty when there is no surface.
    faces : (f, 3) int64
        Triangles with outward normals (F < 0 inside); seam vertices welded.
    stats : ExtractStats
        Only when ``return_stats`` is true.
    """
    _check_options(resolution, bound, coarse_resolution, chunk, refine_margin)
    start = time.perf_counter()
    stride = _coarse_stride(resolution - 1, coarse_resolution)
    ex = _Extractor(field, resolution, bound, level, stride, chunk)
    stats = ExtractStats(resolution=resolution, dense_evaluations=resolution**3)

    fine = _refine(ex, stride, refine_margin, stats)
    stats.n_field_evaluations = ex.n_evaluations
    stats.seconds_field = ex.seconds_field
    keep = fine.sign_changes() if fine is not None else np.zeros(0, dtype=bool)
    if keep.any():
        parts = _mesh_blocks(fine.cells[keep], fine.values[keep], ex.n_cells, level, block_size)
        stats.n_blocks = len(parts[0])
        index_vertices, faces = _weld(*parts)
        vertices = index_vertices * ex.voxel - bound
    else:
        vertices, faces = empty_mesh()
    stats.seconds = time.perf_counter() - start
    if return_stats:
        return vertices, faces, stats
    return vertices, faces
