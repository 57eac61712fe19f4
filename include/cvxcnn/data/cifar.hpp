// Readers for the CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin).
//
// A batch is a bare sequence of 3073-byte records: a label byte (0 to 9), then the red,
// green and blue 32x32 planes, row-major; that is already ByteImages' CHW layout. Files
// are read through zlib's gzopen, so ".bin" and ".bin.gz" both work. Class names come
// from batches.meta.txt beside the batch when present, else the standard ten.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "cvxcnn/data/dataset.hpp"

namespace cvxcnn {

inline constexpr std::size_t cifar_record_bytes = 3073;  ///< 1 label + 3 x 32 x 32 pixels

struct CifarLimits {
    /// Most records accepted in one call (a batch holds 10000), checked before the
    /// buffers grow past it; exceeding it is an ErrorKind::limit error.
    std::uint64_t max_records = 1'000'000;
};

/// airplane automobile bird cat deer dog frog horse ship truck.
[[nodiscard]] const std::vector<std::string>& cifar10_standard_class_names();

/// The class names for batches in `folder`: batches.meta.txt there (exactly 10
/// non-empty lines, one name per line; trailing blank lines allowed) if it exists,
/// else cifar10_standard_class_names().
[[nodiscard]] std::vector<std::string> read_cifar_class_names(const std::filesystem::path& folder);

/// Reads one batch file (raw or gzip) as 3x32x32 ByteImages, in file order.
[[nodiscard]] ByteImages read_cifar_batch(const std::filesystem::path& path, const CifarLimits& limits = {});

/// Reads and concatenates batches in the given order (class names from the first
/// file's folder). limits.max_records caps the total.
[[nodiscard]] ByteImages read_cifar_batches(const std::vector<std::filesystem::path>& paths,
                                            const CifarLimits& limits = {});

}  // namespace cvxcnn
