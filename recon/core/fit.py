"""Fitting a neural level set to a scan: configuration, presets and the training loop.

One optimizer step (the paper's, as in the authors' 2020 code):
  1. a batch of scan points X_b → data term mean|F(x)|;
  2. zero-level-set samples: seeds near X_b (σ = 0.1) and uniform in the seed box, moved onto F = 0 by
     generalized Newton — from fresh seeds every step (``paper``) or carried across steps and refreshed
     in part, one or two Newton moves per step (``warm_start``, the fast presets);
  3. general level-set samples X_b + N(0, σ²) for σ in ``general_sigmas``, each on its own level c;
  4. all samples go through the sample network p(θ) and the level-set term mean| d(p(θ), X) − |c| |.
The fast preset also starts from a signed distance estimate of the scan instead of a sphere
(recon.core.initial_field), draws general samples from a pool whose nearest scan points are found once, drops
isolated scan points first, and adds a normal-alignment term when the scan has oriented normals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch

from recon.core.levelset import (
    bounded_newton_step,
    gaussian_seeds,
    project_to_zero_level_set,
    sample_network,
    uniform_seeds,
)
from recon.core.losses import NearestScanPoint, data_term, levelset_sample_term, normal_term
from recon.device import resolve_device
from recon.errors import ConfigError
from recon.models.field import numpy_field
from recon.models.implicit import ImplicitConfig
from recon.models.lipschitz_config import LipschitzImplicitConfig
from recon.models.registry import MODELS, build_network


@dataclass
class FitConfig:
    """Everything a fit depends on. Saved, fully resolved, as config.json in every run folder."""

    preset: str = "fast"
    """Name of the preset these values started from."""
    model_type: str = "mlp"
    """'mlp' (ImplicitMLP, configured by `model`) or 'lipschitz' (1-Lipschitz LipschitzImplicit, configured
    by `lipschitz`: |F(x)| is then a lower bound on the distance from x to the zero set)."""
    model: ImplicitConfig = field(default_factory=ImplicitConfig)
    """Implicit MLP architecture (model_type='mlp')."""
    lipschitz: LipschitzImplicitConfig = field(default_factory=LipschitzImplicitConfig)
    """1-Lipschitz network architecture (model_type='lipschitz')."""
    steps: int = 50_000
    """Optimizer steps."""
    max_points: int = 100_000
    """Scan points kept (random subset, fixed seed); the reference keeps 100k."""
    outlier_ratio: float = 0.0
    """Drop scan points whose mean distance to their ``outlier_neighbors`` nearest scan points exceeds this
    multiple of the scan's median (stray returns in empty space; 0 = keep every point, as the reference)."""
    outlier_neighbors: int = 16
    """k of the isolated-point test."""
    init: str = "sphere"
    """Starting field: 'sphere' (geometric initialization, the reference) or 'signed-distance' (the sphere
    regressed for ``init_steps`` steps onto a signed distance estimate of the oriented scan, see
    recon.core.initial_field; scans without normals get estimated ones)."""
    init_steps: int = 150
    """Regression steps of the 'signed-distance' start."""
    init_samples: int = 60_000
    """Fixed samples the 'signed-distance' start regresses on."""
    closure_winding: float = 0.5
    """Winding number of the scan at which the 'signed-distance' start closes holes and unseen sides
    (recon.core.initial_field); ½ is the soap film spanning a hole's rim, lower values bulge it outward. No
    value suits every scan (bench/closure): 0.35 halves the error of round objects seen from one side and
    doubles that of thin ones, so the presets keep ½."""
    anchor_weight: float = 0.0
    """With the 'signed-distance' start: weight of mean|F(q) − s(q)| on start samples q farther than
    ``anchor_distance`` from the scan, s the start's estimate (0 = off, as the reference). Where no scan
    point is near, the level-set term only pulls the zero set towards the nearest data — caps over holes
    and unseen sides dent or balloon by an amount that changes with the seed; the anchor keeps them on
    the start's deterministic winding-number surface instead."""
    anchor_distance: float = 0.04
    """Working-frame distance from the scan beyond which samples follow the anchor term instead of the
    level-set term (used when anchor_weight > 0)."""
    anchor_samples: int = 2_000
    """Anchor samples per step."""
    batch_points: int = 10_000
    """Scan points per step (data term and sample seeds)."""
    zero_samples: int = 5_000
    """Zero-level-set samples per step."""
    uniform_fraction: float = 0.2
    """Share of zero-level-set seeds drawn uniformly in the seed box instead of near the scan."""
    seed_sigma: float = 0.1
    """Std of the Gaussian around scan points for zero-level-set seeds (working units)."""
    seed_bound: float = 1.1
    """Half-side of the box for uniform seeds."""
    general_sigmas: tuple[float, ...] = (0.01, 0.2)
    """Std of the Gaussians around scan points for general level-set samples (one set per value)."""
    general_samples: int = 5_000
    """General level-set samples per sigma."""
    general_pool: int = 0
    """0: fresh general samples every step (the reference). n > 0: draw them from n fixed samples per sigma
    whose nearest scan points are found once, at the start — the KD-tree queries of samples far from the
    scan are the slowest part of a small network's step."""
    newton_steps: int = 10
    """Generalized-Newton steps per optimizer step (from fresh seeds, or on the carried pool)."""
    newton_tol: float = 1e-5
    """|F| below which a sample counts as on the zero set."""
    warm_start: bool = False
    """Carry zero-level-set samples across steps and refresh a part of them each step."""
    refresh_fraction: float = 0.25
    """With warm_start: share of the pool replaced by fresh seeds each step."""
    loss_form: str = "2020"
    """'2020' mean|d − |c|| + λ mean|F| (reference HEAD) or '2019' mean|d² − c²| + λ mean F²."""
    data_weight: float = 3.0
    """λ, weight of the data term."""
    normal_weight: float = 0.0
    """Weight of mean(1 − cos(∇F(x), n(x))) on scan points with oriented normals (0 = off, as the reference)."""
    normal_points: int = 0
    """Scan points of each batch the normal term uses (0 = the whole batch)."""
    lr: float = 1e-4
    """Adam learning rate."""
    lr_schedule: str = "constant"
    """'constant' (reference) or 'cosine' (decays to lr_final_factor·lr at the last step)."""
    lr_final_factor: float = 0.05
    """Final learning rate as a fraction of lr for the cosine schedule."""
    resolution: int = 500
    """Marching-cubes grid points per axis over [-bound, bound]³."""
    extract_bound: float = 1.2
    """Half-side of the meshing box (working units)."""
    keep_largest_component: bool = True
    """Drop all but the largest connected component of the mesh."""
    trim: bool = True
    """Also write mesh_trimmed.ply: the mesh without the surface no scan point supports (recon.core.trim)."""
    on_suspect: str = "repair"
    """What a mesh that fails its check against the scan (recon.core.surface_check) leads to: 'repair' refits
    from the other orientations of the start (signed-distance start only) and refuses the fit when none
    passes; 'refuse' refuses at once; 'warn' keeps it, marked suspect in meta.json, the log and the last
    line of ``recon fit`` (for smoke runs of a few steps, whose meshes are not meant to be good)."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""
    seed: int = 0
    """Seed of every random choice (subsampling, batches, seeds, initialization)."""
    log_every: int = 50
    """Steps between log lines / metrics.jsonl records."""
    checkpoint_every: int = 500
    """Steps between checkpoints."""

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> FitConfig:
        """Raise ConfigError for values no fit can use; returns self."""
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.max_points >= 32, "max_points must be >= 32"),
            (self.batch_points >= 1 and self.zero_samples >= 1, "batch_points and zero_samples must be >= 1"),
            (0.0 <= self.uniform_fraction <= 1.0, "uniform_fraction must be in [0, 1]"),
            (0.0 <= self.refresh_fraction <= 1.0, "refresh_fraction must be in [0, 1]"),
            (self.newton_steps >= 0, "newton_steps must be >= 0"),
            (self.normal_points >= 0, "normal_points must be >= 0"),
            (self.outlier_ratio == 0.0 or self.outlier_ratio > 1.0, "outlier_ratio must be 0 (off) or > 1"),
            (self.outlier_neighbors >= 1, "outlier_neighbors must be >= 1"),
            (self.init in {"sphere", "signed-distance"}, "init must be sphere or signed-distance"),
            (self.init_steps >= 1 and self.init_samples >= 100, "init_steps >= 1 and init_samples >= 100"),
            (self.anchor_weight >= 0 and self.anchor_distance > 0, "anchor_weight >= 0, anchor_distance > 0"),
            (
                self.anchor_weight == 0 or self.init == "signed-distance",
                "anchor_weight needs init=signed-distance",
            ),
            (self.anchor_samples >= 1, "anchor_samples must be >= 1"),
            (0.0 < self.closure_winding < 1.0, "closure_winding must be in (0, 1)"),
            (
                self.closure_winding == 0.5 or self.init == "signed-distance",
                "closure_winding needs init=signed-distance",
            ),
            (self.on_suspect in {"repair", "refuse", "warn"}, "on_suspect must be repair, refuse or warn"),
            (self.general_pool >= 0, "general_pool must be >= 0"),
            (self.loss_form in {"2019", "2020"}, "loss_form must be 2019 or 2020"),
            (self.lr > 0, "lr must be > 0"),
            (self.lr_schedule in {"constant", "cosine"}, "lr_schedule must be constant or cosine"),
            (16 <= self.resolution <= 2048, "resolution must be in [16, 2048]"),
            (self.extract_bound > 1.0, "extract_bound must exceed the unit cube the scan is normalized into"),
            (self.model_type in MODELS, f"model_type must be one of {', '.join(MODELS)}"),
            (self.model.activation in {"relu", "softplus"}, "model.activation must be relu or softplus"),
            (self.model.skip in {"all", "middle", "none"}, "model.skip must be all, middle or none"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        resolve_device(self.device)
        return self

    @classmethod
    def from_dict(cls, d: dict) -> FitConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"scan", "levers"}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        values = {k: v for k, v in d.items() if k in known}
        model = dict(values.get("model", {}))
        if "grid_resolutions" in model:
            model["grid_resolutions"] = tuple(model["grid_resolutions"])
        values["model"] = ImplicitConfig(**model)
        values["lipschitz"] = LipschitzImplicitConfig(**dict(values.get("lipschitz", {})))
        if "general_sigmas" in values:
            values["general_sigmas"] = tuple(values["general_sigmas"])
        return cls(**values)

    def levers(self) -> dict:
        """What this configuration changes relative to the faithful reference (for the run folder)."""
        ref = PRESETS["paper"]()
        mine, theirs = self.to_dict(), ref.to_dict()
        return {
            f.name: mine[f.name]
            for f in fields(self)
            if f.name not in {"preset", "device", "seed", "log_every", "checkpoint_every"}
            and mine[f.name] != theirs[f.name]
        }


def paper_preset() -> FitConfig:
    """Faithful to the reference implementation (2020 release); meant for a GPU."""
    return FitConfig(preset="paper")


def fast_preset() -> FitConfig:
    """A CPU-sized variant of the same loss: small Softplus MLP started from the scan's signed distance
    estimate, warm-started zero-level-set samples, pooled general samples, isolated points dropped, and
    the scan's normals when it has them."""
    return FitConfig(
        preset="fast",
        model=ImplicitConfig(
            depth=4, width=128, activation="softplus", skip="none", init_radius=0.5, encoding_frequencies=4
        ),
        init="signed-distance",
        anchor_weight=1.0,
        steps=400,
        # Half the batches of the earlier preset (4,000 / 3,000 / 2,000 / 2,000 / 1,000): 0.6× the fit
        # time; the worst of 3 seeds moved by −0.8 … +3.1 % on six scans, within the seed spread
        # (bench/fit_time).
        batch_points=2_000,
        zero_samples=1_500,
        general_samples=1_000,
        anchor_samples=1_000,
        general_pool=100_000,
        normal_points=500,
        newton_steps=1,
        warm_start=True,
        refresh_fraction=0.2,
        normal_weight=0.3,
        outlier_ratio=5.0,
        lr=3e-3,
        lr_schedule="cosine",
        resolution=256,
        log_every=25,
        checkpoint_every=200,
    )


def tiny_preset() -> FitConfig:
    """Tiny settings for unit tests and smoke runs (seconds on a CPU)."""
    return replace(
        fast_preset(),
        preset="tiny",
        on_suspect="warn",
        model=ImplicitConfig(depth=3, width=64, activation="softplus", skip="none", init_radius=0.5),
        steps=200,
        init_steps=30,
        init_samples=4_000,
        batch_points=1_000,
        zero_samples=500,
        general_samples=500,
        general_pool=5_000,
        normal_points=500,
        resolution=48,
        log_every=20,
        checkpoint_every=50,
    )


PRESETS: dict[str, Callable[[], FitConfig]] = {
    "fast": fast_preset,
    "paper": paper_preset,
    "tiny": tiny_preset,
}


def build_model(config: FitConfig) -> torch.nn.Module:
    """The implicit network a config asks for (geometric/sphere initialization either way)."""
    return build_network(config.model_type, config)


START_ORIENTATIONS = ("scan", "estimated", "estimated-flipped")
"""Where the signed-distance start takes its normals from, in the order a failed fit tries them: the
scan's own, estimated ones (recon.core.normals), or estimated ones with the opposite global sign."""


@dataclass
class StepBatch:
    """What one optimizer step is computed on."""

    scan_indices: torch.Tensor
    """(b,) long: the scan points of the data (and normal) term."""
    zero: torch.Tensor
    """(m, 3) zero-level-set samples, already moved by this step's Newton steps."""
    general: torch.Tensor
    """(k, 3) general level-set samples."""
    general_nearest: torch.Tensor | None
    """(k,) long: their nearest scan points when known in advance (pooled samples), else None."""
    anchor: torch.Tensor
    """(a, 4) anchor samples: x, y, z and the start's estimate (a = 0 without an anchor)."""


@dataclass
class StepLog:
    """Loss terms of one step."""

    step: int
    loss: float
    levelset: float
    data: float
    normal: float
    lr: float
    seconds: float
    zero_residual: float
    """mean |F| of the zero-level-set samples: how far the carried samples are from the zero set."""


class LevelSetFitter:
    """Owns the network, optimizer, sample pool and RNG of one fit; steps it and (de)serializes it.

    Parameters
    ----------
    points : (n, 3) float array
        Scan points in the working frame.
    normals : (n, 3) float array or None
        Oriented unit normals of the scan points, if known.
    config : FitConfig
    """

    def __init__(
        self,
        points: np.ndarray,
        normals: np.ndarray | None,
        config: FitConfig,
        *,
        initialize: bool = True,
        start_orientation: str | None = None,
    ):
        self.config = config
        self.scan_normals = normals
        self.start_orientation = start_orientation or ("scan" if normals is not None else "estimated")
        """Which normals the signed-distance start used (one of START_ORIENTATIONS)."""
        if self.start_orientation not in self.start_orientations():
            raise ConfigError(f"start orientation {self.start_orientation!r} is not available for this scan")
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.points = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        use_normals = normals is not None and config.normal_weight > 0
        self.normals = (
            torch.as_tensor(normals, dtype=torch.float32, device=self.device) if use_normals else None
        )
        self.nearest = NearestScanPoint(self.points)
        self.model = build_model(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.step = 0
        self.seconds = 0.0
        self.pool: torch.Tensor | None = None
        self.general_pools = self._general_pools() if config.general_pool else None
        self.init_error: float | None = None
        """Final mean |F − s| of the signed-distance start (None for the sphere)."""
        self.anchor = torch.zeros(0, 4, device=self.device)
        """(a, 4) anchor samples far from the scan: x, y, z and the start's signed distance estimate."""
        if initialize and config.init == "signed-distance":
            self._start_from_signed_distance(points)

    def start_orientations(self) -> tuple[str, ...]:
        """The START_ORIENTATIONS this scan allows ('scan' only when it has normals)."""
        return tuple(o for o in START_ORIENTATIONS if o != "scan" or self.scan_normals is not None)

    def restarted(self, start_orientation: str) -> LevelSetFitter:
        """A fresh fit of the same scan and config from another start; its clock continues this one's."""
        fitter = LevelSetFitter(
            self.points.cpu().numpy(), self.scan_normals, self.config, start_orientation=start_orientation
        )
        fitter.seconds += self.seconds
        return fitter

    def _start_normals(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) float64 normals for the start, as ``start_orientation`` says."""
        if self.start_orientation == "scan":
            return np.asarray(self.scan_normals, dtype=np.float64)
        from recon.core.normals import estimate_normals

        normals = estimate_normals(points)
        return -normals if self.start_orientation == "estimated-flipped" else normals

    def _start_from_signed_distance(self, points: np.ndarray) -> None:
        from recon.core.initial_field import (
            InitialFieldConfig,
            distill_signed_distance,
            signed_distance_samples,
        )

        start = time.perf_counter()
        cfg = self.config
        points = np.asarray(points, dtype=np.float64)
        normals = self._start_normals(points)
        tree = self.nearest.tree()
        field_config = InitialFieldConfig(
            steps=cfg.init_steps, samples=cfg.init_samples, closure_winding=cfg.closure_winding
        )
        queries, targets = signed_distance_samples(
            points,
            np.asarray(normals, dtype=np.float64),
            tree,
            field_config,
            bound=cfg.seed_bound,
            seed=cfg.seed,
        )
        self.init_error = distill_signed_distance(
            self.model, queries, targets, points, field_config, seed=cfg.seed, device=self.device
        )
        if cfg.anchor_weight > 0:
            far = tree.query(queries, k=1, workers=-1)[0] > cfg.anchor_distance
            anchor = np.concatenate([queries[far], targets[far, None]], axis=1)
            self.anchor = torch.as_tensor(anchor, dtype=torch.float32, device=self.device)
        self.seconds += time.perf_counter() - start

    # ---------------------------------------------------------------- sampling
    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(high, (n,), generator=self.generator).to(self.device)

    def _fresh_zero_seeds(self, n: int) -> torch.Tensor:
        cfg = self.config
        n_uniform = int(round(n * cfg.uniform_fraction))
        near = self.points[self._randint(len(self.points), n - n_uniform)]
        near = gaussian_seeds(near, cfg.seed_sigma, self.generator)
        box = uniform_seeds(n_uniform, cfg.seed_bound, device=self.device, generator=self.generator)
        return torch.cat([near, box])

    def _zero_level_samples(self) -> torch.Tensor:
        """(m, 3) zero-level-set samples for this step, before the final evaluation.

        Fresh seeds take ``newton_steps`` Newton moves here. A warm pool already took its last move at the
        end of the previous step (from that step's F and ∇F, see ``train_step``), so it takes
        ``newton_steps − 1`` more, and the seeds that refresh it join unprojected: every sample still
        takes one Newton move per step it lives, without a second pass through the network.
        """
        cfg = self.config
        moves = cfg.newton_steps
        if cfg.warm_start and self.pool is not None:
            n_new = int(round(cfg.zero_samples * cfg.refresh_fraction))
            keep = self.pool[n_new:] if n_new else self.pool
            p = torch.cat([keep, self._fresh_zero_seeds(n_new)]) if n_new else keep
            moves -= 1
        else:
            p = self._fresh_zero_seeds(cfg.zero_samples)
            if cfg.warm_start:
                moves -= 1
        if moves <= 0:
            return p
        projection = project_to_zero_level_set(
            self.model, p, max_steps=moves, tol=cfg.newton_tol, max_move=cfg.seed_bound
        )
        return self._bounded(projection.points)

    def _bounded(self, p: torch.Tensor) -> torch.Tensor:
        # Newton moves from flat regions can fly far away; keep samples in the meshing box.
        bound = self.config.extract_bound
        return p.clamp(-bound, bound)

    def _general_pools(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per sigma: (general_pool, 3) fixed samples and their (general_pool,) nearest scan point indices."""
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        pools = []
        for sigma in self.config.general_sigmas:
            idx = torch.randint(len(self.points), (self.config.general_pool,), generator=generator)
            samples = gaussian_seeds(self.points[idx.to(self.device)], sigma, generator)
            pools.append((samples, self.nearest.indices(samples)))
        return pools

    def _general_samples(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(m, 3) general level-set samples, and their nearest scan point indices when known in advance."""
        cfg = self.config
        if self.general_pools is not None:
            samples, nearest = [], []
            for pool, near in self.general_pools:
                pick = self._randint(len(pool), cfg.general_samples)
                samples.append(pool[pick])
                nearest.append(near[pick])
            return torch.cat(samples), torch.cat(nearest)
        sets = []
        for sigma in cfg.general_sigmas:
            centers = self.points[self._randint(len(self.points), cfg.general_samples)]
            sets.append(gaussian_seeds(centers, sigma, self.generator))
        return (torch.cat(sets) if sets else self.points[:0]), None

    # ---------------------------------------------------------------- training
    def learning_rate(self, step: int) -> float:
        cfg = self.config
        if cfg.lr_schedule == "constant":
            return cfg.lr
        if cfg.lr_schedule == "cosine":
            t = min(step / max(cfg.steps, 1), 1.0)
            final = cfg.lr * cfg.lr_final_factor
            return final + 0.5 * (cfg.lr - final) * (1.0 + math.cos(math.pi * t))
        raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}")

    def draw_batch(self) -> StepBatch:
        """The random part of the next step (draws in a fixed order, so a seed gives the same batches)."""
        scan_indices = self._randint(len(self.points), self.config.batch_points)
        zero = self._zero_level_samples()
        general, general_nearest = self._general_samples()
        return StepBatch(scan_indices, zero, general, general_nearest, self._anchor_batch())

    def train_step(self) -> StepLog:
        """One optimizer step; returns its loss terms."""
        cfg = self.config
        start = time.perf_counter()
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        batch = self.draw_batch()
        batch_idx, zero, anchor = batch.scan_indices, batch.zero, batch.anchor
        samples = torch.cat([zero, batch.general]).requires_grad_(True)
        n_data = len(batch_idx)
        n_anchor = len(anchor)

        # One first-order pass serves the data and anchor terms, c = F(p; θ0), g = ∇F(p; θ0) and F(p; θ).
        values = self.model(torch.cat([self.points[batch_idx], anchor[:, :3], samples]))
        sample_values = values[n_data + n_anchor :]
        (sample_grads,) = torch.autograd.grad(sample_values.sum(), samples, retain_graph=True)
        levels = sample_values.detach()
        moved = sample_network(self.model, samples, levels, sample_grads, values=sample_values)

        nearest = None
        if batch.general_nearest is not None:
            nearest = torch.cat([self.nearest.indices(zero), batch.general_nearest])
        levelset = levelset_sample_term(
            moved, levels, self.nearest, cfg.loss_form, nearest, max_distance=self._levelset_reach()
        )
        data = data_term(values[:n_data], cfg.loss_form)
        loss = levelset + cfg.data_weight * data
        if n_anchor:
            loss = loss + cfg.anchor_weight * (values[n_data : n_data + n_anchor] - anchor[:, 3]).abs().mean()
        normal = torch.zeros((), device=self.device)
        if self.normals is not None:
            normal = self._normal_term(batch_idx)
            loss = loss + cfg.normal_weight * normal

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

        n_zero = len(zero)
        if cfg.warm_start and cfg.newton_steps >= 1:
            self.pool = self._bounded(
                bounded_newton_step(zero, levels[:n_zero], sample_grads[:n_zero], max_move=cfg.seed_bound)
            )
        elif cfg.warm_start:
            self.pool = zero.detach()
        self.step += 1
        # One host synchronisation for all the logged scalars.
        terms = torch.stack([loss, levelset, data, normal, levels[:n_zero].abs().mean()]).tolist()
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        return StepLog(
            step=self.step,
            loss=terms[0],
            levelset=terms[1],
            data=terms[2],
            normal=terms[3],
            lr=lr,
            seconds=elapsed,
            zero_residual=terms[4],
        )

    def _anchor_batch(self) -> torch.Tensor:
        """(a, 4) anchor samples for this step (none without an anchor)."""
        if not len(self.anchor):
            return self.anchor
        return self.anchor[self._randint(len(self.anchor), self.config.anchor_samples)]

    def _levelset_reach(self) -> float | None:
        """Samples farther than this from the scan leave the level-set term to the anchor (None: all stay)."""
        return self.config.anchor_distance if len(self.anchor) else None

    def _normal_term(self, batch_idx: torch.Tensor) -> torch.Tensor:
        """mean(1 − cos(∇F, n)) on the first ``normal_points`` scan points of the batch.

        It needs ∇F with its own graph (a double backward, the costliest part of a step), so it runs on a
        separate pass over a subset instead of on every point of the first-order pass.
        """
        k = self.config.normal_points or len(batch_idx)
        idx = batch_idx[:k]
        x = self.points[idx].requires_grad_(True)
        (grads,) = torch.autograd.grad(self.model(x).sum(), x, create_graph=True)
        return normal_term(grads, self.normals[idx])

    # ---------------------------------------------------------------- evaluation
    def field(self, points: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """F at (n, 3) working-frame points → (n,) float32."""
        self.model.eval()
        values = numpy_field(self.model, device=self.device, chunk=chunk)(points)
        self.model.train()
        return values

    # ---------------------------------------------------------------- checkpoints
    REQUIRED_STATE = ("model", "optimizer", "step", "seconds", "generator", "torch_rng", "pool")
    """Keys every checkpoint of a fit holds; one lacking any is refused. (``anchor`` and
    ``start_orientation`` came later and are optional, so older checkpoints still resume.)"""

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "pool": self.pool.cpu() if self.pool is not None else torch.zeros(0, 3),
            "anchor": self.anchor.cpu(),
            "start_orientation": self.start_orientation,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.seconds = float(state["seconds"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        pool = state["pool"]
        self.pool = pool.to(self.device) if len(pool) else None
        self.anchor = state.get("anchor", torch.zeros(0, 4)).to(self.device)
        self.start_orientation = str(state.get("start_orientation", self.start_orientation))
