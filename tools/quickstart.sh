#!/usr/bin/env bash
# Builds cvxcnn and runs the main job on the bundled sample dataset, as far as the
# project has it: dataset statistics, convex training, evaluation on the held-out test
# folder, and the model summary. Prediction and export join here as they land.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

cvxcnn_ensure_packages
CVXCNN_CMAKE_ARGS=(-DCVXCNN_BUILD_TESTS=OFF)
CVXCNN_BUILD_DIR=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build-quickstart} cvxcnn_build --target cvxcnn_cli
cli=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build-quickstart}/cvxcnn
sample=$CVXCNN_ROOT/datasets/fashion-mnist-sample

model=${CVXCNN_QUICKSTART_MODEL:-$CVXCNN_ROOT/build-quickstart/sample.cvx}
arch=conv3x3s1p1-gated-pool7

echo "== cvxcnn info $sample/train --arch $arch"
"$cli" -q info "$sample/train" --arch "$arch"
echo
echo "== cvxcnn train $sample/train --out $model --arch $arch --patterns 8 --seed 0"
"$cli" train "$sample/train" --out "$model" --arch "$arch" --patterns 8 --seed 0 --max-iters 300
echo
echo "== cvxcnn eval $model $sample/test"
"$cli" -q eval "$model" "$sample/test"
echo
echo "== cvxcnn info $model"
"$cli" info "$model" | head -n 12
echo
echo "quickstart: done (predict and ONNX export arrive with the oneDNN engine issue)"
