#!/usr/bin/env bash
# Small real experiment: standard vs madry vs levelset on scikit-learn digits (8x8), SmallCNN, L∞ ε = 0.1.
# Usage: bash bench/robust/run_digits.sh OUT_DIR   (one CPU thread; ~minutes per method)
set -euo pipefail
OUT=${1:-bench/robust/digits}
export OMP_NUM_THREADS=1
RECON=${RECON:-.venv/bin/recon}
for method in standard madry levelset; do
  /usr/bin/time -f "$method train %e s" $RECON robust train --method $method --dataset digits --arch small-cnn \
    --epochs 20 --eps 0.1 --seed 0 --device cpu --force -o "$OUT/$method"
  /usr/bin/time -f "$method attack %e s" $RECON robust attack "$OUT/$method" --attack all --eps 0.1 --n 450 --force
done
$RECON robust table "$OUT"/standard "$OUT"/madry "$OUT"/levelset | tee "$OUT/table.md"
