"""recon.core.adam.Adam against torch.optim.Adam: the same bytes, step by step, and interchangeable state."""

import subprocess
import sys

import pytest
import torch

from recon.core.adam import Adam


def _problem(seed: int):
    """A small softplus MLP and a batch: (model, inputs (64, 3), targets (64, 1))."""
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Softplus(beta=100), torch.nn.Linear(32, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return model, torch.randn(64, 3, generator=generator), torch.randn(64, 1, generator=generator)


def _train(model, optimizer, x, y, steps: int, first_step: int = 0) -> None:
    for step in range(first_step, first_step + steps):
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 * (0.97**step)  # a schedule that changes lr every step, as the fit's does
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_same_bytes_as_torch_adam_every_step():
    ours, x, y = _problem(0)
    theirs, _, _ = _problem(0)
    mine = Adam(ours.parameters(), lr=1e-2)
    reference = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    for step in range(40):
        _train(ours, mine, x, y, 1, step)
        _train(theirs, reference, x, y, 1, step)
        for a, b in zip(_params(ours), _params(theirs), strict=True):
            assert torch.equal(a, b), f"parameters differ after step {step + 1}"


def test_parameters_without_gradient_are_left_alone():
    model, x, y = _problem(1)
    frozen = torch.nn.Parameter(torch.ones(3))
    optimizer = Adam([*model.parameters(), frozen], lr=1e-2)
    _train(model, optimizer, x, y, 3)
    assert torch.equal(frozen.detach(), torch.ones(3))
    assert frozen not in optimizer.state


@pytest.mark.parametrize("first", ["ours", "torch"])
def test_state_dict_moves_between_the_two_optimizers(first):
    """A checkpoint written by either optimizer resumes in the other to the same bytes as no break."""
    straight, x, y = _problem(2)
    _train(straight, Adam(straight.parameters(), lr=1e-2), x, y, 20)

    broken, _, _ = _problem(2)
    make = {
        "ours": lambda m: Adam(m.parameters(), lr=1e-2),
        "torch": lambda m: torch.optim.Adam(m.parameters()),
    }
    second = "torch" if first == "ours" else "ours"
    optimizer = make[first](broken)
    _train(broken, optimizer, x, y, 10)
    saved = optimizer.state_dict()
    resumed = make[second](broken)
    resumed.load_state_dict(saved)
    _train(broken, resumed, x, y, 10, first_step=10)
    for a, b in zip(_params(straight), _params(broken), strict=True):
        assert torch.equal(a, b)


def test_refuses_a_state_with_options_it_lacks():
    model, _, _ = _problem(3)
    saved = torch.optim.Adam(model.parameters(), weight_decay=0.1).state_dict()
    with pytest.raises(ValueError, match="weight_decay"):
        Adam(model.parameters()).load_state_dict(saved)


def test_a_fit_process_does_not_import_torch_dynamo():
    """The reason this class exists: torch.optim pulls in torch._dynamo (~1.5 s) in every fit."""
    code = (
        "import sys, numpy as np\n"
        "from conftest import sphere_points\n"
        "from recon.core.config import tiny_preset\n"
        "from recon.core.fit import LevelSetFitter\n"
        "points, normals = sphere_points(500, radius=0.5, seed=0)\n"
        "fitter = LevelSetFitter(points, normals, tiny_preset().with_(device='cpu'))\n"
        "fitter.train_step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tests_dir, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
