"""Sphere tracing of a fitted implicit surface into depth and normal images.

Sphere tracing marches each ray by t ← t + |F(x)|/L. When F is L-Lipschitz, |F(x)|/L is at most the
distance from x to the zero set, so a step never crosses the surface: the march converges to the
*first* intersection from outside. A 1-Lipschitz network (``recon fit --model lipschitz``) carries a
certified L ≤ 1; an ordinary MLP has no bound, so tracing it needs an estimated L (max ‖∇F‖ on samples,
inflated by a safety factor), and the no-overshoot guarantee is then empirical only.

Everything here works in the run's working frame (the frame the network was trained in).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from recon.errors import InputError
from recon.models.field import numpy_field

if TYPE_CHECKING:
    from recon.viewer.camera import Camera

FieldFn = Callable[[np.ndarray], np.ndarray]
"""(n, 3) float points → (n,) float values, negative inside."""

UNSAFE_SAFETY = 2.0
"""Factor applied to the sampled max ‖∇F‖ of a network without a certified bound: the max over samples
underestimates the true Lipschitz constant, and a larger L only costs extra steps."""

BACKGROUND = np.array([255, 255, 255], dtype=np.uint8)


@dataclass
class TraceResult:
    """Outcome of :func:`sphere_trace` for n rays.

    Attributes
    ----------
    depth : (n,) float64
        Ray parameter t of the hit (distance along a unit direction); ``inf`` where there is no hit.
    hit : (n,) bool
        |F| fell below eps before t passed ``far``.
    points : (n, 3) float64
        origin + t·direction at the last march position (the surface point where ``hit``).
    steps : (n,) int
        Field evaluations spent on each ray.
    path : (max_steps + 1, n) float64 or None
        t before each step, NaN once a ray stopped; only when ``record`` is set.
    """

    depth: np.ndarray
    hit: np.ndarray
    points: np.ndarray
    steps: np.ndarray
    path: np.ndarray | None = None


def sphere_trace(
    field_fn: FieldFn,
    origins: np.ndarray,
    directions: np.ndarray,
    lipschitz: float,
    *,
    eps: float = 1e-4,
    max_steps: int = 256,
    near: float | np.ndarray = 0.0,
    far: float | np.ndarray = np.inf,
    record: bool = False,
) -> TraceResult:
    """March rays by |F|/``lipschitz`` until |F| < ``eps`` (hit), t > ``far`` or ``max_steps`` (miss).

    Parameters
    ----------
    field_fn : FieldFn
        The implicit function, negative inside.
    origins : (n, 3) float
    directions : (n, 3) float
        Unit ray directions.
    lipschitz : float
        A Lipschitz constant of ``field_fn`` (in ℓ2); the march is exact-safe only if it is one.
    eps : float
        Hit threshold on |F|.
    max_steps : int
        Marching steps per ray (a ray still short of eps and ``far`` after them is a miss).
    near, far : float or (n,) float
        Start and end of each ray's interval.
    record : bool
        Keep every ray's t before each step in :attr:`TraceResult.path`.
    """
    if not lipschitz > 0 or not np.isfinite(lipschitz):
        raise ValueError(f"lipschitz must be a positive finite number, got {lipschitz}")
    origins = np.asarray(origins, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    n = len(origins)
    t = np.broadcast_to(np.asarray(near, dtype=np.float64), (n,)).copy()
    far = np.broadcast_to(np.asarray(far, dtype=np.float64), (n,))
    hit = np.zeros(n, dtype=bool)
    steps = np.zeros(n, dtype=np.int64)
    path = np.full((max_steps + 1, n), np.nan) if record else None
    active = np.flatnonzero(t <= far)
    for step in range(max_steps + 1):
        if len(active) == 0:
            break
        if record:
            path[step, active] = t[active]
        values = np.abs(np.asarray(field_fn(origins[active] + t[active, None] * directions[active])))
        steps[active] += 1
        converged = values < eps
        hit[active[converged]] = True
        if step == max_steps:
            break
        marching = active[~converged]
        t[marching] += values[~converged] / lipschitz
        active = marching[t[marching] <= far[marching]]
    depth = np.where(hit, t, np.inf)
    return TraceResult(depth, hit, origins + t[:, None] * directions, steps, path)


def _float64(field: FieldFn) -> FieldFn:
    """The step arithmetic of sphere tracing in float64 (the network itself runs in float32)."""
    return lambda points: field(points).astype(np.float64)


def field_gradients(model: Callable[[torch.Tensor], torch.Tensor], points: np.ndarray) -> np.ndarray:
    """(n, 3) ∇F at (n, 3) ``points`` by autograd."""
    x = torch.as_tensor(np.asarray(points), dtype=torch.float32).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x).sum(), x)
    return grad.double().numpy()


def unit_normals(model: Callable[[torch.Tensor], torch.Tensor], points: np.ndarray) -> np.ndarray:
    """(n, 3) ∇F/‖∇F‖ at ``points`` (outward, since F < 0 inside); zero where the gradient vanishes."""
    grad = field_gradients(model, points)
    norm = np.linalg.norm(grad, axis=1, keepdims=True)
    return np.divide(grad, norm, out=np.zeros_like(grad), where=norm > 0)


def estimate_lipschitz(
    model: Callable[[torch.Tensor], torch.Tensor],
    samples: np.ndarray,
    safety: float = UNSAFE_SAFETY,
) -> float:
    """``safety`` × max ‖∇F‖ over (n, 3) ``samples``: an estimate, not a bound."""
    return safety * float(np.linalg.norm(field_gradients(model, samples), axis=1).max())


def camera_rays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole rays through every pixel centre of a :class:`recon.viewer.camera.Camera`.

    Returns
    -------
    origins : (h·w, 3) float64
        The eye, repeated; row-major pixel order.
    directions : (h·w, 3) float64
        Unit world directions.
    """
    u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    k = camera.intrinsic()
    local = np.stack(
        [(u.ravel() - k[0, 2]) / k[0, 0], (v.ravel() - k[1, 2]) / k[1, 1], np.ones(u.size)], axis=1
    )
    directions = local @ camera.rotation()
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return np.broadcast_to(camera.eye, directions.shape).copy(), directions


def box_interval(origins: np.ndarray, directions: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit t (n,) of rays through the cube [−bound, bound]³ (entry > exit: the ray misses it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / directions
        t0 = (-bound - origins) * inv
        t1 = (bound - origins) * inv
    lo = np.nan_to_num(np.minimum(t0, t1), nan=-np.inf).max(axis=1)
    hi = np.nan_to_num(np.maximum(t0, t1), nan=np.inf).min(axis=1)
    return np.maximum(lo, 0.0), hi


@dataclass
class ViewImage:
    """One traced view: per-pixel depth, hit mask and unit normals, (h, w) images."""

    view: str
    depth: np.ndarray
    """(h, w) float, inf where no hit."""
    hit: np.ndarray
    """(h, w) bool."""
    normals: np.ndarray
    """(h, w, 3) float world-frame unit normals, zero where no hit."""
    steps: np.ndarray
    """(h, w) int field evaluations per pixel."""


def trace_view(
    model: Callable[[torch.Tensor], torch.Tensor],
    camera: Camera,
    view: str,
    lipschitz: float,
    *,
    bound: float,
    eps: float = 1e-4,
    max_steps: int = 256,
) -> ViewImage:
    """Sphere-trace ``model`` seen by ``camera`` inside the cube [−bound, bound]³."""
    origins, directions = camera_rays(camera)
    near, far = box_interval(origins, directions, bound)
    result = sphere_trace(
        _float64(numpy_field(model)),
        origins,
        directions,
        lipschitz,
        eps=eps,
        max_steps=max_steps,
        near=near,
        far=far,
    )
    normals = np.zeros_like(origins)
    if result.hit.any():
        normals[result.hit] = unit_normals(model, result.points[result.hit])
    shape = (camera.height, camera.width)
    return ViewImage(
        view,
        result.depth.reshape(shape),
        result.hit.reshape(shape),
        normals.reshape(*shape, 3),
        result.steps.reshape(shape),
    )


def normal_image(image: ViewImage, camera: Camera) -> np.ndarray:
    """(h, w, 3) uint8 shading: camera-frame normal mapped to RGB, dimmed by a headlight term."""
    cam = image.normals @ camera.rotation().T
    # camera frame is x right, y down, z forward; show +x red, +y (up) green, toward-viewer blue
    rgb = 0.5 + 0.5 * np.stack([cam[..., 0], -cam[..., 1], -cam[..., 2]], axis=-1)
    light = 0.35 + 0.65 * np.clip(-cam[..., 2], 0.0, 1.0)
    return _composite(rgb * light[..., None], image.hit)


def depth_image(image: ViewImage) -> np.ndarray:
    """(h, w, 3) uint8 grey: near hits bright, far hits dark (range of this view's hits)."""
    if not image.hit.any():
        return _composite(np.zeros((*image.hit.shape, 3)), image.hit)
    depth = image.depth[image.hit]
    lo, hi = depth.min(), depth.max()
    scaled = np.zeros(image.hit.shape)
    scaled[image.hit] = (hi - depth) / max(hi - lo, 1e-12)
    grey = 0.15 + 0.8 * scaled
    return _composite(np.repeat(grey[..., None], 3, axis=-1), image.hit)


def tile_views(images: Sequence[ViewImage], cameras: Sequence[Camera]) -> np.ndarray:
    """(2h, k·w, 3) uint8: a row of normal shadings over a row of depth maps, one column per view."""
    top = np.concatenate([normal_image(im, cam) for im, cam in zip(images, cameras, strict=True)], axis=1)
    bottom = np.concatenate([depth_image(im) for im in images], axis=1)
    return np.concatenate([top, bottom], axis=0)


def _composite(rgb: np.ndarray, hit: np.ndarray) -> np.ndarray:
    out = np.broadcast_to(BACKGROUND, rgb.shape).copy()
    out[hit] = np.clip(np.round(rgb[hit] * 255), 0, 255).astype(np.uint8)
    return out


@dataclass
class RunField:
    """The fitted network of a run folder, ready to trace."""

    model: torch.nn.Module
    """Working frame, F < 0 inside, eval mode on the CPU."""
    model_type: str
    """'mlp' or 'lipschitz'."""
    certified_bound: float | None
    """Certified ℓ2 Lipschitz bound (lipschitz models only)."""
    bound: float
    """Half-width of the run's meshing box."""
    scan_points: np.ndarray
    """(n, 3) working-frame scan points."""
    voxel: float
    """Voxel size of the run's own mesh."""


def load_run_field(run_dir: str | os.PathLike) -> RunField:
    """Rebuild the fitted network of ``run_dir`` exactly as ``recon extract`` does."""
    from dataclasses import replace

    from recon.core.reconstruct import load_config, load_fitter
    from recon.run import RunFolder

    run = RunFolder.open(run_dir)
    config = replace(load_config(run), device="cpu")
    fitter, _ = load_fitter(run, config)
    points = fitter.points.numpy()
    model = fitter.model.eval()
    certified = None
    if config.model_type == "lipschitz":
        model = model.frozen_copy()
        certified = float(model.lipschitz_bound("l2"))
    else:
        model.requires_grad_(False)
    voxel = 2 * config.mesh.extract_bound / (config.mesh.resolution - 1)
    return RunField(model, config.model_type, certified, config.mesh.extract_bound, points, voxel)


def step_lipschitz(field: RunField, *, unsafe: bool, seed: int = 0) -> tuple[float, bool]:
    """The L to march ``field`` with, and whether it is certified.

    A lipschitz model uses its certified bound. An ordinary MLP raises unless ``unsafe``; then L is
    :func:`estimate_lipschitz` over uniform box samples and the scan points.
    """
    if field.certified_bound is not None:
        return field.certified_bound, True
    if not unsafe:
        raise InputError(
            f"the run's model is an ordinary {field.model_type.upper()} with no Lipschitz bound, so sphere "
            "tracing may step through the surface; refit with --model lipschitz, or pass --unsafe to trace "
            "with an L estimated from sampled gradients"
        )
    rng = np.random.default_rng(seed)
    box = rng.uniform(-field.bound, field.bound, (20_000, 3))
    return estimate_lipschitz(field.model, np.concatenate([box, field.scan_points])), False


def render_run(
    run_dir: str | os.PathLike,
    views: Sequence[str],
    *,
    size: int = 256,
    unsafe: bool = False,
    eps: float = 1e-4,
    max_steps: int = 256,
    up: str | Sequence[float] = "auto",
) -> tuple[np.ndarray, dict]:
    """Sphere-trace a run's surface from ``views``; return the tiled image and a summary dict.

    ``up`` is the scan's up axis, framed as in ``recon view`` (see
    :func:`recon.viewer.camera.resolve_up`; "auto" guesses it from the scan points, whose axes the
    working frame keeps).
    """
    from recon.viewer.camera import frame_view, resolve_up

    field = load_run_field(run_dir)
    lipschitz, certified = step_lipschitz(field, unsafe=unsafe)
    lo, hi = field.scan_points.min(axis=0), field.scan_points.max(axis=0)
    pad = 0.05 * (hi - lo).max()
    bounds = np.stack([lo - pad, hi + pad])
    up_axis = resolve_up(up, field.scan_points)
    cameras, images = [], []
    for view in views:
        camera = frame_view(bounds, view, (size, size), up=up_axis)
        cameras.append(camera)
        images.append(
            trace_view(field.model, camera, view, lipschitz, bound=field.bound, eps=eps, max_steps=max_steps)
        )
    summary = {
        "model_type": field.model_type,
        "lipschitz": lipschitz,
        "certified": certified,
        "up": [float(c) for c in up_axis],
        "views": {
            im.view: {
                "hit_fraction": round(float(im.hit.mean()), 4),
                "mean_steps": round(float(im.steps.mean()), 1),
                "max_steps_used": int(im.steps.max()),
                "out_of_steps": int((~im.hit & (im.steps > max_steps)).sum()),
            }
            for im in images
        },
    }
    return tile_views(images, cameras), summary


def save_render(image: np.ndarray, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the tiled (h, w, 3) uint8 image atomically; refuse to overwrite unless ``force``."""
    from recon.viewer.render import save_image

    return save_image(image, path, force=force)
