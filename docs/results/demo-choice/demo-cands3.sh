#!/bin/bash
# 22:04, after c5's val figure (mean pooling: model $644, pipeline $523 cv): c6 (last-token pooling)
# stopped before its val figure; c7 = c5's settings on the top 15 layers only, 1.5 epochs (180 steps).
# Same rule as demo-cands.sh.
set -x
B=.venv/bin
[ -f runs/dc-c7/summary.json ] || $B/pricetune train --preset demo --output-dir runs/dc-c7 --overwrite --lora-dropout 0 --regress-pooling mean --lora-layers 15 --epochs 1.5
[ -f runs/dsel-c7/select.json ] || $B/pricetune select --dataset demo --train-size 1920 --member runs/dc-c7 --member tfidf --member tfidf-knn --member median --batch-size 32 --out runs/dsel-c7
echo DEMODONE3
