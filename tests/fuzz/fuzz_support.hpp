// Shared by the libFuzzer targets of tests/fuzz (built with -DCVXCNN_BUILD_FUZZ=ON and
// clang; run by tools/fuzz.sh).
//
// The contract every target checks: bad input ends in a cvxcnn::Error whose message is
// one line and whose kind is not `internal`; anything else (a crash, a sanitizer report,
// another exception, a multi-line or internal error) aborts, and libFuzzer keeps the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "cvxcnn/util/error.hpp"

namespace cvxcnn::fuzz {

/// Aborts (a finding) unless the error is a one-line, non-internal cvxcnn::Error.
void check_error(const Error& error);

/// Runs `action`; an Error is an acceptable outcome if check_error passes it.
template <typename Action>
void expect_clean(Action&& action) {
    try {
        action();
    } catch (const Error& error) {
        check_error(error);
    }
}

/// Aborts with `what` when `condition` is false (an invariant the target asserts).
void require(bool condition, const char* what);

/// Writes bytes to a per-process scratch file with the given name (readers that take a
/// path: IDX, CIFAR) and returns its path; the same path is reused by every input.
[[nodiscard]] std::filesystem::path scratch_file(std::span<const std::uint8_t> bytes, const std::string& name);

/// Bytes as one gzip member (for seeds of the readers that accept .gz).
[[nodiscard]] std::vector<std::uint8_t> gzip(std::span<const std::uint8_t> bytes);

/// When the environment variable CVXCNN_FUZZ_SEED_DIR names a folder, writes each seed
/// there as seed-<i> (tools/fuzz.sh builds the starting corpus this way).
void write_seeds(const std::vector<std::vector<std::uint8_t>>& seeds);

}  // namespace cvxcnn::fuzz
