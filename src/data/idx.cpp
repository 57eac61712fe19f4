#include "cvxcnn/data/idx.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <zlib.h>

#include "cvxcnn/util/error.hpp"
#include "data/gzip_reader.hpp"

namespace fs = std::filesystem;

namespace cvxcnn {
namespace {

constexpr std::uint32_t images_magic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr std::uint32_t labels_magic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr std::uint8_t unsigned_byte_type = 0x08;


std::uint32_t big_endian_u32(const std::uint8_t* bytes) {
    return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) | (std::uint32_t{bytes[2]} << 8) |
           std::uint32_t{bytes[3]};
}

std::string hex(std::uint32_t value, int digits) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%0*X", digits, static_cast<unsigned>(value));
    return text;
}
std::string hex32(std::uint32_t value) { return hex(value, 8); }

const char* magic_meaning(std::uint32_t magic) {
    return magic == images_magic ? "IDX unsigned-byte images" : "IDX unsigned-byte labels";
}

// Reads and checks the magic number and the dimension sizes; returns the sizes.
std::vector<std::uint32_t> read_header(GzReader& in, std::uint32_t expected_magic) {
    const fs::path& path = in.path();
    std::array<std::uint8_t, 4> magic{};
    const std::size_t got = in.read(magic.data(), magic.size());
    if (got == 0) throw file_error(path, in.gzip() ? "no data after decompression" : "empty file (0 bytes)");
    if (got < magic.size())
        throw file_error(path, "truncated: only " + std::to_string(got) + " bytes, too short for an IDX header" +
                                   in.truncation_note());
    const std::uint32_t value = big_endian_u32(magic.data());
    const int expected_dims = static_cast<int>(expected_magic & 0xFF);
    const std::string wrong = "wrong magic " + hex32(value) + ", expected " + hex32(expected_magic) + " (" +
                              magic_meaning(expected_magic) + ")";
    if (magic[0] != 0 || magic[1] != 0) throw file_error(path, wrong + "; not an IDX file");
    if (magic[2] != unsigned_byte_type)
        throw file_error(path, wrong + "; element type " + hex(magic[2], 2) +
                                   " is not unsigned byte (0x08), the only type supported");
    if (magic[3] != expected_dims) {
        const std::uint32_t other = expected_magic == images_magic ? labels_magic : images_magic;
        throw file_error(path, wrong + "; " + std::to_string(magic[3]) + " dimensions, expected " +
                                   std::to_string(expected_dims) +
                                   (value == other ? std::string(" (is this the ") +
                                                         (other == images_magic ? "image" : "label") + " file?)"
                                                   : std::string()));
    }
    std::vector<std::uint8_t> sizes(4 * static_cast<std::size_t>(expected_dims));
    const std::size_t size_bytes = in.read(sizes.data(), sizes.size());
    if (size_bytes < sizes.size())
        throw file_error(path, "truncated: header ends after " + std::to_string(4 + size_bytes) + " of its " +
                                   std::to_string(4 + sizes.size()) + " bytes" + in.truncation_note());
    std::vector<std::uint32_t> dims(static_cast<std::size_t>(expected_dims));
    for (std::size_t d = 0; d < dims.size(); ++d) dims[d] = big_endian_u32(&sizes[4 * d]);
    return dims;
}

// After the declared data: nothing may follow, and a gzip member must end properly
// (reading on makes zlib check its CRC and length trailer).
void expect_end(GzReader& in, const std::string& declared) {
    constexpr std::size_t count_cap = 1u << 20;  // enough to say "N extra bytes" usefully
    std::array<std::uint8_t, 4096> buffer{};
    std::size_t extra = 0;
    while (extra <= count_cap) {
        const std::size_t got = in.read(buffer.data(), buffer.size());
        if (got == 0) break;
        extra += got;
    }
    if (extra > 0)
        throw file_error(in.path(), "trailing data: " + (extra > count_cap ? "more than " + std::to_string(count_cap)
                                                                           : std::to_string(extra)) +
                                        " extra bytes after the " + declared + " the header declares");
    const std::string reason = in.gzip_truncation();
    if (!reason.empty()) throw file_error(in.path(), "truncated gzip stream: " + reason + " (its trailer is missing)");
}

// Reads up to `declared` bytes, growing the buffer only as data arrives: a short or
// hostile file declaring gigabytes costs what it holds plus one chunk, not what it claims.
std::vector<std::uint8_t> read_declared(GzReader& in, std::uint64_t declared) {
    constexpr std::uint64_t chunk = 16u << 20;
    std::vector<std::uint8_t> bytes;
    while (bytes.size() < declared) {
        const std::size_t before = bytes.size();
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, declared - before));
        bytes.resize(before + want);
        const std::size_t got = in.read(bytes.data() + before, want);
        bytes.resize(before + got);
        if (got < want) break;
    }
    return bytes;
}

std::string count_text(std::uint64_t count, const char* noun) {
    return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

}  // namespace

IdxImages read_idx_images(const fs::path& path, const IdxLimits& limits) {
    GzReader in(path);
    const auto dims = read_header(in, images_magic);
    const std::uint32_t count = dims[0], rows = dims[1], cols = dims[2];
    // All sizes are bounded here, before the pixel buffer is allocated.
    if (count > limits.max_images)
        throw file_error(path, "header declares " + count_text(count, "image") + ", over the limit of " +
                                   std::to_string(limits.max_images),
                         ErrorKind::limit);
    if (rows > limits.max_side || cols > limits.max_side)
        throw file_error(path, "header declares images of " + std::to_string(rows) + "x" + std::to_string(cols) +
                                   ", over the limit of " + std::to_string(limits.max_side) + " pixels per side",
                         ErrorKind::limit);
    if (count == 0) throw file_error(path, "header declares 0 images");
    if (rows == 0 || cols == 0)
        throw file_error(path, "header declares images of " + std::to_string(rows) + "x" + std::to_string(cols) +
                                   " pixels (no pixels)");
    const std::uint64_t payload = std::uint64_t{count} * rows * cols;  // < 2^56, no overflow
    const std::string declared =
        count_text(count, "image") + " of " + std::to_string(rows) + "x" + std::to_string(cols);
    if (payload > limits.max_payload_bytes)
        throw file_error(path, "header declares " + declared + " (" + std::to_string(payload) +
                                   " bytes), over the limit of " + std::to_string(limits.max_payload_bytes) + " bytes",
                         ErrorKind::limit);

    IdxImages images;
    images.count = count;
    images.rows = static_cast<int>(rows);
    images.cols = static_cast<int>(cols);
    images.pixels = read_declared(in, payload);
    const std::size_t got = images.pixels.size();
    if (got < payload)
        throw file_error(path, "truncated: header declares " + declared + " (" + std::to_string(payload) +
                                   " bytes), file has only " + std::to_string(got) + in.truncation_note());
    expect_end(in, declared);
    return images;
}

std::vector<std::uint8_t> read_idx_labels(const fs::path& path, const IdxLimits& limits) {
    GzReader in(path);
    const std::uint32_t count = read_header(in, labels_magic)[0];
    if (count > limits.max_images)
        throw file_error(path, "header declares " + count_text(count, "label") + ", over the limit of " +
                                   std::to_string(limits.max_images),
                         ErrorKind::limit);
    if (count == 0) throw file_error(path, "header declares 0 labels");
    std::vector<std::uint8_t> labels = read_declared(in, count);
    const std::size_t got = labels.size();
    if (got < count)
        throw file_error(path, "truncated: header declares " + count_text(count, "label") + " (" +
                                   std::to_string(count) + " bytes), file has only " + std::to_string(got) +
                                   in.truncation_note());
    expect_end(in, count_text(count, "label"));
    return labels;
}

ByteImages read_idx_dataset(const fs::path& images_path, const fs::path& labels_path,
                            std::vector<std::string> class_names, const IdxLimits& limits) {
    if (class_names.empty() || class_names.size() > 256)
        throw Error(ErrorKind::internal, "read_idx_dataset: need 1 to 256 class names");
    IdxImages images = read_idx_images(images_path, limits);
    const std::vector<std::uint8_t> labels = read_idx_labels(labels_path, limits);
    if (labels.size() != images.count)
        throw file_error(labels_path, "has " + count_text(labels.size(), "label") + " but " + images_path.string() +
                                          " has " + count_text(images.count, "image"));
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels[i] >= class_names.size())
            throw file_error(labels_path, "label " + std::to_string(labels[i]) + " of item " + std::to_string(i) +
                                              " is out of range for " + std::to_string(class_names.size()) +
                                              " classes (0 to " + std::to_string(class_names.size() - 1) + ")");
    ByteImages out;
    out.shape = ImageShape{1, images.rows, images.cols};
    out.pixels = std::move(images.pixels);
    out.labels.assign(labels.begin(), labels.end());
    out.class_names = std::move(class_names);
    return out;
}

}  // namespace cvxcnn
