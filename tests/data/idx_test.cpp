// IDX reader: pixel-exact round trips (raw and gzip) and every malformed input.
#include "cvxcnn/data/idx.hpp"

#include <chrono>
#include <functional>
#include <memory>

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;

namespace {

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(value >> shift));
}

std::uint8_t pixel_value(std::size_t i) { return static_cast<std::uint8_t>((i * 37 + i / 7) % 256); }

std::vector<std::uint8_t> idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols,
                                     std::uint32_t magic = 0x00000803) {
    std::vector<std::uint8_t> bytes;
    put_u32(bytes, magic);
    put_u32(bytes, count);
    put_u32(bytes, rows);
    put_u32(bytes, cols);
    for (std::size_t i = 0; i < std::size_t{count} * rows * cols; ++i) bytes.push_back(pixel_value(i));
    return bytes;
}

std::vector<std::uint8_t> idx_labels(const std::vector<std::uint8_t>& labels) {
    std::vector<std::uint8_t> bytes;
    put_u32(bytes, 0x00000801);
    put_u32(bytes, static_cast<std::uint32_t>(labels.size()));
    bytes.insert(bytes.end(), labels.begin(), labels.end());
    return bytes;
}



}  // namespace

TEST(IdxImages, RoundTripRawAndGzipPixelExact) {
    test::ScratchDir dir;
    const auto bytes = idx_images(3, 4, 5);
    test::write_bytes(dir / "images", bytes);
    test::write_gzip(dir / "images.gz", bytes);
    EXPECT_LT(fs::file_size(dir / "images.gz"), bytes.size() + 40);  // really gzip, not a copy
    for (const fs::path& path : {dir / "images", dir / "images.gz"}) {
        const IdxImages images = read_idx_images(path);
        EXPECT_EQ(images.count, 3u);
        EXPECT_EQ(images.rows, 4);
        EXPECT_EQ(images.cols, 5);
        ASSERT_EQ(images.pixels.size(), 60u);
        for (std::size_t i = 0; i < 60; ++i) ASSERT_EQ(images.pixels[i], pixel_value(i)) << path << " at " << i;
    }
}

TEST(IdxLabels, RoundTripRawAndGzip) {
    test::ScratchDir dir;
    const std::vector<std::uint8_t> labels{7, 0, 9, 3, 3};
    test::write_bytes(dir / "labels", idx_labels(labels));
    test::write_gzip(dir / "labels.gz", idx_labels(labels));
    EXPECT_EQ(read_idx_labels(dir / "labels"), labels);
    EXPECT_EQ(read_idx_labels(dir / "labels.gz"), labels);
}

TEST(IdxDataset, CombinesImagesLabelsAndClassNames) {
    test::ScratchDir dir;
    test::write_gzip(dir / "images.gz", idx_images(3, 2, 2));
    test::write_bytes(dir / "labels", idx_labels({2, 0, 1}));
    const ByteImages data = read_idx_dataset(dir / "images.gz", dir / "labels", {"a", "b", "c"});
    EXPECT_EQ(data.shape, (ImageShape{1, 2, 2}));
    EXPECT_EQ(data.labels, (std::vector<std::int32_t>{2, 0, 1}));
    EXPECT_EQ(data.class_names, (std::vector<std::string>{"a", "b", "c"}));
    ASSERT_EQ(data.size(), 3u);
    EXPECT_EQ(data.image(2)[3], pixel_value(11));  // image 2, row 1, column 1
}

TEST(IdxErrors, WrongMagicTypeAndDimensions) {
    test::ScratchDir dir;
    const fs::path path = dir / "bad";
    test::write_bytes(path, idx_images(1, 2, 2, 0x12345678));
    EXPECT_EQ(test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path, ""),
              path.string() +
                  ": wrong magic 0x12345678, expected 0x00000803 (IDX unsigned-byte images); not an IDX file");

    test::write_bytes(path, idx_images(1, 2, 2, 0x00000D03));  // float elements
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path,
                 "wrong magic 0x00000D03, expected 0x00000803 (IDX unsigned-byte images); element type 0x0D");

    test::write_bytes(path, idx_labels({1, 2}));  // a label file where images are expected
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path,
                 "1 dimensions, expected 3 (is this the label file?)");
    test::write_bytes(path, idx_images(1, 2, 2));
    test::expect_file_error([&] { (void)read_idx_labels(path); }, ErrorKind::bad_input, path,
                 "wrong magic 0x00000803, expected 0x00000801 (IDX unsigned-byte labels)");
}

TEST(IdxErrors, TruncatedDataRawAndGzip) {
    test::ScratchDir dir;
    auto bytes = idx_images(5, 28, 28);
    bytes.resize(16 + 3000);
    test::write_bytes(dir / "short", bytes);
    test::write_gzip(dir / "short.gz", bytes);  // a well-formed gzip of a short file
    for (const fs::path& path : {dir / "short", dir / "short.gz"})
        EXPECT_EQ(test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path, ""),
                  path.string() + ": truncated: header declares 5 images of 28x28 (3920 bytes), file has only 3000");

    bytes.resize(10);  // inside the header
    test::write_bytes(dir / "header", bytes);
    test::expect_file_error([&] { (void)read_idx_images(dir / "header"); }, ErrorKind::bad_input, dir / "header",
                 "truncated: header ends after 10 of its 16 bytes");

    test::write_bytes(dir / "labels", idx_labels({1, 2, 3}));
    auto labels = test::read_bytes(dir / "labels");
    labels.pop_back();
    test::write_bytes(dir / "labels", labels);
    test::expect_file_error([&] { (void)read_idx_labels(dir / "labels"); }, ErrorKind::bad_input, dir / "labels",
                 "truncated: header declares 3 labels (3 bytes), file has only 2");
}

TEST(IdxErrors, TruncatedGzipStream) {
    test::ScratchDir dir;
    const fs::path full = dir / "full.gz";
    test::write_gzip(full, idx_images(20, 28, 28));
    const auto gz = test::read_bytes(full);

    // Cut inside the compressed data: the data ends early and zlib says why.
    const fs::path cut = dir / "cut.gz";
    test::write_bytes(cut, std::vector<std::uint8_t>(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2)));
    test::expect_file_error([&] { (void)read_idx_images(cut); }, ErrorKind::bad_input, cut,
                 "(gzip stream ends early: unexpected end of file)");

    // Only the 8-byte CRC/length trailer missing: all pixels arrive, still refused.
    const fs::path no_trailer = dir / "no_trailer.gz";
    test::write_bytes(no_trailer, std::vector<std::uint8_t>(gz.begin(), gz.end() - 8));
    test::expect_file_error([&] { (void)read_idx_images(no_trailer); }, ErrorKind::bad_input, no_trailer,
                 "truncated gzip stream: unexpected end of file");
}

TEST(IdxErrors, TrailingBytes) {
    test::ScratchDir dir;
    auto bytes = idx_images(2, 3, 3);
    bytes.insert(bytes.end(), {1, 2, 3});
    test::write_bytes(dir / "images", bytes);
    test::write_gzip(dir / "images.gz", bytes);
    for (const fs::path& path : {dir / "images", dir / "images.gz"})
        test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path,
                     "trailing data: 3 extra bytes after the 2 images of 3x3 the header declares");
    auto labels = idx_labels({1});
    labels.push_back(0);
    test::write_bytes(dir / "labels", labels);
    test::expect_file_error([&] { (void)read_idx_labels(dir / "labels"); }, ErrorKind::bad_input, dir / "labels",
                 "trailing data: 1 extra bytes");
}

TEST(IdxErrors, HugeDeclaredSizesRefusedBeforeAllocating) {
    test::ScratchDir dir;
    const fs::path path = dir / "huge";
    const auto start = std::chrono::steady_clock::now();
    // Header only: a reader that allocated first would need terabytes or hit bad_alloc.
    auto header = [&](std::uint32_t magic, std::vector<std::uint32_t> dims) {
        std::vector<std::uint8_t> bytes;
        put_u32(bytes, magic);
        for (auto d : dims) put_u32(bytes, d);
        test::write_bytes(path, bytes);
    };
    header(0x803, {0xFFFFFFFF, 28, 28});
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::limit, path,
                 "header declares 4294967295 images, over the limit of 10000000");
    header(0x803, {1, 100000, 28});
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::limit, path,
                 "images of 100000x28, over the limit of 4096 pixels per side");
    header(0x803, {10'000'000, 4096, 4096});  // every size within its cap, the product is not
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::limit, path,
                 "(167772160000000 bytes), over the limit of 2147483648 bytes");
    header(0x801, {0xFFFFFFFF});
    test::expect_file_error([&] { (void)read_idx_labels(path); }, ErrorKind::limit, path, "over the limit of 10000000");
    // A lower configured cap applies too.
    header(0x803, {100, 28, 28});
    IdxLimits small;
    small.max_payload_bytes = 78399;
    test::expect_file_error([&] { (void)read_idx_images(path, small); }, ErrorKind::limit, path, "over the limit of 78399 bytes");
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
}

// A header within every cap (2e9 bytes of pixels) on a file of a few bytes: the reader
// must fail as truncated having allocated about what the file holds, not what it claims.
// Measured in a child process, whose peak resident size is this read's alone.
TEST(IdxErrors, ShortFileDeclaringGigabytesAllocatesOnlyWhatItHolds) {
    test::ScratchDir dir;
    std::vector<std::uint8_t> bytes;
    for (const std::uint32_t value : {0x803u, 2000u, 1000u, 1000u}) put_u32(bytes, value);
    bytes.resize(bytes.size() + 100, 7);
    test::write_bytes(dir / "raw", bytes);
    test::write_gzip(dir / "gz", bytes);
    for (const char* name : {"raw", "gz"}) {
        const fs::path path = dir / name;
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            rusage usage{};
            ::getrusage(RUSAGE_SELF, &usage);
            const long before_kib = usage.ru_maxrss;
            int code = 3;
            try {
                (void)read_idx_images(path);
            } catch (const Error& error) {
                code = std::string(error.what()).find("truncated: header declares 2000 images") == std::string::npos ? 2 : 0;
            }
            ::getrusage(RUSAGE_SELF, &usage);
            if (usage.ru_maxrss - before_kib > 256 * 1024) code = 1;  // KiB: over 256 MiB grown
            ::_exit(code);
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        ASSERT_TRUE(WIFEXITED(status)) << name << ": the reader crashed or was killed";
        EXPECT_EQ(WEXITSTATUS(status), 0) << name << ": 1 = allocated what the header claims, 2 = wrong error, "
                                                     "3 = no error";
    }
}

TEST(IdxErrors, ZeroSizes) {
    test::ScratchDir dir;
    const fs::path path = dir / "zero";
    test::write_bytes(path, idx_images(0, 28, 28));
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path, "header declares 0 images");
    test::write_bytes(path, idx_images(2, 0, 28));
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path, "0x28 pixels (no pixels)");
}

TEST(IdxErrors, LabelOutOfRangeAndCountMismatch) {
    test::ScratchDir dir;
    test::write_gzip(dir / "images.gz", idx_images(3, 2, 2));
    test::write_bytes(dir / "labels", idx_labels({0, 10, 1}));
    const std::vector<std::string> ten{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    test::expect_file_error([&] { (void)read_idx_dataset(dir / "images.gz", dir / "labels", ten); }, ErrorKind::bad_input,
                 dir / "labels", "label 10 of item 1 is out of range for 10 classes (0 to 9)");

    test::write_bytes(dir / "labels", idx_labels({0, 1}));
    const std::string message =
        test::expect_file_error([&] { (void)read_idx_dataset(dir / "images.gz", dir / "labels", ten); }, ErrorKind::bad_input,
                     dir / "labels", "has 2 labels but");
    EXPECT_NE(message.find((dir / "images.gz").string() + " has 3 images"), std::string::npos) << message;
}

TEST(IdxErrors, CorruptGzipStream) {
    test::ScratchDir dir;
    const fs::path path = dir / "images.gz";
    test::write_gzip(path, idx_images(4, 28, 28));
    auto gz = test::read_bytes(path);
    // Wrong CRC-32 in the trailer: the data inflate fine, the check fails.
    gz[gz.size() - 8] ^= 0xFF;
    test::write_bytes(path, gz);
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path,
                 "corrupt gzip data: incorrect data check");
    // Garbage in the middle of the deflate stream.
    for (std::size_t i = 12; i < gz.size() - 8; i += 3) gz[i] = 0xFF;
    test::write_bytes(path, gz);
    test::expect_file_error([&] { (void)read_idx_images(path); }, ErrorKind::bad_input, path, "corrupt gzip data: ");
}

TEST(IdxErrors, EmptyMissingAndDirectory) {
    test::ScratchDir dir;
    test::write_bytes(dir / "empty", {});
    EXPECT_EQ(test::expect_file_error([&] { (void)read_idx_images(dir / "empty"); }, ErrorKind::bad_input, dir / "empty", ""),
              (dir / "empty").string() + ": empty file (0 bytes)");
    test::write_gzip(dir / "empty.gz", {});
    test::expect_file_error([&] { (void)read_idx_labels(dir / "empty.gz"); }, ErrorKind::bad_input, dir / "empty.gz",
                 "no data after decompression");
    EXPECT_EQ(test::expect_file_error([&] { (void)read_idx_images(dir / "missing"); }, ErrorKind::bad_input, dir / "missing", ""),
              (dir / "missing").string() + ": no such file");
    test::expect_file_error([&] { (void)read_idx_labels(dir.path()); }, ErrorKind::bad_input, dir.path(), "not a regular file");
}
