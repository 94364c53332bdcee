#!/bin/bash
# Does a second epoch pay on amazon-18k? A proxy that fits one session on 2 AVX2 cores.
# Written 2026-12-04 00:22 UTC, before the run (run from the repository root): the learning curve's 1,761-row run (1 epoch, 111 steps,
# val $76.83) and 4,000-row run (1 epoch, 250 steps, val $74.12) are the references; this run is the same
# config and seed over the same 1,761 rows for 2 epochs (222 steps).
# Reading, fixed now: if 2 epochs of 1,761 rows price val within $1.00 of the 4,000-row run or better,
# repeated rows are worth about as much as new ones here, and a second epoch over all 13,494 rows is the
# next lever to train; if within $1.00 of the 1-epoch run (or worse), a second epoch is not; between, it
# is worth part of new rows (report the fraction). Val only; test is not read.
set -x
B=.venv/bin
D=amazon-18k  # shipped with pricetune: the rows of ../shared/data/amazon-18k, where this first ran
$B/pricetune train --config amazon-18k-regress --train-size 1761 --val-size 0 --epochs 2 --output-dir runs/lc-1761-ep2 --overwrite
$B/pricetune evaluate runs/lc-1761-ep2 --split val --limit 0 --batch-size 32 --output-dir runs/lc-1761-ep2/eval-val
$B/pricetune evaluate --compare runs/lc-1761/eval-val runs/lc-1761-ep2/eval-val --output-dir runs/lc-compare-ep2-vs-1
$B/pricetune evaluate --compare runs/lc-4000/eval-val runs/lc-1761-ep2/eval-val --output-dir runs/lc-compare-ep2-vs-4000
echo ALLDONE
