"""``recon robust semantic``: how a classifier's score changes with the camera around a 3D shape."""

from __future__ import annotations

import time
from pathlib import Path

import click

from recon.cli.options import NON_NEGATIVE, POSITIVE, FiniteFloatRange
from recon.errors import InputError, RunDirError

_METHODS = ("naive", "oir_b", "oir_w")


@click.group()
def semantic() -> None:
    """Semantic robustness: Network Semantic Maps and robust viewpoint regions (Hamdi & Ghanem)."""


@semantic.command()
@click.option("-o", "--output", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--arch", type=click.Choice(["cnn", "wide-cnn", "mlp"]), default="cnn", show_default=True)
@click.option(
    "--size", type=click.IntRange(min=8), default=64, show_default=True, help="Render side (pixels)."
)
@click.option(
    "--mode", type=click.Choice(["shaded", "silhouette", "depth"]), default="shaded", show_default=True
)
@click.option(
    "--points", type=click.IntRange(min=100), default=4000, show_default=True, help="Samples per shape."
)
@click.option(
    "--per-class", type=click.IntRange(min=1), default=40, show_default=True, help="Augmented instances."
)
@click.option("--epochs", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--images-per-epoch", type=click.IntRange(min=1), default=2400, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--lr", type=POSITIVE, default=2e-3, show_default=True, help="Adam learning rate (cosine decay)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite a non-empty run folder.")
@click.option("--quiet", is_flag=True)
def train(run_dir, force, quiet, **options):
    """Train a shape classifier on renders of real meshes from random viewpoints."""
    from recon.robust.semantic.classifier import SemanticTrainConfig, train_classifier

    def progress(log):
        if not quiet:
            held = "–" if log.heldout_acc is None else f"{log.heldout_acc:.3f}"
            click.echo(
                f"epoch {log.epoch}  loss {log.loss:.4f}  train {log.train_acc:.3f}  val {log.val_acc:.3f}"
                f"  held-out {held}  {log.seconds:.1f}s",
                err=True,
            )

    started = time.perf_counter()
    path = train_classifier(SemanticTrainConfig(**options), run_dir, force=force, progress=progress)
    if not quiet:
        click.echo(f"done in {time.perf_counter() - started:.1f}s", err=True)
    click.echo(str(path))


def _elevation_option(help_text: str):
    return click.option(
        "--elevation", type=FiniteFloatRange(-90, 90), default=35.0, show_default=True, help=help_text
    )


def _shape_option(default: str):
    return click.option(
        "--shapes",
        default=default,
        show_default=True,
        help="train | heldout | all | comma-separated base meshes (e.g. cow,man).",
    )


def _parse_points(values: tuple[str, ...]):
    import numpy as np

    from recon.robust.semantic.regions import INITIAL_POINTS

    if not values:
        return np.array(INITIAL_POINTS)
    points = []
    for value in values:
        try:
            az, el = (float(v) for v in value.split(","))
        except ValueError:
            raise InputError(f"--init expects AZ,EL in degrees, got {value!r}") from None
        if not (0.0 <= az <= 360.0 and -10.0 <= el <= 90.0):
            raise InputError(f"--init {value} is outside azimuth 0–360, elevation −10–90")
        points.append((az, el))
    return np.array(points)


def _parse_methods(value: str) -> tuple[str, ...]:
    methods = _METHODS if value == "all" else tuple(m.strip() for m in value.split(","))
    unknown = [m for m in methods if m not in _METHODS]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}; choose from {', '.join(_METHODS)} or all")
    return methods


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise RunDirError(f"{existing[0]} exists; pass --force to overwrite it")


@semantic.command(name="map")
@click.argument("run_dir", type=click.Path(path_type=Path))
@_shape_option("train")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), help="Default: RUN/maps.")
@_elevation_option("Elevation of the 1D map.")
@click.option("--force", is_flag=True, help="Overwrite existing maps.")
def map_cmd(run_dir, shapes, out_dir, elevation, force):
    """Network Semantic Maps: p(true class) over azimuth (1D) and azimuth × elevation (2D), .npy + .png."""
    from recon.robust.semantic.classifier import ViewScore, load_classifier
    from recon.robust.semantic.maps import MAP_FILES, save_maps, semantic_maps
    from recon.robust.semantic.plots import plot_map_1d, plot_map_2d
    from recon.robust.semantic.srvr import evaluation_shapes

    classifier = load_classifier(run_dir)
    instances = evaluation_shapes(
        shapes, classifier.classes, classifier.config.points, classifier.config.seed
    )
    out_dir = out_dir or classifier.run_dir / "maps"
    _refuse_existing([out_dir / _safe(s.name) / f for s in instances for f in MAP_FILES], force)
    started = time.perf_counter()
    all_maps = semantic_maps(ViewScore(classifier, instances), elevation_1d=elevation)
    seconds = time.perf_counter() - started
    for instance, maps in zip(instances, all_maps, strict=True):
        folder = out_dir / _safe(instance.name)
        label = classifier.classes[instance.label]
        save_maps(folder, maps, {"shape": instance.name, "class": label, "run": str(run_dir)}, force=True)
        title = f"{classifier.arch}: {instance.name} ({label})"
        plot_map_1d(maps, folder / "map1d.png", f"{title}, elevation {elevation:g}°")
        plot_map_2d(maps, folder / "map2d.png", title)
        summary = maps.summary()
        click.echo(
            f"{instance.name:22s} {label:10s} mean f {summary['mean']:.3f}  f≥0.5 on "
            f"{100 * summary['fraction_ge_0.5']:.1f}% of views  -> {folder}"
        )
    click.echo(
        f"{len(instances)} shapes, {len(instances) * (maps.map_2d.size + maps.map_1d.size)} views in {seconds:.1f}s",
        err=True,
    )


@semantic.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_shape_option("train")
@click.option(
    "--init", "inits", multiple=True, help="Initial AZ,EL (repeatable); default the reference's four."
)
@click.option("--method", "method_names", default="all", show_default=True, help="naive,oir_b,oir_w or all.")
@click.option("--steps", type=click.IntRange(min=1), default=800, show_default=True)
@click.option("--lr", type=POSITIVE, default=0.1, show_default=True)
@click.option("--alpha", type=NON_NEGATIVE, default=0.05, show_default=True)
@click.option("--beta", type=NON_NEGATIVE, default=0.0009, show_default=True)
@click.option("--reg", type=NON_NEGATIVE, default=0.1, show_default=True)
@click.option("--dims", type=click.IntRange(1, 2), default=2, show_default=True, help="1: azimuth only.")
@_elevation_option("Elevation when --dims 1.")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), help="Default: RUN/regions.")
@click.option("--force", is_flag=True, help="Overwrite existing results.")
def regions(
    run_dir, shapes, inits, method_names, steps, lr, alpha, beta, reg, dims, elevation, out_dir, force
):
    """Find robust viewpoint regions (Naive, OIR_B, OIR_W) and draw them on the semantic map."""
    from recon.robust.semantic.classifier import load_classifier
    from recon.robust.semantic.regions import RegionConfig
    from recon.robust.semantic.srvr import evaluation_shapes, find_shape_regions, srvr_row

    classifier = load_classifier(run_dir)
    instances = evaluation_shapes(
        shapes, classifier.classes, classifier.config.points, classifier.config.seed
    )
    out_dir = out_dir or classifier.run_dir / "regions"
    _refuse_existing([out_dir / "regions.json"], force)
    config = RegionConfig(lr=lr, alpha=alpha, beta=beta, reg=reg, steps=steps)
    run = find_shape_regions(
        classifier, instances, methods=_parse_methods(method_names), initial=_parse_points(inits),
        config=config, dims=dims, elevation=elevation,
    )  # fmt: skip
    _write_regions(out_dir, classifier, instances, run, config)
    row = srvr_row(run)
    for method in run.results:
        click.echo(
            f"{method:6s} SRVR {100 * row[method]['srvr']:.2f}%  median {100 * row[method]['median']:.2f}%"
            f"  ({row[method]['seconds']:.1f}s)"
        )
    click.echo(f"mean IoU between methods: {row['iou']}")
    click.echo(str(out_dir / "regions.json"))


def _write_regions(out_dir: Path, classifier, instances, run, config) -> None:
    """regions.json and, per shape, the regions drawn on its maps."""
    import numpy as np

    from recon.atomic import write_json
    from recon.robust.semantic.classifier import ViewScore
    from recon.robust.semantic.maps import semantic_maps
    from recon.robust.semantic.plots import plot_map_1d, plot_map_2d
    from recon.robust.semantic.srvr import low_score_share

    k = len(run.initial)
    records = []
    maps = _stored_maps(classifier, instances, run.elevation) or semantic_maps(
        ViewScore(classifier, instances), elevation_1d=run.elevation
    )
    for s, (instance, shape_maps) in enumerate(zip(instances, maps, strict=True)):
        boxes = {
            m: (r.lower[s * k : (s + 1) * k], r.upper[s * k : (s + 1) * k]) for m, r in run.results.items()
        }
        for m, (lower, upper) in boxes.items():
            for j in range(k):
                records.append(
                    {"shape": instance.name, "class": classifier.classes[instance.label], "method": m,
                     "initial": run.initial[j].tolist(), "lower": lower[j].tolist(), "upper": upper[j].tolist(),
                     "ratio": float(run.ratios(m)[s * k + j]),
                     "low_share": low_score_share(shape_maps, lower[j], upper[j]) if run.dims == 2 else None}
                )  # fmt: skip
        title = f"{classifier.arch}: {instance.name} ({classifier.classes[instance.label]})"
        name = _safe(instance.name)
        if run.dims == 2:
            plot_map_2d(shape_maps, out_dir / f"{name}_regions.png", title, boxes, run.initial)
        else:
            intervals = {m: np.concatenate([lo, hi], axis=1) for m, (lo, hi) in boxes.items()}
            plot_map_1d(shape_maps, out_dir / f"{name}_regions.png", title, intervals)
    write_json(
        out_dir / "regions.json",
        {"run": str(classifier.run_dir), "arch": classifier.arch, "dims": run.dims, "elevation": run.elevation,
         "config": config.to_dict(), "seconds": run.seconds, "regions": records,
         "map_mean": [float(m.map_2d.mean()) for m in maps],
         "map_ge_half": [float((m.map_2d >= 0.5).mean()) for m in maps]},
    )  # fmt: skip


@semantic.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_shape_option("train")
@click.option(
    "--init", "inits", multiple=True, help="Initial AZ,EL (repeatable); default the reference's four."
)
@click.option("--method", "method_names", default="all", show_default=True, help="naive,oir_b,oir_w or all.")
@click.option("--steps", type=click.IntRange(min=1), default=800, show_default=True)
@click.option("--dims", type=click.IntRange(1, 2), default=2, show_default=True, help="1: azimuth only.")
@_elevation_option("Elevation when --dims 1.")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--force", is_flag=True, help="Overwrite existing results.")
def srvr(run_dirs, shapes, inits, method_names, steps, dims, elevation, out_dir, force):
    """Compare classifiers by SRVR (mean robust-region volume / semantic-space volume) and print a table."""
    from recon.atomic import write_json, write_text
    from recon.robust.semantic.classifier import load_classifier
    from recon.robust.semantic.regions import RegionConfig
    from recon.robust.semantic.srvr import evaluation_shapes, find_shape_regions, srvr_row, srvr_table
    from recon.run import RunFolder

    _refuse_existing([out_dir / "srvr.json", out_dir / "srvr.md"], force)
    methods = _parse_methods(method_names)
    config = RegionConfig(steps=steps)
    rows = []
    for index, run_dir in enumerate(run_dirs):
        classifier = load_classifier(run_dir)
        instances = evaluation_shapes(
            shapes, classifier.classes, classifier.config.points, classifier.config.seed
        )
        started = time.perf_counter()
        run = find_shape_regions(
            classifier, instances, methods=methods, initial=_parse_points(inits), config=config, dims=dims,
            elevation=elevation,
        )  # fmt: skip
        folder = out_dir / f"{index}-{classifier.arch}"
        _write_regions(folder, classifier, instances, run, config)
        done = RunFolder(run_dir).read_json("DONE")
        stored = RunFolder(folder).read_json("regions.json")
        row = {"name": Path(run_dir).name, "arch": classifier.arch, "val_acc": done.get("val_acc"),
               "heldout_acc": done.get("heldout_acc"), "map_mean": _mean(stored["map_mean"]),
               "map_ge_half": _mean(stored["map_ge_half"]), **srvr_row(run)}  # fmt: skip
        for method in run.results:
            shares = [
                r["low_share"]
                for r in stored["regions"]
                if r["method"] == method and r["low_share"] is not None
            ]
            if shares:
                row[method]["low_share"] = _mean(shares)
        rows.append(row)
        click.echo(f"{run_dir}: {len(instances)} shapes in {time.perf_counter() - started:.1f}s", err=True)
    table = srvr_table(rows, methods)
    write_json(out_dir / "srvr.json", {"shapes": shapes, "steps": steps, "dims": dims, "rows": rows})
    write_text(out_dir / "srvr.md", table + "\n")
    click.echo(table)


def _stored_maps(classifier, instances, elevation: float):
    """The maps ``recon robust semantic map`` saved in RUN/maps for these shapes, or None if any is missing."""
    from recon.robust.semantic.maps import load_maps

    folders = [classifier.run_dir / "maps" / _safe(s.name) for s in instances]
    if not all((f / "map.json").exists() for f in folders):
        return None
    maps = [load_maps(f) for f in folders]
    return maps if all(m.elevation_1d == elevation for m in maps) else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _safe(name: str) -> str:
    return name.replace(":", "-").replace("#", "-")
