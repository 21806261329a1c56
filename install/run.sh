#!/usr/bin/env bash
# install/run.sh — install Diffusion Layers and start its backend.
#
#   install/run.sh                  # full setup, default models, start the server
#   install/run.sh --model tiny     # wiring demo: a tiny built-in model, no download
#
# Steps: 1. .venv in the checkout with torch (CUDA build when nvidia-smi works, CPU otherwise)
# and the backend; 2. the Krita plugin, installed and enabled (Linux/flatpak, macOS, Windows
# pykrita folders); 3. models: with no checkpoint in the models folder, the default set is
# downloaded (progress bar, resume, SHA-256 check); 4. the server on http://127.0.0.1:7860.
# Running it again is quick: finished steps are skipped.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: install/run.sh [options] [-- extra `diffusion-layers serve` options]

  --model NAME        checkpoint to serve: "tiny" (built-in demo, no download), a catalog
                      name from `diffusion-layers models list` (downloaded if missing), or a
                      file name in <models dir>/checkpoints without extension
  --models-dir DIR    models folder (default: $DIFFUSION_LAYERS_MODELS, else
                      ~/.local/share/diffusion-layers/models)
  --no-plugin         do not install the Krita plugin
  --no-download       never download; fail with instructions if no model is there
  --install-only      set everything up, do not start the server
  -h, --help          this text

Environment: HF_TOKEN (gated Hub repositories), HF_ENDPOINT (Hub mirror),
DL_PYTHON (Python used to create .venv), DIFFUSION_LAYERS_TOKEN (server token for LAN use).
USAGE
}

MODEL=""
MODELS_DIR=""
INSTALL_PLUGIN=1
DOWNLOAD=1
START=1
SERVE_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="${2:?--model needs a value}"; shift 2 ;;
        --model=*) MODEL="${1#*=}"; shift ;;
        --models-dir) MODELS_DIR="${2:?--models-dir needs a value}"; shift 2 ;;
        --models-dir=*) MODELS_DIR="${1#*=}"; shift ;;
        --no-plugin) INSTALL_PLUGIN=0; shift ;;
        --no-download) DOWNLOAD=0; shift ;;
        --install-only) START=0; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; SERVE_ARGS=("$@"); break ;;
        *) echo "install/run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=install/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
cd "$DL_ROOT"

# ---- 1. Python environment ------------------------------------------------------------------
dl_ensure_venv
dl_install_torch auto
dl_install_project server
if dl_has_gpu; then
    "$DL_PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
        && dl_say "torch sees the NVIDIA GPU: generation runs on CUDA" \
        || dl_say "WARNING: nvidia-smi works but torch cannot use CUDA (driver too old?): generation runs on the CPU (slow)"
else
    dl_say "no NVIDIA GPU found: generation runs on the CPU (slow; fine for --model tiny)"
fi

# ---- 2. Krita plugin ------------------------------------------------------------------------
if [ "$INSTALL_PLUGIN" = "1" ]; then
    "$DL_PY" install/install_plugin.py
fi

# ---- 3. models ------------------------------------------------------------------------------
MODELS_DIR="$("$DL_PY" -c 'import sys; from backend.catalog import resolve_models_dir; print(resolve_models_dir(sys.argv[1] or None))' "$MODELS_DIR")"
export DIFFUSION_LAYERS_MODELS="$MODELS_DIR"
dl_say "models folder: $MODELS_DIR"

download() { # download NAME...: the model manager, with a plain failure message
    if [ "$DOWNLOAD" != "1" ]; then
        dl_die "no model in $MODELS_DIR/checkpoints and --no-download was given. Copy a .safetensors checkpoint there, or run: install/run.sh --model tiny"
    fi
    "$DL_PY" -m backend models download --models-dir "$MODELS_DIR" "$@" \
        || dl_die "the models could not be downloaded (see above). Copy your own .safetensors files into $MODELS_DIR/checkpoints (and controlnet/), or start the wiring demo with: install/run.sh --model tiny"
}

SERVE_MODEL="$MODEL"
if [ "$MODEL" = "tiny" ]; then
    dl_say "--model tiny: the built-in tiny model (wiring demo: pictures are noise-like)"
elif [ -n "$MODEL" ] && "$DL_PY" -c 'import sys; from backend.catalog import find_entry; find_entry(sys.argv[1])' "$MODEL" 2>/dev/null; then
    download "$MODEL"
    SERVE_MODEL="$("$DL_PY" -c 'import sys; from backend.catalog import find_entry; print(find_entry(sys.argv[1]).model_name)' "$MODEL")"
elif [ -z "$MODEL" ] && ! compgen -G "$MODELS_DIR/checkpoints/*.safetensors" >/dev/null \
    && ! compgen -G "$MODELS_DIR/checkpoints/*/model_index.json" >/dev/null; then
    dl_say "no checkpoint in $MODELS_DIR/checkpoints yet: downloading the default set (about 7 GB)"
    download default
fi

# ---- 4. server ------------------------------------------------------------------------------
if [ "$START" != "1" ]; then
    dl_say "installed. Start the server with: install/run.sh${MODEL:+ --model $MODEL}"
    exit 0
fi
dl_say "starting the backend (Ctrl+C stops it); in Krita: Settings > Dockers > Diffusion Layers"
ARGS=(-m backend serve --models-dir "$MODELS_DIR")
[ -n "$SERVE_MODEL" ] && ARGS+=(--model "$SERVE_MODEL")
exec "$DL_PY" "${ARGS[@]}" ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"}
