#!/usr/bin/env bash
# MiniLM's step with and without dropout, held to AVX2 kernels and float32 (as minilm-speed.sh: torch told to
# dispatch to its AVX2 kernels, oneDNN to AVX2), three variants side by side in one run on one machine:
#   shipped: the base's dropout (0.1) and adamw_torch;  no-dropout: base_dropout 0;  no-dropout-fused: and
#   adamw_torch_fused. 60 steps of configs/amazon-18k-minilm.yaml each; steps 10-60 timed; the closing val pass too.
#   bash docs/results/amazon-18k-bases/minilm-dropout-speed.sh   # -> docs/results/amazon-18k-bases/minilm-dropout-speed.json
#   OUT=docs/results/amazon-18k-bases/minilm-dropout-speed-epyc.json bash docs/results/amazon-18k-bases/minilm-dropout-speed.sh
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}
O=docs/results/amazon-18k-bases
VARIANTS=("shipped:--base-dropout 0.1 --optim adamw_torch" "no-dropout:--base-dropout 0 --optim adamw_torch"
          "no-dropout-fused:--base-dropout 0 --optim adamw_torch_fused")
for X in "${VARIANTS[@]}"; do
  N=${X%%:*}
  env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $PT train --config amazon-18k-minilm --max-steps 60 \
    --eval-steps 1000 --save-steps 1000 --logging-steps 10 --precision fp32 ${X#*:} \
    --output-dir runs/speed-minilm-$N --overwrite > runs/speed-minilm-$N.log 2>&1
done
.venv/bin/python - "${OUT:-$O/minilm-dropout-speed.json}" <<'PY'
import json, sys
out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :"),
       "emulation": "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, fp32",
       "steps_timed": "10 to 60 (after warm-up), 16 items a step", "variants": {}}
for name in ("shipped", "no-dropout", "no-dropout-fused"):
    rows = [json.loads(l) for l in open(f"runs/speed-minilm-{name}/metrics.jsonl")]
    t = {r["step"]: r["time"] for r in rows if "loss" in r}
    per_step = (t[60] - t[10]) / 50
    val_s = [r["eval_runtime"] for r in rows if "eval_runtime" in r][-1]
    out["variants"][name] = {"s_per_step": round(per_step, 3), "val_pass_s": round(val_s, 1),
                             "epoch_min": round((844 * per_step + val_s) / 60, 1)}  # 13,494 rows / 16 a step
v = out["variants"]
out["speedup_over_shipped"] = {n: round(v["shipped"]["s_per_step"] / v[n]["s_per_step"], 2) for n in v}
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(json.dumps(out, indent=2))
PY
