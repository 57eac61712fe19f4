# Shared by tools/test.sh and tools/quickstart.sh: Debian packages and the build.
# Sourced, not executed.

CVXCNN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Every Debian 12 package the build and the test suite need. ocl-icd-opencl-dev is not
# used by cvxcnn, but oneDNN's CMake config refuses to load without it. python3-onnx lets
# the export tests run ONNX's own checker on the exported graphs (skipped without it).
# tools/test.sh --sanitize uses g++'s own ASan/UBSan runtimes.
CVXCNN_PACKAGES=(cmake make g++ pkg-config libdnnl-dev ocl-icd-opencl-dev libeigen3-dev libtbb-dev
                 libstb-dev libgtest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
                 libonnx-dev libprotobuf-dev libbenchmark-dev python3-onnx)

# Only tools/bench/run_benchmarks.sh adds these (plots; the optional PyTorch baseline is
# python3-torch, installed by hand): the build and the tests never need them.
CVXCNN_BENCH_PACKAGES=(python3 python3-matplotlib)
# Only tools/fuzz.sh adds these: clang's libFuzzer and its sanitizer runtimes.
CVXCNN_FUZZ_PACKAGES=(clang libclang-rt-14-dev)

# Installs missing packages with apt-get when root; otherwise prints the line to run
# and exits 1. Does nothing when everything is present, so it is safe to repeat.
cvxcnn_ensure_packages() {
    local missing=() package
    for package in "${CVXCNN_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages; install them with:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists only when they are absent or an install fails on them.
    if ! apt-get install -y -q "${missing[@]}" >&2; then
        apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2
    fi
}

# Configures (once) and builds the given targets in $CVXCNN_BUILD_DIR (default build/).
cvxcnn_build() {
    local build_dir=${CVXCNN_BUILD_DIR:-$CVXCNN_ROOT/build}
    cmake -S "$CVXCNN_ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "${CVXCNN_CMAKE_ARGS[@]}" >/dev/null
    cmake --build "$build_dir" --parallel "$(nproc)" "$@"
}
