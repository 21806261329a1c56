#!/usr/bin/env bash
# The GPU benchmark in one command, for a bare H100/H200 image (Python 3.12, torch 2.11, CUDA)
# that lacks our other packages. Prepare once on a machine with PyPI access:
#     bash install/carry_wheels.sh          # fills .whl/ (git-ignored, ~25 MiB)
# then run from the repo root on the GPU machine (the device tool: carry [".whl"]):
#     bash install/gpu_bench.sh "$OUT"
# Writes into OUT (default ./bench-out): gpu.txt, bench.json, bench.md, bench.log,
# accel.json, accel.log. Budgeted to end inside about 9 minutes (worst case 10 + 340 + 200 s):
# the JSON is written even when the budget cuts scenarios short (listed under "errors").
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT_DIR="${1:-${OUT:-bench-out}}"
BENCH_BUDGET_S="${BENCH_BUDGET_S:-280}"
ACCEL_TIMEOUT_S="${ACCEL_TIMEOUT_S:-150}"
mkdir -p "$OUT_DIR"

# 1. Our Python packages on top of the image's (never touching its site-packages).
if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "ERROR: no .whl/*.whl here: run install/carry_wheels.sh first and carry .whl" >&2
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/dl-inductor-cache

# 2. What we run on.
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    >"$OUT_DIR/gpu.txt" 2>&1
python3 -c 'import torch, diffusers, transformers; print(torch.__version__, torch.version.cuda,
torch.cuda.get_device_name(0), diffusers.__version__, transformers.__version__)' \
    >>"$OUT_DIR/gpu.txt" 2>&1
cat "$OUT_DIR/gpu.txt"

# 3. Plain diffusers vs our server, every scenario (full-size random weights, fp16).
timeout $((BENCH_BUDGET_S + 60)) python3 -m backend bench \
    --out "$OUT_DIR/bench.json" --table "$OUT_DIR/bench.md" \
    --models-dir /tmp/dl-bench-models --repeats 3 --warmup-s 3 \
    --budget-s "$BENCH_BUDGET_S" 2>&1 | tee "$OUT_DIR/bench.log"
bench_rc=${PIPESTATUS[0]}

# 4. The acceleration layer alone (eager tweaks, background torch.compile + CUDA graphs).
timeout $((ACCEL_TIMEOUT_S + 50)) python3 -m backend.bench.accel_check \
    --out "$OUT_DIR/accel.json" --compile-timeout "$ACCEL_TIMEOUT_S" 2>&1 |
    tee "$OUT_DIR/accel.log"
accel_rc=${PIPESTATUS[0]}

echo "==> bench rc=$bench_rc accel rc=$accel_rc; results in $OUT_DIR"
[ "$bench_rc" -eq 0 ] && [ "$accel_rc" -eq 0 ]
