#!/usr/bin/env bash
# Builds cvxcnn and runs the whole job on the bundled sample dataset: dataset statistics,
# convex training, evaluation on the held-out test folder (oneDNN engine), prediction of
# a few images, ONNX export, and the model summary. Ends by printing the test accuracy.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

cvxcnn_ensure_packages
CVXCNN_CMAKE_ARGS=(-DCVXCNN_BUILD_TESTS=OFF)
build_dir=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build-quickstart}
CVXCNN_BUILD_DIR=$build_dir cvxcnn_build --target cvxcnn_cli
cli=$build_dir/cvxcnn
sample=$CVXCNN_ROOT/datasets/fashion-mnist-sample

model=${CVXCNN_QUICKSTART_MODEL:-$build_dir/sample.cvx}
onnx_file=${model%.cvx}.onnx
arch=conv3x3s1p1-gated-pool7

echo "== cvxcnn info $sample/train --arch $arch"
"$cli" -q info "$sample/train" --arch "$arch"
echo
echo "== cvxcnn train $sample/train --out $model --arch $arch --patterns 8 --seed 0 --max-iters 300"
"$cli" train "$sample/train" --out "$model" --arch "$arch" --patterns 8 --seed 0 --max-iters 300
echo
echo "== cvxcnn eval $model $sample/test"
evaluation=$("$cli" -q eval "$model" "$sample/test")
echo "$evaluation"
echo
# One image of each of the first three classes, best two classes each.
images=()
for class_dir in "$sample"/test/*/; do
    images+=("$(find "$class_dir" -name '*.png' | sort | head -n 1)")
    [ ${#images[@]} -ge 3 ] && break
done
echo "== cvxcnn predict $model <3 test images> --top 2"
"$cli" -q predict "$model" "${images[@]}" --top 2
echo
echo "== cvxcnn export $model --format onnx --out $onnx_file"
"$cli" export "$model" --format onnx --out "$onnx_file"
echo
echo "== cvxcnn info $model"
"$cli" info "$model" | head -n 12
echo
# First line of the evaluation: "accuracy A% +- S% on N images (...)".
echo "quickstart: done; test $(echo "$evaluation" | head -n 1 | sed 's/ (.*//')"
