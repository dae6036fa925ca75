#!/usr/bin/env bash
# Semantic robustness benchmark at a size a shared 2-core CPU allows (see README.md for the numbers).
# Usage: bench/robust/semantic/run.sh [OUT]   (default OUT: bench/robust/semantic/out, not committed)
# ARCHS (default "cnn mlp") picks the architectures, PRIOR (default uniform, as in the README's results table;
# the command's own default is canonical) the training viewpoints.
set -euo pipefail
OUT=${1:-bench/robust/semantic/out}
RECON=${RECON:-recon}
ARCHS=${ARCHS:-cnn mlp}
PRIOR=${PRIOR:-uniform}
COMMON=(--size 32 --points 1500 --per-class 30 --epochs 8 --images-per-epoch 1600 --seed 0 --prior "$PRIOR")
RUNS=()
for ARCH in $ARCHS; do
  /usr/bin/time -f "train $ARCH: %e s" nice -n 10 "$RECON" robust semantic train -o "$OUT/$ARCH" --arch "$ARCH" "${COMMON[@]}" --force
  /usr/bin/time -f "map $ARCH: %e s" nice -n 10 "$RECON" robust semantic map "$OUT/$ARCH" --shapes train --force
  RUNS+=("$OUT/$ARCH")
done
# The reference runs 800 steps from 4 initial points on 100 shapes; 150 steps on 3 shapes fit the CPU budget.
/usr/bin/time -f "srvr: %e s" nice -n 10 "$RECON" robust semantic srvr "${RUNS[@]}" \
  --shapes cow,man,fandisk --steps 150 -o "$OUT/srvr" --force
