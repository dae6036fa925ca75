"""`recon eval`: compare a reconstruction with ground truth and write the metrics with their definitions."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from recon.cli.options import POSITIVE
from recon.core.metrics import DEFAULT_SAMPLES
from recon.errors import ReconError, RunDirError

MIN_POINTS = 3
"""Fewest points (or mesh vertices) an input to ``recon eval`` may have."""

# Rows of the printed table: (key, label); lengths get a second column ×1000 of the GT diagonal.
LENGTH_ROWS = (
    ("chamfer_l1", "Chamfer-L1"),
    ("chamfer_l2", "Chamfer-L2 (squared)"),
    ("accuracy", "accuracy pred->GT"),
    ("completeness", "completeness GT->pred"),
    ("chamfer_norm_l1", "mean NN dist |.|_1"),
    ("chamfer_norm_l2", "mean NN dist |.|_2"),
    ("hausdorff", "Hausdorff"),
    ("scan_to_pred", "scan->pred"),
)
RATIO_ROWS = (
    ("fscore", "F-score"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("normal_consistency", "normal consistency"),
    ("normal_consistency_oriented", "normal consistency (signed)"),
    ("norm_ratio", "|.|_1 / |.|_2 reading"),
)


@click.command("eval")
@click.argument("pred", type=click.Path(path_type=Path))
@click.argument("gt", type=click.Path(path_type=Path))
@click.option(
    "--scan",
    type=click.Path(path_type=Path),
    help="The input scan: adds the one-sided scan->pred distance.",
)
@click.option(
    "--n-samples",
    default=DEFAULT_SAMPLES,
    show_default=True,
    type=click.IntRange(min=1),
    help="Samples per mesh; larger point sets are subsampled to it.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Fixes the surface samples.")
@click.option(
    "--tau",
    type=POSITIVE,
    help="F-score threshold in data units [default: 1% of the GT bbox diagonal].",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results and definitions here.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing JSON file.")
def eval_cmd(
    pred: Path,
    gt: Path,
    scan: Path | None,
    n_samples: int,
    seed: int,
    tau: float | None,
    json_path: Path | None,
    force: bool,
) -> None:
    """Compare PRED (a mesh, a point cloud or a run folder with mesh.ply) with the ground truth GT.

    Prints Chamfer-L1/L2, Hausdorff, F-score and normal consistency in the data's units and ×1000 of the GT
    bounding-box diagonal. A run folder gets eval.json unless --json says otherwise.
    """
    pred_file, default_json = _prediction_file(pred)
    if json_path is not None and json_path.exists() and not force:
        raise ReconError(f"{json_path} exists; pass --force to overwrite it")
    json_path = json_path or default_json

    from recon.atomic import write_json
    from recon.core.metrics import evaluate_reconstruction

    result = evaluate_reconstruction(
        _load_geometry(pred_file),
        _load_geometry(gt),
        scan_points=None if scan is None else _load_points(scan),
        n_samples=n_samples,
        seed=seed,
        fscore_tau=tau,
    )
    click.echo(format_table(result))
    if json_path is None:
        return
    if json_path == default_json and json_path.exists() and not force:
        click.echo(f"kept the existing {json_path}; pass --force to replace it", err=True)
        return
    inputs = {"pred": str(pred_file), "gt": str(gt), "scan": None if scan is None else str(scan)}
    # The shape recon batch writes, so that recon report reads a hand-evaluated run like a batch one.
    definitions = result.pop("definitions")
    write_json(
        json_path,
        {"inputs": inputs, "command": sys.argv, "definitions": definitions, "metrics": result},
    )
    click.echo(f"wrote {json_path}")


def format_table(result: dict) -> str:
    """The metrics of :func:`recon.core.metrics.evaluate_reconstruction` as an aligned text table."""
    scaled = result["x1000_diag"]
    lines = [f"{'metric':<30}{'data units':>14}{'x1000 diag':>14}"]
    for key, label in LENGTH_ROWS:
        if key in result:
            lines.append(f"{label:<30}{result[key]:>14.6g}{scaled[key]:>14.4f}")
    for key, label in RATIO_ROWS:
        if result.get(key) is not None:
            lines.append(f"{label:<30}{result[key]:>14.4f}")
    for name, key in (("prediction", "pred"), ("ground truth", "gt"), ("scan", "scan")):
        total = result.get(f"n_{key}_points")
        if total is not None and total > result[f"n_{key}"]:
            lines.append(f"{name}: a random subset of {result[f'n_{key}']} of its {total} points was used")
    lines.append(
        f"samples pred/GT {result['n_pred']}/{result['n_gt']}, seed {result['seed']}, "
        f"tau {result['tau']:.4g} ({result['tau_x1000_diag']:.3g} x1000 diag), "
        f"GT bbox diagonal {result['gt_bbox_diagonal']:.4g}"
    )
    return "\n".join(lines)


def _prediction_file(pred: Path) -> tuple[Path, Path | None]:
    """The file to evaluate and, for a run folder, its default eval.json."""
    if not pred.is_dir():
        return pred, None
    mesh = pred / "mesh.ply"
    if not mesh.is_file():
        raise RunDirError(f"{pred} has no mesh.ply to evaluate")
    return mesh, pred / "eval.json"


def _load_geometry(path: Path):
    """A trimesh.Trimesh when the file has triangles, else (points (n, 3), normals (n, 3) or None)."""
    import trimesh

    from recon.io import load_scan

    # A ground-truth mesh may be tiny (a cube has 8 vertices); what matters is that it has area.
    cloud = load_scan(path, min_points=MIN_POINTS)
    if cloud.faces is not None and len(cloud.faces) > 0:
        return trimesh.Trimesh(cloud.points, cloud.faces, process=False)
    return cloud.points, cloud.normals


def _load_points(path: Path):
    from recon.io import load_scan

    return load_scan(path, min_points=MIN_POINTS).points
