#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time and fails on the first
# crash, leak, timeout or out-of-memory. `make fuzz` runs this.
#
#   FUZZ_SECONDS=60        seconds per target (default 60)
#   FUZZ_TARGETS="a b"     only these targets (default: every one)
#   FUZZ_JOBS=1            libFuzzer jobs per target (default 1)
#   FUZZ_SANITIZER=none    cargo-fuzz sanitizer (default none: the code under
#                          test forbids unsafe, so ASan would only slow it)
#   FUZZ_TARGET_DIR=dir    cargo's target directory (default fuzz/target)
#
# cargo-fuzz needs nightly compiler flags; on the stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1. It is installed from crates.io when
# missing. Seeds in fuzz/seeds/<target>/ are copied into the working corpus
# fuzz/corpus/<target>/ (not committed), and a crash's input is left in
# fuzz/artifacts/<target>/: turn it into a regression test in
# crates/core/tests/fuzz_props.rs before fixing it.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-1}"
sanitizer="${FUZZ_SANITIZER:-none}"
build=(--sanitizer "$sanitizer")
if [[ -n "${FUZZ_TARGET_DIR:-}" ]]; then
    build+=(--target-dir "$FUZZ_TARGET_DIR")
fi
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

cd fuzz
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz: building ${#targets[@]} targets (sanitizer: $sanitizer)"
for target in "${targets[@]}"; do
    cargo fuzz build "${build[@]}" "$target"
done

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    if [[ -d "seeds/$target" ]]; then
        cp -n "seeds/$target"/* "$corpus"/ 2>/dev/null || true
    fi
    echo "fuzz: $target for ${seconds}s"
    status=0
    parallel=()
    if [[ "$jobs" -gt 1 ]]; then
        # libFuzzer then writes each job's output to fuzz-N.log.
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    cargo fuzz run "${build[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" "${parallel[@]}" \
        -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        >"$logs/$target.log" 2>&1 || status=$?
    runs="$(grep -Eo 'Done [0-9]+ runs' "$logs/$target.log" | tail -n 1 | grep -Eo '[0-9]+' || true)"
    if [[ "$status" -ne 0 ]]; then
        failed=1
        summary+=("$(printf '%-22s FAILED (exit %s)' "$target" "$status")")
        echo "fuzz: $target FAILED; the end of its log:"
        tail -n 40 "$logs/$target.log"
    else
        summary+=("$(printf '%-22s %12s runs in %ss, corpus %s' "$target" "${runs:-?}" "$seconds" "$(find "$corpus" -type f | wc -l)")")
    fi
done

echo
echo "fuzz summary:"
printf '  %s\n' "${summary[@]}"
if [[ "$failed" -ne 0 ]]; then
    echo "fuzz: a target failed; its input is in fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a crash"
