"""Interruptions: Ctrl-C and SIGKILL during `recon fit`, killed and concurrent `recon batch` runs.

Fits run as real `recon` processes (one torch thread, so that they are bitwise comparable with the
uninterrupted reference fitted in-process on one thread). A killed run folder must always be either
resumable, or refused with one clear line; a resumed fit must end with exactly the uninterrupted result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from conftest import sphere_points, torus_points

from recon.data.manifest import write_manifest
from recon.errors import RunDirError
from recon.io import load_scan, save_mesh, save_point_cloud
from recon.run import RunFolder

STEPS = 200
"""tiny preset: a checkpoint every 50 steps, a metrics record every 20."""
FIT_ARGS = ["--preset", "tiny", "--steps", str(STEPS), "--resolution", "24", "--device", "cpu", "--seed", "3"]
ENV = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def recon(*args: str, **kwargs) -> subprocess.Popen:
    """Start `recon ARGS` as its own process group (so that signals reach only it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "recon.cli.main", *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    points, normals = sphere_points(1500, radius=2.0, seed=8)
    return save_point_cloud(tmp_path_factory.mktemp("scan") / "ball.ply", points + 1.0, normals)


@pytest.fixture(scope="module")
def reference(scan, tmp_path_factory) -> dict:
    """The uninterrupted fit (in-process, one thread): final model state and mesh."""
    import torch

    from recon.cli.main import main

    run_dir = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", str(scan), "-o", str(run_dir), *FIT_ARGS, "--quiet"])
            raise SystemExit(0)
    finally:
        torch.set_num_threads(threads)
    assert exit_info.value.code == 0
    return final_state(run_dir)


def final_state(run_dir: Path) -> dict:
    """The model weights, step and mesh of a finished run."""
    run = RunFolder.open(run_dir)
    assert run.is_done()
    state = run.load_checkpoint()
    mesh = load_scan(run.mesh_path, min_points=3)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "step": state["step"],
        "model": {k: v.numpy() for k, v in state["model"].items()},
        "vertices": mesh.points,
        "faces": mesh.faces,
        "logged_steps": [r["step"] for r in records],
        "losses": [r["loss"] for r in records],
    }


def assert_same_result(run_dir: Path, reference: dict) -> None:
    mine = final_state(run_dir)
    assert mine["step"] == reference["step"] == STEPS
    for name, weights in reference["model"].items():
        np.testing.assert_array_equal(mine["model"][name], weights, err_msg=name)
    np.testing.assert_array_equal(mine["vertices"], reference["vertices"])
    np.testing.assert_array_equal(mine["faces"], reference["faces"])
    # one metrics record per logged step, with the uninterrupted run's losses
    assert mine["logged_steps"] == reference["logged_steps"]
    assert mine["losses"] == reference["losses"]


def wait_for(predicate, process: subprocess.Popen | None = None, timeout: float = 300.0) -> None:
    """Poll ``predicate`` until it holds; fail if ``process`` ends first (generous timeout: shared CPUs)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended first: {process.communicate()}")
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


# ------------------------------------------------------------------------------------ SIGKILL, Ctrl-C


def test_sigkill_then_ctrl_c_then_resume_gives_the_uninterrupted_result(tmp_path, scan, reference):
    """kill -9 after the first checkpoint; the folder is whole; resume; Ctrl-C the resumed fit; it stops
    with a checkpoint and one line; resume again; the result equals the uninterrupted fit bit for bit."""
    run_dir = tmp_path / "run"
    process = recon("fit", str(scan), "-o", str(run_dir), *FIT_ARGS, "--quiet")
    wait_for(lambda: logged_steps(run_dir) >= 3, process)  # step 60: past the checkpoint at step 50
    process.send_signal(signal.SIGKILL)
    finish(process)
    assert folder_state(run_dir) == "resumable"

    process = recon("fit", "--resume", str(run_dir))
    wait_for(lambda: logged_steps(run_dir) >= 6, process)  # the resumed fit is training (step 120 or later)
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines[-1] == f"error: interrupted; continue with: recon fit --resume {run_dir}"
    assert "Traceback" not in err
    run = RunFolder.open(run_dir)
    assert 120 <= run.load_checkpoint()["step"] < STEPS
    assert "checkpoint saved" in (run_dir / "log").read_text()
    assert not run.is_done() and not run.mesh_path.exists()

    code, out, err = finish(recon("fit", "--resume", str(run_dir), "--quiet"))
    assert code == 0, err
    assert out.strip() == str(run_dir / "mesh.ply")
    # metrics logged after a checkpoint are dropped on resume, so every step is logged once
    assert_same_result(run_dir, reference)


def kill_and_resume(run_dir: Path, scan: Path, delay: float, reference: dict) -> str:
    """SIGKILL a fit ``delay`` s after it started; check the folder; resume or restart it; compare.

    Returns what the killed folder was: 'absent', 'setup' (stopped while being set up), 'resumable'.
    """
    process = recon("fit", str(scan), "-o", str(run_dir), *FIT_ARGS, "--quiet")
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    finish(process)
    assert process.returncode in (-signal.SIGKILL, 0)
    if process.returncode == 0:  # it finished before the kill
        assert_same_result(run_dir, reference)
        return "finished"
    state = folder_state(run_dir)
    if state == "resumable":
        code, _, err = finish(recon("fit", "--resume", str(run_dir), "--quiet"))
    else:
        code, _, err = finish(recon("fit", str(scan), "-o", str(run_dir), *FIT_ARGS, "--quiet", "--force"))
    assert code == 0, err
    assert not list(run_dir.glob(".*.tmp*")) and not list(run_dir.glob("checkpoints/.*.tmp*"))
    assert_same_result(run_dir, reference)
    return state


def folder_state(run_dir: Path) -> str:
    """What a killed fit left: nothing, a folder that says it was stopped during set-up, or a resumable
    run whose every file is whole."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "absent"
    try:
        run = RunFolder.open(run_dir)
    except RunDirError as exc:
        assert "stopped while being set up" in str(exc) and "--force" in str(exc)
        return "setup"
    for name in ("config.json", "meta.json", "normalization.json"):
        run.read_json(name)
    assert 0 <= run.load_checkpoint()["step"] <= STEPS
    load_scan(run_dir / "scan_points.npz")
    if run.is_done():
        json.loads(run.done_path.read_text())
    return "resumable"


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_and_resume_matches(tmp_path, scan, reference):
    delays = np.random.default_rng(2024).uniform(0.3, 9.0, size=8)
    states = [kill_and_resume(tmp_path / f"run{i}", scan, float(d), reference) for i, d in enumerate(delays)]
    assert "resumable" in states  # the moments do reach training


def test_a_folder_stopped_during_setup_is_refused_with_one_line(tmp_path, capsys):
    from recon.cli.main import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text("{}")
    (run_dir / ".meta.x.tmp.json").write_text("{")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--resume", str(run_dir)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip() == (
        f"error: {run_dir} holds a run that was stopped while being set up (no config.json); "
        "start it again with --force"
    )


def test_resume_drops_metrics_of_steps_after_the_checkpoint(tmp_path):
    run = RunFolder.create(tmp_path / "run")
    for step in (20, 40, 60):
        run.append_metrics({"step": step, "loss": 1.0 / step})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 80, "lo')  # killed mid-write
    assert run.truncate_metrics(50) == 2
    steps = [json.loads(line)["step"] for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [20, 40]
    assert run.truncate_metrics(50) == 0


# --------------------------------------------------------------------------------------------- batch


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Two small scans with ground truth, in a manifest."""
    root = tmp_path / "data"
    (root / "scans").mkdir(parents=True)
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    save_mesh(root / "gt.ply", ball.vertices, ball.faces)
    entries = []
    for i in range(2):
        points = sphere_points(1200, radius=0.5, seed=i)[0] if i != 1 else torus_points(1200, seed=i)
        save_point_cloud(root / "scans" / f"s{i}.ply", points)
        entries.append({"id": f"s{i}", "scan": root / "scans" / f"s{i}.ply", "gt": root / "gt.ply"})
    write_manifest(
        root, [e | {"source": "test", "n_points": 1200, "units": "m", "variant": ""} for e in entries]
    )
    return root


BATCH_ARGS = ["--methods", "levelset", "--preset", "tiny", "--steps", "30", "--eval-samples", "2000",
              "--no-thumbnails", "--device", "cpu"]  # fmt: skip


def batch_statuses(out_and_err: str) -> dict[str, str]:
    """task -> status from the progress lines of `recon batch`."""
    statuses = {}
    for line in out_and_err.splitlines():
        if line.startswith("[") and " / " in line:
            task, rest = line.split("] ", 1)[1].split(": ", 1)
            statuses[task.replace(" / ", "/")] = rest.split(" ")[0]
    return statuses


def assert_bench_complete(bench: Path, n_tasks: int) -> None:
    runs = sorted(bench.glob("runs/*/*"))
    assert len(runs) == n_tasks
    for run_dir in runs:
        assert (run_dir / "DONE").is_file() and not (run_dir / "ERROR").exists()
        record = json.loads((run_dir / "eval.json").read_text())
        assert record["metrics"]["chamfer_l1"] > 0
        assert not list(run_dir.glob(".*.tmp*"))
    json.loads((bench / "batch.json").read_text())


@pytest.mark.slow
def test_killed_batch_restarted_does_only_the_missing_tasks(dataset, tmp_path):
    bench = tmp_path / "bench"
    process = recon("batch", str(dataset), "-o", str(bench), *BATCH_ARGS)
    wait_for(lambda: len(list(bench.glob("runs/*/*/eval.json"))) >= 1, process)
    os.kill(process.pid, signal.SIGKILL)  # the batch process only: its workers must not outlive it
    finish(process)
    time.sleep(1.0)
    finished = {p.parent: p.stat().st_mtime_ns for p in bench.glob("runs/*/*/eval.json")}
    assert len(finished) == 1
    code, out, err = finish(recon("batch", str(dataset), "-o", str(bench), *BATCH_ARGS), timeout=300)
    assert code == 0, err
    statuses = batch_statuses(err)
    assert sorted(statuses.values()).count("skipped") == len(finished)
    assert sorted(statuses.values()).count("done") == 2 - len(finished)
    for run_dir, mtime in finished.items():
        assert (run_dir / "eval.json").stat().st_mtime_ns == mtime  # finished work was not redone
    assert_bench_complete(bench, 2)


@pytest.mark.slow
def test_two_batches_on_one_folder_share_the_work(dataset, tmp_path):
    bench = tmp_path / "bench"
    first = recon("batch", str(dataset), "-o", str(bench), *BATCH_ARGS)
    second = recon("batch", str(dataset), "-o", str(bench), *BATCH_ARGS)
    results = [finish(first, timeout=300), finish(second, timeout=300)]
    for code, _, err in results:
        assert code == 0, err
    statuses = [batch_statuses(err) for _, _, err in results]
    for task in ("s0/levelset", "s1/levelset"):
        outcomes = sorted(s.get(task, "not run") for s in statuses)
        assert outcomes.count("done") == 1, (task, outcomes)  # done once, by one of them
        assert set(outcomes) <= {"done", "skipped", "busy"}
    assert_bench_complete(bench, 2)
