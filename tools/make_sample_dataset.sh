#!/usr/bin/env bash
# Rebuilds datasets/fashion-mnist-sample from the original Fashion-MNIST files:
# for each class, the first 100 images of the TRAIN split (in file order) go to
# train/<class>/ and the next 20 to test/<class>/. Deterministic: same files every run.
# Usage: tools/make_sample_dataset.sh [FASHION_MNIST_DIR]   (default ../shared/data/fashion-mnist)
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

source_dir=${1:-$CVXCNN_ROOT/../shared/data/fashion-mnist}
target=$CVXCNN_ROOT/datasets/fashion-mnist-sample
cvxcnn_build --target cvxcnn_cli
cli=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build}/cvxcnn

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$cli" --quiet import fashion-mnist "$source_dir" "$scratch/full"
staging=$scratch/sample
for class_dir in "$scratch"/full/train/*/; do
    class=$(basename "$class_dir")
    mkdir -p "$staging/train/$class" "$staging/test/$class"
    mapfile -t files < <(find "$class_dir" -name '*.png' -printf '%f\n' | LC_ALL=C sort | head -n 120)
    [ ${#files[@]} -eq 120 ] || { echo "class $class has fewer than 120 images" >&2; exit 1; }
    for file in "${files[@]:0:100}"; do cp "$class_dir/$file" "$staging/train/$class/"; done
    for file in "${files[@]:100:20}"; do cp "$class_dir/$file" "$staging/test/$class/"; done
done
rm -rf "$target/train" "$target/test"
mkdir -p "$target"
mv "$staging/train" "$staging/test" "$target/"
echo "wrote $(find "$target/train" -name '*.png' | wc -l) train and $(find "$target/test" -name '*.png' | wc -l) test images to $target"
