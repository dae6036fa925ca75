"""``recon robust semantic``: how a classifier's score changes with the camera around a 3D shape."""

from __future__ import annotations

import time
from pathlib import Path

import click

from recon.cli.options import NON_NEGATIVE, POSITIVE, SEED, CommaList, FiniteFloatRange, options_of
from recon.errors import RunDirError


@click.group()
def semantic() -> None:
    """Semantic robustness: Network Semantic Maps and robust viewpoint regions (Hamdi & Ghanem)."""


_train_option = options_of("recon.robust.semantic.classifier", "SemanticTrainConfig")
_map_option = options_of("recon.robust.semantic.maps", "MapConfig")
_search_option = options_of("recon.robust.semantic.srvr", "RegionSearchConfig")
_finder_option = options_of("recon.robust.semantic.regions", "RegionConfig")


def _choice(module: str, name: str) -> click.Choice:
    """The names in the tuple ``module.name`` (imported when the option is built, like ``options_of``)."""
    import importlib

    return click.Choice(getattr(importlib.import_module(module), name))


@semantic.command()
@click.option("-o", "--output", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder.")
@_train_option("arch", type=_choice("recon.robust.semantic.networks", "ARCHITECTURES"))
@_train_option("prior", type=_choice("recon.robust.semantic.views", "PRIORS"))
@_train_option("size", type=click.IntRange(min=8))
@_train_option("mode", type=click.Choice(["shaded", "silhouette", "depth"]))
@_train_option("points", type=click.IntRange(min=100))
@_train_option("per_class", type=click.IntRange(min=1))
@_train_option("epochs", type=click.IntRange(min=1))
@_train_option("images_per_epoch", type=click.IntRange(min=1))
@_train_option("batch_size", type=click.IntRange(min=1))
@_train_option("lr", type=POSITIVE)
@_train_option("seed", type=SEED)
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


def _method_names() -> CommaList:
    from recon.robust.semantic.regions import METHODS

    return CommaList(str, everything=METHODS)


def _search_config(finder_fields: tuple[str, ...], options: dict):
    """The RegionSearchConfig of a command's options (the finder's fields go into its RegionConfig)."""
    from recon.robust.semantic.regions import RegionConfig
    from recon.robust.semantic.srvr import RegionSearchConfig

    finder = RegionConfig(**{name: options.pop(name) for name in finder_fields})
    config = RegionSearchConfig(**options, finder=finder)
    config.validate()
    return config


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise RunDirError(f"{existing[0]} exists; pass --force to overwrite it")


@semantic.command(name="map")
@click.argument("run_dir", type=click.Path(path_type=Path))
@_map_option("shapes")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), help="Default: RUN/maps.")
@_map_option("elevation", type=FiniteFloatRange(-90, 90))
@click.option("--force", is_flag=True, help="Overwrite existing maps.")
def map_cmd(run_dir, out_dir, force, **options):
    """Network Semantic Maps: p(true class) over azimuth (1D) and azimuth × elevation (2D), .npy + .png."""
    from recon.robust.semantic.classifier import ViewScore, load_classifier
    from recon.robust.semantic.maps import MAP_FILES, MapConfig, save_maps, semantic_maps
    from recon.robust.semantic.plots import plot_map_1d, plot_map_2d
    from recon.robust.semantic.srvr import evaluation_shapes

    config = MapConfig(**options)
    config.validate()
    classifier = load_classifier(run_dir)
    instances = evaluation_shapes(
        config.shapes, classifier.classes, classifier.config.points, classifier.config.seed
    )
    out_dir = out_dir or classifier.run_dir / "maps"
    _refuse_existing([out_dir / _safe(s.name) / f for s in instances for f in MAP_FILES], force)
    started = time.perf_counter()
    all_maps = semantic_maps(ViewScore(classifier, instances), config)
    seconds = time.perf_counter() - started
    for instance, maps in zip(instances, all_maps, strict=True):
        folder = out_dir / _safe(instance.name)
        label = classifier.classes[instance.label]
        save_maps(folder, maps, {"shape": instance.name, "class": label, "run": str(run_dir)}, force=True)
        title = f"{classifier.arch}: {instance.name} ({label})"
        plot_map_1d(maps, folder / "map1d.png", f"{title}, elevation {config.elevation:g}°")
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
@_search_option("shapes")
@_search_option("initial", "--init", type=CommaList(float), multiple=True, show_default=False)
@_search_option("methods", "--method", type=_method_names())
@_finder_option("steps", type=click.IntRange(min=1))
@_finder_option("lr", type=POSITIVE)
@_finder_option("alpha", type=NON_NEGATIVE)
@_finder_option("beta", type=NON_NEGATIVE)
@_finder_option("reg", type=NON_NEGATIVE)
@_finder_option("check_step", type=POSITIVE)
@_finder_option("check_threshold", type=FiniteFloatRange(0, 1))
@_search_option("dims", type=click.IntRange(1, 2))
@_search_option("elevation", type=FiniteFloatRange(-90, 90))
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), help="Default: RUN/regions.")
@click.option("--force", is_flag=True, help="Overwrite existing results.")
def regions(run_dir, out_dir, force, **options):
    """Find robust viewpoint regions (Naive, OIR_B, OIR_W) and draw them on the semantic map."""
    from recon.robust.semantic.classifier import load_classifier
    from recon.robust.semantic.srvr import evaluation_shapes, find_shape_regions, srvr_row

    config = _search_config(("steps", "lr", "alpha", "beta", "reg", "check_step", "check_threshold"), options)
    classifier = load_classifier(run_dir)
    instances = evaluation_shapes(
        config.shapes, classifier.classes, classifier.config.points, classifier.config.seed
    )
    out_dir = out_dir or classifier.run_dir / "regions"
    _refuse_existing([out_dir / "regions.json"], force)
    run = find_shape_regions(classifier, instances, config)
    _write_regions(out_dir, classifier, instances, run, config.finder)
    row = srvr_row(run)
    for method in run.results:
        entry = row[method]
        click.echo(
            f"{method:6s} SRVR found {100 * entry['srvr']:.2f}% (median {100 * entry['median']:.2f}%)  "
            f"verified {100 * entry['verified_srvr']:.2f}% (median {100 * entry['verified_median']:.2f}%)  "
            f"{100 * entry['passed']:.0f}% of boxes pass the check"
        )
    click.echo(f"mean IoU between methods: {row['iou']}  ({run.seconds:.1f}s)")
    click.echo(str(out_dir / "regions.json"))


def _write_regions(out_dir: Path, classifier, instances, run, config) -> None:
    """regions.json and, per shape, the found and verified regions drawn on its maps."""
    import numpy as np

    from recon.atomic import write_json
    from recon.robust.semantic.classifier import ViewScore
    from recon.robust.semantic.maps import MapConfig, semantic_maps
    from recon.robust.semantic.plots import plot_map_1d, plot_map_2d

    k = len(run.initial)
    records = []
    maps = _stored_maps(classifier, instances, run.elevation) or semantic_maps(
        ViewScore(classifier, instances), MapConfig(elevation=run.elevation)
    )
    for s, (instance, shape_maps) in enumerate(zip(instances, maps, strict=True)):
        rows = slice(s * k, (s + 1) * k)
        boxes, verified = {}, {}
        for m, r in run.results.items():
            boxes[m] = (r.lower[rows], r.upper[rows])
            verified[m] = (r.check.lower[rows], r.check.upper[rows])
            for j, p in enumerate(range(s * k, (s + 1) * k)):
                records.append(
                    {"shape": instance.name, "class": classifier.classes[instance.label], "method": m,
                     "initial": run.initial[j].tolist(), "lower": r.lower[p].tolist(), "upper": r.upper[p].tolist(),
                     "ratio": float(run.ratios(m)[p]), "passed": bool(r.check.passed[p]),
                     "min_score": float(r.check.min_score[p]), "low_share": float(r.check.low_share[p]),
                     "check_views": int(r.check.views[p]), "verified_lower": r.check.lower[p].tolist(),
                     "verified_upper": r.check.upper[p].tolist(), "verified_ratio": float(run.verified_ratios(m)[p])}
                )  # fmt: skip
        title = f"{classifier.arch}: {instance.name} ({classifier.classes[instance.label]})"
        name = _safe(instance.name)
        if run.dims == 2:
            plot_map_2d(shape_maps, out_dir / f"{name}_regions.png", title, boxes, run.initial, verified)
        else:
            intervals = {m: np.concatenate([lo, hi], axis=1) for m, (lo, hi) in boxes.items()}
            plot_map_1d(shape_maps, out_dir / f"{name}_regions.png", title, intervals)
    write_json(
        out_dir / "regions.json",
        {"run": str(classifier.run_dir), "arch": classifier.arch, "prior": classifier.config.prior,
         "dims": run.dims, "elevation": run.elevation, "config": config.to_dict(), "seconds": run.seconds,
         "regions": records, "map_mean": [float(m.map_2d.mean()) for m in maps],
         "map_ge_half": [float((m.map_2d >= 0.5).mean()) for m in maps]},
    )  # fmt: skip


@semantic.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_search_option("shapes")
@_search_option("initial", "--init", type=CommaList(float), multiple=True, show_default=False)
@_search_option("methods", "--method", type=_method_names())
@_finder_option("steps", type=click.IntRange(min=1))
@_finder_option("check_step", type=POSITIVE)
@_finder_option("check_threshold", type=FiniteFloatRange(0, 1))
@_search_option("dims", type=click.IntRange(1, 2))
@_search_option("elevation", type=FiniteFloatRange(-90, 90))
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--force", is_flag=True, help="Overwrite existing results.")
def srvr(run_dirs, out_dir, force, **options):
    """Compare classifiers by SRVR (mean robust-region volume / semantic-space volume) and print a table."""
    from recon.atomic import write_json, write_text
    from recon.robust.semantic.classifier import load_classifier
    from recon.robust.semantic.srvr import evaluation_shapes, find_shape_regions, srvr_row, srvr_table
    from recon.run import RunFolder

    config = _search_config(("steps", "check_step", "check_threshold"), options)
    _refuse_existing([out_dir / "srvr.json", out_dir / "srvr.md"], force)
    rows = []
    for index, run_dir in enumerate(run_dirs):
        classifier = load_classifier(run_dir)
        instances = evaluation_shapes(
            config.shapes, classifier.classes, classifier.config.points, classifier.config.seed
        )
        started = time.perf_counter()
        run = find_shape_regions(classifier, instances, config)
        folder = out_dir / f"{index}-{classifier.arch}"
        _write_regions(folder, classifier, instances, run, config.finder)
        done = RunFolder(run_dir).read_json("DONE")
        stored = RunFolder(folder).read_json("regions.json")
        row = {"name": Path(run_dir).name, "arch": classifier.arch, "prior": classifier.config.prior,
               "val_acc": done.get("val_acc"), "heldout_acc": done.get("heldout_acc"),
               "map_mean": _mean(stored["map_mean"]), "map_ge_half": _mean(stored["map_ge_half"]),
               **srvr_row(run)}  # fmt: skip
        rows.append(row)
        click.echo(f"{run_dir}: {len(instances)} shapes in {time.perf_counter() - started:.1f}s", err=True)
    table = srvr_table(rows, config.methods)
    srvr_settings = {"shapes": config.shapes, "steps": config.finder.steps, "dims": config.dims,
                     "check_step": config.finder.check_step, "check_threshold": config.finder.check_threshold}  # fmt: skip
    write_json(out_dir / "srvr.json", srvr_settings | {"rows": rows})
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
