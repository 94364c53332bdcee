#!/usr/bin/env bash
# The device check rehearsed on this CPU, as the device tool would run it: bench/device/check.sh, with
# `--device cpu --tiny` (every step of the GPU run, a 2-layer model), in a venv holding what the GPU
# machines' image holds (its package list and versions: the device tool's KINDS.md, read 2026-11-17:
# torch 2.11 (its CUDA 13 build from PyPI, run on the CPU), transformers 5.17.0, huggingface_hub 1.33.0,
# accelerate 1.15.0, pandas, no TRL, datasets, bitsandbytes or pydantic), the carried wheels made by
# bench/device/prepare.sh for this Python. What it cannot copy: the machines' Python 3.12.3 and the GPU.
#   bash docs/results/device-rehearsal/run.sh      # -> docs/results/device-rehearsal/{gpu-check.json,check.log,versions.json}
set -euo pipefail
W=runs/device-rehearsal; O=docs/results/device-rehearsal
rm -rf "$W" && mkdir -p "$W"
python3 -m venv "$W/venv"
"$W/venv/bin/pip" install -q "torch==2.11.*" transformers==5.17.0 huggingface_hub==1.33.0 accelerate==1.15.0 \
  safetensors==0.8.0 tokenizers==0.23.2 peft pyarrow pandas scipy numpy pyyaml psutil tqdm rich cloudpickle \
  pygments markdown-it-py mdurl xxhash typing-extensions scikit-learn joblib matplotlib
# the image has no pydantic (KINDS.md); typer, a dependency of huggingface_hub here, pulls it in: out again
"$W/venv/bin/pip" uninstall -q -y pydantic pydantic-core annotated-types typing-inspection
"$W/venv/bin/pip" list --format json > "$O/versions.json"
# the rehearsal's wheels are this Python's; the machines' (cp312) are made again on the way out
trap 'bash bench/device/prepare.sh > /dev/null 2>&1' EXIT
PYTHON_VERSION=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")') \
  bash bench/device/prepare.sh > "$W/prepare.log" 2>&1
PYTHON=$W/venv/bin/python OUT=$O bash bench/device/check.sh --device cpu --tiny --gpu-steps 4 2>&1 | tee "$O/check.log"
