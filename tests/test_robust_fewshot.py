"""The few-shot experiment: grid, paired runs, aggregation, outputs, and the ``fewshot`` / ``toy`` commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_png_shows_something
from torch import nn

from recon.cli.main import main
from recon.cli.robust import robust
from recon.errors import InputError
from recon.robust.fewshot import FewShotConfig, boundary_distances, run_fewshot
from recon.robust.train import Trainer


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    yield


TINY = FewShotConfig(
    datasets=("digits",),
    shots=(1, 2),
    seeds=(0, 1),
    methods=("standard", "margin-l2"),
    steps=6,
    boundary_iters=3,
    test_limit=40,
)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("fewshot")
    return run_fewshot(TINY, out), out


def test_outputs_are_written_and_consistent(tiny_results):
    result, out = tiny_results
    assert len(result.records) == 2 * 2 * 2
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    saved = json.loads((out / "results.json").read_text())
    assert len(rows) == len(saved["runs"]) == 8 and "definitions" in saved
    for entry in saved["summary"]:
        runs = [r for r in rows if (r["shots"], r["method"]) == (str(entry["shots"]), entry["method"])]
        accuracies = np.array([float(r["test_acc"]) for r in runs])
        assert entry["test_acc"] == pytest.approx(accuracies.mean())
        assert entry["test_acc_std"] == pytest.approx(accuracies.std(ddof=1))
        if entry["method"] == "margin-l2":
            baseline = {
                r["seed"]: float(r["test_acc"])
                for r in rows
                if (r["shots"], r["method"]) == (str(entry["shots"]), "standard")
            }
            deltas = np.array([float(r["test_acc"]) - baseline[r["seed"]] for r in runs])
            assert entry["delta_acc"] == pytest.approx(deltas.mean())
            assert entry["wins"] == int((deltas > 0).sum())
    table = (out / "table.md").read_text()
    assert "### digits" in table and "\n| 1 | " in table and "\n| 2 | " in table
    assert_png_shows_something((out / "fewshot.png").read_bytes())


def test_both_methods_of_a_seed_train_on_the_same_images_for_the_same_steps(tiny_results):
    result, _ = tiny_results
    for shots in TINY.shots:
        configs = [TINY.train_config("digits", shots, 1, m) for m in TINY.methods]
        trainers = [Trainer(c) for c in configs]
        assert torch.equal(trainers[0].images, trainers[1].images)
        assert len(trainers[0].labels) == 10 * shots
        for a, b in zip(trainers[0].model.parameters(), trainers[1].model.parameters(), strict=True):
            assert torch.equal(a, b)
    steps = {(r.shots, r.method): r.steps for r in result.records}
    assert steps[(1, "standard")] == steps[(1, "margin-l2")] >= TINY.steps
    assert {r.margin is None for r in result.records if r.method == "standard"} == {True}
    assert all(r.margin > 0 for r in result.records if r.method == "margin-l2")


def test_results_are_not_overwritten_without_force(tiny_results):
    _, out = tiny_results
    with pytest.raises(InputError, match="--force"):
        run_fewshot(TINY, out)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_boundary_distance_of_a_linear_classifier(norm):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 3.0]]))
        model[1].bias.copy_(torch.tensor([0.0, -1.0]))
    images = torch.rand(16, 1, 2, 2, generator=torch.Generator().manual_seed(0)).double()
    w = np.array([1.0, -2.0, 0.5, 3.0])
    f = images.reshape(16, 4).numpy() @ w - 1.0
    dual = np.linalg.norm(w) if norm == "l2" else np.abs(w).sum()
    distances, unflipped = boundary_distances(model, images, norm)
    assert unflipped == 0
    np.testing.assert_allclose(distances.numpy(), 1.02 * np.abs(f) / dual, rtol=1e-3, atol=2e-4)


def test_cli_fewshot_and_toy(tmp_path):
    runner = CliRunner()
    out = runner.invoke(
        robust,
        [
            "fewshot",
            "-o",
            str(tmp_path / "fs"),
            "--dataset",
            "digits",
            "--k",
            "1",
            "--seeds",
            "0",
            "--methods",
            "standard,margin-linf",
            "--steps",
            "3",
            "--boundary-iters",
            "2",
            "--test-limit",
            "30",
            "--quiet",
        ],
    )
    assert out.exit_code == 0, out.output
    assert {"results.json", "results.csv", "table.md", "fewshot.png"} <= {
        p.name for p in (tmp_path / "fs").iterdir()
    }
    image = tmp_path / "toy.png"
    out = runner.invoke(robust, ["toy", "-o", str(image), "--per-class", "4", "--steps", "20"])
    assert out.exit_code == 0, out.output
    assert (
        "standard" in out.output
        and "margin" in out.output
        and assert_png_shows_something(image.read_bytes()) is not None
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["robust", "fewshot", "-o", "{tmp}/o", "--k", "1,x"], "comma-separated list of integers"),
        (["robust", "fewshot", "-o", "{tmp}/o", "--methods", "standard,svm"], "unknown method 'svm'"),
        (["robust", "fewshot", "-o", "{tmp}/o", "--k", "0"], "k must be positive"),
        (["robust", "toy", "-o", "{tmp}/exists.png"], "--force"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "exists.png").write_bytes(b"user file")
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert (tmp_path / "exists.png").read_bytes() == b"user file"
