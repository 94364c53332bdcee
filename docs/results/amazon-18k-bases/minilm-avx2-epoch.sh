#!/usr/bin/env bash
# One whole epoch of MiniLM as configs/amazon-18k-minilm.yaml trains it (base_dropout 0, fused AdamW, its val
# passes: before training and every 422 steps), held to AVX2 kernels and float32 as a CPU without bf16
# trains (torch told to dispatch to its AVX2 kernels, oneDNN to AVX2): the epoch the bound of 30 minutes on 2
# AVX2 cores is about, timed end to end rather than scaled from 50 steps (minilm-dropout-speed.sh).
# An emulation on an AVX-512 core, not an AVX2-only machine.
#   bash docs/results/amazon-18k-bases/minilm-avx2-epoch.sh   # -> minilm-avx2-epoch.json, its log -train-log.jsonl
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}; PY=${PY:-.venv/bin/python}
O=docs/results/amazon-18k-bases; R=runs/avx2-epoch-minilm
start=$(date +%s)
env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $PT train --config amazon-18k-minilm --epochs 1 \
  --precision fp32 --output-dir $R --overwrite > $R.log 2>&1
wall=$(( $(date +%s) - start ))
cp $R/metrics.jsonl $O/minilm-avx2-epoch-train-log.jsonl
$PY - "$O/minilm-avx2-epoch.json" "$R" "$wall" <<'PY'
import json, sys
out_path, run, wall = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = json.load(open(f"{run}/summary.json"))
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :"),
       "cores": 2, "emulation": "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, fp32",
       "config": "amazon-18k-minilm, --epochs 1", "train_rows": s["train_rows"], "steps": s["steps"],
       "train_seconds": s["train_seconds"], "val_seconds_within": s["val_seconds"],
       "val_passes": sum(1 for r in rows if "eval_loss" in r),
       "command_seconds": wall, "epoch_min": round(s["train_seconds"] / 60, 1),
       "command_min": round(wall / 60, 1), "final_eval_loss": s["final_eval_loss"]}
json.dump(out, open(out_path, "w"), indent=2)
print(json.dumps(out, indent=2))
PY
