#!/usr/bin/env bash
# Builds cvxcnn and runs the whole test suite through ctest.
# Usage: tools/test.sh [ctest arguments...]     e.g. tools/test.sh -R ImageFolder
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

cvxcnn_ensure_packages
CVXCNN_CMAKE_ARGS=(-DCVXCNN_BUILD_TESTS=ON -DCVXCNN_WERROR=ON)
cvxcnn_build
cd "${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build}"
ctest --output-on-failure --parallel "$(nproc)" "$@"
