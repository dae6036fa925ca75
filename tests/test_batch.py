"""recon batch: idempotent tasks, failures recorded, restarts, claims, the Dask executor."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from conftest import sphere_points, torus_points

from recon.batch import (
    BatchSettings,
    dataset_entries,
    plan_tasks,
    run_batch,
    run_task,
    task_claim,
    task_status,
)
from recon.data.manifest import write_manifest
from recon.errors import InputError, RunDirError
from recon.io import load_mesh, load_scan, save_mesh, save_point_cloud
from recon.metrics import evaluate_reconstruction

SETTINGS = BatchSettings(preset="tiny", steps=10, poisson_depth=5, eval_samples=2000, thumbnails=False)
METHODS = ("levelset", "poisson")
THREADS = 1
"""Fixed for both executors (sums depend on the thread count); one thread also avoids OpenMP spinning
on a busy machine."""


def _write_dataset(root: Path) -> Path:
    """ball (sphere) and ring (torus) with GT meshes, and 'bad': a scan file that cannot be read."""
    (root / "scans").mkdir(parents=True)
    (root / "gt").mkdir()
    points, normals = sphere_points(2000, radius=0.5, seed=1)
    save_point_cloud(root / "scans" / "ball.ply", points, normals)
    ball = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    save_mesh(root / "gt" / "ball.ply", ball.vertices, ball.faces)
    save_point_cloud(root / "scans" / "ring.ply", torus_points(2000, 0.6, 0.25, seed=2))
    ring = trimesh.creation.torus(major_radius=0.6, minor_radius=0.25)
    save_mesh(root / "gt" / "ring.ply", ring.vertices, ring.faces)
    (root / "scans" / "bad.ply").write_bytes(b"ply\nformat gibberish\n\x00\x01\x02")
    entries = [
        {
            "id": name,
            "scan": root / "scans" / f"{name}.ply",
            "gt": root / "gt" / f"{gt}.ply",
            "variant": "clean",
        }
        for name, gt in (("ball", "ball"), ("bad", "ball"))
    ]
    write_manifest(root, [e | {"source": "test", "n_points": 2000, "units": "m"} for e in entries])
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def local_bench(dataset, tmp_path_factory):
    """One real batch on local processes: ball and bad x levelset and poisson."""
    bench = tmp_path_factory.mktemp("bench") / "bench"
    seen = []
    results = run_batch(
        dataset, bench, METHODS, SETTINGS, executor="local", jobs=1, threads=THREADS, progress=seen.append
    )
    return bench, results, seen


def _by_task(results) -> dict:
    return {(r.scan_id, r.method): r for r in results}


def _run(bench: Path, scan: str, method: str) -> Path:
    return bench / "runs" / scan / method


def test_local_batch_finishes_good_scans_and_records_the_broken_one(local_bench, dataset):
    bench, results, seen = local_bench
    by_task = _by_task(results)
    assert len(results) == len(seen) == 4
    assert {by_task["ball", m].status for m in METHODS} == {"done"}
    assert {by_task["bad", m].status for m in METHODS} == {"failed"}
    for method in METHODS:
        run = _run(bench, "ball", method)
        assert task_status(run) == "finished"
        evaluation = json.loads((run / "eval.json").read_text())
        assert evaluation["definitions"]["chamfer_l1"]
        # The stored metrics are those of this run's mesh against this scan's GT (same seed and samples).
        again = evaluate_reconstruction(
            load_mesh(run / "mesh.ply"),
            load_mesh(dataset / "gt" / "ball.ply"),
            scan_points=load_scan(dataset / "scans" / "ball.ply").points,
            n_samples=SETTINGS.eval_samples,
            seed=SETTINGS.seed,
        )
        assert evaluation["metrics"]["chamfer_l1"] == pytest.approx(again["chamfer_l1"], rel=1e-9)
        # A sphere: Poisson is close to exact; ten tiny levelset steps are a rough blob, yet near it.
        assert (
            0 < evaluation["metrics"]["x1000_diag"]["chamfer_l1"] < {"poisson": 20, "levelset": 200}[method]
        )
        bad = _run(bench, "bad", method)
        assert task_status(bad) == "failed"
        line = (bad / "ERROR").read_text()
        assert line.count("\n") == 1 and "bad.ply" in line
        assert "Traceback" in (bad / "error.txt").read_text()
        assert not (bad / "mesh.ply").exists()


def test_rerun_skips_finished_tasks(local_bench, dataset):
    bench, _, _ = local_bench
    stamps = {p: p.stat().st_mtime_ns for p in bench.glob("runs/*/*/DONE")}
    results = run_batch(dataset, bench, METHODS, SETTINGS, retry_failed=False)
    by_task = _by_task(results)
    assert {by_task["ball", m].status for m in METHODS} == {"skipped"}
    assert {by_task["bad", m].status for m in METHODS} == {"failed"}
    assert "bad.ply" in by_task["bad", "poisson"].message
    assert stamps == {p: p.stat().st_mtime_ns for p in bench.glob("runs/*/*/DONE")}


def test_restarted_batch_runs_only_the_missing_work(local_bench, dataset):
    bench, _, _ = local_bench
    poisson, levelset = _run(bench, "ball", "poisson"), _run(bench, "ball", "levelset")
    # Killed mid-task: the baseline lost its results and left its claim file behind; the levelset fit
    # finished but was killed before its evaluation was written.
    (poisson / "DONE").unlink()
    (poisson / "eval.json").unlink()
    (poisson / ".lock").write_text("otherhost pid 1 since 00:00:00\n")
    (levelset / "eval.json").unlink()
    fitted = (
        (levelset / "mesh.ply").stat().st_mtime_ns,
        (levelset / "checkpoints" / "latest.pt").stat().st_mtime_ns,
    )

    results = run_batch(dataset, bench, METHODS, SETTINGS, retry_failed=False)
    by_task = _by_task(results)
    assert by_task["ball", "poisson"].status == "done"
    assert by_task["ball", "levelset"].status == "done"
    assert {by_task["bad", m].status for m in METHODS} == {"failed"}
    assert task_status(poisson) == task_status(levelset) == "finished"
    refit = (
        (levelset / "mesh.ply").stat().st_mtime_ns,
        (levelset / "checkpoints" / "latest.pt").stat().st_mtime_ns,
    )
    assert refit == fitted


def test_a_claimed_task_is_left_to_its_owner(dataset, tmp_path):
    entries = [e for e in dataset_entries(dataset) if e["id"] == "ball"]
    (task,) = plan_tasks(entries, ["poisson"], tmp_path, SETTINGS)
    Path(task.run_dir).mkdir(parents=True)
    with task_claim(task.run_dir) as claimed:
        assert claimed
        with task_claim(task.run_dir) as second:
            assert not second
        result = run_task(task)
    assert result.status == "busy"
    assert sorted(p.name for p in Path(task.run_dir).iterdir()) == [".lock"]


def test_dask_local_cluster_gives_the_local_results(local_bench, dataset, tmp_path):
    distributed = pytest.importorskip("distributed")
    bench, _, _ = local_bench
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        results = run_batch(
            dataset,
            tmp_path / "dask",
            METHODS,
            SETTINGS,
            executor="dask",
            scheduler=cluster.scheduler_address,
            threads=THREADS,
        )
    by_task = _by_task(results)
    assert {by_task["ball", m].status for m in METHODS} == {"done"}
    assert {by_task["bad", m].status for m in METHODS} == {"failed"}
    for method in METHODS:
        local_run, dask_run = _run(bench, "ball", method), _run(tmp_path / "dask", "ball", method)
        # The same surface; multi-threaded Poisson may number its vertices and faces differently.
        local_mesh, dask_mesh = load_mesh(local_run / "mesh.ply"), load_mesh(dask_run / "mesh.ply")
        np.testing.assert_allclose(
            _sorted_rows(dask_mesh.vertices), _sorted_rows(local_mesh.vertices), atol=1e-9
        )
        assert dask_mesh.area == pytest.approx(local_mesh.area, rel=1e-9)
        local = json.loads((local_run / "eval.json").read_text())["metrics"]
        dask = json.loads((dask_run / "eval.json").read_text())["metrics"]
        # Area-uniform samples follow the face order, so only an identical mesh gives identical numbers.
        rel = 1e-9 if method == "levelset" else 0.05
        for key in ("chamfer_l1", "chamfer_l2"):
            assert dask[key] == pytest.approx(local[key], rel=rel)


def _sorted_rows(array: np.ndarray) -> np.ndarray:
    return array[np.lexsort(array.T[::-1])]


def _single_task(dataset: Path, bench: Path, **entry):
    base = {"id": "ball", "scan": dataset / "scans" / "ball.ply", "gt": dataset / "gt" / "ball.ply"}
    (task,) = plan_tasks([base | entry], ["poisson"], bench, SETTINGS, threads=THREADS)
    return task


def test_missing_ground_truth_is_a_task_error(dataset, tmp_path):
    result = run_task(_single_task(dataset, tmp_path, gt=dataset / "gt" / "nope.ply"))
    assert result.status == "failed"
    assert "ground truth not found" in result.message
    assert (Path(result.run_dir) / "ERROR").read_text().startswith("ground truth not found")


def test_ground_truth_without_faces_is_a_task_error(dataset, tmp_path):
    cloud = tmp_path / "cloud.ply"
    save_point_cloud(cloud, *sphere_points(500, 0.5))
    result = run_task(_single_task(dataset, tmp_path / "bench", gt=cloud))
    assert result.status == "failed"
    assert "no faces" in result.message


def test_empty_prediction_is_a_task_error(dataset, tmp_path):
    task = _single_task(dataset, tmp_path)
    # A finished-looking baseline whose mesh has no faces: only the evaluation runs, and refuses it.
    save_point_cloud(Path(task.run_dir) / "mesh.ply", *sphere_points(500, 0.5))
    result = run_task(task)
    assert result.status == "failed"
    assert "prediction is unusable" in result.message and "no faces" in result.message


def test_dataset_without_ground_truth_is_fitted_but_not_scored(dataset, tmp_path):
    result = run_task(_single_task(dataset, tmp_path, gt=None))
    assert result.status == "done"
    evaluation = json.loads((Path(result.run_dir) / "eval.json").read_text())
    assert evaluation["metrics"] is None and "no ground truth" in evaluation["note"]


def test_run_folders_cannot_leave_the_bench_dir(dataset, tmp_path):
    with pytest.raises(InputError, match="plain name"):
        plan_tasks([{"id": "../escape", "scan": "x.ply", "gt": None}], ["poisson"], tmp_path, SETTINGS)
    outside = tmp_path / "outside"
    outside.mkdir()
    task = _single_task(dataset, tmp_path / "bench")
    Path(task.run_dir).parent.parent.mkdir(parents=True)
    os.symlink(outside, Path(task.run_dir).parent)
    result = run_task(task)
    assert result.status == "failed" and "leaves the benchmark folder" in result.message
    assert list(outside.iterdir()) == []


def test_changed_settings_are_refused_without_force(local_bench, dataset):
    bench, _, _ = local_bench
    with pytest.raises(RunDirError, match="seed"):
        run_batch(dataset, bench, METHODS, replace(SETTINGS, seed=1))


def test_dataset_forms(dataset, tmp_path):
    assert [e["id"] for e in dataset_entries(dataset / "manifest.csv")] == ["ball", "bad"]
    assert [e["id"] for e in dataset_entries(dataset / "manifest.json")] == ["ball", "bad"]
    folder = tmp_path / "plain"
    (folder / "scans").mkdir(parents=True)
    (folder / "gt").mkdir()
    for name in ("ball", "ring"):
        (folder / "scans" / f"{name}.ply").write_bytes((dataset / "scans" / "ball.ply").read_bytes())
    (folder / "gt" / "ball.ply").write_bytes((dataset / "gt" / "ball.ply").read_bytes())
    entries = {e["id"]: e for e in dataset_entries(folder)}
    assert entries["ball"]["gt"] == folder / "gt" / "ball.ply" and entries["ring"]["gt"] is None
    with pytest.raises(InputError, match="not found"):
        dataset_entries(tmp_path / "missing")


def test_cli_batch_reports_failures_with_exit_code(local_bench, dataset):
    from recon.cli.batch import batch

    bench, _, _ = local_bench
    args = [str(dataset), "-o", str(bench), "--methods", "levelset,poisson", "--preset", "tiny"]
    args += ["--steps", "10", "--poisson-depth", "5", "--eval-samples", "2000", "--no-thumbnails"]
    result = CliRunner().invoke(batch, [*args, "--skip-failed"])
    assert result.exit_code == 1
    assert "2 skipped, 2 failed" in result.output
    bad = CliRunner().invoke(batch, [str(dataset), "-o", str(bench), "--methods", "levelset,nope"])
    assert bad.exit_code == 2 and "nope" in bad.output


def test_report_of_a_real_batch(local_bench):
    from recon.report import write_report

    bench, _, _ = local_bench
    report = write_report(bench, interactive=False)
    assert "| level-set loss (ours) |" in report.markdown and "| screened Poisson |" in report.markdown
    assert "## Failed tasks (2)" in report.markdown
    rows = (bench / "results.csv").read_text().splitlines()
    assert rows[0] == "scan,variant,method,metric,value"
    assert {line.split(",")[2] for line in rows[1:]} == set(METHODS)
    assert np.isfinite([float(line.split(",")[4]) for line in rows[1:]]).all()
