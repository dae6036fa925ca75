"""Per-step cost of the region finders on a real classifier, before and after, side by side in one run.

Modes (3 shapes × 4 initial points = 12 problems, the three finders):

* before: the code before issue 22: the problems of one finder batched, the finders one after another
  (naive 1 call per step, OIR_B 1, OIR_W 2), with the previous renderer (copied below);
* per finder: the same calls with the current renderer;
* lockstep: all finders and problems together, one plain call and one gradient call per step (current code);
* per problem: every (shape, initial point) problem and every finder by its own calls (no batching at all).

The modes are timed in turns, in a shuffled order each round (``--repeats`` rounds); the median is reported, in CPU seconds of this process
(one torch thread), which a loaded machine disturbs less than wall time. The grid check of the found boxes
is timed separately. Usage:

    python bench/robust/semantic/bench_finder_step.py [--arch cnn] [--size 32] [--steps 10] [--run RUN]

Without ``--run`` the classifier has random weights: the cost depends on the architecture, not the weights.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from unittest import mock

import torch

from recon.robust.semantic import classifier as classifier_module
from recon.robust.semantic.classifier import LoadedClassifier, SemanticTrainConfig, ViewScore, load_classifier
from recon.robust.semantic.networks import build_model
from recon.robust.semantic.regions import INITIAL_POINTS, METHODS, RegionConfig, check_boxes, find_all_regions
from recon.robust.semantic.render import camera_rotation, quadratic_bspline
from recon.robust.semantic.shapes import class_names
from recon.robust.semantic.srvr import evaluation_shapes
from recon.robust.semantic.views import DOMAIN_LOWER, DOMAIN_UPPER


def render_views_before(points, normals, angles, config):
    """The renderer before issue 22 (normals rotated; one index_add over (B·N·K², 3) taps)."""
    batch = angles.shape[0]
    if points.dim() == 2:
        points, normals = points.expand(batch, -1, -1), normals.expand(batch, -1, -1)
    rotation = camera_rotation(angles.to(points.dtype))
    cam = points @ rotation.transpose(1, 2)
    depth = cam[..., 2] + config.distance
    focal = 1.0 / math.tan(math.radians(config.half_fov_deg))
    size, scale = config.size, config.splat_px
    col = (cam[..., 0] / depth * focal + 1.0) * (0.5 * size) - 0.5
    row = (1.0 - cam[..., 1] / depth * focal) * (0.5 * size) - 0.5
    normals_cam = normals @ rotation.transpose(1, 2)
    view = cam + torch.tensor([0.0, 0.0, config.distance], dtype=cam.dtype)
    cosine = (normals_cam * view).sum(-1).abs() / (view.norm(dim=-1) * normals_cam.norm(dim=-1) + 1e-9)
    value = config.ambient + (1.0 - config.ambient) * cosine
    reach = math.ceil(1.5 * scale - 0.5)
    offsets = torch.arange(-reach, reach + 1, dtype=col.dtype)
    pix_c = torch.floor(col + 0.5).detach()[..., None] + offsets
    pix_r = torch.floor(row + 0.5).detach()[..., None] + offsets
    w_c = quadratic_bspline((col[..., None] - pix_c) / scale) / scale * ((pix_c >= 0) & (pix_c < size))
    w_r = quadratic_bspline((row[..., None] - pix_r) / scale) / scale * ((pix_r >= 0) & (pix_r < size))
    weight = w_r[..., :, None] * w_c[..., None, :]
    flat = (pix_r[..., :, None] * size + pix_c[..., None, :]).clamp(0, size * size - 1).long()
    flat = flat + torch.arange(batch)[:, None, None, None] * (size * size)
    nearness = torch.exp(-(depth - depth.amin(dim=1, keepdim=True).detach()) / config.tau)
    per_point = torch.stack([torch.ones_like(depth), nearness * value, nearness], dim=-1)
    taps = weight[..., None] * per_point[:, :, None, None, :]
    sums = depth.new_zeros(batch * size * size, 3).index_add(0, flat.reshape(-1), taps.reshape(-1, 3))
    alpha = 1.0 - torch.exp(-config.coverage_gain * sums[:, 0])
    return (alpha * sums[:, 1] / (sums[:, 2] + 1e-30)).reshape(batch, 1, size, size)


def _classifier(args) -> LoadedClassifier:
    if args.run:
        return load_classifier(args.run)
    torch.manual_seed(0)
    config = SemanticTrainConfig(arch=args.arch, size=args.size, points=args.points)
    classes = class_names()
    model = build_model(args.arch, args.size, len(classes), mean=0.1, std=0.2).eval()
    return LoadedClassifier(model, classes, config.render_config(), config, run_dir=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--points", type=int, default=1500)
    parser.add_argument("--shapes", default="cow,man,fandisk")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", help="a trained classifier's run folder instead of random weights")
    args = parser.parse_args()
    torch.set_num_threads(1)
    classifier = _classifier(args)
    if classifier.render.mode != "shaded":
        raise SystemExit("the copied previous renderer draws shaded images only")
    shapes = evaluation_shapes(
        args.shapes, classifier.classes, classifier.config.points, classifier.config.seed
    )
    initial = torch.tensor(INITIAL_POINTS, dtype=torch.float64)
    theta0 = initial.repeat(len(shapes), 1)
    batched = ViewScore(classifier, [s for s in shapes for _ in initial])
    single = [(ViewScore(classifier, [s]), initial[j : j + 1]) for s in shapes for j in range(len(initial))]
    # a check step wider than the domain checks only the corners, so the timings are the finders' steps
    config = RegionConfig(steps=args.steps, check_step=1e6)
    domain = (DOMAIN_LOWER, DOMAIN_UPPER)

    def per_finder():
        for method in METHODS:
            find_all_regions((method,), theta0, *domain, batched, batched.with_grad, config)

    def before():
        with mock.patch.object(classifier_module, "render_views", render_views_before):
            per_finder()

    def lockstep():
        return find_all_regions(METHODS, theta0, *domain, batched, batched.with_grad, config)

    def per_problem():
        for score, theta in single:
            for method in METHODS:
                find_all_regions((method,), theta, *domain, score, score.with_grad, config)

    modes = {"before": before, "per finder": per_finder, "lockstep": lockstep, "per problem": per_problem}
    cpu = {name: [] for name in modes}
    wall = {name: [] for name in modes}
    order = list(modes)
    for _ in range(args.repeats):
        random.Random(len(cpu["before"])).shuffle(order)  # load drifts: no mode always runs first or last
        for name in order:
            tic, wall_tic = time.process_time(), time.perf_counter()
            modes[name]()
            cpu[name].append((time.process_time() - tic) / args.steps)
            wall[name].append((time.perf_counter() - wall_tic) / args.steps)

    results = lockstep()
    boxes = [(torch.from_numpy(r.lower), torch.from_numpy(r.upper)) for r in results.values()]
    defaults = RegionConfig()
    tic = time.process_time()
    checks = check_boxes(batched, boxes, theta0, defaults.check_step, defaults.check_threshold)
    check_cpu = time.process_time() - tic
    views = int(sum(c.views.sum() for c in checks))

    base = statistics.median(cpu["before"])
    print(
        f"{classifier.arch} {classifier.config.size}px, {classifier.config.points} points, "
        f"{len(theta0)} problems × {len(METHODS)} finders, {args.steps} steps, median of {args.repeats} rounds"
    )
    print("| mode | CPU s / step | wall s / step | speed-up vs before |")
    print("|---|---|---|---|")
    for name in modes:
        median = statistics.median(cpu[name])
        print(f"| {name} | {median:.3f} | {statistics.median(wall[name]):.3f} | {base / median:.2f}× |")
    print(
        f"grid check (step {defaults.check_step:g}°) of the {len(theta0) * len(METHODS)} boxes after "
        f"{args.steps} steps: {views} views, {check_cpu:.2f} CPU s ({1e3 * check_cpu / max(views, 1):.2f} ms/view)"
    )


if __name__ == "__main__":
    main()
