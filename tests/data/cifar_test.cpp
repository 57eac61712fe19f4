// CIFAR-10 batch reader: pixel-exact round trips (raw and gzip), class names, bad input.
#include "cvxcnn/data/cifar.hpp"

#include <functional>
#include <memory>

#include <gtest/gtest.h>
#include <zlib.h>

#include "cvxcnn/util/error.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cvxcnn;

namespace {

std::uint8_t sample(std::size_t record, std::size_t offset) {
    return static_cast<std::uint8_t>((record * 131 + offset * 7 + offset / 1024) % 256);
}

// Records whose label is labels[k] and whose byte `offset` (1..3072) is sample(k + first, offset).
std::vector<std::uint8_t> cifar_records(const std::vector<std::uint8_t>& labels, std::size_t first = 0) {
    std::vector<std::uint8_t> bytes;
    for (std::size_t k = 0; k < labels.size(); ++k) {
        bytes.push_back(labels[k]);
        for (std::size_t offset = 1; offset < cifar_record_bytes; ++offset) bytes.push_back(sample(k + first, offset));
    }
    return bytes;
}



}  // namespace

TEST(CifarBatch, RoundTripRawAndGzipPixelExact) {
    test::ScratchDir dir;
    const std::vector<std::uint8_t> labels{6, 9, 0};
    test::write_bytes(dir / "data_batch_1.bin", cifar_records(labels));
    test::write_gzip(dir / "data_batch_1.bin.gz", cifar_records(labels));
    for (const fs::path& path : {dir / "data_batch_1.bin", dir / "data_batch_1.bin.gz"}) {
        const ByteImages batch = read_cifar_batch(path);
        EXPECT_EQ(batch.shape, (ImageShape{3, 32, 32}));
        EXPECT_EQ(batch.labels, (std::vector<std::int32_t>{6, 9, 0}));
        EXPECT_EQ(batch.class_names, cifar10_standard_class_names());
        ASSERT_EQ(batch.pixels.size(), 3u * 3072u);
        for (std::size_t k = 0; k < 3; ++k)
            for (std::size_t v = 0; v < 3072; ++v) ASSERT_EQ(batch.image(k)[v], sample(k, v + 1)) << path;
    }
    EXPECT_EQ(cifar10_standard_class_names().front(), "airplane");
    EXPECT_EQ(cifar10_standard_class_names().back(), "truck");
}

TEST(CifarBatch, ConcatenatesBatchesInOrder) {
    test::ScratchDir dir;
    test::write_bytes(dir / "a.bin", cifar_records({1, 2}));
    test::write_gzip(dir / "b.bin.gz", cifar_records({3}, 2));
    const ByteImages all = read_cifar_batches({dir / "a.bin", dir / "b.bin.gz"});
    EXPECT_EQ(all.labels, (std::vector<std::int32_t>{1, 2, 3}));
    EXPECT_EQ(all.image(2)[0], sample(2, 1));
    EXPECT_EQ(all.image(2)[3071], sample(2, 3072));
}

TEST(CifarBatch, ClassNamesFromMetaFile) {
    test::ScratchDir dir;
    test::write_bytes(dir / "test_batch.bin", cifar_records({0}));
    // The official file: one name per line, then a blank line; CRLF tolerated.
    test::write_text(dir / "batches.meta.txt", "a0\nb1\r\nc2\nd3\ne4\nf5\ng6\nh7\ni8\nj9\n\n");
    const ByteImages batch = read_cifar_batch(dir / "test_batch.bin");
    EXPECT_EQ(batch.class_names,
              (std::vector<std::string>{"a0", "b1", "c2", "d3", "e4", "f5", "g6", "h7", "i8", "j9"}));

    test::write_text(dir / "batches.meta.txt", "a\nb\nc\n");
    test::expect_file_error([&] { (void)read_cifar_batch(dir / "test_batch.bin"); }, ErrorKind::bad_input,
                 dir / "batches.meta.txt", "expected 10 class names, one per line, found 3 lines");
    test::write_text(dir / "batches.meta.txt", "a\nb\n\nc\nd\ne\nf\ng\nh\ni\n");
    test::expect_file_error([&] { (void)read_cifar_class_names(dir.path()); }, ErrorKind::bad_input, dir / "batches.meta.txt",
                 "with blank ones among them");
}

TEST(CifarErrors, SizeNotMultipleOfRecord) {
    test::ScratchDir dir;
    auto bytes = cifar_records({1, 2});
    bytes.resize(bytes.size() + 5);
    const fs::path raw = dir / "raw.bin";
    test::write_bytes(raw, bytes);
    EXPECT_EQ(test::expect_file_error([&] { (void)read_cifar_batch(raw); }, ErrorKind::bad_input, raw, ""),
              raw.string() + ": size 6151 is not a multiple of the 3073-byte CIFAR-10 record");
    const fs::path gz = dir / "short.bin.gz";
    test::write_gzip(gz, bytes);
    test::expect_file_error([&] { (void)read_cifar_batch(gz); }, ErrorKind::bad_input, gz,
                 "size 6151 (after decompression) is not a multiple of the 3073-byte CIFAR-10 record");
}

TEST(CifarErrors, TruncatedGzipStream) {
    test::ScratchDir dir;
    const fs::path full = dir / "full.bin.gz";
    test::write_gzip(full, cifar_records({1, 2, 3, 4}));
    const auto gz = test::read_bytes(full);
    const fs::path cut = dir / "cut.bin.gz";
    test::write_bytes(cut, std::vector<std::uint8_t>(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2)));
    test::expect_file_error([&] { (void)read_cifar_batch(cut); }, ErrorKind::bad_input, cut,
                 "is not a multiple of the 3073-byte CIFAR-10 record; the gzip stream is truncated (unexpected end of file)");
    const fs::path no_trailer = dir / "no_trailer.bin.gz";
    test::write_bytes(no_trailer, std::vector<std::uint8_t>(gz.begin(), gz.end() - 8));
    test::expect_file_error([&] { (void)read_cifar_batch(no_trailer); }, ErrorKind::bad_input, no_trailer,
                 "truncated gzip stream: unexpected end of file");
}

TEST(CifarErrors, LabelOutOfRange) {
    test::ScratchDir dir;
    const fs::path path = dir / "batch.bin";
    test::write_bytes(path, cifar_records({3, 10, 4}));
    test::expect_file_error([&] { (void)read_cifar_batch(path); }, ErrorKind::bad_input, path,
                 "record 1 has label 10, expected 0 to 9");
}

TEST(CifarErrors, RecordCapRawAndGzip) {
    test::ScratchDir dir;
    test::write_bytes(dir / "three.bin", cifar_records({1, 2, 3}));
    test::write_gzip(dir / "three.bin.gz", cifar_records({1, 2, 3}));
    CifarLimits limits;
    limits.max_records = 2;
    test::expect_file_error([&] { (void)read_cifar_batch(dir / "three.bin", limits); }, ErrorKind::limit, dir / "three.bin",
                 "holds 3 records, over the limit of 2");
    test::expect_file_error([&] { (void)read_cifar_batch(dir / "three.bin.gz", limits); }, ErrorKind::limit,
                 dir / "three.bin.gz", "holds more than 2 records, over the limit of 2");
    // The cap is on the total of a list.
    test::write_bytes(dir / "one.bin", cifar_records({1}));
    test::expect_file_error([&] { (void)read_cifar_batches({dir / "one.bin", dir / "one.bin", dir / "one.bin"}, limits); },
                 ErrorKind::limit, dir / "one.bin",
                 "holds 1 record (plus 2 records in earlier batches), over the limit of 2");
    limits.max_records = 3;
    EXPECT_EQ(read_cifar_batch(dir / "three.bin.gz", limits).size(), 3u);
}

TEST(CifarErrors, CorruptGzipEmptyAndMissing) {
    test::ScratchDir dir;
    const fs::path gz = dir / "batch.bin.gz";
    test::write_gzip(gz, cifar_records({1, 2}));
    auto bytes = test::read_bytes(gz);
    bytes[bytes.size() - 8] ^= 0x55;  // CRC-32 of the trailer
    test::write_bytes(gz, bytes);
    test::expect_file_error([&] { (void)read_cifar_batch(gz); }, ErrorKind::bad_input, gz, "corrupt gzip data: incorrect data check");

    test::write_bytes(dir / "empty.bin", {});
    EXPECT_EQ(test::expect_file_error([&] { (void)read_cifar_batch(dir / "empty.bin"); }, ErrorKind::bad_input, dir / "empty.bin", ""),
              (dir / "empty.bin").string() + ": empty file (0 bytes)");
    EXPECT_EQ(test::expect_file_error([&] { (void)read_cifar_batch(dir / "none.bin"); }, ErrorKind::bad_input, dir / "none.bin", ""),
              (dir / "none.bin").string() + ": no such file");
}
