// Decoding and encoding single images with stb (PNG, JPEG, BMP, PGM/PPM only).
//
// Decoding reads the declared size from the header first and refuses images over the
// configured limits before anything is allocated; every failure is a cvxcnn::Error
// naming the file and stb's reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace cvxcnn {

struct DecodeLimits {
    int max_side = 4096;                        ///< largest accepted width or height
    std::uint64_t max_file_bytes = 64ull << 20;  ///< largest accepted file
};

/// An 8-bit image, interleaved HWC as stb returns it; channels 1 (gray), 2 (gray+alpha),
/// 3 (RGB) or 4 (RGBA).
struct DecodedImage {
    int height = 0;
    int width = 0;
    int channels = 0;
    std::vector<std::uint8_t> pixels;  ///< height * width * channels, HWC
};

/// Decodes an in-memory file. `name` is used in error messages only.
[[nodiscard]] DecodedImage decode_image(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                                        const DecodeLimits& limits = {});
/// Reads (size-capped) and decodes a file.
[[nodiscard]] DecodedImage read_image(const std::filesystem::path& path, const DecodeLimits& limits = {});

/// Drops alpha and converts to 1 (luma, ITU-R BT.601 weights as stb uses) or 3 channels.
[[nodiscard]] DecodedImage convert_channels(const DecodedImage& image, int channels);
/// Resamples to height x width with stb's resizer (default filter, sRGB-agnostic).
[[nodiscard]] DecodedImage resize_image(const DecodedImage& image, int height, int width);

/// Encodes 8-bit HWC pixels (channels 1..4) as PNG.
[[nodiscard]] std::vector<std::uint8_t> encode_png(std::span<const std::uint8_t> hwc, int height, int width,
                                                   int channels);
/// Encodes 8-bit CHW planes (as in ByteImages) as PNG.
[[nodiscard]] std::vector<std::uint8_t> encode_png_chw(std::span<const std::uint8_t> chw, int height, int width,
                                                       int channels);

}  // namespace cvxcnn
