"""``recon robust``: robust training, attacks, result tables and decision-boundary geometry."""

from __future__ import annotations

import time
from pathlib import Path

import click

from recon.cli.options import (
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    CommaList,
    FiniteFloatRange,
    OneLineErrors,
    options_of,
)
from recon.device import DEVICE_NAMES
from recon.errors import InputError, ReconError, RunDirError


@click.group(cls=OneLineErrors)
def robust() -> None:
    """Adversarial robustness of image classifiers: level-set margin training, attacks, geometry, large margins."""


_train_option = options_of("recon.robust.train", "TrainConfig")
_fewshot_option = options_of("recon.robust.fewshot", "FewShotConfig")
_attack_option = options_of("recon.robust.evaluate", "AttackConfig")
_geometry_option = options_of("recon.robust.geometry", "GeometryConfig")
_table_option = options_of("recon.robust.results", "TableConfig")
_toy_option = options_of("recon.robust.toy2d", "ToyConfig")


def _choices(name: str) -> click.Choice:
    from recon.robust import attacks, models, results, train

    return click.Choice(list({"method": train.METHODS, "arch": models.ARCHITECTURES,
                              "margin_norm": train.MARGIN_NORMS, "norm": attacks.NORMS,
                              "fmt": results.TABLE_FORMATS}[name]))  # fmt: skip


def _attack_names() -> CommaList:
    from recon.robust.attacks import ATTACKS

    return CommaList(str, everything=ATTACKS)


@robust.command()
@_train_option("method", type=_choices("method"))
@_train_option("dataset")
@click.option("-o", "--output", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder.")
@_train_option("arch", type=_choices("arch"))
@_train_option("epochs", type=click.IntRange(min=1))
@_train_option("steps", type=click.IntRange(min=1))
@_train_option("eps", type=NON_NEGATIVE)
@_train_option("batch_size", type=click.IntRange(min=1))
@_train_option("lr", type=POSITIVE)
@_train_option("limit", type=click.IntRange(min=1))
@_train_option("per_class", type=click.IntRange(min=1))
@_train_option("pgd_steps", type=click.IntRange(min=1))
@_train_option("trades_beta", "--beta", type=NON_NEGATIVE)
@_train_option("levelset_iters", type=click.IntRange(min=1))
@_train_option("eps_correct", type=POSITIVE)
@_train_option("eps_wrong", type=POSITIVE)
@_train_option("warmup_epochs", type=click.IntRange(min=0))
@_train_option("unsampled_xent", is_flag=True)
@_train_option("cure_lambda", type=NON_NEGATIVE)
@_train_option("margin", type=POSITIVE)
@_train_option("margin_norm", type=_choices("margin_norm"))
@_train_option("margin_weight", type=NON_NEGATIVE)
@_train_option("seed", type=SEED)
@_train_option("device", type=click.Choice(DEVICE_NAMES))
@click.option("--force", is_flag=True, help="Overwrite a non-empty run folder.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in -o from its checkpoint (--epochs or --steps extends it).",
)
@click.option("--quiet", is_flag=True)
def train(run_dir, resume, force, quiet, epochs, steps, **options):
    """Train a classifier with a (robust) training method into a run folder."""
    from recon.robust.train import TrainConfig, resume_run, train_run

    def progress(log):
        if not quiet:
            extra = f"  boundary {log.boundary_fraction:.2f}" if log.boundary_fraction is not None else ""
            test = "-" if log.test_acc is None else f"{log.test_acc:.4f}"
            click.echo(
                f"epoch {log.epoch} (step {log.steps})  loss {log.loss:.4f}  train {log.train_acc:.4f}  test {test}"
                f"  {log.seconds:.1f}s{extra}",
                err=True,
            )

    try:
        if resume:
            result = resume_run(
                run_dir,
                epochs=epochs if _given("epochs") else None,
                steps=steps if _given("steps") else None,
                progress=progress,
            )
        else:
            result = train_run(
                TrainConfig(epochs=epochs, steps=steps, **options), run_dir, force=force, progress=progress
            )
    except KeyboardInterrupt:
        raise ReconError(f"interrupted; continue with: recon robust train --resume -o {run_dir}") from None
    if not quiet:
        click.echo(f"done: {result.epochs} epochs ({result.steps} steps) in {result.seconds:.1f}s", err=True)
    click.echo(str(result.run_dir))


def _given(name: str) -> bool:
    ctx = click.get_current_context()
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


@robust.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_attack_option("attacks", "--attack", type=_attack_names())
@_attack_option("eps", type=NON_NEGATIVE)
@_attack_option("norm", type=_choices("norm"))
@_attack_option("n_images", "--n", type=click.IntRange(min=1))
@_attack_option("steps", type=click.IntRange(min=1))
@_attack_option("step_size", type=POSITIVE)
@_attack_option("restarts", type=click.IntRange(min=1))
@_attack_option("apgd_steps", type=click.IntRange(min=1))
@_attack_option("targets", type=click.IntRange(min=1))
@_attack_option("targeted_steps", type=click.IntRange(min=1))
@_attack_option("targeted_restarts", type=click.IntRange(min=1))
@_attack_option("square_queries", type=click.IntRange(min=1))
@_attack_option("square_p_init", type=FiniteFloatRange(min=0, max=1, min_open=True))
@_attack_option("seed", type=SEED)
@_attack_option("device", type=click.Choice(DEVICE_NAMES))
@click.option("--force", is_flag=True, help="Replace an existing evaluation with the same settings.")
def attack(run_dir, force, **options):
    """Attack the test set of a trained run; per-example worst case over the attacks, into RUN/attack.json."""
    from recon.robust.data import load_dataset
    from recon.robust.evaluate import AttackConfig, evaluate_robustness
    from recon.robust.results import record_attack
    from recon.robust.train import load_classifier

    attack_config = AttackConfig(**options)
    attack_config.validate()
    model, config = load_classifier(run_dir, attack_config.device)
    images, labels = load_dataset(config.dataset, "test", limit=attack_config.n_images, seed=config.seed)
    parameter = next(model.parameters())
    images, labels = images.to(parameter.device), labels.to(parameter.device)
    started = time.perf_counter()
    report = evaluate_robustness(model, images, labels, attack_config)
    record_attack(run_dir, attack_config, report, force=force)
    eps = attack_config.eps
    symbol = "L∞" if attack_config.norm == "linf" else "L2"
    click.echo(
        f"{symbol} ε={eps:g} ({eps * 255:.1f}/255) on {report.n} test images, {time.perf_counter() - started:.1f}s"
    )
    click.echo(f"  clean        {100 * report.clean:6.2f}")
    for name, value in report.per_attack.items():
        click.echo(f"  {name:<12} {100 * value:6.2f}   ({report.seconds[name]:.1f}s)")
    click.echo(f"  worst case   {100 * report.worst_case:6.2f}")


@robust.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_table_option("fmt", "--format", type=_choices("fmt"))
def table(run_dirs, **options):
    """The paper-shaped table of the attack.json evaluations of several runs."""
    from recon.robust.results import TableConfig, results_table

    click.echo(results_table(run_dirs, TableConfig(**options)))


@robust.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_geometry_option("n_images", "--n", type=click.IntRange(min=1))
@_geometry_option("directions", type=click.IntRange(min=1))
@_geometry_option("principal_points", type=click.IntRange(min=0))
@_geometry_option("h", type=POSITIVE)
@_geometry_option("seed", type=SEED)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    help="Instead of geometry.json, write a PNG of the margin on (normal, random) and (random, random) "
    "planes through the first --points correctly classified test images.",
)
@_geometry_option("points", type=click.IntRange(min=1, max=12))
@_geometry_option("extent", type=POSITIVE)
@click.option("--force", is_flag=True, help="Overwrite RUN/geometry.json (or the --plot file).")
def geometry(run_dir, plot, force, **options):
    """DeepFool ratio ρ and curvature of the decision boundary along normal sections (RUN/geometry.json).

    With --plot, draw instead the margin on planes through test images: the adversarial (DeepFool) normal
    against a random direction, and two random directions, with the boundary F = 0 in black.
    """
    import torch

    from recon.atomic import write_json
    from recon.robust.data import load_dataset
    from recon.robust.geometry import GeometryConfig, boundary_geometry
    from recon.robust.train import load_classifier

    settings = GeometryConfig(**options)
    settings.validate()
    target = Path(run_dir) / "geometry.json" if plot is None else plot
    model, config = load_classifier(run_dir)
    if target.exists() and not force:
        raise RunDirError(f"{target} exists; pass --force to overwrite it")
    images, labels = load_dataset(config.dataset, "test", limit=settings.n_images, seed=config.seed)
    with torch.no_grad():
        correct = model(images).argmax(dim=1) == labels
    if plot is not None:
        _plot_sections(
            model, images[correct][: settings.points], target, settings, f"{config.method}, {config.dataset}"
        )
        return
    report = boundary_geometry(model, images[correct], settings)
    write_json(
        target,
        {
            "method": config.method,
            "dataset": config.dataset,
            **report.to_dict(),
            "definitions": {
                "deepfool_ratio": "mean ||r||_2/||x||_2, r the unclipped L2 DeepFool perturbation",
                "curvature": "u^T H u/||grad F|| along random unit tangents u, F = f_t - f_l at the "
                "boundary point on x -> x + r; H by central differences of length h",
                "principal": "extreme eigenvalues of the tangent-space operator P H P/||grad F||",
            },
        },
    )
    click.echo(
        f"DeepFool ratio ρ = {report.deepfool_ratio:.4f} (median ‖r‖₂ {report.deepfool_median_l2:.4f}) "
        f"on {report.n} correctly classified images"
    )
    c = report.curvature
    if c.get("count"):
        click.echo(
            f"normal-section curvature (h={report.h:.3g}): mean {c['mean']:.4f}, mean |κ| {c['mean_abs']:.4f}, "
            f"range [{c['min']:.4f}, {c['max']:.4f}] over {c['count']} sections"
        )
    p = report.principal
    if p["points"]:
        click.echo(
            f"principal curvatures (mean over {p['points']} points): [{p['min_mean']:.4f}, {p['max_mean']:.4f}]"
        )
    click.echo(str(target))


def _plot_sections(model, images, target: Path, settings, title: str) -> None:
    from recon.robust.geometry import normal_cross_sections
    from recon.robust.plots import plot_cross_sections

    sections = normal_cross_sections(model, images, settings)
    if not sections:
        raise InputError("DeepFool crossed the boundary for none of the images; nothing to plot")
    plot_cross_sections(sections, target, title=title)
    for i, section in enumerate(sections):
        click.echo(
            f"point {i} (class {section.label}): DeepFool distance {section.distance:.3f}; "
            f"other class on {100 * _other_class_fraction(section.adversarial):.0f}% of the normal×random plane, "
            f"{100 * _other_class_fraction(section.random):.0f}% of the random×random plane"
        )
    click.echo(str(target))


def _other_class_fraction(values) -> float:
    """Fraction of a (g, g) margin grid where another class wins (F > 0)."""
    return float((values > 0).mean())


@robust.command()
@click.option(
    "-o", "--output", "out_dir", type=click.Path(path_type=Path), required=True, help="Results folder."
)
@_fewshot_option("datasets", "--dataset")
@_fewshot_option("shots", "--k")
@_fewshot_option("seeds")
@_fewshot_option("methods")
@_fewshot_option("arch", type=_choices("arch"))
@_fewshot_option("steps", type=click.IntRange(min=1))
@_fewshot_option("batch_size", type=click.IntRange(min=1))
@_fewshot_option("lr", type=POSITIVE)
@_fewshot_option("margin", type=POSITIVE)
@_fewshot_option("margin_weight", type=NON_NEGATIVE)
@_fewshot_option("boundary_iters", type=click.IntRange(min=1))
@_fewshot_option("test_limit", type=click.IntRange(min=1))
@_fewshot_option("device", type=click.Choice(DEVICE_NAMES))
@click.option("--force", is_flag=True, help="Overwrite the results in the output folder.")
@click.option("--quiet", is_flag=True)
def fewshot(out_dir, force, quiet, **options):
    """Few-shot experiment: cross-entropy vs large-margin training on k images per class, several seeds.

    Writes results.json, results.csv, table.md (test accuracy and boundary distance, mean ± std over seeds)
    and fewshot.png into the output folder.
    """
    from recon.robust.fewshot import FewShotConfig, run_fewshot

    config = FewShotConfig(**options)

    def progress(record):
        if not quiet:
            click.echo(
                f"{record.dataset} k={record.shots} seed={record.seed} {record.method}: "
                f"test {100 * record.test_acc:.1f}%  L2 dist {record.distance_l2:.3f}  "
                f"{record.train_seconds:.1f}s",
                err=True,
            )

    result = run_fewshot(config, out_dir, force=force, progress=progress)
    if not quiet:
        click.echo((result.out_dir / "table.md").read_text())
        click.echo(f"{len(result.records)} runs in {result.seconds:.0f}s", err=True)
    click.echo(str(result.out_dir))


@robust.command()
@click.option("-o", "--output", "image", type=click.Path(path_type=Path), required=True, help="PNG to write.")
@_toy_option("per_class", type=click.IntRange(min=1))
@_toy_option("steps", type=click.IntRange(min=1))
@_toy_option("margin", type=POSITIVE)
@_toy_option("margin_weight", type=NON_NEGATIVE)
@_toy_option("noise", type=NON_NEGATIVE)
@_toy_option("seed", type=SEED)
@click.option("--force", is_flag=True, help="Overwrite the PNG.")
def toy(image, force, **options):
    """2-D toy: two moons with few points; the boundaries of cross-entropy and of the margin method as a PNG."""
    from recon.robust.toy2d import ToyConfig, run_toy

    result = run_toy(ToyConfig(**options), image, force=force)
    click.echo(f"margin {result.margin:.3f} (L2, points in [0, 1]²)")
    for method in result.test_accuracy:
        click.echo(
            f"  {method:<9} test {100 * result.test_accuracy[method]:5.1f}%  train→boundary min "
            f"{result.min_distance[method]:.3f} mean {result.mean_distance[method]:.3f}  "
            f"margin gap {result.margin_gap[method]:.4f}"
        )
    click.echo(str(image))


def _register_subgroups() -> None:
    from recon.cli.robust_semantic import semantic

    robust.add_command(semantic)


_register_subgroups()
