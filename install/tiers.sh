# shellcheck shell=bash
# Tier bookkeeping for install/test.sh (sourced): run_tier, record, print_summary, clean_path.

declare -a TIER_NAMES=() TIER_RESULTS=()
FAILED=0

record() { # record NAME RESULT
    TIER_NAMES+=("$1")
    TIER_RESULTS+=("$2")
    case "$2" in FAIL*) FAILED=1 ;; esac
    printf '\n--- tier %-22s %s\n\n' "$1" "$2" >&2
}

# run_tier NAME EMPTY_OK CMD... — runs CMD, records PASS/FAIL. pytest's exit 5 ("no tests
# collected") is a failure unless EMPTY_OK=1, when it is recorded loudly as "NO TESTS".
run_tier() {
    local name="$1" empty_ok="$2" rc
    shift 2
    printf '\n==================== tier: %s ====================\n$ %s\n' "$name" "$*" >&2
    set +e
    "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        record "$name" "PASS"
    elif [ "$rc" -eq 5 ] && [ "$empty_ok" = "1" ]; then
        record "$name" "NO TESTS (pytest collected none; nothing to run yet)"
    elif [ "$rc" -eq 5 ]; then
        record "$name" "FAIL (pytest collected no tests: exit 5)"
    else
        record "$name" "FAIL (exit $rc)"
    fi
}

# PATH without virtualenvs/pyenv: Krita's embedded Python takes its home from the first
# python3 on PATH, and a venv there breaks `import PyQt5` inside Krita.
clean_path() {
    local out="" part
    local IFS=:
    for part in $PATH; do
        case "$part" in
            "$DL_VENV"/* | */.venv/* | */.pyenv/* | */pyenv/*) continue ;;
        esac
        out="${out:+$out:}$part"
    done
    printf '%s' "${out:-/usr/local/bin:/usr/bin:/bin}"
}

# Prints the table of tiers; returns 1 if any tier failed.
print_summary() {
    local i
    printf '\n==================== install/test.sh summary ====================\n'
    for i in "${!TIER_NAMES[@]}"; do
        printf '  %-20s %s\n' "${TIER_NAMES[$i]}" "${TIER_RESULTS[$i]}"
    done
    if [ "$FAILED" -ne 0 ]; then
        printf '\nRESULT: FAILED (see the tiers marked FAIL above)\n'
        return 1
    fi
    printf '\nRESULT: OK (every tier that could run passed)\n'
}
