#!/usr/bin/env bash
# The GPU benchmark in one command, for the bare H100/H200 image (Python 3.12, torch 2.11, CUDA,
# transformers 5.17 / huggingface_hub 1.33; we carry transformers 5.24 and diffusers 0.42.1).
# Prepare once on a machine with PyPI access:
#     bash install/carry_wheels.sh          # fills .whl/ (git-ignored, ~26 MiB)
# then run from the repo root on the GPU machine (device tool: carry [".whl"], timeout_s 600):
#     bash install/gpu_bench.sh "$OUT"
#
# Every scenario (and the acceleration check) runs in its own process with its own deadline,
# goals first (backend/bench/isolated.py): one that is too slow is killed and recorded as
# timed out, one that fails records its error, the others still run, and bench.json /
# bench.md / accel.json are rewritten after every step, so even a run killed from outside
# leaves what it finished. Writes into OUT (default ./bench-out): gpu.txt (GPU, versions,
# preflight), bench.json, bench.md, accel.json, bench.log. docs/benchmarks/README.md says
# what each number is.
#
# Environment: TOTAL_BUDGET_S (default 520: all steps together, inside the device tool's
# 600 s per command), BENCH_SCENARIOS (space-separated subset, default all), BENCH_ACCEL
# (1 = run the acceleration check, default 1), BENCH_COMPILE (off | background | blocking:
# the engine's torch.compile for our side, default off), BENCH_BUDGETS (extra
# --scenario-budget values, e.g. "sdxl_txt2img_1024=200 accel=240"), BENCH_ARGS (more
# `diffusion-layers bench` options, last wins). CPU rehearsal, no wheels, the dev venv:
#     BENCH_WHEELS=none PYTHON=.venv/bin/python BENCH_ARGS="--tiny --repeats 1
#     --transfer-size 128 --live-frames 2" bash install/gpu_bench.sh /tmp/bench-out
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS

OUT_DIR="${1:-${OUT:-bench-out}}"
TOTAL_BUDGET_S="${TOTAL_BUDGET_S:-520}"
BENCH_SCENARIOS="${BENCH_SCENARIOS:-}"
BENCH_ACCEL="${BENCH_ACCEL:-1}"
BENCH_COMPILE="${BENCH_COMPILE:-off}"
BENCH_BUDGETS="${BENCH_BUDGETS:-}"
BENCH_ARGS="${BENCH_ARGS:-}"
BENCH_WHEELS="${BENCH_WHEELS:-.whl}" # none = use $PYTHON's own packages
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"

# 1. Our Python packages on top of the image's (never touching its site-packages).
SITE=/tmp/site
if [ "$BENCH_WHEELS" = none ]; then
    SITE=""
elif ! ls "$BENCH_WHEELS"/*.whl >/dev/null 2>&1; then
    echo "ERROR: no $BENCH_WHEELS/*.whl here: run install/carry_wheels.sh first and carry .whl" >&2
    exit 2
else
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$BENCH_WHEELS"/*.whl || exit 2
fi
export PYTHONPATH="${SITE:+$SITE:}$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/dl-inductor-cache

# 2. What we run on, and whether the carried wheels find everything they need.
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    "$PYTHON" -c 'import torch, diffusers, transformers, huggingface_hub
print(torch.__version__, torch.version.cuda, "diffusers", diffusers.__version__, "transformers",
      transformers.__version__, "hub", huggingface_hub.__version__)
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")'
    [ -n "$SITE" ] && "$PYTHON" -m backend.bench.preflight "$SITE"
} >"$OUT_DIR/gpu.txt" 2>&1
cat "$OUT_DIR/gpu.txt"

# 3. Every step in its own process with its own deadline; the JSON rewritten after each.
args=(--isolate --out "$OUT_DIR/bench.json" --table "$OUT_DIR/bench.md"
    --models-dir /tmp/dl-bench-models --repeats 3 --warmup-s 3 --compile "$BENCH_COMPILE")
[ "$BENCH_ACCEL" = 1 ] && args+=(--accel-out "$OUT_DIR/accel.json")
for name in $BENCH_SCENARIOS; do args+=(--scenario "$name"); done
for budget in $BENCH_BUDGETS; do args+=(--scenario-budget "$budget"); done
read -r -a extra <<<"$BENCH_ARGS"
args+=("${extra[@]}")
left=$((TOTAL_BUDGET_S - (SECONDS - started)))
# The runner keeps to its budget itself; `timeout` (SIGTERM: the runner ends its current step
# and records it as interrupted) is only the safety net.
timeout -s TERM $((left + 30)) "$PYTHON" -m backend bench "${args[@]}" --budget-s "$left" 2>&1 |
    tee "$OUT_DIR/bench.log"
bench_rc=${PIPESTATUS[0]}

echo "==> bench rc=$bench_rc ($((SECONDS - started)) s); results in $OUT_DIR"
exit "$bench_rc"
