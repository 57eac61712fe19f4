// libFuzzer target: the --arch parser (preset names and architecture strings).
// Invariants: an accepted string prints canonically and reads back as the same
// architecture; validate_for_input on any input shape throws or accepts, never crashes.
#include <cstdint>
#include <string>
#include <string_view>

#include "cvxcnn/model/presets.hpp"
#include "fuzz_support.hpp"

using namespace cvxcnn;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::vector<std::vector<std::uint8_t>> seeds;
    for (const std::string text : {"default", "fast", "conv3x3s1p1-relu-pool7", "conv5x5s2p2-gated-pool1",
                                   "conv3x3-leaky0.125-pool2", "conv2x2-abs-pool3"})
        seeds.emplace_back(text.begin(), text.end());
    fuzz::write_seeds(seeds);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    fuzz::expect_clean([&] {
        const Architecture arch = resolve_architecture(text);
        const std::string canonical = to_string(arch);
        fuzz::require(parse_architecture(canonical) == arch, "to_string reads back as the same architecture");
        fuzz::require(to_string(parse_architecture(canonical)) == canonical, "the canonical form is a fixed point");
        // A shape from the input's length: small and huge sides alike.
        const int side = static_cast<int>(size * 977 % 70001);
        fuzz::expect_clean([&] { validate_for_input(arch, ImageShape{1 + static_cast<int>(size % 4), side, side / 2 + 1}); });
    });
    return 0;
}
