#!/usr/bin/env bash
# Issue 10 item 3: does starting the MAS arm from the MAS-ready model remove its early loss gap?
# Same data, order, seed and recipe as the reproduction run (4,000 mixed rows, seed 42, batch 4x4), first 50 steps.
# usage: early_loss.sh "mas smollm2-135m-instruct base" ...
cd "$(dirname "$0")/.."
for arm in "$@"; do
  set -- $arm
  OMP_NUM_THREADS=1 .venv/bin/segmask train ../shared/data/commonsense --mask $1 --model $2 --max-examples 4000 \
    --max-steps 50 --logging-steps 5 --save-steps 1000 --threads 1 --quiet --out runs/early-$1-$3 > runs/early-$1-$3.log 2>&1
done
