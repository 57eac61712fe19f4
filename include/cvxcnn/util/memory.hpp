// Memory budgets: how much RAM the machine has, and sizes written as users write them.
#pragma once

#include <cstddef>
#include <string>

namespace cvxcnn {

/// Physical RAM of this machine in bytes (0 if unknown).
[[nodiscard]] std::size_t physical_memory_bytes();

/// Parses "12G", "800M", "64k", "1.5G" or a plain byte count (binary units, case-insensitive,
/// optional trailing "B" or "iB"). Throws cvxcnn::Error naming `option`.
[[nodiscard]] std::size_t parse_byte_size(const std::string& text, const std::string& option);

}  // namespace cvxcnn
