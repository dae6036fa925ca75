"""Robust training methods, run folders, resume, and the ``recon robust`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from recon.cli.main import main
from recon.cli.robust import robust
from recon.errors import InputError, RunDirError
from recon.robust import attacks as atk
from recon.robust.train import (
    METHODS,
    TrainConfig,
    Trainer,
    load_classifier,
    resume_run,
    train_run,
    unsampled_cross_entropy,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(method: str, **kw) -> TrainConfig:
    defaults = dict(
        method=method,
        dataset="digits",
        arch="mlp",
        epochs=2,
        eps=0.1,
        limit=96,
        batch_size=32,
        pgd_steps=3,
        levelset_iters=4,
        test_limit=50,
        device="cpu",
    )
    return TrainConfig(**{**defaults, **kw})


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_writes_a_run_folder(tmp_path, method):
    result = train_run(_tiny(method, epochs=1), tmp_path / method)
    run = result.run_dir
    assert (run / "DONE").exists() and (run / "checkpoints" / "latest.pt").exists()
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and np.isfinite(record["loss"])
    assert json.loads((run / "config.json").read_text())["config"]["method"] == method
    model, config = load_classifier(run)
    assert config.method == method and model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def _straight_and_resumed(config: TrainConfig, tmp_path) -> tuple[dict, dict]:
    """Checkpoints of one uninterrupted run and of one interrupted after its first epoch, then resumed."""
    straight = train_run(config, tmp_path / "straight")

    def stop_after_first(log):
        if log.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "resumed", progress=stop_after_first)
    assert not (tmp_path / "resumed" / "DONE").exists()
    resume_run(tmp_path / "resumed")
    a = torch.load(straight.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "latest.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    return a, b


def test_resume_equals_uninterrupted(tmp_path):
    a, b = _straight_and_resumed(_tiny("levelset", epochs=3), tmp_path)
    assert a["epoch"] == b["epoch"] == 3
    with pytest.raises(RunDirError, match="already trained"):
        resume_run(tmp_path / "resumed")


def test_a_step_length_run_stops_part_way_through_an_epoch_and_halves_the_rate_by_steps(tmp_path):
    """limit 96 / batch 32 = 3 batches an epoch; 7 steps end one batch into the third epoch."""
    result = train_run(_tiny("madry", steps=7), tmp_path / "run")
    logs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [log["steps"] for log in logs] == [3, 6, 7]
    assert result.epochs == 3 and result.steps == 7
    assert json.loads((result.run_dir / "DONE").read_text())["steps"] == 7
    # Milestones at ceil(3.5) = 4 and ceil(5.25) = 6 steps: epoch logs carry the rate of their last step.
    assert [log["lr"] for log in logs] == [1e-3, 5e-4, 2.5e-4]
    state = torch.load(result.run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (3, 7)


def test_a_step_length_run_resumed_and_extended_equals_one_run_of_the_same_order(tmp_path):
    """Stopping after the first epoch and resuming gives the uninterrupted model; --steps extends a done run."""
    a, b = _straight_and_resumed(_tiny("levelset", steps=5, warmup_epochs=0), tmp_path)
    assert a["step"] == b["step"] == 5
    with pytest.raises(RunDirError, match="already trained 5 steps; pass a larger --steps"):
        resume_run(tmp_path / "resumed")
    assert resume_run(tmp_path / "resumed", steps=8).steps == 8


def test_a_checkpoint_without_a_step_count_resumes_at_its_epoch_boundary(tmp_path):
    result = train_run(_tiny("standard", epochs=1), tmp_path / "run")
    checkpoint = result.run_dir / "checkpoints" / "latest.pt"
    state = torch.load(checkpoint, weights_only=True)
    del state["step"]
    torch.save(state, checkpoint)
    assert resume_run(result.run_dir, epochs=2).steps == 6


def test_run_folder_is_not_overwritten_without_force(tmp_path):
    train_run(_tiny("standard", epochs=1), tmp_path / "run")
    with pytest.raises(RunDirError, match="--force"):
        train_run(_tiny("standard", epochs=1), tmp_path / "run")
    train_run(_tiny("standard", epochs=1), tmp_path / "run", force=True)


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="method"):
        Trainer(_tiny("adversarial"))
    with pytest.raises(InputError, match="dataset"):
        Trainer(_tiny("standard", dataset="imagenet"))


def _imbalanced_blobs(tmp_path) -> str:
    """Two classes of 2×2 'images' around grey levels 0.35 (7/8 of them) and 0.65 (L∞ gap 0.3).

    Cross-entropy on imbalanced classes puts the boundary close to the minority class: a small margin.
    """
    rng = np.random.default_rng(0)
    labels = (np.arange(400) % 8 == 0).astype(np.int64)
    centres = np.where(labels[:, None] == 0, 0.35, 0.65)
    images = np.clip(centres + rng.normal(0, 0.03, size=(400, 4)), 0, 1).reshape(400, 1, 2, 2)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=images.astype(np.float32), y=labels)
    return f"npz:{path}"


def _weak_linf_margin(model, x) -> float:
    """10th percentile of the L∞ DeepFool distances (no clipping) of the images to the boundary."""
    result = atk.deepfool(model, x, norm="linf", clip=False)
    return result.perturbation.reshape(len(x), -1).abs().amax(dim=1).quantile(0.1).item()


def test_levelset_training_increases_the_margin(tmp_path):
    dataset = _imbalanced_blobs(tmp_path)
    base = dict(dataset=dataset, arch="mlp", eps=0.1, lr=1e-2, batch_size=50, test_limit=50, device="cpu")
    standard = Trainer(TrainConfig(method="standard", epochs=3, **base))
    for _ in range(3):
        standard.run_epoch()
    images = standard.images
    before = _weak_linf_margin(standard.model, images)
    levelset = Trainer(TrainConfig(method="levelset", epochs=6, levelset_iters=8, **base))
    levelset.model.load_state_dict(standard.model.state_dict())
    for _ in range(6):
        log = levelset.run_epoch()
    after = _weak_linf_margin(levelset.model, images)
    eps_correct = levelset.config.resolved_eps_correct
    assert before < eps_correct  # the toy starts with a margin the loss has to fix
    assert log.train_acc > 0.95
    assert after > before + 0.02
    assert after > 0.9 * eps_correct


def test_cli_train_attack_table_geometry(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    common = [
        "--dataset",
        "digits",
        "--arch",
        "mlp",
        "--epochs",
        "1",
        "--limit",
        "64",
        "--device",
        "cpu",
        "--quiet",
    ]
    out = runner.invoke(
        robust, ["train", "--method", "madry", "--eps", "0.1", "--pgd-steps", "2", "-o", str(run), *common]
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(
        robust,
        ["attack", str(run), "--attack", "fgsm,pgd,pgd-margin", "--eps", "0.1", "--n", "40", "--steps", "5"],
    )
    assert out.exit_code == 0, out.output
    evaluations = json.loads((run / "attack.json").read_text())["evaluations"]
    (entry,) = evaluations.values()
    assert entry["results"]["worst_case"] <= min(entry["results"]["per_attack"].values())
    out = runner.invoke(robust, ["table", str(run)])
    assert (
        out.exit_code == 0 and "robust acc (strongest)" in out.output and "| madry | digits |" in out.output
    )
    out = runner.invoke(
        robust, ["geometry", str(run), "--n", "20", "--directions", "2", "--principal-points", "1"]
    )
    assert out.exit_code == 0, out.output
    geometry = json.loads((run / "geometry.json").read_text())
    assert geometry["deepfool_ratio"] > 0 and geometry["curvature"]["count"] > 0
    out = runner.invoke(robust, ["train", "--resume", "-o", str(run), "--epochs", "2", "--quiet"])
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["robust", "train", "--dataset", "nope", "-o", "{tmp}/r"], "unknown dataset"),
        (["robust", "attack", "{tmp}/missing", "--eps", "0.1"], "not a run folder"),
        (["robust", "table", "{tmp}"], "not a run folder"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_unsampled_cross_entropy_covers_exactly_the_examples_without_boundary_samples():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    per_example = torch.nn.functional.cross_entropy(model(x), y, reduction="none").detach()
    sampled = torch.tensor([1, 4])
    expected = per_example[[0, 2, 3, 5]].sum() / 6
    none = torch.zeros(0, dtype=torch.int64)
    with torch.no_grad():
        value = float(unsampled_cross_entropy(model, x, y, sampled))
        assert value == pytest.approx(float(expected), rel=1e-6)
        assert float(unsampled_cross_entropy(model, x, y, torch.arange(6))) == 0.0
        assert float(unsampled_cross_entropy(model, x, y, none)) == pytest.approx(float(per_example.mean()))


def test_levelset_with_unsampled_xent_trains(tmp_path):
    result = train_run(_tiny("levelset", epochs=2, unsampled_xent=True), tmp_path / "ls")
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["loss"]) and record["boundary_fraction"] is not None
    assert load_classifier(result.run_dir)[1].unsampled_xent is True


@pytest.mark.parametrize("method", ["standard", "madry", "trades", "levelset"])
def test_same_seed_gives_a_bit_identical_model(tmp_path, method):
    """Two runs with one seed on one thread count are equal bit for bit, whatever the global RNGs hold."""
    config = _tiny(method, epochs=1, warmup_epochs=0)
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        result = train_run(config, tmp_path / f"run{global_seed}")
        states.append(torch.load(result.run_dir / "checkpoints" / "latest.pt", weights_only=True)["model"])
    first, second = states
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key
