"""One device resolver for the fit, the baselines and the sibling modules."""

from __future__ import annotations

import pytest
import torch

from recon.device import resolve_device
from recon.errors import ConfigError, ReconError


def test_auto_picks_cuda_exactly_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "", "CUDA", "cuda:0 "])
def test_unknown_names_are_a_config_error(name):
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device(name)


def test_cuda_without_a_device_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ReconError, match="no CUDA device"):
        resolve_device("cuda")
