"""Options generated from config dataclasses: every default and ``--help`` text comes from the dataclass,
comma lists parse through one parser, and each config refuses what its command's click ranges refuse."""

from __future__ import annotations

import importlib
from dataclasses import MISSING, fields

import click
import pytest

from recon.cli.options import CommaList, field_help, parse_list
from recon.errors import ConfigError, ReconError
from recon.lipschitz.experiments import AbsConfig, CertifyConfig, WassersteinConfig
from recon.lipschitz.sdf import DistanceRunConfig
from recon.robust.evaluate import AttackConfig
from recon.robust.fewshot import FewShotConfig
from recon.robust.geometry import GeometryConfig
from recon.robust.results import TableConfig
from recon.robust.semantic.classifier import SemanticTrainConfig
from recon.robust.semantic.maps import MapConfig
from recon.robust.semantic.regions import RegionConfig
from recon.robust.semantic.srvr import RegionSearchConfig
from recon.robust.toy2d import ToyConfig

_SEARCH = ["recon.robust.semantic.srvr:RegionSearchConfig", "recon.robust.semantic.regions:RegionConfig"]
GENERATED = {
    "robust train": (["recon.robust.train:TrainConfig"], {"run_dir", "force", "resume", "quiet"}),
    "robust attack": (["recon.robust.evaluate:AttackConfig"], {"force"}),
    "robust table": (["recon.robust.results:TableConfig"], set()),
    "robust geometry": (["recon.robust.geometry:GeometryConfig"], {"plot", "force"}),
    "robust fewshot": (["recon.robust.fewshot:FewShotConfig"], {"out_dir", "force", "quiet"}),
    "robust toy": (["recon.robust.toy2d:ToyConfig"], {"image", "force"}),
    "robust semantic train": (
        ["recon.robust.semantic.classifier:SemanticTrainConfig"], {"run_dir", "force", "quiet"}
    ),
    "robust semantic map": (["recon.robust.semantic.maps:MapConfig"], {"out_dir", "force"}),
    "robust semantic regions": (_SEARCH, {"out_dir", "force"}),
    "robust semantic srvr": (_SEARCH, {"out_dir", "force"}),
    "lipschitz abs": (["recon.lipschitz.experiments:AbsConfig"], {"out_dir", "force"}),
    "lipschitz wasserstein": (["recon.lipschitz.experiments:WassersteinConfig"], {"out_dir", "force"}),
    "lipschitz train": (["recon.lipschitz.experiments:ClassifierConfig"], {"run_dir", "force"}),
    "lipschitz certify": (["recon.lipschitz.experiments:CertifyConfig"], {"force"}),
    "lipschitz sdf": (["recon.lipschitz.sdf:DistanceRunConfig"], {"out_dir", "force"}),
}  # fmt: skip
"""Command → its config classes and the options still typed by hand (paths, --force, --quiet, --resume)."""
HAND_TYPED: set[str] = set()
"""Commands whose options are still typed by hand (none)."""


def _command(path: str) -> click.Command:
    from recon.cli.main import cli

    command = cli
    for name in path.split():
        command = command.get_command(click.Context(command), name)
    return command


def _leaves(path: str) -> set[str]:
    command = _command(path)
    if not isinstance(command, click.Group):
        return {path}
    return set().union(*(_leaves(f"{path} {name}") for name in command.list_commands(click.Context(command))))


def test_every_robust_and_lipschitz_command_is_generated_or_known_to_be_hand_typed():
    assert _leaves("robust") | _leaves("lipschitz") == set(GENERATED) | HAND_TYPED


@pytest.mark.parametrize("path", sorted(GENERATED))
def test_options_come_from_the_config_dataclass(path):
    names, hand_typed = GENERATED[path]
    classes = [
        getattr(importlib.import_module(module), name) for module, name in (n.split(":") for n in names)
    ]
    specs = {spec.name: (cls, spec) for cls in reversed(classes) for spec in fields(cls)}
    command = _command(path)
    options = [p for p in command.params if isinstance(p, click.Option) and p.name not in hand_typed]
    assert options
    for option in options:
        assert option.name in specs, f"{path}: --{option.name} is typed by hand"
        cls, spec = specs[option.name]
        assert option.help and option.help == field_help(cls)[option.name], option.name
        if spec.default is MISSING and spec.default_factory is MISSING:
            assert option.required, option.name
            continue
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        parsed = (
            None if option.default is None else option.type_cast_value(click.Context(command), option.default)
        )
        assert parsed == default, option.name


def test_comma_lists():
    assert parse_list(" 1, 5,10 ,", int, "--k") == (1, 5, 10)
    assert parse_list("0.5,2", float, "--eps") == (0.5, 2.0)
    assert parse_list("all", str, "--attack", everything=("a", "b")) == ("a", "b")
    for text, item, message in [
        ("", int, "--k is empty"),
        (" , ", str, "--k is empty"),
        ("1,x", int, "--k must be a comma-separated list of integers"),
        ("1.5", int, "integers"),
        ("0.1,inf", float, "finite"),
        ("nan", float, "finite"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_list(text, item, "--k")
    kind = CommaList(str, everything=("a", "b"))
    assert kind.text(("a", "b")) == "all" and kind.text(("b",)) == "b"
    assert CommaList(float).text((0.1, 1.0)) == "0.1,1.0"


BAD_CONFIGS = [
    (AttackConfig(eps=0.0), "--eps"),
    (AttackConfig(eps=0.1, attacks=("pgd", "cw")), "unknown attack 'cw'"),
    (AttackConfig(eps=0.1, step_size=float("nan")), "--step-size"),
    (TableConfig(fmt="html"), "format"),
    (GeometryConfig(points=13), "--points"),
    (GeometryConfig(h=-1.0), "--h"),
    (FewShotConfig(shots=(0,)), "k must be positive"),
    (FewShotConfig(boundary_iters=0), "boundary iterations"),
    (ToyConfig(noise=-0.1), "--noise"),
    (SemanticTrainConfig(points=99), "--points"),
    (SemanticTrainConfig(prior="frontal"), "prior"),
    (MapConfig(elevation=91.0), "--elevation"),
    (RegionSearchConfig(initial=((400.0, 10.0),)), "outside azimuth"),
    (RegionSearchConfig(initial=((40.0,),)), "AZ,EL"),
    (RegionSearchConfig(dims=3), "--dims"),
    (RegionConfig(alpha=-1.0), "alpha"),
    (RegionConfig(check_step=0.0), "--check-step"),
    (RegionConfig(check_threshold=1.5), "--check-threshold"),
    (AbsConfig(widths=(64, 1)), "--widths"),
    (WassersteinConfig(subset=1), "--subset"),
    (CertifyConfig(eps=(0.1, -1.0)), "--eps"),
    (CertifyConfig(norm="l1"), "norm"),
    (DistanceRunConfig(width=1), "width 2"),
    (DistanceRunConfig(lr=float("nan")), "lr"),
]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS, ids=lambda c: type(c).__name__)
def test_configs_refuse_what_the_click_ranges_refuse(config, message):
    with pytest.raises(ReconError, match=message):
        config.validate()
