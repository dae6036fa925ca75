"""Step time of the ``paper`` preset against a straightforward implementation of the same math.

Three steppers run interleaved in one process, on the same scan, with the same torch thread count:

- ``reference``: ``bench/reference_step.py`` (10 fresh Newton steps with a host sync each, a dense
  15k × 10k ``torch.cdist`` to the batch, separate c/g and sample-network passes, ``loss.item()``);
- ``paper``: ``recon.core.fit.LevelSetFitter`` with the ``paper`` preset (same network, sizes and loss);
- ``fast``: ``LevelSetFitter`` with the ``fast`` preset, for context (another network and fewer samples).

Each round runs one step of every stepper, in an order that rotates from round to round, so a change in the
machine's load hits all of them alike. Reported: the median seconds per step, the ratio reference / paper,
and where the time goes (Newton projection, nearest distances, the rest = forward/backward and Adam). The
library's Newton and distance times are measured by wrapping ``recon.core.fit.project_to_zero_level_set`` and
the fitter's ``nearest.distances`` (nothing in the library is changed).

    nice -n 10 .venv/bin/python bench/bench_paper_step.py [--widths 512 128] [--steps 3 10] [--threads 2]

The default scan is a virtual scan (clean scanner preset, 100k points with normals) of the watertight
Stanford bunny that ships with pymeshlab; ``--scan PATH`` uses any scan file instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from reference_step import PartTimes, ReferenceConfig, ReferenceStep

import recon.core.fit
from recon.core.config import FitConfig, fast_preset, paper_preset
from recon.core.fit import LevelSetFitter
from recon.core.reconstruct import prepare_points
from recon.models.implicit import ImplicitMLP

PARTS = ("newton", "distances", "forward_backward")


class _Clock:
    """Accumulates the (wall, CPU) seconds spent inside the wrapped library functions during one step."""

    def __init__(self):
        self.newton = np.zeros(2)
        self.distances = np.zeros(2)
        self.newton_steps: list[int] = []
        self.reference_newton_steps: list[int] = []

    def reset(self) -> None:
        self.newton = np.zeros(2)
        self.distances = np.zeros(2)

    def timed(self, function, part: str):
        def wrapper(*args, **kwargs):
            start = _now()
            result = function(*args, **kwargs)
            setattr(self, part, getattr(self, part) + _now() - start)
            if part == "newton" and hasattr(result, "steps"):
                self.newton_steps.append(int(result.steps))
            return result

        return wrapper


def _now() -> np.ndarray:
    """(wall, process CPU) seconds."""
    return np.array([time.perf_counter(), time.process_time()])


CLOCK = _Clock()
recon.core.fit.project_to_zero_level_set = CLOCK.timed(recon.core.fit.project_to_zero_level_set, "newton")


def benchmark_scan(path: str | None, n_points: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Scan points, normals and a description: the file at ``path``, or a virtual scan of the bunny."""
    if path:
        from recon.io import load_scan

        cloud = load_scan(path)
        return cloud.points, cloud.normals, f"{path} ({len(cloud.points)} points)"
    from recon.data.benchmark import normalized_mesh
    from recon.data.scanner import scan_mesh, scanner_preset
    from recon.data.sources import load_source_mesh, mesh_source

    source = mesh_source("bunny-closed")
    mesh, _ = normalized_mesh(load_source_mesh(source, fetch=False), source.up)
    scan = scan_mesh(mesh, scanner_preset("clean", n_points=n_points, seed=0))
    return scan.points, scan.normals, f"virtual clean scan of pymeshlab bunny.obj ({len(scan.points)} points)"


def fitter_stepper(points: np.ndarray, normals: np.ndarray | None, config: FitConfig):
    """A function running one LevelSetFitter step and returning its StepTime."""
    work, work_normals, _ = prepare_points(points, normals, config)
    fitter = LevelSetFitter(work, work_normals, config)
    fitter.nearest.distances = CLOCK.timed(fitter.nearest.distances, "distances")

    def step() -> tuple[PartTimes, PartTimes]:
        CLOCK.reset()
        start = _now()
        fitter.train_step()
        total = _now() - start
        rest = total - CLOCK.newton - CLOCK.distances
        wall, cpu = (PartTimes(*v) for v in zip(CLOCK.newton, CLOCK.distances, rest, total, strict=True))
        return wall, cpu

    return step


def reference_stepper(points: np.ndarray, normals: np.ndarray | None, config: FitConfig):
    """A function running one ReferenceStep with the model of ``config`` and returning its StepTime."""
    work, _, _ = prepare_points(points, normals, config)
    torch.manual_seed(config.seed)
    reference = ReferenceStep(
        torch.as_tensor(work), ImplicitMLP(config.model), ReferenceConfig(), config.seed
    )

    def step() -> tuple[PartTimes, PartTimes]:
        t = reference.step()
        CLOCK.reference_newton_steps.append(t.newton_steps)
        return t.wall, t.cpu

    return step


def interleaved_times(
    steppers: dict, steps: int, warmup: int
) -> dict[str, list[tuple[PartTimes, PartTimes]]]:
    """Run ``warmup`` untimed then ``steps`` timed rounds; each round steps every stepper once."""
    names = list(steppers)
    times: dict[str, list] = {name: [] for name in names}
    for round_index in range(warmup + steps):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            t = steppers[name]()
            if round_index >= warmup:
                times[name].append(t)
    return times


def median_times(times: list[PartTimes]) -> dict:
    out = {"steps": len(times)}
    out |= {part: statistics.median(getattr(t, part) for t in times) for part in PARTS + ("total",)}
    out["min_total"] = min(t.total for t in times)
    return out


def run_width(points, normals, width: int, steps: int, warmup: int, with_fast: bool) -> dict:
    paper = paper_preset().with_(device="cpu")
    paper = replace(paper, model=replace(paper.model, width=width))
    steppers = {
        "reference": reference_stepper(points, normals, paper),
        "paper": fitter_stepper(points, normals, paper),
    }
    if with_fast:
        steppers["fast"] = fitter_stepper(points, normals, fast_preset().with_(device="cpu"))
    CLOCK.newton_steps.clear()
    CLOCK.reference_newton_steps.clear()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    times = interleaved_times(steppers, steps, warmup)
    result = {
        "width": width,
        "depth": paper.model.depth,
        "wall_seconds": time.perf_counter() - start,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "paper_newton_steps": sorted(set(CLOCK.newton_steps)),
        "reference_newton_steps": sorted(set(CLOCK.reference_newton_steps)),
        "wall": {name: median_times([w for w, _ in t]) for name, t in times.items()},
        "cpu": {name: median_times([c for _, c in t]) for name, t in times.items()},
        "all": {name: [[asdict(w), asdict(c)] for w, c in t] for name, t in times.items()},
    }
    for clock in ("wall", "cpu"):
        m = result[clock]
        result[f"ratio_{clock}"] = {other: m["reference"]["total"] / m[other]["total"] for other in m}
    return result


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        f"Scan: {meta['scan']}. torch {meta['torch']}, {meta['threads']} thread(s), "
        f"{meta['cpus']} CPUs, niceness {meta['nice']}. CPU = this process's CPU seconds (time.process_time).",
        "",
        "| network | stepper | clock | s/step (median) | Newton | distances | forward/backward + Adam "
        "| steps timed | load avg (start → end) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name in r["wall"]:
            net = f"{r['depth']}×{r['width']}" if name != "fast" else "fast preset"
            for clock in ("wall", "cpu"):
                m = r[clock][name]
                lines.append(
                    f"| {net} | {name} | {clock} | {m['total']:.3f} | {m['newton']:.3f} | {m['distances']:.3f} "
                    f"| {m['forward_backward']:.3f} | {m['steps']} "
                    f"| {r['load_before']:.1f} → {r['load_after']:.1f} |"
                )
    lines += [
        "",
        "| network | reference / paper (wall) | reference / paper (CPU) | reference / fast (wall) "
        "| reference / fast (CPU) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        w, c = r["ratio_wall"], r["ratio_cpu"]
        fast = f"{w['fast']:.1f}× | {c['fast']:.1f}×" if "fast" in w else " | "
        lines.append(f"| {r['depth']}×{r['width']} | {w['paper']:.2f}× | {c['paper']:.2f}× | {fast} |")
    for r in results:
        lines.append(
            f"\n{r['depth']}×{r['width']}: Newton steps taken per optimizer step (of at most 10, until every sample "
            f"has |F| < 1e-5): reference {r.get('reference_newton_steps', '?')}, paper {r['paper_newton_steps']}."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", help="scan file (default: a virtual scan of the pymeshlab bunny)")
    parser.add_argument("--scan-points", type=int, default=100_000, help="points of the virtual scan")
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 128], help="hidden widths (8 layers)")
    parser.add_argument("--steps", type=int, nargs="+", default=[3, 10], help="timed rounds per width")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for every stepper")
    parser.add_argument("--no-fast", action="store_true", help="leave the fast preset out")
    parser.add_argument("--out", default="bench/out/paper_step", help="folder for results.json / results.md")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    steps = args.steps + [args.steps[-1]] * (len(args.widths) - len(args.steps))
    points, normals, description = benchmark_scan(args.scan, args.scan_points)
    meta = {
        "scan": description,
        "torch": torch.__version__,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "nice": os.nice(0),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    results = []
    for width, n_steps in zip(args.widths, steps, strict=False):
        results.append(run_width(points, normals, width, n_steps, args.warmup, not args.no_fast))
        print(markdown(results[-1:], meta), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    table = markdown(results, meta)
    (out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
