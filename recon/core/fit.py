"""Fitting a neural level set to a scan: the network, its start and the training loop.

One optimizer step (the paper's, as in the authors' 2020 code):
  1. a batch of scan points X_b → data term mean|F(x)|;
  2. zero-level-set samples: seeds near X_b (σ = 0.1) and uniform in the seed box, moved onto F = 0 by
     generalized Newton — from fresh seeds every step (``paper``) or carried across steps and refreshed
     in part, one or two Newton moves per step (``warm_start``, the fast presets);
  3. general level-set samples X_b + N(0, σ²) for σ in ``general_sigmas``, each on its own level c;
  4. all samples go through the sample network p(θ) and the level-set term mean| d(p(θ), X) − |c| |.
The fast preset also starts from a signed distance estimate of the scan instead of a sphere
(recon.core.initial_field), draws general samples from a pool whose nearest scan points are found once, drops
isolated scan points first, and adds a normal-alignment term when the scan has oriented normals. The random
draws of steps 1–3 are recon.core.sampler's; this module owns the network, the start, the loss and the
optimizer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from recon.core.adam import Adam
from recon.core.config import FitConfig
from recon.core.levelset import sample_network
from recon.core.losses import (
    NearestScanPoint,
    data_term,
    levelset_sample_term,
    normal_term,
    unsigned_normal_term,
)
from recon.core.sampler import LevelSetSampler, StepBatch
from recon.device import resolve_device
from recon.errors import ConfigError
from recon.models.field import numpy_field
from recon.models.registry import build_network


def build_model(config: FitConfig) -> torch.nn.Module:
    """The implicit network a config asks for (geometric/sphere initialization either way)."""
    return build_network(config.model_type, config)


START_ORIENTATIONS = ("scan", "estimated", "estimated-flipped")
"""Where the signed-distance start takes its normals from, in the order a failed fit tries them: the
scan's own, estimated ones (recon.core.normals), or estimated ones with the opposite global sign."""


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
    """Owns the network, optimizer and sampler of one fit; steps it and (de)serializes it.

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
        self.points = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        use_normals = normals is not None and config.loss.normal_weight > 0
        self.normals = (
            torch.as_tensor(normals, dtype=torch.float32, device=self.device) if use_normals else None
        )
        """(n, 3) the normal term's target: the scan's normals, or (``estimated_normal_weight``) those the
        start estimated for a scan without; None when the fit has no normal term."""
        self.normal_weight = config.loss.normal_weight if use_normals else 0.0
        self.nearest = NearestScanPoint(self.points)
        self.model = build_model(config).to(self.device)
        self.optimizer = Adam(self.model.parameters(), lr=config.optimizer.lr)
        self.step = 0
        self.seconds = 0.0
        self.sampler = LevelSetSampler(self.points, self.nearest, config)
        self.init_error: float | None = None
        """Final mean |F − s| of the signed-distance start (None for the sphere)."""
        self.start_jump: float | None = None
        """Median jump of the scan's winding number across it (recon.core.smoothing), when the start ran."""
        self.start_noise: float | None = None
        """The scan's unresolved-noise measure (recon.core.smoothing), when the start ran."""
        self.start_smoothed = False
        """Whether the start used the scan smoothed against noise thicker than its spacing."""
        self._start_dipoles = None
        """The scan's dipoles (recon.core.winding.DipoleTree) the start took its sign from, when it ran."""
        if initialize and config.start.init == "signed-distance":
            self._start_from_signed_distance(points)

    def start_orientations(self) -> tuple[str, ...]:
        """The START_ORIENTATIONS this scan allows ('scan' only when it has normals)."""
        return tuple(o for o in START_ORIENTATIONS if o != "scan" or self.scan_normals is not None)

    def restarted(self, start_orientation: str, seed: int | None = None) -> LevelSetFitter:
        """A fresh fit of the same scan from another start (and ``seed``, when given; the config's
        otherwise); its clock continues this one's."""
        config = self.config if seed is None else replace(self.config, seed=seed)
        fitter = LevelSetFitter(
            self.points.cpu().numpy(), self.scan_normals, config, start_orientation=start_orientation
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
        from scipy.spatial import cKDTree

        from recon.core.initial_field import distill_signed_distance, signed_distance_samples
        from recon.core.smoothing import UNRESOLVED_NOISE, smoothed_points, unresolved_noise, winding_jump

        start = time.perf_counter()
        cfg = self.config
        field_config = self._field_config()
        points = np.asarray(points, dtype=np.float64)
        tree = self.nearest.tree()
        normals, dipoles = self._oriented_dipoles(points, tree, field_config)
        self._use_estimated_normals(normals)
        self.start_jump = winding_jump(dipoles, points, normals)
        self.start_noise = unresolved_noise(points)
        jump_limit = (
            cfg.start.smooth_jump if self.start_orientation == "scan" else cfg.start.smooth_jump_estimated
        )
        self.start_smoothed = self.start_jump > jump_limit or self.start_noise > UNRESOLVED_NOISE
        if self.start_smoothed:
            points = smoothed_points(points)
            tree = cKDTree(points)
            normals, dipoles = self._oriented_dipoles(points, tree, field_config)
            self._use_estimated_normals(normals)  # same points, same order, less noise
        self._start_dipoles = dipoles
        queries, targets = signed_distance_samples(
            points,
            np.asarray(normals, dtype=np.float64),
            tree,
            field_config,
            bound=cfg.sampling.seed_bound,
            seed=cfg.seed,
            dipoles=dipoles,
        )
        self.init_error = distill_signed_distance(
            self.model, queries, targets, points, field_config, seed=cfg.seed, device=self.device
        )
        if cfg.start.anchor_weight > 0:
            reach = cfg.start.anchor_reach(self.start_orientation)
            far = tree.query(queries, k=1, workers=-1)[0] > reach
            anchor = np.concatenate([queries[far], targets[far, None]], axis=1)
            self.sampler.set_anchor(torch.as_tensor(anchor, dtype=torch.float32, device=self.device), reach)
        self.seconds += time.perf_counter() - start

    def _field_config(self):
        """The start's recon.core.initial_field.InitialFieldConfig, from this fit's config."""
        from recon.core.initial_field import InitialFieldConfig

        start = self.config.start
        return InitialFieldConfig(
            steps=start.init_steps, samples=start.init_samples, closure_winding=start.closure_winding
        )

    def _oriented_dipoles(self, points: np.ndarray, tree, field_config):
        """The start's (n, 3) normals of ``points`` and the DipoleTree of the scan oriented by them."""
        from recon.core.initial_field import scan_dipoles

        normals = self._start_normals(points)
        return normals, scan_dipoles(points, normals, tree, field_config)

    def scan_winding(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """(m, 3) working-frame queries → (m,) generalized winding numbers of the scan with the normals the
        start used (its global inside/outside); None for a fit that did not start from it.

        A fit restored from a checkpoint rebuilds the dipoles the same way the start built them (no random
        choice enters), so the answer is the same as before the interruption."""
        if self.config.start.init != "signed-distance":
            return None
        if self._start_dipoles is None:
            from scipy.spatial import cKDTree

            from recon.core.smoothing import smoothed_points

            points = self.points.detach().cpu().numpy().astype(np.float64)
            if self.start_smoothed:
                points = smoothed_points(points)
            _, self._start_dipoles = self._oriented_dipoles(points, cKDTree(points), self._field_config())
        return self._start_dipoles.winding_numbers

    def _use_estimated_normals(self, normals: np.ndarray) -> None:
        """Make the start's (n, 3) estimated normals the normal term's target, when the config asks and
        the scan has no normals of its own."""
        weight = self.config.loss.estimated_normal_weight
        if self.scan_normals is not None or weight <= 0:
            return
        self.normals = torch.as_tensor(normals, dtype=torch.float32, device=self.device)
        self.normal_weight = weight

    # ---------------------------------------------------------------- training
    def learning_rate(self, step: int) -> float:
        """The rate of optimizer step ``step`` (0-based): the schedule's, times the warm-up ramp."""
        optimizer = self.config.optimizer
        # At most a quarter of the run, so that a short run (--steps 30) spends most steps at the full rate.
        warmup = min(optimizer.lr_warmup_steps, optimizer.steps // 4)
        ramp = min((step + 1) / warmup, 1.0) if warmup else 1.0
        if optimizer.lr_schedule == "constant":
            return ramp * optimizer.lr
        if optimizer.lr_schedule == "cosine":
            t = min(step / max(optimizer.steps, 1), 1.0)
            final = optimizer.lr * optimizer.lr_final_factor
            return ramp * (final + 0.5 * (optimizer.lr - final) * (1.0 + math.cos(math.pi * t)))
        raise ValueError(f"unknown lr schedule {optimizer.lr_schedule!r}")

    def draw_batch(self) -> StepBatch:
        """The random part of the next step (recon.core.sampler)."""
        return self.sampler.draw(self.model)

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

        reach = self.sampler.levelset_reach()
        nearest = None
        if batch.general_nearest is not None:
            nearest = torch.cat([self.nearest.indices(zero, within=reach), batch.general_nearest])
        levelset = levelset_sample_term(
            moved, levels, self.nearest, cfg.loss.loss_form, nearest, max_distance=reach
        )
        data = data_term(values[:n_data], cfg.loss.loss_form)
        loss = levelset + cfg.loss.data_weight * data
        if n_anchor:
            loss = (
                loss
                + cfg.start.anchor_weight * (values[n_data : n_data + n_anchor] - anchor[:, 3]).abs().mean()
            )
        normal = torch.zeros((), device=self.device)
        if self.normals is not None:
            normal = self._normal_term(batch_idx)
            loss = loss + self.normal_weight * normal

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

        n_zero = len(zero)
        self.sampler.carry(zero, levels[:n_zero], sample_grads[:n_zero])
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

    def _normal_term(self, batch_idx: torch.Tensor) -> torch.Tensor:
        """mean(1 − cos(∇F, n)) on the first ``normal_points`` scan points of the batch (1 − |cos| against
        estimated normals).

        It needs ∇F with its own graph (a double backward, the costliest part of a step), so it runs on a
        separate pass over a subset instead of on every point of the first-order pass.
        """
        k = self.config.loss.normal_points or len(batch_idx)
        idx = batch_idx[:k]
        x = self.points[idx].requires_grad_(True)
        (grads,) = torch.autograd.grad(self.model(x).sum(), x, create_graph=True)
        if self.scan_normals is None:  # estimated normals: the sign is the field's (unsigned_normal_term)
            return unsigned_normal_term(grads, self.normals[idx])
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
    ``start_orientation``, ``start_jump``, ``start_noise``, ``start_smoothed``, ``start_seed``, ``estimated_normals`` came later and are optional, so older
    checkpoints still resume.)"""

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "torch_rng": torch.get_rng_state(),
            "start_orientation": self.start_orientation,
            "start_jump": self.start_jump,
            "start_noise": self.start_noise,
            "start_smoothed": self.start_smoothed,
            "start_seed": self.config.seed,
            "estimated_normals": self.normals if self.scan_normals is None else None,
        } | self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.seconds = float(state["seconds"])
        torch.set_rng_state(state["torch_rng"])
        self.sampler.load_state_dict(state)
        self.start_orientation = str(state.get("start_orientation", self.start_orientation))
        self.start_jump = state.get("start_jump", self.start_jump)
        self.start_noise = state.get("start_noise", self.start_noise)
        self.start_smoothed = bool(state.get("start_smoothed", self.start_smoothed))
        if state.get("start_seed", self.config.seed) != self.config.seed:
            self.config = replace(self.config, seed=int(state["start_seed"]))
        if state.get("estimated_normals") is not None:
            self._use_estimated_normals(state["estimated_normals"].cpu().numpy())
