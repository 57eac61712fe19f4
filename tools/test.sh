#!/usr/bin/env bash
# Builds cvxcnn and runs the whole test suite through ctest.
# Usage: tools/test.sh [--sanitize] [ctest arguments...]     e.g. tools/test.sh -R ImageFolder
#   --sanitize  build with AddressSanitizer + UndefinedBehaviorSanitizer in build-sanitize/
#               (or $CVXCNN_BUILD_DIR) and run the suite under them; any report fails the run.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

CVXCNN_CMAKE_ARGS=(-DCVXCNN_BUILD_TESTS=ON -DCVXCNN_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
    shift
    CVXCNN_BUILD_DIR=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build-sanitize}
    # Portable code, not -march=native: the run checks memory and undefined behaviour, not
    # speed, and under ASan GCC 12's AVX-512 intrinsics trip -Wuninitialized falsely
    # (self-initialized _mm512_undefined_pd, GCC PR 105593), which -Werror makes fatal.
    # -O1: the sanitized build is compiled only to be checked; at -O3 compiling it took
    # most of CI's time.
    CVXCNN_CMAKE_ARGS+=(-DCVXCNN_SANITIZE=ON -DCVXCNN_NATIVE=OFF
                        "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG")
    export CVXCNN_BUILD_DIR
    # Stop at the first report, with a stack; leaks are checked with the precise
    # suppressions of tools/sanitizers/lsan.supp (each one explained there).
    export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:check_initialization_order=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$CVXCNN_ROOT/tools/sanitizers/lsan.supp:print_suppressions=0}
fi

cvxcnn_ensure_packages
cvxcnn_build
cd "${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build}"
ctest --output-on-failure --parallel "$(nproc)" "$@"
