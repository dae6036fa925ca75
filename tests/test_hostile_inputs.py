"""The hostile corpus (tests/hostile_corpus.py) against every reader and every command.

Nothing may escape as a traceback or hang: a broken input is refused by the readers with an InputError
and by every command with one line on stderr and a non-zero exit code; a degenerate one (no surface in
it) is refused by everything that fits a surface; a valid file with a non-UTF-8 name just works.
Commands run in-process through the real entry point, so an uncaught exception fails the test as itself.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from conftest import sphere_points
from hostile_corpus import build_corpus, case_kinds

from recon.cli.main import main
from recon.data.manifest import load_manifest
from recon.errors import InputError, RunDirError
from recon.evaluation.methods import run_task
from recon.evaluation.plan import BatchSettings, plan_tasks
from recon.io import load_mesh, load_scan, save_mesh, save_point_cloud

CORPUS_CASES = case_kinds()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A ground-truth mesh with few vertices (a cube) and a good scan."""
    folder = tmp_path_factory.mktemp("good")
    cube = trimesh.creation.box()
    mesh = save_mesh(folder / "cube.ply", cube.vertices, cube.faces)
    scan = save_point_cloud(folder / "scan.ply", *sphere_points(600, radius=0.5, seed=3))
    return {"mesh": mesh, "scan": scan}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(args: list[str], timeout: int = 60) -> tuple[int, str, str]:
    """`recon ARGS` in-process under an alarm; (exit code, stdout, stderr).

    Output goes to StringIO rather than pytest's capture, which (unlike a real stderr, whose error
    handler is backslashreplace) cannot take the undecodable bytes of a non-UTF-8 file name.
    """

    def hang(signum, frame):
        raise TimeoutError(f"recon {' '.join(args)} hung")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(timeout)
    out, err = io.StringIO(), io.StringIO()
    try:
        with pytest.raises(SystemExit) as exit_info, redirect_stdout(out), redirect_stderr(err):
            main(args)
            raise SystemExit(0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return exit_info.value.code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


COMMANDS = {
    "fit": lambda x, g, o: ["fit", x, "-o", o, "--preset", "tiny", "--steps", "2", "--resolution", "16",
                            "--device", "cpu", "--quiet"],
    "eval-pred": lambda x, g, o: ["eval", x, g, "--n-samples", "500"],
    "eval-gt": lambda x, g, o: ["eval", g, x, "--n-samples", "500"],
    "eval-scan": lambda x, g, o: ["eval", g, g, "--scan", x, "--n-samples", "500"],
    "poisson": lambda x, g, o: ["baseline", "poisson", x, "-o", o, "--depth", "5"],
    "view": lambda x, g, o: ["view", x, "--screenshot", o + ".png", "--renderer", "software", "--size",
                             "48x48", "--views", "front"],
    "extract": lambda x, g, o: ["extract", x],
    "data-scan": lambda x, g, o: ["data", "scan", x, "-o", o + ".ply", "--n-points", "500"],
}  # fmt: skip


# ----------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize(("name", "kind"), CORPUS_CASES)
def test_readers_refuse_broken_files_and_accept_or_refuse_the_rest(corpus, name, kind):
    case = corpus[name]
    for reader in (load_scan, load_mesh):
        if kind == "broken":
            with pytest.raises(InputError) as caught:
                reader(case.path)
            message = str(caught.value)
            assert "\n" not in message and message.startswith(str(case.path))
        else:
            try:
                reader(case.path)
            except InputError as exc:
                assert "\n" not in str(exc)


@pytest.mark.parametrize(("name", "kind"), [c for c in CORPUS_CASES if c[1] == "degenerate"])
def test_no_surface_is_fitted_to_a_degenerate_scan(corpus, name, kind, tmp_path):
    from recon.core.config import tiny_preset
    from recon.core.reconstruct import fit_scan

    with pytest.raises(InputError):
        fit_scan(corpus[name].path, tmp_path / "run", tiny_preset())
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------- commands


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_every_broken_input_with_one_line(corpus, good, command, tmp_path):
    make = COMMANDS[command]
    for case in corpus.values():
        if case.kind != "broken":
            continue
        output = tmp_path / case.name
        code, out, err = run_cli(make(str(case.path), str(good["mesh"]), str(output)))
        assert_one_line_error(code, err)
        assert not output.exists() and not Path(str(output) + ".png").exists()


@pytest.mark.parametrize("command", ["fit", "poisson"])
def test_fitting_commands_refuse_every_degenerate_scan(corpus, good, command, tmp_path):
    for case in corpus.values():
        if case.kind != "degenerate" or case.name == "planar" and command == "poisson":
            continue  # screened Poisson makes an (open) surface of a plane, which is fine
        output = tmp_path / case.name
        code, _, err = run_cli(COMMANDS[command](str(case.path), str(good["mesh"]), str(output)))
        line = assert_one_line_error(code, err)
        assert any(word in line for word in ("points", "flat", "line", "faces", "plane")), line
        assert not output.exists()


def test_a_non_utf8_file_name_works_everywhere(corpus, good, tmp_path):
    scan = corpus["non-utf8-name-valid"].path
    run_dir = tmp_path / os.fsdecode(b"run-\xe9")
    code, out, err = run_cli(COMMANDS["fit"](str(scan), "", str(run_dir)))
    assert code == 0, err
    assert "\\xe9" in (run_dir / "log").read_text(encoding="utf-8")  # logged escaped, still UTF-8
    assert json.loads((run_dir / "config.json").read_text())["scan"] == str(scan.resolve())
    code, out, err = run_cli(["eval", str(run_dir), str(good["mesh"]), "--n-samples", "500"])
    assert code == 0, err
    assert (run_dir / "eval.json").is_file()


def test_eval_accepts_a_ground_truth_mesh_with_few_vertices(good, tmp_path):
    """Regression: recon eval refused any GT with fewer than 16 vertices, such as a cube."""
    cube = trimesh.creation.box(extents=(1.1, 1.1, 1.1))
    pred = save_mesh(tmp_path / "pred.ply", cube.vertices, cube.faces)
    code, out, err = run_cli(["eval", str(pred), str(good["mesh"]), "--n-samples", "2000"])
    assert code == 0, err
    assert "Chamfer-L1" in out


def test_eval_states_when_a_large_point_set_was_subsampled(good, tmp_path):
    points = sphere_points(3000, radius=0.5, seed=1)[0]
    pred = save_point_cloud(tmp_path / "pred.npy", points)
    code, out, err = run_cli(["eval", str(pred), str(good["mesh"]), "--n-samples", "1000"])
    assert code == 0, err
    assert "prediction: a random subset of 1000 of its 3000 points was used" in out


def test_batch_records_one_line_per_broken_task_and_fails(corpus, good, tmp_path):
    """Each broken scan is one failed task with a one-line ERROR (run in-process, task by task)."""
    entries = [
        {"id": f"case{i}", "scan": str(case.path), "gt": str(good["mesh"])}
        for i, case in enumerate(corpus.values())
        if case.kind != "valid"
    ]
    settings = BatchSettings(preset="tiny", steps=2, poisson_depth=5, eval_samples=1000, thumbnails=False)
    tasks = plan_tasks(entries, ["levelset", "poisson"], tmp_path / "bench", settings, threads=1)
    for task in tasks:
        result = run_task(task)
        if task.scan.endswith("plane.ply") and task.method == "poisson":
            continue
        assert result.status == "failed", (task.scan, task.method, result)
        error = (Path(task.run_dir) / "ERROR").read_text()
        assert error.count("\n") == 1 and error.strip() == result.message
        assert not (Path(task.run_dir) / "mesh.ply").exists()


@pytest.mark.slow
def test_batch_cli_exits_non_zero_with_broken_scans(corpus, good, tmp_path):
    import subprocess

    from recon.data.manifest import write_manifest

    data = tmp_path / "data"  # a manifest's files must lie inside its folder
    data.mkdir()
    gt = data / "gt.ply"
    gt.write_bytes(good["mesh"].read_bytes())
    rows = []
    for name in ("ply-nan", "empty"):
        scan = data / corpus[name].path.name
        scan.write_bytes(corpus[name].path.read_bytes())
        rows.append({"id": name, "scan": scan, "gt": gt, "source": "t", "n_points": 1, "units": ""})
    write_manifest(data, rows)
    proc = subprocess.run(
        [sys.executable, "-m", "recon.cli.main", "batch", str(data), "-o", str(tmp_path / "bench"),
         "--methods", "poisson", "--preset", "tiny", "--no-thumbnails", "--eval-samples", "1000"],
        capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "2 tasks" in proc.stdout and "2 failed" in proc.stdout
    for name in ("ply-nan", "empty"):
        assert (tmp_path / "bench" / "runs" / name / "poisson" / "ERROR").is_file()


# -------------------------------------------------------------------------------- tampered run folders


@pytest.fixture(scope="module")
def fitted(good, tmp_path_factory):
    from recon.core.config import tiny_preset
    from recon.core.reconstruct import fit_scan

    run_dir = tmp_path_factory.mktemp("fitted") / "run"
    config = tiny_preset().with_(steps=10, resolution=16, device="cpu")
    fit_scan(good["scan"], run_dir, config, thumbnail=False)
    return run_dir


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch recon-pwned",))


def _replace(path: Path, content) -> None:
    if callable(content):
        content(path)
    elif content is None:
        path.unlink()
    else:
        path.write_bytes(content)


TAMPERED = {
    "checkpoint garbage": ("checkpoints/latest.pt", os.urandom(2000), "not a valid recon checkpoint"),
    "checkpoint truncated": ("checkpoints/latest.pt", lambda p: p.write_bytes(p.read_bytes()[:900]),
                             "not a valid recon checkpoint"),
    "checkpoint with code": ("checkpoints/latest.pt", lambda p: torch.save({"model": _Payload()}, p),
                             "not a valid recon checkpoint"),
    "foreign checkpoint": ("checkpoints/latest.pt", lambda p: torch.save({"weights": torch.ones(3)}, p),
                           "not a recon checkpoint (missing model"),
    "checkpoint of another model": (
        "checkpoints/latest.pt",
        lambda p: torch.save(torch.load(p, weights_only=True) | {"model": {"w": torch.ones(2)}}, p),
        "does not fit this run's model",
    ),
    "config not JSON": ("config.json", b"{oops", "config.json is corrupt"),
    "config with unknown keys": ("config.json", b'{"__reduce__": "os.system"}', "unknown config keys"),
    "config with bad values": ("config.json", b'{"steps": -3}', "not a valid fit config"),
    "normalization not an object": ("normalization.json", b"[1, 2]", "normalization.json is corrupt"),
    "normalization zero scale": ("normalization.json", b'{"center": [0, 0, 0], "scale": 0}',
                                 "is not positive"),
    "scan points garbage": ("scan_points.npz", b"PK\x03\x04xx", "scan points are unusable"),
    "scan points missing": ("scan_points.npz", None, "has no scan_points.npz"),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(TAMPERED))
def test_tampered_run_folders_are_refused_with_one_line(fitted, damage, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(fitted, run_dir)
    (run_dir / "DONE").unlink()
    name, content, match = TAMPERED[damage]
    _replace(run_dir / name, content)
    monkeypatch.chdir(tmp_path)
    for args in (["fit", "--resume", str(run_dir)], ["extract", str(run_dir), "--resolution", "16"]):
        code, _, err = run_cli(args)
        line = assert_one_line_error(code, err)
        assert code == 2 and match in line, line
    assert not (tmp_path / "recon-pwned").exists()
    assert not (run_dir / "mesh_16.ply").exists()


# ---------------------------------------------------------------------------------------- outputs


def test_nothing_is_overwritten_without_force(fitted, good, tmp_path):
    mesh = fitted / "mesh.ply"
    before = mesh.read_bytes()
    user_file = tmp_path / "mine.json"
    user_file.write_text("keep me")
    attempts = [
        (["fit", str(good["scan"]), "-o", str(fitted), "--preset", "tiny", "--quiet"], "--force"),
        (["extract", str(fitted), "-o", str(mesh)], "--force"),
        (["eval", str(mesh), str(good["mesh"]), "--json", str(user_file)], "--force"),
        (["baseline", "poisson", str(good["scan"]), "-o", str(fitted)], "--force"),
        (["view", str(mesh), "--screenshot", str(user_file), "--renderer", "software"], "--force"),
    ]
    for args, hint in attempts:
        code, _, err = run_cli(args)
        assert hint in assert_one_line_error(code, err)
    assert mesh.read_bytes() == before and user_file.read_text() == "keep me"


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"id": "../../escape", "scan": "s.ply"}, "not a plain name"),
        ({"id": "a/b", "scan": "s.ply"}, "not a plain name"),
        ({"id": "ok", "scan": "../outside.ply"}, "leaves the manifest's folder"),
        ({"id": "ok", "scan": "/etc/passwd"}, "leaves the manifest's folder"),
        ({"id": "ok", "scan": "s.ply", "gt": "../../gt.ply"}, "leaves the manifest's folder"),
    ],
)
def test_manifest_paths_cannot_escape(tmp_path, row, match):
    folder = tmp_path / "data"
    folder.mkdir()
    save_point_cloud(folder / "s.ply", sphere_points(100)[0])
    manifest = {"entries": [{"gt": "", "variant": "", "source": "", "n_points": 100, "units": ""} | row]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=match):
        entries = load_manifest(folder / "manifest.json", check_files=False)
        plan_tasks(entries, ["poisson"], tmp_path / "bench", BatchSettings())


def test_a_symlinked_run_folder_leaving_the_bench_is_refused(tmp_path):
    bench = tmp_path / "bench"
    (bench / "runs").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (bench / "runs" / "x").symlink_to(outside)
    entries = [{"id": "x", "scan": str(tmp_path / "s.ply"), "gt": None}]
    (task,) = plan_tasks(entries, ["poisson"], bench, BatchSettings())
    result = run_task(task)
    assert result.status == "failed" and "leaves the benchmark folder" in result.message
    assert not any(outside.iterdir())


def test_gigantic_but_legal_coordinates_are_fitted_in_their_own_frame(tmp_path):
    """1e9-sized coordinates (e.g. millimetres of a far-away site) normalize and come back."""
    from recon.core.config import tiny_preset
    from recon.core.reconstruct import fit_scan

    points, normals = sphere_points(800, radius=3e6, seed=2)
    scan = save_point_cloud(tmp_path / "far.ply", points + 1e9, normals)
    config = tiny_preset().with_(steps=5, resolution=16, device="cpu")
    result = fit_scan(scan, tmp_path / "run", config, thumbnail=False)
    vertices = load_scan(result.mesh_path, min_points=3).points
    assert np.all(np.isfinite(vertices))
    assert np.abs(vertices.mean(axis=0) - 1e9).max() < 1e7


def test_run_folder_errors_are_run_dir_errors(tmp_path):
    from recon.core.reconstruct import extract_run

    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "nothing", tmp_path / "file"):
        with pytest.raises(RunDirError):
            extract_run(path)


# ------------------------------------------------------- sibling modules: options that make no sense

NONSENSE_OPTIONS = {
    "robust train --lr -1": ["robust", "train", "--method", "standard", "--dataset", "digits", "--lr", "-1"],
    "robust train --lr nan": ["robust", "train", "--method", "standard", "--dataset", "digits", "--lr", "nan"],
    "robust train levelset --eps nan": ["robust", "train", "--method", "levelset", "--dataset", "digits",
                                        "--eps", "nan"],
    "robust train --eps-wrong inf": ["robust", "train", "--method", "levelset", "--eps-wrong", "inf"],
    "robust train --steps 0": ["robust", "train", "--method", "standard", "--steps", "0"],
    "robust train --steps 1.5": ["robust", "train", "--method", "standard", "--steps", "1.5"],
    "lipschitz train --lr nan": ["lipschitz", "train", "--lr", "nan"],
    "lipschitz train --widths 255": ["lipschitz", "train", "--widths", "255", "--epochs", "1"],
    "lipschitz train --widths 256 --group-size 3": ["lipschitz", "train", "--widths", "256", "--group-size",
                                                     "3", "--epochs", "1"],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(NONSENSE_OPTIONS))
def test_nonsense_training_options_are_refused_before_anything_is_written(tmp_path, case):
    run = tmp_path / "run"
    code, _, err = run_cli([*NONSENSE_OPTIONS[case], "-o", str(run)])
    assert code == 2, err
    assert "Traceback" not in err and err.strip()
    assert not run.exists()


@pytest.mark.parametrize(
    "options", [["--eps", "nan"], ["--eps", "inf"], ["--eps", "-0.1"], ["--eps", "0.1", "--step-size", "-1"]]
)
def test_nonsense_attack_budgets_are_refused(tmp_path, options):
    run = tmp_path / "run"
    run.mkdir()
    code, _, err = run_cli(["robust", "attack", str(run), *options])
    assert code == 2 and "Traceback" not in err and err.strip()
    assert list(run.iterdir()) == []


@pytest.mark.parametrize("eps", ["nan", "0.1,inf"])
def test_lipschitz_certify_refuses_a_non_finite_radius(tmp_path, eps):
    run = tmp_path / "run"
    run.mkdir()
    assert_one_line_error(*run_cli(["lipschitz", "certify", str(run), "--eps", eps])[::2])
    assert list(run.iterdir()) == []


def test_lipschitz_certify_of_an_empty_model_file_is_one_clear_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"")
    code, _, err = run_cli(["lipschitz", "certify", str(run), "--eps", "0.5"])
    line = assert_one_line_error(code, err)
    assert code == 2 and "model.pt" in line and "aborted" not in err


# ------------------------------------------- sibling modules: every numeric option, damaged run folders


def _numeric_options() -> list[tuple[str, str, str]]:
    """(command path, option flag, 'int' | 'float') of every numeric option of ``recon robust`` and
    ``recon lipschitz``, their groups' own options and comma lists of numbers included."""
    import click

    from recon.cli.main import cli
    from recon.cli.options import CommaList

    found = []

    def visit(command: click.Command, path: str) -> None:
        for param in command.params:
            kind = param.type
            if isinstance(kind, CommaList) and kind.item in (int, float):
                found.append((path, param.opts[0], kind.item.__name__))
            elif isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
                found.append(
                    (path, param.opts[0], "int" if isinstance(kind, click.types.IntParamType) else "float")
                )
        if isinstance(command, click.Group):
            for name in command.list_commands(click.Context(command)):
                visit(command.get_command(click.Context(command), name), f"{path} {name}")

    for name in ("robust", "lipschitz"):
        visit(cli.get_command(click.Context(cli), name), name)
    return found


NUMERIC_OPTIONS = _numeric_options()


@pytest.mark.parametrize(
    ("path", "flag", "kind"), NUMERIC_OPTIONS, ids=[f"{p} {f}" for p, f, _ in NUMERIC_OPTIONS]
)
def test_every_numeric_option_refuses_what_is_not_a_finite_number_in_one_line(path, flag, kind):
    for value in ["nan", "inf", "-inf", "1e400", "ten", ""] + (["1.5"] if kind == "int" else []):
        code, _, err = run_cli([*path.split(), flag, value])
        line = assert_one_line_error(code, err)
        assert code == 2 and flag in line, (value, line)


SEED_OPTIONS = [(p, f) for p, f, _ in NUMERIC_OPTIONS if f in ("--seed", "--seeds")]


@pytest.mark.parametrize(("path", "flag"), SEED_OPTIONS, ids=[f"{p} {f}" for p, f in SEED_OPTIONS])
def test_every_seed_outside_0_to_2_to_the_32_is_refused_in_one_line(path, flag, tmp_path):
    out = tmp_path / "out"
    # a comma list of seeds is parsed first and checked by the config, before anything is written
    extra = ["-o", str(out)] if path == "robust fewshot" else []
    for value in ("-1", str(2**32), str(2**64)):
        code, _, err = run_cli([*path.split(), flag, value, *extra])
        line = assert_one_line_error(code, err)
        assert code == 2 and flag in line, (value, line)
    assert not out.exists()


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    """A 1-epoch robust training run (digits MLP) to damage."""
    from recon.robust.train import TrainConfig, train_run

    config = TrainConfig(arch="mlp", epochs=1, limit=32, test_limit=10, device="cpu")
    return train_run(config, tmp_path_factory.mktemp("robust") / "run").run_dir


def _foreign_state(path: Path) -> None:
    """A checkpoint whose model weights belong to another network (same keys, other shapes)."""
    state = torch.load(path, weights_only=True)
    state["model"] = {key: value[:1] for key, value in state["model"].items()}
    torch.save(state, path)


CHECKPOINT_DAMAGE = {
    "empty": lambda path: path.write_bytes(b""),
    "random bytes": lambda path: path.write_bytes(np.random.default_rng(0).bytes(4096)),
    "a tensor": lambda path: torch.save(torch.zeros(3), path),
    "a Lipschitz classifier": lambda path: torch.save(
        {"config": {}, "state_dict": {}, "n_classes": 10}, path
    ),
    "another network's weights": _foreign_state,
}
CONFIG_DAMAGE = {
    "empty": "",
    "random bytes": np.random.default_rng(1).bytes(300),
    "no model spec": json.dumps({"config": {"method": "standard"}}),
    "empty sections": json.dumps({"config": {}, "model": {}}),
    "unknown architecture": "ARCH",
    "a number for the dataset": "DATASET",
}
ROBUST_COMMANDS = {
    "attack": ["robust", "attack", "{run}", "--eps", "0.1", "--attack", "fgsm", "--n", "5"],
    "geometry": ["robust", "geometry", "{run}", "--n", "5"],
    "resume": ["robust", "train", "--resume", "-o", "{run}", "--epochs", "2", "--quiet"],
    "table": ["robust", "table", "{run}"],
}


def _damaged_copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "DONE").unlink(missing_ok=True)
    return copy


def _assert_refused_in_one_line(argv: list[str], run: Path, name: str) -> None:
    code, _, err = run_cli([arg.replace("{run}", str(run)) for arg in argv])
    line = assert_one_line_error(code, err)
    assert code == 2 and name in line and "aborted" not in err, line


@pytest.mark.parametrize("command", ["attack", "geometry", "resume"])
@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_a_damaged_or_foreign_robust_checkpoint_is_one_line(robust_run, tmp_path, damage, command):
    run = _damaged_copy(robust_run, tmp_path)
    CHECKPOINT_DAMAGE[damage](run / "checkpoints" / "latest.pt")
    _assert_refused_in_one_line(ROBUST_COMMANDS[command], run, "latest.pt")


@pytest.mark.parametrize("command", sorted(ROBUST_COMMANDS))
@pytest.mark.parametrize("damage", sorted(CONFIG_DAMAGE))
def test_a_damaged_robust_config_is_one_line(robust_run, tmp_path, damage, command):
    run = _damaged_copy(robust_run, tmp_path)
    content = CONFIG_DAMAGE[damage]
    if content in ("ARCH", "DATASET"):
        spec = json.loads((run / "config.json").read_text())
        if content == "ARCH":
            spec["model"]["arch"] = "resnet-1000"
        else:
            spec["config"]["dataset"] = 5
        content = json.dumps(spec)
    (run / "config.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    _assert_refused_in_one_line(ROBUST_COMMANDS[command], run, str(run))


LIPSCHITZ_DAMAGE = {
    "random bytes": lambda path: path.write_bytes(np.random.default_rng(2).bytes(4096)),
    "a tensor": lambda path: torch.save(torch.zeros(3), path),
    "a robust checkpoint": lambda path: torch.save({"model": {}, "optimizer": {}, "epoch": 1}, path),
    "another network's weights": lambda path: torch.save(
        {"config": {"widths": [8]}, "n_classes": 10, "input_shape": [1, 8, 8], "state_dict": {}}, path
    ),
}


@pytest.mark.parametrize("damage", sorted(LIPSCHITZ_DAMAGE))
def test_a_foreign_lipschitz_model_file_is_one_short_line(tmp_path, damage):
    LIPSCHITZ_DAMAGE[damage](tmp_path / "model.pt")
    code, _, err = run_cli(["lipschitz", "certify", str(tmp_path), "--eps", "0.5"])
    line = assert_one_line_error(code, err)
    assert code == 2 and "model.pt" in line and len(line) < 200 and "aborted" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["robust", "fewshot", "-o", "{tmp}/out", "--k", "0"],
        ["robust", "fewshot", "-o", "{tmp}/out", "--seeds", "1,-1"],
        ["lipschitz", "abs", "-o", "{tmp}/out", "--widths", "64,0"],
        ["lipschitz", "train", "-o", "{tmp}/out", "--widths", "-4"],
        ["robust", "attack", "{tmp}/out", "--eps", "0"],
    ],
    ids=" ".join,
)
def test_values_that_parse_but_make_no_sense_are_one_line(tmp_path, argv):
    code, _, err = run_cli([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    assert_one_line_error(code, err)
    assert code == 2 and not (tmp_path / "out").exists()
