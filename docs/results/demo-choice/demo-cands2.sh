#!/bin/bash
# Queued 21:40, before c4's or c5's val figure: c6 = LoRA dropout 0 on the top 15 layers only (backprop
# stops there: 1.5x faster steps in bench/results/lora-depth-cpu.json), 1.5 epochs (180 steps). Same rule.
set -x
while pgrep -f demo-cands.sh >/dev/null; do sleep 20; done
B=.venv/bin
[ -f runs/dc-c6/summary.json ] || $B/pricetune train --preset demo --output-dir runs/dc-c6 --overwrite --lora-dropout 0 --lora-layers 15 --epochs 1.5
[ -f runs/dsel-c6/select.json ] || $B/pricetune select --dataset demo --train-size 1920 --member runs/dc-c6 --member tfidf --member tfidf-knn --member median --batch-size 32 --out runs/dsel-c6
echo DEMODONE2
