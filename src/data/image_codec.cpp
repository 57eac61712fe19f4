#include "cvxcnn/data/image_codec.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <memory>
#include <optional>
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

// stb_image 2.27 (Debian's libstb-dev) writes past its 257-entry Huffman size list and
// 256-entry value table when a JPEG DHT segment declares more than 256 codes (found by
// tools/fuzz.sh image; upstream checks this since 2.28). Such files are refused before
// stb sees them. The walk follows the segment structure as stb's marker loop does
// (lengths, stuffed 0xFF00, RSTn, entropy-coded data between markers) and, like stb,
// reads bytes past the end as 0.
bool jpeg_huffman_tables_fit(std::span<const std::uint8_t> bytes) {
    // Start of image as stb finds it: 0xFF, any number of fill bytes 0xFF, then 0xD8.
    std::size_t i = 0;
    while (i < bytes.size() && bytes[i] == 0xFF) ++i;
    if (i == 0 || i >= bytes.size() || bytes[i] != 0xD8) return true;  // not a JPEG
    ++i;
    const auto at = [&](std::size_t k) -> unsigned { return k < bytes.size() ? bytes[k] : 0u; };
    while (i < bytes.size()) {
        if (bytes[i] != 0xFF) {  // entropy-coded data (or junk) between segments
            ++i;
            continue;
        }
        while (i < bytes.size() && bytes[i] == 0xFF) ++i;  // fill bytes
        if (i >= bytes.size()) break;
        const unsigned marker = bytes[i++];
        if (marker == 0x00 || marker == 0x01 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7)) continue;
        if (marker == 0xD9) break;  // end of image
        const unsigned length = at(i) << 8 | at(i + 1);
        if (marker == 0xC4) {
            long remaining = static_cast<long>(length) - 2;
            std::size_t table = i + 2;
            while (remaining > 0) {
                unsigned codes = 0;
                for (std::size_t k = 0; k < 16; ++k) codes += at(table + 1 + k);
                if (codes > 256) return false;
                table += 17 + codes;
                remaining -= 17 + static_cast<long>(codes);
            }
        }
        i += std::max(length, 2u);
    }
    return true;
}

// stb_image 2.27 parses the numbers of a PGM/PPM header into an int without an overflow
// check (undefined behaviour; found by tools/fuzz.sh image, checked upstream since 2.28).
// This mirrors its header scan (whitespace, '#' comments, digits; bytes past the end
// end the scan as stb's at-eof test does) and refuses a number above INT_MAX.
bool pnm_header_numbers_fit(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < 2 || bytes[0] != 'P' || (bytes[1] != '5' && bytes[1] != '6')) return true;  // not PNM
    std::size_t position = 2;
    const auto at_eof = [&] { return position >= bytes.size(); };
    const auto get8 = [&]() -> char { return at_eof() ? '\0' : static_cast<char>(bytes[position++]); };
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
    char c = get8();
    for (int number = 0; number < 3; ++number) {  // width, height, maximum value
        for (;;) {
            while (!at_eof() && is_space(c)) c = get8();
            if (at_eof() || c != '#') break;
            while (!at_eof() && c != '\n' && c != '\r') c = get8();
        }
        long long value = 0;
        while (!at_eof() && c >= '0' && c <= '9') {
            value = value * 10 + (c - '0');
            if (value > INT_MAX) return false;
            c = get8();
        }
    }
    return true;
}

// stb_image 2.27 grows its IDAT buffer to the length a PNG chunk declares before reading
// it, so a 160-byte file can ask for 2 GB (found by tools/fuzz.sh image). Every chunk up
// to IEND must fit in the file (length, type, data, CRC); the first one that does not is
// the defect, as "<type> chunk declares N bytes, M remain". An empty IDAT before any image
// data is refused too: stb then computes a null pointer plus 0 (undefined behaviour, found
// by the same fuzzer); encoders do not write one.
std::optional<std::string> png_chunk_defect(std::span<const std::uint8_t> bytes) {
    constexpr std::array<std::uint8_t, 8> signature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (bytes.size() < signature.size() || !std::equal(signature.begin(), signature.end(), bytes.begin()))
        return std::nullopt;  // not a PNG
    std::size_t position = signature.size();
    bool image_data = false;
    while (bytes.size() - position >= 8) {
        const std::uint64_t length = std::uint64_t{bytes[position]} << 24 | std::uint64_t{bytes[position + 1]} << 16 |
                                     std::uint64_t{bytes[position + 2]} << 8 | bytes[position + 3];
        std::string type;
        for (std::size_t k = 4; k < 8; ++k) type += static_cast<char>(bytes[position + k]);
        const std::uint64_t remaining = bytes.size() - position - 8;
        if (length + 4 > remaining)
            return type + " chunk declares " + std::to_string(length) + " bytes, " + std::to_string(remaining) +
                   " remain (with its CRC)";
        if (type == "IEND") break;
        if (type == "IDAT") {
            if (length == 0 && !image_data) return std::string("empty IDAT chunk before any image data");
            image_data = image_data || length > 0;
        }
        position += 8 + static_cast<std::size_t>(length) + 4;
    }
    return std::nullopt;
}

std::string size_text(int width, int height) { return std::to_string(width) + "x" + std::to_string(height); }

}  // namespace

DecodedImage decode_image(std::span<const std::uint8_t> bytes, const std::filesystem::path& name,
                          const DecodeLimits& limits) {
    if (bytes.empty()) throw file_error(name, "empty file (0 bytes)");
    if (bytes.size() > static_cast<std::size_t>(INT_MAX)) throw file_error(name, "file too large to decode", ErrorKind::limit);
    const int length = static_cast<int>(bytes.size());
    if (!jpeg_huffman_tables_fit(bytes))
        throw file_error(name, "corrupt JPEG: a Huffman table declares more than 256 codes");
    if (const auto defect = png_chunk_defect(bytes)) throw file_error(name, "corrupt or truncated image: PNG " + *defect);
    if (!pnm_header_numbers_fit(bytes))
        throw file_error(name, "corrupt PGM/PPM header: a number is over 2147483647");
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
