#!/usr/bin/env bash
# The AVX2-only bounds, emulated on a CPU with AVX-512 BF16: torch dispatches to its AVX2 kernels
# (ATEN_CPU_CAPABILITY=avx2) and oneDNN stops at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), so torch reports no
# native bf16 and `precision: auto` trains in float32, as on an AVX2 machine. Same cores, clock and
# caches as the native runs: a ratio to them, not a figure of another machine.
#   bash docs/results/avx2-emulated/run.sh demo   # make demo, timed (the 15-minute bound)
#   bash docs/results/avx2-emulated/run.sh mlp    # the mlp's fit on amazon-18k, native then emulated (the 10-minute bound)
set -euo pipefail
PT=${PT:-.venv/bin/pricetune}
O=docs/results/avx2-emulated
AVX2=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)
timed() {  # name, command...: wall seconds into $O/times.jsonl
  local name=$1; shift
  local t0; t0=$(date +%s)
  "$@"
  echo "{\"what\": \"$name\", \"seconds\": $(( $(date +%s) - t0 )), \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\"}" >> $O/times.jsonl
}
case "${1:-}" in
  demo) timed "make demo, AVX2 emulated" env "${AVX2[@]}" make demo > runs/demo-avx2.log 2>&1 ;;
  mlp)
    for v in native avx2; do
      extra=(); [ $v = avx2 ] && extra=("${AVX2[@]}")
      timed "mlp fit + val, amazon-18k, $v" env "${extra[@]}" $PT evaluate --baseline mlp --dataset amazon-18k \
        --split val --limit 0 --output-dir runs/mlp-speed-$v > runs/mlp-speed-$v.log 2>&1
    done ;;
  *) echo "usage: $0 demo|mlp" >&2; exit 2 ;;
esac
