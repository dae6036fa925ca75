"""Feed every hostile input of tests/hostile_corpus.py to every reader and every command; tabulate.

    nice -n 10 .venv/bin/python bench/robustness_io/run_corpus.py [--json out.json]

Commands run in-process through ``recon.cli.main.main`` (so that an uncaught exception is seen as what
it is) under a 60 s alarm each. An outcome is 'ok' (exit 0), 'error' (non-zero exit with exactly one
line on stderr, no traceback), or a failure: 'TRACEBACK', 'MULTILINE' or 'HANG'.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from hostile_corpus import build_corpus, octahedron, sphere  # noqa: E402

COMMANDS = {
    "fit": lambda x, g, s, o: ["fit", x, "-o", o, "--preset", "tiny", "--steps", "3", "--resolution", "16",
                               "--device", "cpu", "--quiet"],
    "eval (pred)": lambda x, g, s, o: ["eval", x, g, "--n-samples", "2000"],
    "eval (gt)": lambda x, g, s, o: ["eval", g, x, "--n-samples", "2000"],
    "eval (--scan)": lambda x, g, s, o: ["eval", g, g, "--scan", x, "--n-samples", "2000"],
    "baseline poisson": lambda x, g, s, o: ["baseline", "poisson", x, "-o", o],
    "view --screenshot": lambda x, g, s, o: ["view", x, "--screenshot", o + ".png", "--renderer", "software",
                                             "--size", "64x64", "--views", "front"],
    "extract (as run)": lambda x, g, s, o: ["extract", x],
    "data scan": lambda x, g, s, o: ["data", "scan", x, "-o", o + ".ply", "--n-points", "500"],
}  # fmt: skip


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run_command(argv: list[str], timeout: int = 60) -> tuple[str, str]:
    """(outcome, stderr's last line) of ``recon ARGV`` run in-process."""
    from recon.cli.main import main

    err, out = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Hang:
        return "HANG", ""
    except BaseException as exc:  # noqa: BLE001 - this is what the table is about
        return "TRACEBACK", f"{type(exc).__name__}: {exc}"[:160]
    finally:
        signal.alarm(0)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code == 0:
        return "ok", (lines[-1] if lines else "")
    if "Traceback" in err.getvalue():
        return "TRACEBACK", lines[-1] if lines else ""
    if len(lines) != 1:
        return "MULTILINE", " | ".join(lines)[:160]
    return "error", lines[0]


def readers(case) -> dict[str, tuple[str, str]]:
    from recon.errors import InputError
    from recon.io import load_mesh, load_scan

    outcomes = {}
    for name, reader in (("load_scan", load_scan), ("load_mesh", load_mesh)):
        try:
            reader(case.path)
            outcomes[name] = ("ok", "")
        except InputError as exc:
            one_line = "\n" not in str(exc)
            outcomes[name] = ("error" if one_line else "MULTILINE", str(exc))
        except BaseException as exc:  # noqa: BLE001
            outcomes[name] = ("TRACEBACK", f"{type(exc).__name__}: {exc}"[:160])
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from recon.io import save_mesh, save_point_cloud

    work = Path(tempfile.mkdtemp(prefix="recon-corpus-"))
    corpus = build_corpus(work / "corpus")
    good_mesh = str(save_mesh(work / "gt.ply", *octahedron()))
    good_scan = str(save_point_cloud(work / "scan.ply", *sphere(800)))
    rows, tally = [], Counter()
    for case in corpus.values():
        if args.only and case.name not in args.only:
            continue
        outcomes = readers(case)
        for command, make in COMMANDS.items():
            out = str(work / "out" / f"{case.name}-{command.split()[0]}")
            outcomes[command] = run_command(make(str(case.path), good_mesh, good_scan, out))
        for command, (outcome, message) in outcomes.items():
            tally[(case.kind, command, outcome)] += 1
            print(f"{case.kind:<10} {case.name:<26} {command:<18} {outcome:<9} {message[:110]}", flush=True)
        rows.append({"case": case.name, "kind": case.kind, "what": case.what, "outcomes": outcomes})
    print()
    for (kind, command, outcome), n in sorted(tally.items()):
        print(f"{kind:<10} {command:<18} {outcome:<9} {n}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
