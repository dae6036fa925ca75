#!/usr/bin/env bash
# Reproduces the numbers in bench/lipschitz/README.md (CPU, one torch thread; about 15 minutes on 2 busy cores).
set -euo pipefail
cd "$(dirname "$0")"
R="nice -n 10 ../../.venv/bin/recon lipschitz --threads 1"
$R abs -o abs --force
$R wasserstein gauss:dim=1,shift=1,n=2000 gauss:dim=1,n=2000 -o w1-gauss1d-shift --force
$R wasserstein gauss:dim=1,n=2000 gauss:dim=1,std=2,n=2000 -o w1-gauss1d-std --force
$R wasserstein gauss:dim=2,shift=1,n=2000 gauss:dim=2,n=2000 -o w1-gauss2d-shift --force
$R wasserstein example:bunny example:bunny --shift-b 0.01,0.005,0 -o w1-bunny-shifted --force
$R wasserstein example:face example:bunny -o w1-face-bunny --force
$R train digits -o digits-bjorck --force
$R certify digits-bjorck --eps 0.1,0.25,0.5,0.75,1.0 --force
$R certify digits-bjorck --norm linf --eps 0.01,0.02,0.05,0.1 --force
$R train digits --layer linf --margin 0.3 -o digits-linf --force
$R certify digits-linf --norm linf --eps 0.01,0.02,0.05,0.1 --force
$R train digits --activation relu -o digits-bjorck-relu --force
$R certify digits-bjorck-relu --eps 0.1,0.25,0.5,0.75,1.0 --force
$R sdf example:bunny -o sdf-bunny --force  # 800 steps, lr 5e-3 (the defaults)
