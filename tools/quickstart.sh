#!/usr/bin/env bash
# Builds cvxcnn and runs the main job on the bundled sample dataset, as far as the
# project has it: today, loading the image folders and their patch statistics.
# Training, evaluation, prediction and export join here as they land.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

cvxcnn_ensure_packages
CVXCNN_CMAKE_ARGS=(-DCVXCNN_BUILD_TESTS=OFF)
CVXCNN_BUILD_DIR=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build-quickstart} cvxcnn_build --target cvxcnn_cli
cli=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build-quickstart}/cvxcnn
sample=$CVXCNN_ROOT/datasets/fashion-mnist-sample

echo "== cvxcnn info $sample/train"
"$cli" info "$sample/train" --arch conv3x3s1p1-relu-pool7
echo
echo "== cvxcnn info $sample/test"
"$cli" info "$sample/test" --arch conv3x3s1p1-relu-pool7
echo
echo "quickstart: done (training, eval, predict and export arrive with the solver and engine issues)"
