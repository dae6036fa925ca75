"""`recon baseline METHOD SCAN`: run a classical or AtlasNet-style baseline into a run folder.

Each method is one entry of :data:`METHODS` pointing at a click command; commands share
:func:`method_options` (SCAN, -o, --seed, --force) and :func:`write_baseline_run`, so a new method is one
command function plus one entry here.
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import asdict
from functools import cache
from pathlib import Path

import click

from recon.cli.options import NON_NEGATIVE, FiniteFloatRange, options_of
from recon.device import DEVICE_NAMES

# method -> (module, attribute, one-line help shown without importing the module)
METHODS: dict[str, tuple[str, str, str]] = {
    "poisson": ("recon.cli.baseline", "poisson_cmd", "Screened Poisson (PyMeshLab or Open3D)."),
    "atlasnet-sphere": ("recon.cli.baseline", "atlasnet_sphere_cmd", "AtlasNet-style: one deformed sphere."),
    "atlasnet-patch": ("recon.cli.baseline", "atlasnet_patch_cmd", "AtlasNet-style: one square patch."),
    "atlasnet-25": ("recon.cli.baseline", "atlasnet_25_cmd", "AtlasNet-style: 25 square patches."),
}


class MethodGroup(click.Group):
    """Subcommands looked up in :data:`METHODS` and imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(METHODS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in METHODS:
            return None
        module, attr, _ = METHODS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Methods"):
            formatter.write_dl([(name, METHODS[name][2]) for name in self.list_commands(ctx)])


@click.group(cls=MethodGroup)
def baseline() -> None:
    """Fit a baseline to SCAN and write a run folder (mesh.ply in the scan's frame, config, meta, DONE)."""


def method_options(method: str):
    """Decorator adding the arguments every baseline takes: SCAN, -o/--output, --seed, --force."""

    def decorate(command):
        command = click.option("--force", is_flag=True, help="Reuse a non-empty run folder.")(command)
        command = click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")(command)
        command = click.option(
            "-o",
            "--output",
            type=click.Path(file_okay=False, path_type=Path),
            help=f"Run folder [default: runs/<scan name>-{method}].",
        )(command)
        return click.argument("scan", type=click.Path(path_type=Path))(command)

    return decorate


def write_baseline_run(
    output: Path, method: str, scan: Path, config, seed: int, force: bool, run_method, write_extra=None
) -> Path:
    """Call ``run_method()`` -> (vertices, faces, info) and write its run folder (recon.baselines.runner).

    The folder is checked before and written only after the method succeeds, so a failure leaves nothing
    behind; ``write_extra(run)``, if given, adds method-specific files (e.g. a checkpoint); DONE is written
    last.
    """
    from recon.baselines.runner import run_baseline
    from recon.errors import RunDirError

    if output.is_dir() and any(output.iterdir()) and not force:
        raise RunDirError(f"{output} is not empty; pass --force to overwrite it or choose another -o")
    run, summary = run_baseline(
        method,
        os.path.abspath(scan),
        output,
        asdict(config),
        run_method,
        seed=seed,
        device="cpu",
        force=force,
    )
    if write_extra is not None:
        write_extra(run)
    run.mark_done({"method": method} | summary)
    return run.path


_poisson_option = options_of("recon.baselines.poisson", "PoissonConfig")


@click.command("poisson")
@method_options("poisson")
@_poisson_option("depth", "--depth", type=click.IntRange(1, 16))
@_poisson_option("backend", "--backend", type=click.Choice(["pymeshlab", "open3d"]))
@_poisson_option("density_trim_quantile", "--trim", type=FiniteFloatRange(0, 1, max_open=True))
@_poisson_option("outlier_ratio", "--outlier-ratio", type=NON_NEGATIVE)
@_poisson_option("outlier_neighbors", "--outlier-neighbors", type=click.IntRange(min=1))
@_poisson_option("normals", "--normals", type=click.Choice(["auto", "scan", "estimate"]))
@_poisson_option("point_weight", "--point-weight", type=NON_NEGATIVE)
@_poisson_option("samples_per_node", "--samples-per-node", type=FiniteFloatRange(min=1))
@_poisson_option("threads", "--threads", type=click.IntRange(min=0))
def poisson_cmd(scan: Path, output: Path | None, seed: int, force: bool, **options) -> None:
    """Screened Poisson reconstruction of SCAN, as an expert runs it: the isolated points the levelset fit
    drops are dropped, normals come from the scan or are estimated and oriented."""
    from recon.baselines.poisson import PoissonConfig, screened_poisson

    config = PoissonConfig(**options, seed=seed)
    config.validate()
    output = output or Path("runs") / f"{scan.stem}-poisson"
    report = {}

    def run_method():
        points, scan_normals = _scan_points_and_normals(scan)
        vertices, faces, report["info"] = screened_poisson(points, scan_normals, config)
        return vertices, faces, report["info"]

    path = write_baseline_run(output, "poisson", scan, config, seed, force, run_method)
    dropped = report["info"]["isolated_points"]["dropped"]
    click.echo(
        f"wrote {path / 'mesh.ply'} ({dropped} isolated scan points dropped, {report['info']['normals']} normals)"
    )


def _scan_points_and_normals(scan: Path):
    """Scan points (n, 3) and normals (n, 3) or None; a triangulated scan gives its vertex normals."""
    from recon.errors import InputError
    from recon.io import is_colinear, load_scan

    cloud = load_scan(scan)  # a triangulated scan comes with its area-weighted vertex normals
    if is_colinear(cloud.points):
        raise InputError(f"{scan}: all points lie on a line; no surface can be fitted to them")
    return cloud.points, cloud.normals


_atlasnet_option = options_of("recon.baselines.atlasnet", "AtlasNetConfig")


def _atlasnet_command(method: str) -> click.Command:
    """The click command of AtlasNet-style ``method`` (template and chart count fixed by the method)."""

    @click.command(
        method,
        help=(
            f"AtlasNet-style charts ({method}) fitted to SCAN by squared Chamfer; the mesh is the template "
            "connectivity mapped through the charts (open, charts may overlap)."
        ),
    )
    @method_options(method)
    @_atlasnet_option("steps", "--steps", type=click.IntRange(min=1))
    @_atlasnet_option("n_points", "--n-points", type=click.IntRange(min=1))
    @_atlasnet_option("mesh_vertices", "--mesh-vertices", type=click.IntRange(min=1))
    @click.option(
        "--full-scan",
        is_flag=True,
        help="Compare with the whole scan through KD-trees instead of a random subset per step.",
    )
    @_atlasnet_option("device", "--device", type=click.Choice(DEVICE_NAMES))
    def command(scan: Path, output: Path | None, seed: int, force: bool, full_scan: bool, **options) -> None:
        from recon.baselines.atlasnet import fit_atlasnet_with_state, method_config

        config = method_config(method, **options, scan_subset=not full_scan, seed=seed)
        config.validate()
        output = output or Path("runs") / f"{scan.stem}-{method}"
        state = {}

        def run_method():
            vertices, faces, info, state["checkpoint"] = fit_atlasnet_with_state(
                _scan_points_and_normals(scan)[0], config, _atlasnet_progress(config.steps)
            )
            return vertices, faces, info

        def write_checkpoint(run) -> None:
            run.save_checkpoint(state["checkpoint"])

        path = write_baseline_run(output, method, scan, config, seed, force, run_method, write_checkpoint)
        click.echo(f"wrote {path / 'mesh.ply'} (open chart mesh, not watertight)")

    return command


def _atlasnet_progress(total: int):
    """Progress callback printing the loss about ten times on stderr."""
    every = max(total // 10, 1)
    started = time.perf_counter()

    def report(log) -> None:
        if log.step % every == 0 or log.step == total:
            elapsed = time.perf_counter() - started
            click.echo(f"step {log.step}/{total}  loss {log.loss:.3e}  {elapsed:.1f}s", err=True)

    return report


_ATLASNET_COMMANDS = {
    "atlasnet_sphere_cmd": "atlasnet-sphere",
    "atlasnet_patch_cmd": "atlasnet-patch",
    "atlasnet_25_cmd": "atlasnet-25",
}


@cache
def __getattr__(name: str) -> click.Command:
    # Built on first access: their option defaults come from AtlasNetConfig, whose module imports torch,
    # which `recon baseline poisson` should not pay for.
    if name in _ATLASNET_COMMANDS:
        return _atlasnet_command(_ATLASNET_COMMANDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
