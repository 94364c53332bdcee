#!/usr/bin/env bash
# MiniLM's time per step in bf16 (this CPU's native path) and with AVX2 kernels only, side by side in
# one run on the same machine: torch told to dispatch to its AVX2 kernels (ATEN_CPU_CAPABILITY=avx2),
# oneDNN to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), and float32, as `precision: auto` trains on a CPU without
# bf16. An emulation of a 2-core AVX2 machine on an AVX-512 one (same clock and caches), not the machine
# itself. 60 steps of configs/amazon-18k-minilm.yaml each, the closing val pass (1,000 items) timed too.
#   bash docs/results/amazon-18k-bases/minilm-speed.sh     # -> docs/results/amazon-18k-bases/minilm-speed.json
set -euo pipefail
# --base-dropout 0.1 --optim adamw_torch: the config as this measured it (it has since dropped MiniLM's dropout)
PT=${PT:-.venv/bin/pricetune}
O=docs/results/amazon-18k-bases
one() {  # name, environment (VAR=value ...), precision
  env $2 $PT train --config amazon-18k-minilm --max-steps 60 --eval-steps 1000 --save-steps 1000 \
    --logging-steps 10 --precision $3 --base-dropout 0.1 --optim adamw_torch --output-dir runs/speed-minilm-$1 --overwrite > runs/speed-minilm-$1.log 2>&1
}
one bf16 "" bf16
one avx2-fp32 "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" fp32
.venv/bin/python - "$O/minilm-speed.json" <<'PY'
import json, sys
out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :"),
       "steps_timed": "10 to 60 (after warm-up), 16 items a step", "variants": {}}
for name in ("bf16", "avx2-fp32"):
    rows = [json.loads(l) for l in open(f"runs/speed-minilm-{name}/metrics.jsonl")]
    t = {r["step"]: r["time"] for r in rows if "loss" in r}
    per_step = (t[60] - t[10]) / 50
    val_s = [r["eval_runtime"] for r in rows if "eval_runtime" in r][-1]
    epoch_steps = 844  # 13,494 rows / 16
    out["variants"][name] = {"s_per_step": round(per_step, 3), "val_pass_s": round(val_s, 1),
                             "epoch_min": round((epoch_steps * per_step + val_s) / 60, 1)}
v = out["variants"]
out["avx2_over_bf16"] = round(v["avx2-fp32"]["s_per_step"] / v["bf16"]["s_per_step"], 2)
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(json.dumps(out, indent=2))
PY
