"""Where a batch's tasks run: each in its own spawned local process, or on a Dask cluster. Both report each
result as it arrives, and record a task whose worker died without one."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

from recon.errors import ReconError
from recon.evaluation.claims import record_failure, task_status
from recon.evaluation.methods import run_task
from recon.evaluation.plan import Task, TaskResult


def run_local(tasks: list[Task], jobs: int, progress: Callable[[TaskResult], None]) -> list[TaskResult]:
    """Each task in its own spawned process, ``jobs`` at a time.

    One process per task rather than a shared pool: a native crash (a segfault in a mesh library, the OOM
    killer) then fails that task only, where it would break every pending future of a process pool.
    """
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_in_child, context, task, stop) for task in tasks]
        try:
            for future in as_completed(futures):
                result = future.result()
                progress(result)
                results.append(result)
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise
    return results


def _run_in_child(context, task: Task, stop: threading.Event) -> TaskResult:
    if stop.is_set():
        return TaskResult(task.scan_id, task.method, "cancelled", 0.0, "batch interrupted", task.run_dir)
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(task, send, os.getpid()), daemon=True)
    start = time.perf_counter()
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        process.join()
        result = _died(task, f"worker process died (exit code {process.exitcode})", start)
    finally:
        receive.close()
    process.join()
    return result


def _child_main(task: Task, send, parent: int) -> None:
    _die_with_parent(parent)
    try:
        send.send(run_task(task))
    except KeyboardInterrupt:
        # Ctrl-C reaches every process of the terminal; an interrupted fit has saved its checkpoint.
        send.send(TaskResult(task.scan_id, task.method, "cancelled", 0.0, "interrupted", task.run_dir))
    finally:
        send.close()


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the batch process dies (Linux; elsewhere a no-op).

    A batch killed with SIGKILL cannot stop its workers; without this they would run on, holding their
    claims, and a restarted batch would find those tasks busy. Killed instead, they leave a resumable
    checkpoint and the restarted batch finishes their work.
    """
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the batch died before the request took effect
        os._exit(1)


def _died(task: Task, reason: str, start: float) -> TaskResult:
    """Record a task whose worker vanished without a word (only if the task itself left no outcome)."""
    if task_status(task.run_dir) != "finished":
        record_failure(task.run_dir, ReconError(reason))
    seconds = round(time.perf_counter() - start, 3)
    return TaskResult(task.scan_id, task.method, "failed", seconds, reason, task.run_dir)


def run_dask(
    tasks: list[Task], scheduler: str | None, jobs: int, progress: Callable[[TaskResult], None]
) -> list[TaskResult]:
    """Tasks on the Dask scheduler at ``scheduler``, or on a local cluster of ``jobs`` processes."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ReconError("the Dask executor needs dask.distributed: pip install 'dask[distributed]'") from exc

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    try:
        client = Client(cluster if cluster is not None else scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ReconError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    results = []
    try:
        start = time.perf_counter()
        futures = {
            client.submit(
                run_task, task, key=f"recon-{task.scan_id}-{task.method}-{os.getpid()}", pure=False
            ): task
            for task in tasks
        }
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker fails its task, not the batch
                result = _died(futures[future], f"Dask worker failed: {type(exc).__name__}: {exc}", start)
            progress(result)
            results.append(result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results
