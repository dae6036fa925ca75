"""Cost growth of fit, extract and eval with the scan size and the grid resolution.

Every measurement runs in a fresh subprocess, which reports its own wall and CPU times and its peak resident
memory (VmHWM); a subprocess that only imports the same modules gives the baseline, and the
memory columns show the peak both as measured and above that baseline.

- scans: virtual scans (clean scanner preset, points + scanner normals) of pymeshlab's watertight Stanford
  bunny with 10k … 1M points, written once as .npz;
- fit: ``load_scan`` + ``prepare_points`` + ``LevelSetFitter(...)`` (network and KD-tree) = setup, then the
  median of a few ``train_step`` calls of the ``fast`` preset (not a whole fit). The preset keeps at most
  ``max_points`` (100k) scan points, so the scans above that are measured twice: with the default, and with
  ``max_points`` raised to the scan size;
- extract: ``extract_mesh`` (coarse-to-fine marching cubes of the closed field, as ``recon fit`` meshes)
  + ``keep_largest_component`` at 128³ … 512³ of one fast-preset network briefly trained on the 100k scan;
- eval: ``evaluate_reconstruction`` of that network's 256³ mesh against the bunny mesh with the scan, twice per
  scan: with the default ``n_samples`` (100k per surface; the scan is subsampled for scan→prediction, as
  ``recon eval PRED GT --scan SCAN``), and with ``n_samples`` = the scan size (its sample count raised).

Each curve gets an empirical exponent: the least-squares slope of log(cost) against log(size) (size = scan
points, or grid points res³ for extract). A table (Markdown + JSON) and a log-log plot (PNG) go to ``--out``.

    nice -n 10 .venv/bin/python bench/bench_scaling.py [--sizes 10000 ... 1000000] [--resolutions 128 ... 512]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from recon.core.metrics import DEFAULT_SAMPLES

SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000)
RESOLUTIONS = (128, 256, 384, 512)
RESULT_MARK = "RESULT "
CASE_LOG: Path | None = None


# ------------------------------------------------------------------ cases (run in subprocesses)
def _peak_mb() -> float:
    """Peak resident memory of this process (MB).

    VmHWM, not ``ru_maxrss``: Linux carries the parent's resident size at fork into the child's ru_maxrss
    across exec, which would put a floor of the driver's own size under every measurement.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _now() -> np.ndarray:
    """(wall, process CPU) seconds."""
    return np.array([time.perf_counter(), time.process_time()])


def _imports() -> None:
    import torch  # noqa: F401
    from scipy.spatial import cKDTree  # noqa: F401

    import recon.core.extract  # noqa: F401
    import recon.core.fit  # noqa: F401
    import recon.core.metrics  # noqa: F401
    import recon.core.reconstruct  # noqa: F401
    import recon.io  # noqa: F401


def case_baseline() -> dict:
    _imports()
    return {"peak_mb": _peak_mb()}


def case_fit(scan: str, max_points: int | None, steps: int) -> dict:
    """Setup and per-step seconds of the fast preset on ``scan``."""
    _imports()
    from recon.core.config import fast_preset
    from recon.core.fit import LevelSetFitter
    from recon.core.reconstruct import prepare_points
    from recon.io import load_scan

    config = fast_preset().with_(device="cpu")
    if max_points:
        config = config.with_(max_points=max_points)
    t0 = _now()
    cloud = load_scan(scan)
    t1 = _now()
    work, normals, _ = prepare_points(cloud.points, cloud.normals, config)
    t2 = _now()
    fitter = LevelSetFitter(work, normals, config)
    t3 = _now()
    setup_mb = _peak_mb()
    fitter.train_step()  # warm-up: first-call allocations and the initial sample pool
    seconds = []
    for _ in range(steps):
        start = _now()
        fitter.train_step()
        seconds.append(_now() - start)
    step_wall, step_cpu = np.median(seconds, axis=0)
    return {
        "scan_points": len(cloud.points),
        "points_used": len(work),
        "load_s": t1[0] - t0[0],
        "prepare_s": t2[0] - t1[0],
        "fitter_init_s": t3[0] - t2[0],
        "setup_s": t3[0] - t0[0],
        "setup_cpu_s": t3[1] - t0[1],
        "step_s": step_wall,
        "step_cpu_s": step_cpu,
        "steps": steps,
        "setup_peak_mb": setup_mb,
        "peak_mb": _peak_mb(),
    }


def _trained_fitter(model_path: str, scan: str):
    import torch

    from recon.core.config import FitConfig
    from recon.core.fit import LevelSetFitter
    from recon.core.reconstruct import prepare_points
    from recon.io import load_scan

    saved = torch.load(model_path, weights_only=True)
    config = FitConfig.from_dict(json.loads(saved["config"]))
    cloud = load_scan(scan)
    work, normals, normalization = prepare_points(cloud.points, cloud.normals, config)
    # The saved weights replace the network, so any costly starting-field fit of the preset is skipped.
    skip_start = "initialize" in inspect.signature(LevelSetFitter).parameters
    fitter = LevelSetFitter(work, normals, config, **({"initialize": False} if skip_start else {}))
    fitter.model.load_state_dict(saved["model"])
    return fitter, normalization


def case_train(scan: str, model_path: str, steps: int) -> dict:
    """Train the fast preset briefly on ``scan`` and save the network and its config."""
    _imports()
    import torch

    from recon.core.config import fast_preset
    from recon.core.fit import LevelSetFitter
    from recon.core.reconstruct import prepare_points
    from recon.io import load_scan

    config = fast_preset().with_(device="cpu", steps=steps)
    cloud = load_scan(scan)
    work, normals, _ = prepare_points(cloud.points, cloud.normals, config)
    fitter = LevelSetFitter(work, normals, config)
    start = time.perf_counter()
    for _ in range(steps):
        log = fitter.train_step()
    torch.save({"model": fitter.model.state_dict(), "config": json.dumps(config.to_dict())}, model_path)
    return {"train_s": time.perf_counter() - start, "steps": steps, "loss": log.loss, "peak_mb": _peak_mb()}


def case_extract(model_path: str, scan: str, resolution: int, mesh_out: str | None) -> dict:
    """Seconds and peak memory of meshing the saved network at ``resolution``³."""
    _imports()
    from recon.core.extract import extract_mesh
    from recon.core.mesh_ops import keep_largest_component
    from recon.core.reconstruct import closed_field
    from recon.io import save_mesh

    fitter, normalization = _trained_fitter(model_path, scan)
    bound = fitter.config.mesh.extract_bound
    voxel = 2 * bound / (resolution - 1)
    before_mb = _peak_mb()
    start = _now()
    vertices, faces, stats = extract_mesh(
        closed_field(fitter, bound, 2 * voxel), resolution=resolution, bound=bound, return_stats=True
    )
    vertices, faces = keep_largest_component(vertices, faces)
    seconds, cpu = _now() - start
    if mesh_out:
        save_mesh(mesh_out, normalization.to_scan(vertices), faces, force=True)
    return {
        "resolution": resolution,
        "extract_s": seconds,
        "extract_cpu_s": cpu,
        "field_s": stats.seconds_field,
        "evaluations": stats.n_field_evaluations,
        "faces": len(faces),
        "before_mb": before_mb,
        "peak_mb": _peak_mb(),
    }


def case_eval(pred: str, gt: str, scan: str, n_samples: int) -> dict:
    """Seconds and peak memory of ``recon eval PRED GT --scan SCAN`` with ``n_samples`` samples."""
    _imports()
    from recon.core.metrics import evaluate_reconstruction
    from recon.io import load_mesh, load_scan

    start = _now()
    pred_mesh, gt_mesh, scan_points = load_mesh(pred), load_mesh(gt), load_scan(scan).points
    loaded = _now()
    result = evaluate_reconstruction(pred_mesh, gt_mesh, scan_points=scan_points, n_samples=n_samples)
    end = _now()
    return {
        "n_samples": n_samples,
        "load_s": loaded[0] - start[0],
        "eval_s": end[0] - loaded[0],
        "eval_cpu_s": end[1] - loaded[1],
        "chamfer_l1_x1000": result["x1000_diag"]["chamfer_l1"],
        "peak_mb": _peak_mb(),
    }


CASES = {
    "baseline": case_baseline,
    "fit": case_fit,
    "train": case_train,
    "extract": case_extract,
    "eval": case_eval,
}


# ------------------------------------------------------------------ driver
def run_case(name: str, threads: int, **kwargs) -> dict:
    """Run one case in a fresh subprocess; its result dict plus the subprocess wall seconds.

    Every result is also appended to ``cases.jsonl`` beside the scans, so a run cut short keeps its data.
    """
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--case", json.dumps({"name": name, "kwargs": kwargs})]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"case {name} {kwargs} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(RESULT_MARK))
    result = json.loads(line[len(RESULT_MARK) :]) | {"process_s": time.perf_counter() - start}
    if CASE_LOG is not None:
        with open(CASE_LOG, "a") as log:
            log.write(json.dumps({"case": name, "kwargs": kwargs, "result": result}) + "\n")
    return result


def write_scans(out: Path, sizes) -> tuple[dict[int, Path], Path]:
    """Virtual scans of the bunny with each number of points, and its ground-truth mesh (same frame)."""
    from recon.data.benchmark import normalized_mesh
    from recon.data.scanner import scan_mesh, scanner_preset
    from recon.data.sources import load_source_mesh, mesh_source
    from recon.io import save_mesh, save_point_cloud

    source = mesh_source("bunny-closed")
    mesh, _ = normalized_mesh(load_source_mesh(source, fetch=False), source.up)
    gt = out / "gt_bunny.ply"
    save_mesh(gt, mesh.vertices, mesh.faces, force=True)
    scans = {}
    for n in sizes:
        scans[n] = out / f"scan_{n}.npz"
        if not scans[n].exists():
            scan = scan_mesh(mesh, scanner_preset("clean", n_points=n, seed=0))
            save_point_cloud(scans[n], scan.points.astype(np.float32), scan.normals.astype(np.float32))
    return scans, gt


def exponent(sizes, costs) -> float | None:
    """Least-squares slope of log(cost) against log(size); None with fewer than two positive points."""
    pairs = [(s, c) for s, c in zip(sizes, costs, strict=True) if c is not None and c > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def last_slope(sizes, costs) -> float | None:
    """Slope of log cost between the two largest sizes: the growth where it matters."""
    pairs = sorted((s, c) for s, c in zip(sizes, costs, strict=True) if c is not None and c > 0)
    if len(pairs) < 2:
        return None
    (s0, c0), (s1, c1) = pairs[-2], pairs[-1]
    return float(np.log(c1 / c0) / np.log(s1 / s0))


def measure(args, out: Path) -> dict:
    scans, gt = write_scans(out, args.sizes)
    model_scan = scans[min(args.sizes, key=lambda n: abs(n - 100_000))]
    baseline = run_case("baseline", args.threads)["peak_mb"]
    from recon.core.config import fast_preset

    default_max_points = fast_preset().data.max_points
    fit, fit_all = [], []
    for n in args.sizes:
        fit.append(run_case("fit", args.threads, scan=str(scans[n]), max_points=None, steps=args.fit_steps))
        if n > default_max_points:
            fit_all.append(
                run_case("fit", args.threads, scan=str(scans[n]), max_points=n, steps=args.fit_steps)
            )
        else:
            fit_all.append(fit[-1])
    model = out / "model.pt"
    train = run_case(
        "train", args.threads, scan=str(model_scan), model_path=str(model), steps=args.train_steps
    )
    pred = out / "pred_256.ply"
    extract = [
        run_case(
            "extract",
            args.threads,
            model_path=str(model),
            scan=str(model_scan),
            resolution=r,
            mesh_out=str(pred) if r == 256 else None,
        )
        for r in args.resolutions
    ]
    if not pred.exists():
        run_case(
            "extract",
            args.threads,
            model_path=str(model),
            scan=str(model_scan),
            resolution=256,
            mesh_out=str(pred),
        )
    evaluation = [
        run_case("eval", args.threads, pred=str(pred), gt=str(gt), scan=str(scans[n]), n_samples=n)
        for n in args.sizes
    ]
    evaluation_default = [
        run_case(
            "eval", args.threads, pred=str(pred), gt=str(gt), scan=str(scans[n]), n_samples=DEFAULT_SAMPLES
        )
        for n in args.sizes
    ]
    return {
        "baseline_mb": baseline,
        "fit_default": fit,
        "fit_all_points": fit_all,
        "train": train,
        "extract": extract,
        "eval": evaluation,
        "eval_default": evaluation_default,
    }


def curves(m: dict) -> dict[str, tuple[list, list, str]]:
    """name → (sizes, costs, unit). Times in CPU seconds of the measured process (robust to other load);
    peaks above the import baseline."""
    base = m["baseline_mb"]
    n = [r["scan_points"] for r in m["fit_default"]]
    grid = [r["resolution"] ** 3 for r in m["extract"]]
    return {
        "fit setup, max_points = scan size": (n, [r["setup_cpu_s"] for r in m["fit_all_points"]], "s"),
        "fit setup, default max_points": (n, [r["setup_cpu_s"] for r in m["fit_default"]], "s"),
        "fit step, max_points = scan size": (n, [r["step_cpu_s"] for r in m["fit_all_points"]], "s"),
        "fit step, default max_points": (n, [r["step_cpu_s"] for r in m["fit_default"]], "s"),
        "eval, n_samples = scan points": (n, [r["eval_cpu_s"] for r in m["eval"]], "s"),
        "extract (vs grid points)": (grid, [r["extract_cpu_s"] for r in m["extract"]], "s"),
        "fit peak, max_points = scan size": (n, [r["peak_mb"] - base for r in m["fit_all_points"]], "MB"),
        "fit peak, default max_points": (n, [r["peak_mb"] - base for r in m["fit_default"]], "MB"),
        "eval peak": (n, [r["peak_mb"] - base for r in m["eval"]], "MB"),
        "extract peak (vs grid points)": (grid, [r["peak_mb"] - base for r in m["extract"]], "MB"),
        "eval, default n_samples": (n, [r["eval_cpu_s"] for r in m["eval_default"]], "s"),
    }


def markdown(m: dict, meta: dict) -> str:
    base = m["baseline_mb"]
    lines = [
        f"{meta['date']}, {meta['cpus']} CPUs, {meta['threads']} torch/OpenMP thread(s), niceness {meta['nice']}, "
        f"load average {meta['load_before']:.1f} → {meta['load_after']:.1f}; total {meta['seconds']:.0f} s.",
        f"Peak RSS of a process that only imports the modules: {base:.0f} MB; '+MB' = peak above it.",
        "",
        "**Fit** (fast preset; setup = load + prepare + fitter init incl. KD-tree; step = median of "
        f"{m['fit_default'][0]['steps']} steps after one warm-up)",
        "",
        "| scan points | points used | load s | prepare s | init s | setup s | setup CPU s | step s | step CPU s "
        "| peak MB | +MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Scans no larger than max_points appear in both lists (the same object, or equal rows after JSON).
    rows = {(r["scan_points"], r["points_used"]): r for r in m["fit_default"] + m["fit_all_points"]}
    for _, r in sorted(rows.items()):
        lines.append(
            f"| {r['scan_points']:,} | {r['points_used']:,} | {r['load_s']:.2f} | {r['prepare_s']:.2f} "
            f"| {r['fitter_init_s']:.2f} | {r['setup_s']:.2f} | {r['setup_cpu_s']:.2f} | {r['step_s']:.3f} "
            f"| {r['step_cpu_s']:.3f} | {r['peak_mb']:.0f} "
            f"| {r['peak_mb'] - base:.0f} |"
        )
    t = m["train"]
    lines += [
        "",
        f"**Extract** (network: fast preset trained {t['steps']} steps on the ~100k scan, loss {t['loss']:.4f}; "
        "coarse-to-fine marching cubes + largest component)",
        "",
        "| resolution | grid points | seconds | CPU s | field s | field evaluations | faces | peak MB | +MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in m["extract"]:
        lines.append(
            f"| {r['resolution']}³ | {r['resolution'] ** 3:,} | {r['extract_s']:.2f} | {r['extract_cpu_s']:.2f} "
            f"| {r['field_s']:.2f} "
            f"| {r['evaluations']:,} | {r['faces']:,} | {r['peak_mb']:.0f} | {r['peak_mb'] - base:.0f} |"
        )
    lines += [
        "",
        "**Eval** (`evaluate_reconstruction(pred 256³ mesh, GT mesh, scan, n_samples)`: n_samples = scan points, "
        f"then the default {DEFAULT_SAMPLES:,} with the scan subsampled to it)",
        "",
        "| scan points | samples per surface | load s | eval s | eval CPU s | CD-L1 ×1000 diag | peak MB | +MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    scan_sizes = [r["scan_points"] for r in m["fit_default"]]
    for n, r in [*zip(scan_sizes, m["eval"], strict=True), *zip(scan_sizes, m["eval_default"], strict=True)]:
        lines.append(
            f"| {n:,} | {r['n_samples']:,} | {r['load_s']:.2f} | {r['eval_s']:.2f} | {r['eval_cpu_s']:.2f} "
            f"| {r['chamfer_l1_x1000']:.3f} "
            f"| {r['peak_mb']:.0f} | {r['peak_mb'] - base:.0f} |"
        )
    lines += [
        "",
        "**Empirical exponents** (slope of log cost vs log size, times in CPU seconds, memory above the import "
        "baseline): least squares over all sizes, and between the two largest sizes",
        "",
        "| curve | exponent (all sizes) | exponent (two largest) |",
        "|---|---|---|",
    ]
    for name, (sizes, costs, _) in curves(m).items():
        k, last = exponent(sizes, costs), last_slope(sizes, costs)
        lines.append(f"| {name} | {_fmt(k)} | {_fmt(last)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def plot(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    panels = {
        (0, 0): ("CPU time vs scan points", "CPU s", lambda k: "extract" not in k),
        (0, 1): ("peak memory above imports vs scan points", "MB", lambda k: "extract" not in k),
        (1, 0): ("extract CPU time vs grid points (res³)", "CPU s", lambda k: "extract" in k),
        (1, 1): ("extract peak memory above imports vs grid points", "MB", lambda k: "extract" in k),
    }
    data = curves(m)
    for (i, j), (title, unit, keep) in panels.items():
        ax = axes[i, j]
        chosen = {k: v for k, v in data.items() if v[2] == unit.split()[-1] and keep(k)}
        for name, (sizes, costs, _) in chosen.items():
            k = exponent(sizes, costs)
            ax.loglog(sizes, costs, "o-", label=f"{name} (slope {k:.2f})" if k is not None else name)
        sizes = sorted({s for v in chosen.values() for s in v[0]})
        top = max(c for v in chosen.values() for c in v[1] if c and c > 0)
        ax.loglog(sizes, [top * s / sizes[-1] for s in sizes], "k--", lw=1, label="linear (slope 1)")
        ax.set_title(title)
        ax.set_xlabel("grid points" if "extract" in title else "scan points / samples")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--resolutions", type=int, nargs="+", default=list(RESOLUTIONS))
    parser.add_argument("--fit-steps", type=int, default=5, help="timed fast-preset steps per fit case")
    parser.add_argument("--train-steps", type=int, default=40, help="steps of the network meshed by extract")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of every subprocess")
    parser.add_argument("--out", default="bench/out/scaling", help="folder for scans, results, plot")
    parser.add_argument("--from-json", help="rebuild results.md and scaling.png from a results.json")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        spec = json.loads(args.case)
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(RESULT_MARK + json.dumps(CASES[spec["name"]](**spec["kwargs"])), flush=True)
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        write_report(saved["measurements"], saved["meta"], out)
        return
    global CASE_LOG
    CASE_LOG = out / "cases.jsonl"
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "threads": args.threads}
    meta |= {"nice": os.nice(0), "load_before": os.getloadavg()[0]}
    start = time.perf_counter()
    m = measure(args, out)
    meta |= {"load_after": os.getloadavg()[0], "seconds": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps({"meta": meta, "measurements": m}, indent=2))
    write_report(m, meta, out)


def write_report(m: dict, meta: dict, out: Path) -> None:
    """results.md and scaling.png in ``out``; prints the table."""
    table = markdown(m, meta)
    (out / "results.md").write_text(table)
    plot(m, out / "scaling.png")
    print(table)


if __name__ == "__main__":
    main()
