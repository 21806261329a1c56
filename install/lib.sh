# shellcheck shell=bash
# Helpers shared by install/run.sh and install/test.sh. Source it; do not run it.
#
# Every function prints what it does ("==> ...") and fails loudly: the callers run
# under `set -euo pipefail`.

DL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DL_VENV="${DL_VENV:-$DL_ROOT/.venv}"
DL_PY="$DL_VENV/bin/python"
# The torch release the project is tested with. On this project's machines and CI the
# CPU build of exactly this release lies on disk (pip's find-links), so pinning it never
# pulls gigabytes of CUDA wheels.
DL_TORCH_VERSION="${DL_TORCH_VERSION:-2.13.0}"
DL_OPEN_CLIP_VERSION="3.3.0"
DL_SPANDREL_VERSION="0.4.2"
DL_COMPEL_VERSION="2.5.1"

dl_say() { printf '==> %s\n' "$*" >&2; }
dl_die() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}

# 1. A Python >= 3.10 to build the venv from (DL_PYTHON overrides).
dl_find_python() {
    local candidate
    for candidate in "${DL_PYTHON:-}" python3.12 python3.11 python3.10 python3 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
            >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    dl_die "no Python >= 3.10 with the venv module found. Install one (Debian/Ubuntu: apt-get install python3 python3-venv) or set DL_PYTHON=/path/to/python3."
}

# 2. The checkout's own virtual environment (created once, reused afterwards).
dl_ensure_venv() {
    if [ -x "$DL_PY" ] && "$DL_PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
        return 0
    fi
    local base
    base="$(dl_find_python)"
    dl_say "creating virtual environment $DL_VENV (from $base)"
    "$base" -m venv "$DL_VENV" || dl_die "could not create $DL_VENV (Debian/Ubuntu: apt-get install python3-venv)"
    "$DL_PY" -m pip install --quiet --upgrade pip || dl_say "could not upgrade pip; going on with $("$DL_PY" -m pip --version)"
}

dl_pip() { "$DL_PY" -m pip install --disable-pip-version-check "$@"; }

# 2b. The PyQt6 plugin test environment (Krita 6's binding), apart from the main venv so the
#     plugin's tests run against PyQt6 alone: install/requirements-plugin-qt6.txt. Reinstalls
#     only when that file changed since the last successful run.
DL_QT6_VENV="${DL_QT6_VENV:-$DL_ROOT/.venv-qt6}"
DL_QT6_PY="$DL_QT6_VENV/bin/python"
dl_ensure_qt6_venv() {
    local reqs="$DL_ROOT/install/requirements-plugin-qt6.txt" stamp="$DL_QT6_VENV/.diffusion-layers-qt6" want base
    want="$(sha256sum "$reqs" | cut -d' ' -f1)"
    if [ -x "$DL_QT6_PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$DL_QT6_PY" ]; then
        base="$(dl_find_python)"
        dl_say "creating the PyQt6 plugin test environment $DL_QT6_VENV (from $base)"
        "$base" -m venv "$DL_QT6_VENV" || return 1
    fi
    dl_say "installing install/requirements-plugin-qt6.txt into $DL_QT6_VENV"
    "$DL_QT6_PY" -m pip install --disable-pip-version-check -q -r "$reqs" || return 1
    printf '%s' "$want" >"$stamp"
}

# True (0) when an NVIDIA GPU answers nvidia-smi.
dl_has_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

# The installed torch version ("" if none), read without importing torch (fast).
dl_torch_version() {
    "$DL_PY" -c 'import importlib.metadata as m
try:
    print(m.version("torch"))
except m.PackageNotFoundError:
    print("")' 2>/dev/null
}

# True (0) when a CPU wheel of the pinned torch lies in one of pip's find-links folders.
dl_local_cpu_torch_wheel() {
    local links dir
    links="${PIP_FIND_LINKS:-} $("$DL_PY" -m pip config get global.find-links 2>/dev/null || true)"
    for dir in $links; do
        dir="${dir#file://}"
        compgen -G "$dir/torch-${DL_TORCH_VERSION}+cpu-*.whl" >/dev/null 2>&1 && return 0
    done
    return 1
}

# 3. torch, pinned. $1 = "auto" (CUDA build when nvidia-smi works, else CPU) or "cpu".
#    An already-installed torch of the pinned release is kept as it is.
dl_install_torch() {
    local mode="${1:-auto}" have
    have="$(dl_torch_version)"
    if [ "${have%%+*}" = "$DL_TORCH_VERSION" ]; then
        dl_say "torch $have already installed"
        return 0
    fi
    if [ "$mode" = "auto" ] && dl_has_gpu; then
        dl_say "NVIDIA GPU found (nvidia-smi works): installing the CUDA build of torch==$DL_TORCH_VERSION"
        dl_pip "torch==$DL_TORCH_VERSION"
    elif [ "$(uname -s)" = "Darwin" ]; then
        dl_say "macOS: installing torch==$DL_TORCH_VERSION (CPU / Apple MPS build)"
        dl_pip "torch==$DL_TORCH_VERSION"
    elif dl_local_cpu_torch_wheel; then
        dl_say "no GPU in use: installing the CPU build of torch==$DL_TORCH_VERSION (local wheel)"
        dl_pip "torch==$DL_TORCH_VERSION"
    else
        dl_say "no GPU in use: installing the CPU build of torch==$DL_TORCH_VERSION from PyTorch's CPU index"
        dl_pip "torch==$DL_TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
            --extra-index-url https://pypi.org/simple
    fi
}

# 4. The project itself (editable) with the given extras, plus the open_clip tokenizer
#    vocabulary (installed --no-deps: it is read as a data file, never imported).
#    Skipped when nothing it depends on changed since the last successful run.
dl_install_project() {
    local extras="$1" stamp want
    stamp="$DL_VENV/.diffusion-layers-install-${extras//,/-}"
    want="$(cat "$DL_ROOT/pyproject.toml" "$DL_ROOT/install/lib.sh" | sha256sum | cut -d' ' -f1) $(dl_torch_version)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        dl_say "project dependencies [$extras] up to date"
        return 0
    fi
    dl_say "installing diffusion-layers[$extras] into $DL_VENV"
    dl_pip -e "$DL_ROOT[$extras]"
    dl_pip --no-deps "open_clip_torch==$DL_OPEN_CLIP_VERSION"
    # Upscale models (backend/engine/upscalers.py): without its torchvision requirement (see
    # pyproject.toml's server extra); spandrel needs torchvision only for LaMa/RestoreFormer.
    dl_pip --no-deps "spandrel==$DL_SPANDREL_VERSION"
    # Prompt emphasis (backend/engine/prompt_weights.py): compel, without its requirements (its
    # releases pin transformers majors or pull Jupyter; it uses only torch, transformers and
    # diffusers, which the server extra pins, and pyparsing, listed there).
    dl_pip --no-deps "compel==$DL_COMPEL_VERSION"
    printf '%s' "$want" >"$stamp"
}
