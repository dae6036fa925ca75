"""The implicit networks a fit can train, by name.

Each entry names the module and class of the network and of its configuration (the type of
``FitConfig.model``). The network's module is imported only when a network of that kind is built, so the
reconstruction core runs without loading the sibling modules (the 1-Lipschitz network lives in
recon.lipschitz).

A network may define ``fit_report(seed) -> (name, dict, summary) | None``: a check of a property the
network guarantees, run after the mesh is written and saved as ``<name>.json`` in the run folder.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry itself loads no network code (the CLI reads MODELS for its choices)
    import torch


@dataclass(frozen=True)
class ModelEntry:
    """Where a network's class and its configuration class live."""

    module: str
    class_name: str
    config_module: str
    config_class: str
    """The architecture's dataclass (light, importable without the network's module)."""


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry("recon.models.implicit", "ImplicitMLP", "recon.models.implicit", "ImplicitConfig"),
    "lipschitz": ModelEntry(
        "recon.lipschitz.implicit",
        "LipschitzImplicit",
        "recon.models.lipschitz_config",
        "LipschitzImplicitConfig",
    ),
}


def build_network(name: str, config) -> torch.nn.Module:
    """The network ``name`` (a key of MODELS) built from the fit ``config``'s model block."""
    if name not in MODELS:
        raise ValueError(f"unknown model type {name!r}; choose one of {', '.join(MODELS)}")
    entry = MODELS[name]
    cls = getattr(importlib.import_module(entry.module), entry.class_name)
    return cls(config.model)
