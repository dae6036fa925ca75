"""A task's run folder: its status read from disk, the ``flock`` claim a running task holds, the record of
a failure (``ERROR``, ``error.txt``), and the checks and clean-up before a task writes there."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from recon.atomic import write_text
from recon.errors import ReconError, RunDirError

STATUS_FILES = ("eval.json", "DONE", "ERROR", "error.txt")


def task_status(run_dir: str | os.PathLike) -> str:
    """'finished' (eval.json and DONE), 'failed' (ERROR) or 'pending', read from the folder."""
    run_dir = Path(run_dir)
    if (run_dir / "eval.json").is_file() and (run_dir / "DONE").is_file():
        return "finished"
    return "failed" if (run_dir / "ERROR").is_file() else "pending"


@contextlib.contextmanager
def task_claim(run_dir: str | os.PathLike, *, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on ``run_dir/.lock`` for the block; yields False when another process has it
    (with ``wait``, waits for it instead and yields True).

    ``flock`` locks belong to the open file and vanish with the process, so a claim can never go stale.
    """
    import fcntl

    lock_path = Path(run_dir) / ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode())
        yield True
    finally:
        os.close(fd)


def record_failure(run_dir: str | os.PathLike, exc: BaseException) -> str:
    """Write ``ERROR`` (one line) and ``error.txt`` (the traceback) into ``run_dir``; return the line."""
    if isinstance(exc, ReconError):
        line = str(exc)
    else:
        line = f"{type(exc).__name__}: {exc}"
    line = _utf8(" ".join(line.split()) or type(exc).__name__)
    with contextlib.suppress(OSError):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        write_text(Path(run_dir) / "error.txt", _utf8(details))
        write_text(Path(run_dir) / "ERROR", line + "\n")
    return line


def _utf8(text: str) -> str:
    """``text`` with the undecodable bytes of non-UTF-8 file names written as \\xNN, so it can be saved."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_inside_bench(run_dir: Path) -> None:
    """A run folder must stay inside BENCH_DIR/runs even when a part of the path is a symlink."""
    runs = run_dir.parent.parent
    if not run_dir.resolve().is_relative_to(runs.resolve()) or runs.name != "runs":
        raise RunDirError(f"{run_dir} leaves the benchmark folder (a symlink?); refusing to write there")


def clear_status(run_dir: Path, everything: bool) -> None:
    """Forget an earlier failure; with ``everything`` also the earlier results (a forced redo)."""
    names = (*STATUS_FILES, "mesh.ply", "poisson_configs.json") if everything else ("ERROR", "error.txt")
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()


def error_line(run_dir: str) -> str:
    """The one line of ``run_dir/ERROR``; empty when there is none."""
    with contextlib.suppress(OSError):
        return (Path(run_dir) / "ERROR").read_text().strip()
    return ""
