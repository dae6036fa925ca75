"""The level-set sample loss and the terms that can be added to it.

Reference (the 2020 form of the authors' code):

    loss = mean_p | d(p(θ), X) − |c| |  +  λ · mean_{x ∈ X} |F(x; θ)|

with d the Euclidean distance to the nearest scan point and c = F(p; θ0) the level each sample lies on.
The 2019 form squares both: mean_p | d² − c² | + λ · mean_x F(x)².
"""

from __future__ import annotations

import numpy as np
import torch

DISTANCE_EPS = 1e-7
"""Added under the square root of the nearest distance (the reference value): a finite gradient at d = 0."""
BULK_QUERY = 50_000
"""Queries from which a nearest-neighbour lookup uses every core (see NearestScanPoint.indices)."""
WITHIN_SLACK = 1e-3
"""Relative margin of ``within`` (NearestScanPoint.indices): far above float32's error in a distance."""


class NearestScanPoint:
    """Nearest-neighbour lookup against a whole scan.

    On CPU a scipy KD-tree answers the query (O(log n) per point, all cores); on CUDA a chunked
    brute-force search on the device avoids the host round trip. Either way only the *index* of the
    nearest point is found without gradient; the distance is then recomputed in torch, which gives the
    exact gradient of min_x ‖p − x‖ (the argmin is piecewise constant).

    Parameters
    ----------
    points : (n, 3) float tensor
        Scan points in the working frame, on the training device.
    method : str
        'auto' (KD-tree on CPU, brute force on CUDA), 'kdtree' or 'brute'.
    chunk : int
        Queries per brute-force block (memory is chunk × n distances).
    """

    def __init__(self, points: torch.Tensor, *, method: str = "auto", chunk: int = 4096):
        if method not in {"auto", "kdtree", "brute"}:
            raise ValueError(f"unknown nearest-neighbour method {method!r}")
        self.points = points.detach()
        self.chunk = chunk
        self._tree = None
        if method == "kdtree" or (method == "auto" and self.points.device.type == "cpu"):
            from scipy.spatial import cKDTree

            # Leaves of 64 points: queries far from the scan (most of a step's) run ~2× faster than at 16.
            self._tree = cKDTree(self.points.numpy().astype(np.float64), leafsize=64)

    def tree(self):
        """A scipy cKDTree over the scan points (the one in use on CPU, else built now)."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            return cKDTree(self.points.cpu().numpy().astype(np.float64), leafsize=64)
        return self._tree

    def indices(self, queries: torch.Tensor, within: float | None = None) -> torch.Tensor:
        """Index (m,) long of the nearest scan point of each (m, 3) query.

        ``within``: only queries that have a scan point within this distance need their true nearest one;
        the others get index 0, a point at least as far as their nearest, so a distance computed from it
        is still beyond ``within``. The KD-tree then stops early on far queries (most of a step's zero
        samples lie away from the scan).
        """
        q = queries.detach()
        if self._tree is not None:
            # One worker for the few thousand points of a step: scipy's thread pool contends with torch's
            # spinning OpenMP threads and is 10× slower there. Large one-off queries (the sample pools at
            # the start) gain from every core.
            workers = -1 if len(q) >= BULK_QUERY else 1
            # The slack keeps every query the float32 distance could put within ``within`` exact.
            bound = np.inf if within is None else within * (1.0 + WITHIN_SLACK)
            _, idx = self._tree.query(
                q.cpu().numpy().astype(np.float64), k=1, workers=workers, distance_upper_bound=bound
            )
            idx = np.asarray(idx, dtype=np.int64)
            idx[idx == len(self.points)] = 0  # scipy's "none within the bound"
            return torch.from_numpy(idx).to(q.device)
        out = []
        for chunk in torch.split(q, self.chunk):
            out.append(torch.cdist(chunk, self.points).argmin(dim=1))
        return torch.cat(out)

    def distances(self, queries: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable distance (m,) from each (m, 3) query to its nearest scan point.

        ``indices`` (m,) long, when given, are the nearest scan points already known (found at the
        query's θ0 position, which is where the argmin is taken anyway).
        """
        nearest = self.points[self.indices(queries) if indices is None else indices]
        return torch.sqrt(((queries - nearest) ** 2).sum(dim=1) + DISTANCE_EPS)


def levelset_sample_term(
    moved_points: torch.Tensor,
    levels: torch.Tensor,
    nearest: NearestScanPoint,
    form: str = "2020",
    indices: torch.Tensor | None = None,
    max_distance: float | None = None,
) -> torch.Tensor:
    """mean_p | d(p(θ)) − |c| | (2020) or mean_p | d² − c² | (2019) for (m, 3) sample-network points.

    ``indices`` (m,) long: the samples' nearest scan points when already known (else a query).
    ``max_distance``: samples farther than this from the scan (at p(θ0)) are left out of the mean.
    """
    d = nearest.distances(moved_points, indices)
    c = levels.detach().abs()
    if form == "2020":
        residual = (d - c).abs()
    elif form == "2019":
        residual = (d * d - c * c).abs()
    else:
        raise ValueError(f"unknown loss form {form!r} (use 2020 or 2019)")
    if max_distance is None:
        return residual.mean()
    near = (d.detach() <= max_distance).to(residual.dtype)
    return (residual * near).sum() / near.sum().clamp_min(1.0)


def data_term(values_on_scan: torch.Tensor, form: str = "2020") -> torch.Tensor:
    """mean |F(x)| (2020) or mean F(x)² (2019) over scan points: pulls the zero set through the data."""
    if form == "2020":
        return values_on_scan.abs().mean()
    if form == "2019":
        return (values_on_scan * values_on_scan).mean()
    raise ValueError(f"unknown loss form {form!r} (use 2020 or 2019)")


def normal_term(grads_on_scan: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """mean (1 − cos(∇F(x), n(x))) for (k, 3) gradients and unit scan normals (outward)."""
    cos = torch.nn.functional.cosine_similarity(grads_on_scan, normals, dim=1, eps=1e-8)
    return (1.0 - cos).mean()


def unsigned_normal_term(grads_on_scan: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """mean (1 − |cos(∇F(x), n(x))|) for (k, 3) gradients and unit normals of either sign.

    For estimated normals: it aligns the level set with the scan's tangent planes and leaves the sign to
    the field. A few per cent of an estimated orientation lies in wrongly signed patches on noisy scans,
    and the signed term pulls the surface inside out there (bench/full/README.md, estimated normals).
    """
    cos = torch.nn.functional.cosine_similarity(grads_on_scan, normals, dim=1, eps=1e-8)
    return (1.0 - cos.abs()).mean()
