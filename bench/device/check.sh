#!/usr/bin/env bash
# The device check as the device tool runs it, from the repository root of the carried tree:
#   run(command="bash bench/device/check.sh", carry=["bench/device/wheels", "bench/device/tokenizer"], timeout_s=540)
# Installs the carried wheels the machine lacks (no network there), says what else is missing, then
# runs `pricetune bench gpu`; the result JSON lands in $OUT (the device tool brings it back).
set -euo pipefail
cd "$(dirname "$0")/../.."
python - <<'PY'
import importlib.metadata as md, pathlib, subprocess, sys
wheels = sorted(pathlib.Path("bench/device/wheels").glob("*.whl"))
todo = []
for w in wheels:
    name = w.name.split("-")[0].replace("_", "-")
    try:
        print(f"have {name} {md.version(name)}")
    except md.PackageNotFoundError:
        todo.append(str(w))
if todo:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", *todo], check=True)
    print("installed", ", ".join(pathlib.Path(t).name for t in todo))
missing = []
for module in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "pyarrow", "pandas", "scipy",
               "bitsandbytes", "yaml", "pydantic", "numpy", "psutil", "tqdm", "rich", "cloudpickle"):
    try:
        __import__(module)
    except Exception as e:  # missing, or a wheel built for another Python
        missing.append(f"{module} ({type(e).__name__}: {e})")
if missing:
    sys.exit("the device check cannot run; missing: " + "; ".join(missing))
PY
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-bench/results}"
mkdir -p "$out"
timeout 480 python -m pricetune bench gpu --tokenizer bench/device/tokenizer --json "$out/gpu-check.json"
