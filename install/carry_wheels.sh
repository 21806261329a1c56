#!/usr/bin/env bash
# Fill .whl/ with exactly the wheels a bare GPU benchmark machine lacks (Python 3.12, x86-64).
#
# That image (/work/.library/device/KINDS.md, read 2026-11-17) has torch 2.11, accelerate,
# numpy, pillow, scipy, opencv, psutil, httpx, click, safetensors, anyio, h11, annotated-doc,
# typing-extensions ... but no diffusers/fastapi/uvicorn/pydantic/gguf, and transformers 5.17
# with huggingface_hub 1.33 and tokenizers 0.23.2. The project is tested with transformers 5.24
# and tokenizers 0.23.3 (carried) and huggingface_hub 1.33 (the image's: not carried; it also
# has typer and a regex new enough for transformers 5). gguf reads GGUF-quantised Flux.1 /
# Z-Image transformers. Not carried, the image's own serving (fastapi
# needs anyio >=4.1, annotated-doc >=0.0.2; uvicorn h11 >=0.8; the image's httpcore already
# needs h11 >=0.16): anyio, h11, annotated-doc; importlib_metadata (diffusers imports it only
# on Python < 3.8). typing_extensions stays: pydantic 2.14 needs >=4.16, newer than the
# image may hold. install/gpu_bench.sh installs these with
# `pip install --no-index --no-deps --target /tmp/site .whl/*.whl` and then runs
# `python -m backend.bench.preflight /tmp/site`, which names any requirement left unmet
# (written to gpu.txt). The versions below are the ones the project is tested with (the dev venv).
#
# Usage (repo root or anywhere): bash install/carry_wheels.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHEELS=(
    diffusers==0.42.1
    transformers==5.24.0
    tokenizers==0.23.3
    gguf==0.19.0
    fastapi==0.165.0
    starlette==1.10.0
    uvicorn==0.54.0
    python-multipart==0.0.34
    pydantic==2.14.4
    pydantic_core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing_extensions==4.16.0
    opentelemetry-api==1.45.2
    open_clip_torch==3.3.0 # only for the CLIP BPE vocabulary file (never imported)
)
MAX_MIB=40 # the whole working tree that travels must stay under 64 MiB

PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

# 1. Keep .whl/ out of git (the device tool carries it explicitly).
mkdir -p .git/info
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude

# 2. Start clean: one version of each package, nothing else (two versions break the install).
mkdir -p .whl
rm -f .whl/*.whl

# 3. Download for CPython 3.12 on manylinux x86-64, no dependencies (each one is listed).
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
for spec in "${WHEELS[@]}"; do
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "$spec"
done

# 4. Check: one wheel per package, total size within budget.
count=$(find .whl -type f -name '*.whl' | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
    echo "ERROR: expected ${#WHEELS[@]} wheels in .whl/, found $count" >&2
    exit 1
fi
kib=$(du -sk .whl | cut -f1)
echo "==> .whl/: $count wheels, $((kib / 1024)) MiB"
if [ "$kib" -gt $((MAX_MIB * 1024)) ]; then
    echo "ERROR: .whl/ is over ${MAX_MIB} MiB" >&2
    exit 1
fi
