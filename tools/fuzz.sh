#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) in build-fuzz/ and
# runs each one for a set time.
# Usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60
#   TARGET              model_file idx cifar image arch (default: all)
# Corpora grow in build-fuzz/corpus/<target>/ (seeded by the targets themselves); a
# finding is saved as build-fuzz/findings/<target>/crash-* (or leak-*, oom-*, timeout-*)
# and the script exits 1. Turn each one into a regression test with its input in
# tests/data/fuzz/ (see README "Reliability").
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(model_file idx cifar image arch)
case "$seconds" in (*[!0-9]*|'') echo "tools/fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$seconds'" >&2; exit 2;; esac

CVXCNN_PACKAGES+=("${CVXCNN_FUZZ_PACKAGES[@]}")
cvxcnn_ensure_packages
build_dir=${CVXCNN_FUZZ_BUILD_DIR:-$CVXCNN_ROOT/build-fuzz}
CC=clang CXX=clang++ cmake -S "$CVXCNN_ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release \
    -DCVXCNN_BUILD_TESTS=OFF -DCVXCNN_BUILD_FUZZ=ON -DCVXCNN_WERROR=ON >/dev/null
cmake --build "$build_dir" --parallel "$(nproc)" --target cvxcnn_fuzz

status=0
for target in "${targets[@]}"; do
    binary=$build_dir/tests/fuzz/cvxcnn_fuzz_$target
    [ -x "$binary" ] || { echo "tools/fuzz.sh: unknown target '$target'" >&2; exit 2; }
    corpus=$build_dir/corpus/$target
    findings=$build_dir/findings/$target
    mkdir -p "$corpus" "$findings"
    # The targets write their seed inputs when asked (one run over an empty input).
    CVXCNN_FUZZ_SEED_DIR=$corpus "$binary" -runs=0 "$corpus" >/dev/null 2>&1
    echo "fuzzing $target for $seconds s (corpus $corpus)" >&2
    # -rss_limit_mb and -malloc_limit_mb: a reader that allocates what a header claims
    # before checking it against the file is a finding, not a slow run.
    if ! "$binary" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 \
            -timeout=10 -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" 2>"$findings/log.txt"; then
        status=1
        echo "tools/fuzz.sh: $target found a problem:" >&2
        grep -E "ERROR|SUMMARY|fuzz:|Test unit written" "$findings/log.txt" | head -n 20 >&2
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$findings/log.txt" | sed "s/^/  $target /" >&2 || true
    grep -E "^#[0-9]+.*(DONE|cov:)" "$findings/log.txt" | tail -n 1 | sed "s/^/  $target /" >&2 || true
done
exit $status
