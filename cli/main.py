"""Entry point of the ``recon`` command.

Subcommands are imported only when invoked so that ``recon --help`` does not pay for torch or open3d.
A :class:`recon.errors.ReconError` raised anywhere below becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib
import sys

import click

from recon import __version__
from recon.errors import ReconError

# name -> (module, attribute, one-line help shown by `recon --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": ("recon.cli.fit", "fit", "Fit a neural level set to a scan and write a watertight mesh."),
    "extract": ("recon.cli.fit", "extract", "Re-mesh a fitted run folder at another resolution."),
    "eval": ("recon.cli.evaluate", "eval_cmd", "Compare a reconstruction with ground truth (Chamfer, ...)."),
    "baseline": ("recon.cli.baseline", "baseline", "Run a classical or AtlasNet-style baseline on a scan."),
    "batch": ("recon.cli.batch", "batch", "Fit and evaluate every scan of a dataset with several methods."),
    "report": (
        "recon.cli.report",
        "report",
        "Tables, plots and thumbnails of a batch folder (HTML/Markdown).",
    ),
    "data": ("recon.cli.data", "data", "Prepare datasets: FAUST layout, virtual scans."),
    "render": (
        "recon.cli.render",
        "render",
        "Sphere-trace a fitted run's surface into normal-shaded and depth images.",
    ),
    "view": ("recon.cli.view", "view", "View scans, meshes and errors; headless screenshots."),
    "robust": ("recon.cli.robust", "robust", "Adversarial robustness: level-set margin training, attacks."),
    "lipschitz": ("recon.cli.lipschitz", "lipschitz", "Lipschitz networks: GroupSort/Björck, certificates."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (module, _, _) in COMMANDS.items() if _module_exists(module))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _module_exists(COMMANDS[name][0]):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recon")
def cli() -> None:
    """recon: raw 3D scan in, clean watertight mesh out (Controlling Neural Level Sets)."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code."""
    try:
        cli.main(args=argv, prog_name="recon", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ReconError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    main()
