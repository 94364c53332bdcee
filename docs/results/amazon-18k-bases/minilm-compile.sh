#!/usr/bin/env bash
# Whether compiling MiniLM's layers (torch_compile: inductor, as PyTorch's regional compilation) makes
# its step cheaper where the 30-minute epoch target is at risk: AVX2 kernels only, float32 (the
# emulation of minilm-speed.sh: ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2). Eager and compiled
# side by side in one run on the same machine, 60 steps of configs/amazon-18k-minilm.yaml each; steps
# 10 to 60 timed (compiling happens in the first steps, timed apart from the opening val pass's end to
# step 10), the closing val pass (1,000 items) timed too.
#   bash docs/results/amazon-18k-bases/minilm-compile.sh   # -> docs/results/amazon-18k-bases/minilm-compile.json
set -euo pipefail
# --base-dropout 0.1 --optim adamw_torch: the config as this measured it (it has since dropped MiniLM's dropout)
PT=${PT:-.venv/bin/pricetune}
O=docs/results/amazon-18k-bases
AVX2="ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2"
one() {  # name, extra options
  env $AVX2 $PT train --config amazon-18k-minilm --max-steps 60 --eval-steps 1000 --save-steps 1000 \
    --logging-steps 10 --precision fp32 --base-dropout 0.1 --optim adamw_torch $2 --output-dir runs/speed-minilm-$1 --overwrite > runs/speed-minilm-$1.log 2>&1
}
one avx2-eager "--no-torch-compile"
one avx2-compiled "--torch-compile"
.venv/bin/python - "$O/minilm-compile.json" <<'PY'
import json, sys
out = {"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip("\t :"),
       "emulation": "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, fp32",
       "steps_timed": "10 to 60 (after warm-up and compiling), 16 items a step", "variants": {}}
for name in ("avx2-eager", "avx2-compiled"):
    rows = [json.loads(l) for l in open(f"runs/speed-minilm-{name}/metrics.jsonl")]
    t = {r["step"]: r["time"] for r in rows if "loss" in r}
    per_step = (t[60] - t[10]) / 50
    val_s = [r["eval_runtime"] for r in rows if "eval_runtime" in r][-1]
    epoch_steps = 844  # 13,494 rows / 16
    out["variants"][name] = {"s_per_step": round(per_step, 3), "first_10_steps_s": round(t[10] - rows[0]["time"], 1),
                             "val_pass_s": round(val_s, 1), "epoch_min": round((epoch_steps * per_step + val_s) / 60, 1),
                             "final_loss": [r["loss"] for r in rows if "loss" in r][-1]}
v = out["variants"]
out["compiled_speedup"] = round(v["avx2-eager"]["s_per_step"] / v["avx2-compiled"]["s_per_step"], 2)
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(json.dumps(out, indent=2))
PY
