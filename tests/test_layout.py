"""The module boundary: the reconstruction core never loads the robustness or Lipschitz modules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recon.core.config import FitConfig
from recon.core.fit import build_model
from recon.models.registry import MODELS, build_network

SIBLINGS = ("recon.lipschitz", "recon.robust")


def test_importing_every_core_module_loads_no_sibling_module():
    code = f"""
import importlib, json, pkgutil, sys
import recon
siblings = {SIBLINGS!r}
core, packages = [], [("recon", recon.__path__)]
while packages:  # walk_packages would import the sibling packages to look inside them
    prefix, path = packages.pop()
    for info in pkgutil.iter_modules(path, prefix + "."):
        if info.name.startswith(siblings):
            continue
        module = importlib.import_module(info.name)
        core.append(info.name)
        if info.ispkg:
            packages.append((info.name, module.__path__))
loaded = sorted(m for m in sys.modules if m.startswith(siblings))
print(json.dumps({{"core": core, "loaded": loaded}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {
        "recon.core.fit",
        "recon.core.reconstruct",
        "recon.core.extract",
        "recon.core.metrics",
        "recon.io",
    } <= set(result["core"])
    assert result["loaded"] == []


def test_the_lipschitz_network_comes_through_the_registry():
    config = FitConfig().with_(model_type="lipschitz")
    assert (
        config.model_type == "lipschitz" and type(config.model).__name__ == MODELS["lipschitz"].config_class
    )
    model = build_model(config)
    entry = MODELS["lipschitz"]
    assert type(model).__module__ == entry.module and type(model).__name__ == entry.class_name
    assert model.config == config.model
    assert callable(model.fit_report)
    assert type(build_model(FitConfig())).__name__ == "ImplicitMLP"
    with pytest.raises(ValueError, match="unknown model type"):
        build_network("transformer", config)
    with pytest.raises(Exception, match="model_type must be one of mlp, lipschitz"):
        FitConfig().with_(model_type="transformer")


def test_the_core_package_loads_nothing_built_on_it():
    code = """
import importlib, json, pkgutil, sys
import recon.core
for info in pkgutil.iter_modules(recon.core.__path__, "recon.core."):
    importlib.import_module(info.name)
above = ("recon.evaluation", "recon.baselines", "recon.robust", "recon.lipschitz", "recon.cli", "recon.viewer")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(above))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
