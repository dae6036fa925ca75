"""Dataset runs: one idempotent task per (scan, method), on local processes or a Dask cluster.

A benchmark folder (BENCH_DIR) holds::

    batch.json                     the settings every task of this folder was run with
    runs/<scan id>/<method>/       one run folder per task (RunFolder conventions)
        config.json meta.json mesh.ply [thumbnail.png] eval.json DONE     finished
        ERROR error.txt                                                   failed: one line + traceback
        task.json                                                         the task (scan, GT, variant)
        .lock                                                             claim, locked while a task runs
        poisson_configs.json                                              poisson-best: every config tried

A task fits (or runs a baseline), evaluates against the ground truth, writes ``eval.json`` and then
``DONE``. Every step is skipped when its output is already on disk, so a rerun does only what is missing:
a killed batch restarted on the same folder finishes the missing tasks, and a levelset fit that was cut
short resumes from its checkpoint. A task holds an exclusive ``flock`` on its ``.lock`` file while it runs;
the kernel drops the lock when the process dies, so a crashed batch never leaves a claim that blocks the
next one, and two batches on one folder never run the same task twice at the same time.

The pieces live beside this module: ``plan`` (the method table, settings and tasks), ``claims`` (a run
folder's status, claim and failure record), ``methods`` (one task: its method and its evaluation) and
``executors`` (local processes, Dask); here a batch is run and ``batch.json`` kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from recon.atomic import read_json, write_json
from recon.errors import InputError, RunDirError
from recon.evaluation.claims import error_line, task_status
from recon.evaluation.executors import run_dask, run_local
from recon.evaluation.plan import (
    DEFAULT_METHODS,
    DERIVED,
    BatchSettings,
    Task,
    TaskResult,
    dataset_entries,
    plan_tasks,
)

_COMPARED_SETTINGS = (
    "preset",
    "steps",
    "atlasnet_steps",
    "poisson_depth",
    "poisson_trim",
    "poisson_best_depths",
    "seed",
    "eval_samples",
)


def run_batch(
    dataset: str | os.PathLike,
    bench_dir: str | os.PathLike,
    methods: list[str] | tuple[str, ...] = DEFAULT_METHODS,
    settings: BatchSettings | None = None,
    *,
    executor: str = "local",
    jobs: int = 1,
    scheduler: str | None = None,
    threads: int | None = None,
    retry_failed: bool = True,
    force: bool = False,
    progress: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Run every (scan, method) task of ``dataset`` into ``bench_dir``; finished tasks are skipped.

    Parameters
    ----------
    executor : {'local', 'dask'}
        'local': each task in its own spawned process, ``jobs`` at a time. 'dask': tasks on the Dask
        cluster at ``scheduler`` (every worker must see ``dataset`` and ``bench_dir`` under the same
        paths), or on a local cluster of ``jobs`` worker processes when no address is given.
    threads : int, optional
        Torch and solver threads per task. Default: this machine's cores // ``jobs``, or the workers'
        own default on a remote Dask cluster. Results are reproducible for a fixed thread count.
    retry_failed : bool
        Run tasks that failed before again (else they keep their ERROR).
    force : bool
        Redo every task, and accept settings that differ from the folder's batch.json.
    progress : callable, optional
        Called with each TaskResult as it arrives.

    Returns
    -------
    list of TaskResult
        In the order tasks completed.
    """
    settings = settings or BatchSettings()
    settings.fit_config()
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    bench = Path(bench_dir)
    entries = dataset_entries(dataset)
    if threads is None and scheduler is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = plan_tasks(entries, methods, bench, settings, threads=threads, force=force)
    _record_settings(bench, settings, force)
    report = progress or (lambda _result: None)
    finished: list[TaskResult] = []
    pending: list[Task] = []
    for task in tasks:
        status = task_status(task.run_dir)
        if not force and (status == "finished" or (status == "failed" and not retry_failed)):
            skipped = "skipped" if status == "finished" else "failed"
            message = "" if status == "finished" else error_line(task.run_dir)
            result = TaskResult(task.scan_id, task.method, skipped, 0.0, message, task.run_dir)
            report(result)
            finished.append(result)
        else:
            pending.append(task)
    if not pending:
        return finished
    if executor not in ("local", "dask"):
        raise InputError(f"unknown executor {executor!r}; choose local or dask")
    # A derived task evaluates its source's results, so the sources of this batch finish first.
    primary = [task for task in pending if task.method not in DERIVED]
    derived = [task for task in pending if task.method in DERIVED]
    for wave in (primary, derived):
        if not wave:
            continue
        if executor == "local":
            finished += run_local(wave, jobs, report)
        else:
            finished += run_dask(wave, scheduler, jobs, report)
    return finished


def _record_settings(bench: Path, settings: BatchSettings, force: bool) -> None:
    """Write batch.json; refuse settings that differ from those the folder's results were made with."""
    path = bench / "batch.json"
    mine = _as_json(asdict(settings))
    if path.is_file() and not force:
        try:
            theirs = read_json(path).get("settings", {})
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{path} is corrupt ({exc}); pass --force to start the folder afresh") from exc
        # A setting added after the folder was made was at its default there.
        defaults = _as_json(asdict(BatchSettings()))
        differ = [k for k in _COMPARED_SETTINGS if theirs.get(k, defaults[k]) != mine[k]]
        if differ:
            listed = ", ".join(f"{k} {theirs.get(k)!r} (now {mine[k]!r})" for k in differ)
            raise RunDirError(f"{bench} was run with {listed}; use another -o, or --force to redo every task")
    bench.mkdir(parents=True, exist_ok=True)
    write_json(
        path, {"format": "recon-batch/1", "settings": mine, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    )


def _as_json(settings: dict) -> dict:
    """``settings`` as read back from JSON (tuples become lists), for comparison with batch.json."""
    return json.loads(json.dumps(settings))
