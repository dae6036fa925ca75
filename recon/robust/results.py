"""attack.json (every evaluation of a run, keyed by its settings) and the paper-shaped results table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from recon.atomic import read_json, write_json
from recon.errors import ConfigError, RunDirError
from recon.robust.evaluate import ATTACK_DESCRIPTIONS, AttackConfig, AttackReport
from recon.robust.train import load_train_config
from recon.run import RunFolder

TABLE_COLUMNS = (
    "method",
    "dataset",
    "attack",
    "test acc",
    "robust acc (xent)",
    "robust acc (margin)",
    "robust acc (strongest)",
)
TABLE_FORMATS = ("markdown", "csv")


@dataclass(frozen=True)
class TableConfig:
    """How ``recon robust table`` writes the table."""

    fmt: str = "markdown"
    """markdown | csv: the text format of the table."""

    def validate(self) -> None:
        """Raise ConfigError for an unknown format."""
        if self.fmt not in TABLE_FORMATS:
            raise ConfigError(f"unknown table format {self.fmt!r}; choose one of {', '.join(TABLE_FORMATS)}")


def evaluation_key(config: AttackConfig, n: int) -> str:
    """A name that identifies one evaluation's threat model and attack set, e.g. 'linf-eps0.3-n1000-pgd+apgd'."""
    return f"{config.norm}-eps{config.eps:g}-n{n}-{'+'.join(config.attacks)}"


def record_attack(
    run_dir: str | Path, config: AttackConfig, report: AttackReport, *, force: bool = False
) -> Path:
    """Add one evaluation to RUN/attack.json; an evaluation with the same key is replaced only with ``force``."""
    run = RunFolder.open(run_dir)
    path = run.path / "attack.json"
    evaluations = read_json(path).get("evaluations", {}) if path.exists() else {}
    key = evaluation_key(config, report.n)
    if key in evaluations and not force:
        raise RunDirError(f"{path} already holds the evaluation {key}; pass --force to replace it")
    evaluations[key] = {
        "settings": asdict(config),
        "results": report.to_dict(),
        "definitions": {
            "accuracy": "fraction of the n test images classified correctly (clean or under attack)",
            "worst_case": "an image counts as robust only if it is correct under every attack run",
            "eps": "radius in pixel units of [0, 1] images",
            **{name: ATTACK_DESCRIPTIONS[name] for name in config.attacks},
        },
    }
    write_json(path, {"evaluations": evaluations})
    return path


def table_rows(run_dirs: list[str | Path]) -> list[list[str]]:
    """One row per (run, evaluation): the columns of :data:`TABLE_COLUMNS`, accuracies in percent."""
    rows = []
    for run_dir in run_dirs:
        run = RunFolder.open(run_dir)
        config = load_train_config(run)
        path = run.path / "attack.json"
        if not path.exists():
            raise RunDirError(f"{run.path} has no attack.json; run: recon robust attack {run.path} --eps E")
        for evaluation in read_json(path)["evaluations"].values():
            settings, results = evaluation["settings"], evaluation["results"]
            per_attack = results["per_attack"]
            symbol = "L∞" if settings["norm"] == "linf" else "L2"
            rows.append(
                [
                    config.method,
                    config.dataset,
                    f"{symbol} ε={settings['eps']:g} ({'+'.join(settings['attacks'])})",
                    _percent(results["clean"]),
                    _percent(per_attack.get("pgd")),
                    _percent(per_attack.get("pgd-margin")),
                    _percent(results["worst_case"]),
                ]
            )
    return rows


def results_table(run_dirs: list[str | Path], config: TableConfig = TableConfig()) -> str:
    """The table as Markdown or CSV text."""
    config.validate()
    rows = table_rows(run_dirs)
    if config.fmt == "csv":
        return "\n".join(
            ",".join(f'"{cell}"' if "," in cell else cell for cell in row)
            for row in [list(TABLE_COLUMNS), *rows]
        )
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"
