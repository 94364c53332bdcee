#!/usr/bin/env bash
# The device check as the device tool runs it, from the repository root of the carried tree:
#   run(command="bash bench/device/check.sh", carry=["bench/device/wheels", "bench/device/tokenizer"], timeout_s=540)
# Says in one line what is missing before anything else, unpacks the carried wheels the machine lacks
# (no network there: built for its Python 3.12 by prepare.sh) into bench/device/site, first on the path
# and never into the machine's own Python, which stays as the image has it (and no pip is needed), then
# runs `pricetune bench gpu`, which rewrites its JSON in $OUT after every step (a timeout keeps what was
# measured). The whole check is held under 8 minutes: past that the check and every
# process it started are stopped. Arguments go to `bench gpu`; PYTHON names the interpreter (python3).
# A rehearsal on a CPU: docs/results/device-rehearsal/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out="${OUT:-bench/results}"
mkdir -p "$out"
if [ ! -d bench/device/wheels ] || [ ! -d bench/device/tokenizer ]; then
  echo "device check: missing bench/device/wheels or bench/device/tokenizer: run bench/device/prepare.sh here and carry both" >&2
  exit 2
fi
PY=${PYTHON:-python3}
site=bench/device/site
rm -rf "$site"
"$PY" - "$site" <<'PY'
import importlib, importlib.metadata as md, importlib.util, pathlib, sys, zipfile
print(f"python {sys.version.split()[0]}")
wheels = sorted(pathlib.Path("bench/device/wheels").glob("*.whl"))
wanted = {w.name.split("-")[0].replace("_", "-").lower(): (w.name.split("-")[1], w) for w in wheels}
todo = []
for name, (version, wheel) in wanted.items():
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have != version:  # absent, or another release than the one pricetune is tested with
        todo.append(str(wheel))
    print(f"{name}: {have or 'absent'}" + ("" if have == version else f" -> {version} (carried)"))
for wheel in todo:  # a wheel is a zip laid out as site-packages (its metadata included)
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
sys.path.insert(0, sys.argv[1])
importlib.invalidate_caches()
missing = []
for module in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "pyarrow", "pandas", "scipy",
               "bitsandbytes", "yaml", "pydantic", "numpy", "psutil", "tqdm", "rich", "cloudpickle"):
    if importlib.util.find_spec(module) is None:
        missing.append(module)
if missing:
    sys.exit("device check cannot run; missing: " + ", ".join(missing))
PY
export PYTHONPATH="$PWD/$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# GNU timeout signals its whole process group: the check and every process it spawned stop together
timeout --kill-after=10 470 "$PY" -m pricetune bench gpu --tokenizer bench/device/tokenizer \
  --json "$out/gpu-check.json" "$@" || { rc=$?; echo "device check ended with $rc; partial results in $out/gpu-check.json" >&2; exit $rc; }
