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

from recon.atomic import write_json
from recon.core.metrics import evaluate_reconstruction
from recon.data.manifest import write_manifest
from recon.errors import InputError, RunDirError
from recon.evaluation.batch import run_batch
from recon.evaluation.claims import task_claim, task_status
from recon.evaluation.methods import run_task
from recon.evaluation.plan import BatchSettings, dataset_entries, plan_tasks
from recon.io import load_mesh, load_scan, save_mesh, save_point_cloud

SETTINGS = BatchSettings(preset="tiny", steps=10, poisson_depth=5, eval_samples=2000, thumbnails=False)
BEST = replace(SETTINGS, poisson_best_depths=(4, 5))
"""poisson-best on shallow octrees: 2 backends x 2 depths x 2 trims, a second in all."""
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
        again = _evaluated(dataset, run / "mesh.ply")
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


def test_poisson_records_the_isolated_points_it_dropped(local_bench):
    bench, _, _ = local_bench
    info = json.loads((_run(bench, "ball", "poisson") / "meta.json").read_text())["info"]
    assert info["isolated_points"]["dropped"] == 0 and info["isolated_points"]["ratio"] == 5.0
    assert info["n_points_used"] == info["n_points"] == 2000


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
    import distributed

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


def _single_task(dataset: Path, bench: Path, method: str = "poisson", settings=SETTINGS, **entry):
    base = {"id": "ball", "scan": dataset / "scans" / "ball.ply", "gt": dataset / "gt" / "ball.ply"}
    (task,) = plan_tasks([base | entry], [method], bench, settings, threads=THREADS)
    return task


def _evaluated(dataset: Path, mesh_path: Path) -> dict:
    """The batch's evaluation of the mesh at ``mesh_path`` against the ball's GT (same samples and seed)."""
    return evaluate_reconstruction(
        load_mesh(mesh_path),
        load_mesh(dataset / "gt" / "ball.ply"),
        scan_points=load_scan(dataset / "scans" / "ball.ply").points,
        n_samples=SETTINGS.eval_samples,
        seed=SETTINGS.seed,
    )


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


def test_settings_added_later_count_as_their_defaults_in_older_folders(local_bench, dataset):
    bench, _, _ = local_bench
    path = bench / "batch.json"
    older = json.loads(path.read_text())
    for key in ("poisson_trim", "poisson_best_depths"):
        del older["settings"][key]
    path.write_text(json.dumps(older))
    results = run_batch(dataset, bench, METHODS, SETTINGS, retry_failed=False)
    assert {r.status for r in results} == {"skipped", "failed"}
    with pytest.raises(RunDirError, match="poisson_best_depths"):
        run_batch(dataset, bench, METHODS, BEST, retry_failed=False)


def test_poisson_best_records_every_configuration_and_keeps_the_best(dataset, tmp_path):
    task = _single_task(dataset, tmp_path, method="poisson-best", settings=BEST)
    result = run_task(task)
    assert result.status == "done", result.message
    run = Path(task.run_dir)
    sweep = json.loads((run / "poisson_configs.json").read_text())
    configs = sweep["configs"]
    grid = {(b, d, t) for b in ("pymeshlab", "open3d") for d in (4, 5) for t in (0.0, 0.02)}
    assert len(configs) == 8 and {(c["backend"], c["depth"], c["trim"]) for c in configs} == grid
    assert all(c["seconds"] > 0 and c["n_faces"] > 0 and "error" not in c for c in configs)
    l1 = [c["metrics"]["chamfer_l1"] for c in configs]
    assert len(set(l1)) > 1 and sweep["chosen"] == int(np.argmin(l1))
    chosen = configs[sweep["chosen"]]
    assert "oracle" in sweep["selection"] and sweep["prepared"]["isolated_points"]["dropped"] == 0
    # Each configuration is scored by the batch's own evaluation: the chosen one's numbers are eval.json's.
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["metrics"] == chosen["metrics"]
    assert evaluation["metrics"] == {
        k: v for k, v in _evaluated(dataset, run / "mesh.ply").items() if k != "definitions"
    }
    config = json.loads((run / "config.json").read_text())["poisson-best"]
    assert (config["backend"], config["depth"], config["density_trim_quantile"]) == (
        chosen["backend"],
        chosen["depth"],
        chosen["trim"],
    )
    # Its fit time is the chosen configuration's: the shared preparation and its own solve.
    expected = sweep["prepared"]["seconds_prepare"] + chosen["seconds"]
    assert evaluation["seconds"]["fit"] == pytest.approx(expected, abs=1e-3)
    assert expected < sweep["seconds_sweep"]


def test_poisson_best_refuses_a_scan_without_ground_truth(dataset, tmp_path):
    result = run_task(_single_task(dataset, tmp_path, method="poisson-best", settings=BEST, gt=None))
    assert result.status == "failed"
    assert "poisson-best chooses its configuration by the ground truth" in result.message
    assert not (Path(result.run_dir) / "mesh.ply").exists()


@pytest.fixture
def fake_levelset_fit(monkeypatch):
    """Replace the levelset fit (in this process) by one writing a sphere, a surface check and, when asked,
    a trimmed mesh (the sphere's upper half); returns the list of the fits made."""
    import recon.evaluation.methods

    fits = []

    def install(trimmed: bool) -> list:
        def fit(task, run) -> None:
            fits.append(task.scan_id)
            sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
            save_mesh(run.mesh_path, sphere.vertices, sphere.faces, force=True)
            if trimmed:
                upper = sphere.faces[sphere.vertices[sphere.faces].mean(axis=1)[:, 2] > 0]
                save_mesh(run.path / "mesh_trimmed.ply", sphere.vertices, upper, force=True)
            check = {"suspect": True, "reasons": ["a test"]}
            write_json(
                run.path / "meta.json", {"method": "levelset", "seconds": 12.5, "surface_check": check}
            )

        monkeypatch.setattr(recon.evaluation.methods, "_fit_levelset", fit)
        return fits

    return install


def test_levelset_trimmed_evaluates_the_fits_trimmed_mesh_without_refitting(
    dataset, tmp_path, fake_levelset_fit
):
    from recon.evaluation.report import collect_runs

    fits = fake_levelset_fit(trimmed=True)
    task = _single_task(dataset, tmp_path, method="levelset-trimmed")
    result = run_task(task)
    assert result.status == "done", result.message
    # The scan's levelset task had not run: it ran first, once.
    source = Path(task.run_dir).parent / "levelset"
    assert task_status(source) == "finished" and fits == ["ball"]
    evaluation = json.loads((Path(task.run_dir) / "eval.json").read_text())
    untrimmed = json.loads((source / "eval.json").read_text())
    assert evaluation["seconds"]["fit"] == untrimmed["seconds"]["fit"] == 12.5
    assert evaluation["derived_from"] == {
        "method": "levelset",
        "run_dir": str(source),
        "mesh": "mesh_trimmed.ply",
    }
    again = _evaluated(dataset, source / "mesh_trimmed.ply")
    assert evaluation["metrics"]["chamfer_l1"] == again["chamfer_l1"] != untrimmed["metrics"]["chamfer_l1"]
    # A forced redo evaluates the same fit again; the levelset task is not redone.
    assert run_task(replace(task, force=True)).status == "done" and fits == ["ball"]
    records = {r.method: r for r in collect_runs(tmp_path)}
    assert records["levelset-trimmed"].suspect is True and records["levelset-trimmed"].status == "finished"


def test_levelset_trimmed_fails_clearly_without_a_trimmed_mesh(dataset, tmp_path, fake_levelset_fit):
    fake_levelset_fit(trimmed=False)
    result = run_task(_single_task(dataset, tmp_path, method="levelset-trimmed"))
    assert result.status == "failed"
    assert "has no mesh_trimmed.ply" in result.message and "--methods levelset --force" in result.message
    assert task_status(Path(result.run_dir).parent / "levelset") == "finished"


def test_levelset_trimmed_fails_when_the_levelset_task_failed(dataset, tmp_path):
    bad = dataset / "scans" / "bad.ply"
    result = run_task(_single_task(dataset, tmp_path, method="levelset-trimmed", id="bad", scan=bad))
    assert result.status == "failed"
    assert result.message.startswith("levelset-trimmed needs the levelset run of scan bad, which failed: ")
    assert "bad.ply" in result.message


def test_derived_tasks_are_planned_after_their_source(dataset, tmp_path):
    tasks = plan_tasks(
        dataset_entries(dataset), ["levelset-trimmed", "poisson", "levelset"], tmp_path, SETTINGS
    )
    assert [(t.scan_id, t.method) for t in tasks] == [
        (scan, method) for scan in ("ball", "bad") for method in ("poisson", "levelset", "levelset-trimmed")
    ]


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
    bad = CliRunner().invoke(batch, [*args, "--poisson-best-depths", "8,x"])
    assert bad.exit_code == 2 and "octree depths" in bad.output


def test_report_of_a_real_batch(local_bench):
    from recon.evaluation.report import write_report

    bench, _, _ = local_bench
    report = write_report(bench, interactive=False)
    assert "| level-set loss (ours) |" in report.markdown and "| screened Poisson |" in report.markdown
    assert "## Failed tasks (2)" in report.markdown
    rows = (bench / "results.csv").read_text().splitlines()
    assert rows[0] == "scan,variant,method,metric,value,suspect"
    assert {line.split(",")[2] for line in rows[1:]} == set(METHODS)
    assert np.isfinite([float(line.split(",")[4]) for line in rows[1:]]).all()
