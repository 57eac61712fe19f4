#!/usr/bin/env bash
# The one command behind the README's Benchmarks section: installs python3-matplotlib if
# missing, builds the CLI and the benchmark programs (-DCVXCNN_BUILD_BENCH=ON) in
# $CVXCNN_BUILD_DIR (default build/), then runs tools/bench/run_benchmarks.py with the
# given arguments (see its --help: --budget, --subset, --out, --seed, ...).
# Usage: tools/bench/run_benchmarks.sh [run_benchmarks.py options]
#   e.g. tools/bench/run_benchmarks.sh --budget 90 --subset 10000 --out /tmp/bench-out
# The PyTorch rows need python3-torch (optional: skipped with a message without it).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

case "${1:-}" in
    -h|--help) exec /usr/bin/python3 "$CVXCNN_ROOT/tools/bench/run_benchmarks.py" --help ;;
esac
# Bad arguments: one line and exit 1, before anything is installed or built.
if [ -x /usr/bin/python3 ]; then /usr/bin/python3 "$CVXCNN_ROOT/tools/bench/run_benchmarks.py" --check-args "$@"; fi
CVXCNN_PACKAGES+=("${CVXCNN_BENCH_PACKAGES[@]}")
cvxcnn_ensure_packages
CVXCNN_CMAKE_ARGS=(-DCVXCNN_BUILD_BENCH=ON)
cvxcnn_build --target cvxcnn_cli cvxcnn_bench_engine cvxcnn_bench_solver
exec /usr/bin/python3 "$CVXCNN_ROOT/tools/bench/run_benchmarks.py" \
    --build "${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build}" "$@"
