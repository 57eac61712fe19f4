// Model files: one self-contained, checksummed file per trained network.
//
// Layout (byte-exact description in models/FORMAT.md): magic, format version, byte-order
// marker, a length-prefixed JSON header (architecture, input, classes, normalization,
// training, tensor table), 64-byte aligned float32 tensors, CRC-32 of everything before.
// The reader trusts nothing: every size is bounded and overflow-checked and the file
// size must match exactly before anything is allocated from the file's numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "cvxcnn/model/model.hpp"

namespace cvxcnn {

inline constexpr std::uint32_t model_format_version = 1;
inline constexpr std::size_t model_alignment = 64;  ///< of the data section and of each tensor

struct ReadLimits {
    std::uint64_t max_file_bytes = 4ull << 30;     ///< larger files are refused unread
    std::uint64_t max_header_bytes = 16ull << 20;  ///< cap on the JSON header length N
};

/// Validates the model (an invalid one is refused, nothing is written) and writes it
/// atomically: an earlier file at `path` stays intact unless the write succeeds.
/// Throws cvxcnn::Error "<path>: <defect>".
void write_model(const std::filesystem::path& path, const Model& model);

/// Reads and fully validates a model file (format, sizes, checksum, then model_defect).
/// Throws cvxcnn::Error with the one-line message "<path>: <defect>".
[[nodiscard]] Model read_model(const std::filesystem::path& path, const ReadLimits& limits = {});

/// The exact bytes write_model would write (for tests and fuzzing).
[[nodiscard]] std::vector<std::uint8_t> encode_model(const Model& model);

/// read_model on bytes already in memory; `name` stands for the path in messages.
[[nodiscard]] Model decode_model(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                                 const ReadLimits& limits = {});

}  // namespace cvxcnn
