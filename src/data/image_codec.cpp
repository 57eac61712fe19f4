#include "cvxcnn/data/image_codec.hpp"

#include <climits>
#include <cstring>
#include <memory>
#include <string>

#include <stb_image.h>
#include <stb_image_resize.h>
#include <stb_image_write.h>

#include "cvxcnn/util/error.hpp"
#include "cvxcnn/util/file_io.hpp"

namespace cvxcnn {
namespace {

struct StbFree {
    void operator()(void* pointer) const noexcept { stbi_image_free(pointer); }
};

std::string size_text(int width, int height) { return std::to_string(width) + "x" + std::to_string(height); }

}  // namespace

DecodedImage decode_image(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                          const DecodeLimits& limits) {
    if (bytes.empty()) throw file_error(name, "empty file (0 bytes)");
    if (bytes.size() > static_cast<std::size_t>(INT_MAX)) throw file_error(name, "file too large to decode", ErrorKind::limit);
    const int length = static_cast<int>(bytes.size());
    int width = 0, height = 0, channels = 0;
    // Header only: the declared size is checked before stb allocates anything.
    if (!stbi_info_from_memory(bytes.data(), length, &width, &height, &channels))
        throw file_error(name, std::string("not a supported image (PNG, JPEG, BMP, PGM/PPM): ") + stbi_failure_reason());
    if (width <= 0 || height <= 0) throw file_error(name, "image has no pixels (" + size_text(width, height) + ")");
    if (width > limits.max_side || height > limits.max_side)
        throw file_error(name, "declared size " + size_text(width, height) + " exceeds the limit of " +
                                   std::to_string(limits.max_side) + " pixels per side (--max-image-side)",
                         ErrorKind::limit);
    int decoded_channels = 0;
    std::unique_ptr<stbi_uc, StbFree> pixels(
        stbi_load_from_memory(bytes.data(), length, &width, &height, &decoded_channels, 0));
    if (!pixels) throw file_error(name, std::string("corrupt or truncated image: ") + stbi_failure_reason());
    DecodedImage image;
    image.height = height;
    image.width = width;
    image.channels = decoded_channels;
    image.pixels.assign(pixels.get(), pixels.get() + static_cast<std::size_t>(width) * height * decoded_channels);
    return image;
}

DecodedImage read_image(const std::filesystem::path& path, const DecodeLimits& limits) {
    const std::vector<std::uint8_t> bytes = read_file(path, limits.max_file_bytes);
    return decode_image(bytes, path, limits);
}

DecodedImage convert_channels(const DecodedImage& image, int channels) {
    if (channels != 1 && channels != 3) throw Error(ErrorKind::internal, "convert_channels: channels must be 1 or 3");
    const bool source_gray = image.channels <= 2;
    if (image.channels == channels) return image;
    DecodedImage out;
    out.height = image.height;
    out.width = image.width;
    out.channels = channels;
    const std::size_t count = static_cast<std::size_t>(image.height) * image.width;
    out.pixels.resize(count * channels);
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint8_t* in = &image.pixels[i * image.channels];
        std::uint8_t* px = &out.pixels[i * channels];
        if (source_gray) {
            for (int c = 0; c < channels; ++c) px[c] = in[0];
        } else if (channels == 1) {
            // stb's integer BT.601 luma, so our conversion matches stb's own req_comp = 1.
            px[0] = static_cast<std::uint8_t>((in[0] * 77 + in[1] * 150 + in[2] * 29) >> 8);
        } else {
            px[0] = in[0];
            px[1] = in[1];
            px[2] = in[2];
        }
    }
    return out;
}

DecodedImage resize_image(const DecodedImage& image, int height, int width) {
    if (height <= 0 || width <= 0) throw Error(ErrorKind::bad_input, "--resize: sizes must be positive");
    if (image.height == height && image.width == width) return image;
    DecodedImage out;
    out.height = height;
    out.width = width;
    out.channels = image.channels;
    out.pixels.resize(static_cast<std::size_t>(height) * width * image.channels);
    if (!stbir_resize_uint8(image.pixels.data(), image.width, image.height, 0, out.pixels.data(), width, height, 0,
                            image.channels))
        throw Error(ErrorKind::internal, "stb resize failed");
    return out;
}

std::vector<std::uint8_t> encode_png(std::span<const std::uint8_t> hwc, int height, int width, int channels) {
    if (channels < 1 || channels > 4 || height <= 0 || width <= 0 ||
        hwc.size() != static_cast<std::size_t>(height) * width * channels)
        throw Error(ErrorKind::internal, "encode_png: inconsistent image size");
    std::vector<std::uint8_t> png;
    const auto append = [](void* context, void* data, int size) {
        auto* out = static_cast<std::vector<std::uint8_t>*>(context);
        const auto* begin = static_cast<const std::uint8_t*>(data);
        out->insert(out->end(), begin, begin + size);
    };
    if (!stbi_write_png_to_func(append, &png, width, height, channels, hwc.data(), width * channels) || png.empty())
        throw Error(ErrorKind::internal, "PNG encoding failed");
    return png;
}

std::vector<std::uint8_t> encode_png_chw(std::span<const std::uint8_t> chw, int height, int width, int channels) {
    const std::size_t plane = static_cast<std::size_t>(height) * width;
    if (chw.size() != plane * channels) throw Error(ErrorKind::internal, "encode_png_chw: inconsistent image size");
    std::vector<std::uint8_t> hwc(chw.size());
    for (int c = 0; c < channels; ++c)
        for (std::size_t p = 0; p < plane; ++p) hwc[p * channels + c] = chw[c * plane + p];
    return encode_png(hwc, height, width, channels);
}

}  // namespace cvxcnn
