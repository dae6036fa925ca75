#!/bin/bash
# Wall time of `recon fit` for two checkouts, interleaved (A B A B ... per scan) so that drift of a shared
# machine falls on both alike; one JSON line per fit with the mesh's hash (equal hashes: same arithmetic).
#   bash bench/fit_time/interleaved_walls.sh OUT.jsonl CHECKOUT_A CHECKOUT_B BENCH SCAN [SCAN ...]
# A checkout is a git worktree with recon/cli, recon/viewer, recon/data linked as the installed package
# lays them out (see bench/full/README.md); fits run with 2 threads, seed 0, from /tmp.
set -euo pipefail
out=$1; a=$2; b=$3; bench=$4; shift 4
# The venv's own path, not its resolved symlink: the resolved one is the bare interpreter without the venv.
python=${PYTHON:-$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/python}
work=$(mktemp -d)
for scan in "$@"; do
  for rep in 1 2; do
    for code in "$a" "$b"; do
      run=$work/$(basename "$code")-$scan-$rep
      start=$(date +%s.%N)
      (cd /tmp && OMP_NUM_THREADS=2 PYTHONPATH=$code "$python" -m recon.cli.main fit "$bench/scans/$scan.ply" \
        -o "$run" --seed 0 --quiet >/dev/null 2>&1)
      end=$(date +%s.%N)
      printf '{"scan": "%s", "rep": %d, "code": "%s", "wall_s": %.2f, "mesh_sha256": "%s"}\n' \
        "$scan" "$rep" "$(basename "$code")" "$(echo "$end - $start" | bc)" \
        "$(sha256sum "$run/mesh.ply" | cut -c1-16)" >> "$out"
    done
  done
done
rm -rf "$work"
