// Named architectures (--arch default, --arch fast, ...): the presets of models/presets.json,
// compiled in at build time so the binary does not depend on where it is run from.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cvxcnn/model/architecture.hpp"

namespace cvxcnn {

struct ArchitecturePreset {
    std::string name;         ///< e.g. "default"
    Architecture architecture;
    std::string description;  ///< why it exists, one paragraph
};

/// Every preset, in file order. Parsed once; a malformed presets file is a build defect
/// and throws cvxcnn::Error (internal).
[[nodiscard]] const std::vector<ArchitecturePreset>& architecture_presets();

/// A preset name or an architecture string ("conv3x3s1p1-relu-pool7"). Throws
/// cvxcnn::Error "--arch '<text>': ..." naming the presets when it is neither.
[[nodiscard]] Architecture resolve_architecture(std::string_view name_or_spec);

}  // namespace cvxcnn
