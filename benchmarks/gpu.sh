#!/usr/bin/env bash
# The checks that need the GPU machine (one NVIDIA card, 16 cores), in one command:
#
#   bash benchmarks/gpu.sh [OUT_DIR]      # default: benchmarks/results/gpu
#
# 1. decode scaling of the decode pool with 1-15 workers (the machine's 16 cores);
# 2. wav2vec2-base (random weights, real size) on CUDA with its autocast dtype (bf16 where
#    the card has it) over batch sizes, 5 s and 10 s windows;
# 3. the YAMNet SavedModel path on the GPU, if $SCANNER_MODEL_DIR holds one;
# 4. batch halving on CUDA out-of-memory against the real card (a starting batch far too big).
# Each step writes JSON to OUT_DIR and goes on if one fails. With no GPU, steps 2-4 say they
# were skipped and step 1 still runs (CPU_ONLY=1 runs only the CPU-side parts, quickly).
set -u
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/gpu}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export SCANNER_MODEL_DIR=${SCANNER_MODEL_DIR:-../shared/models}
status=0
step() {  # step NAME CMD...: runs CMD, its output to OUT/NAME.log, its JSON lines to OUT/NAME.jsonl
  local name=$1; shift
  echo "== $name: $*" >&2
  if "$@" > >(tee "$OUT/$name.log") 2>&1; then :; else echo "!! $name failed" >&2; status=1; fi
  grep '^{' "$OUT/$name.log" > "$OUT/$name.jsonl" || true
}
"$PY" -c 'import json, torch; print(json.dumps({"cuda": torch.cuda.is_available(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "torch": torch.__version__}))' | tee "$OUT/device.json"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>/dev/null || true

if [ "${CPU_ONLY:-0}" = 1 ]; then
  step decode "$PY" benchmarks/gpu_checks.py decode --workers 1 2 --files 24
  step oom "$PY" benchmarks/gpu_checks.py oom
  step savedmodel "$PY" benchmarks/gpu_checks.py savedmodel
  exit $status
fi
step decode "$PY" benchmarks/gpu_checks.py decode --workers 1 2 4 8 12 15
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  step wav2vec2 "$PY" benchmarks/bench_wav2vec2.py --device cuda --batch-sizes 1 4 8 16 32 64 \
    --windows 5 10 --repeats 3 --out "$OUT/wav2vec2.json"
else
  echo "== wav2vec2: skipped (no CUDA device)" >&2
fi
step savedmodel "$PY" benchmarks/gpu_checks.py savedmodel
step oom "$PY" benchmarks/gpu_checks.py oom --start-batch 4096 --clips 256
exit $status
